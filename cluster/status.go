package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/internal/wallclock"
)

// NodeStatus is one node's view of itself, as `raftmail status` shows it.
//
// Values a node reports about itself (AppliedIndex, MissingBlobs,
// StateHash, HashIndex) are known only when Reachable, and Lag only when
// LagKnown (this node and the leader both answered); otherwise they are
// zero here and null in JSON.
type NodeStatus struct {
	Name         string            `json:"name"`
	ClusterAddr  string            `json:"cluster_addr"`
	GossipAddr   string            `json:"gossip_addr,omitempty"`
	Meta         map[string]string `json:"meta,omitempty"`
	Reachable    bool              `json:"reachable"`
	Error        string            `json:"error,omitempty"`
	Role         string            `json:"role,omitempty"` // Leader, Follower, Candidate, Shutdown
	Voter        bool              `json:"voter"`
	Leader       string            `json:"leader,omitempty"`
	Term         uint64            `json:"term,omitempty"`
	LastContact  string            `json:"last_contact,omitempty"` // since the leader was last heard; "0s" on the leader
	CommitIndex  uint64            `json:"commit_index,omitempty"`
	AppliedIndex uint64            `json:"applied_index"` // the store's applied index
	Lag          uint64            `json:"lag"`           // leader's applied index minus this node's
	LagKnown     bool              `json:"-"`             // Lag is known (null in JSON otherwise)
	MissingBlobs int               `json:"missing_blobs"` // blobs referenced here but not stored here
	StateHash    string            `json:"state_hash"`    // SHA-256 over the metadata keyspace
	HashIndex    uint64            `json:"hash_index"`    // applied index the hash was taken at
	// Gossip is the node's state in the gossip of the node that gathered
	// the listing (alive or dead; "unknown" when gossip has not seen it),
	// GossipSince when it entered that state. Gossip notices a crash
	// after a few probe intervals: until then a node that does not answer
	// is "alive" there but not Reachable.
	Gossip       string    `json:"gossip,omitempty"`
	GossipSince  time.Time `json:"gossip_since,omitzero"`
	Uptime       string    `json:"uptime,omitempty"`        // reserved
	Members      int       `json:"members,omitempty"`       // gossip members this node sees
	Problems     []string  `json:"problems,omitempty"`      // why this node is not healthy (Node.Problems, or what the leader does about a dead voter)
	CertNotAfter time.Time `json:"cert_not_after,omitzero"` // expiry of the node's cluster certificate
	Time         time.Time `json:"time"`
}

// nodeStatusJSON is NodeStatus on the wire: the values that may be unknown
// are pointers, null when unknown.
type nodeStatusJSON struct {
	nodeStatusPlain
	AppliedIndex *uint64 `json:"applied_index"`
	Lag          *uint64 `json:"lag"`
	MissingBlobs *int    `json:"missing_blobs"`
	StateHash    *string `json:"state_hash"`
	HashIndex    *uint64 `json:"hash_index"`
}

type nodeStatusPlain NodeStatus

// MarshalJSON writes unknown values as null.
func (s NodeStatus) MarshalJSON() ([]byte, error) {
	out := nodeStatusJSON{nodeStatusPlain: nodeStatusPlain(s)}
	if s.Reachable {
		out.AppliedIndex, out.MissingBlobs, out.StateHash, out.HashIndex = &s.AppliedIndex, &s.MissingBlobs, &s.StateHash, &s.HashIndex
	}
	if s.Reachable && s.LagKnown {
		out.Lag = &s.Lag
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes; null leaves a value zero.
func (s *NodeStatus) UnmarshalJSON(b []byte) error {
	var in nodeStatusJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*s = NodeStatus(in.nodeStatusPlain)
	if in.AppliedIndex != nil {
		s.AppliedIndex = *in.AppliedIndex
	}
	if in.Lag != nil {
		s.Lag, s.LagKnown = *in.Lag, true
	}
	if in.MissingBlobs != nil {
		s.MissingBlobs = *in.MissingBlobs
	}
	if in.StateHash != nil {
		s.StateHash = *in.StateHash
	}
	if in.HashIndex != nil {
		s.HashIndex = *in.HashIndex
	}
	return nil
}

// LocalStatus reports this node's own view, state hash included (a scan
// of the whole metadata keyspace: for `raftmail status`, not for probes).
func (n *Node) LocalStatus() NodeStatus {
	st := n.QuickStatus()
	if n.store.Failed() != nil {
		return st
	}
	if h, idx, err := n.store.StateHash(); err == nil {
		st.StateHash = h.String()
		st.HashIndex = idx
	}
	return st
}

// QuickStatus is LocalStatus without the state hash: cheap enough for
// health checks and metrics scrapes.
func (n *Node) QuickStatus() NodeStatus {
	st := NodeStatus{
		Name:        n.cfg.NodeName,
		ClusterAddr: n.cfg.ClusterAdvertise,
		GossipAddr:  n.cfg.GossipAdvertise,
		Meta:        n.cfg.Meta,
		Reachable:   true,
		Time:        wallclock.Now().UTC(),
	}
	st.Role = n.raft.State().String()
	_, leaderID := n.raft.LeaderWithID()
	st.Leader = string(leaderID)
	stats := n.raft.Stats()
	st.Term = parseUint(stats["term"])
	st.CommitIndex = parseUint(stats["commit_index"])
	if st.Role == raft.Leader.String() {
		st.LastContact = "0s"
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		st.LastContact = time.Since(lc).Round(time.Millisecond).String()
	} else {
		st.LastContact = "never"
	}
	if voters, err := n.voters(); err == nil {
		_, st.Voter = voters[n.cfg.NodeName]
	}
	st.AppliedIndex = n.store.AppliedIndex()
	st.Problems = n.Problems()
	if n.store.Failed() == nil { // a failed Pebble may not answer
		if _, total, err := n.store.MissingBlobs(0); err == nil {
			st.MissingBlobs = total
		}
	}
	if n.ml != nil {
		st.Members = n.ml.NumMembers()
	}
	st.Gossip = "alive"
	st.CertNotAfter = n.CertNotAfter().UTC()
	return st
}

// ClusterStatus asks every server in the Raft configuration (and every
// gossip member outside it) for its status, in parallel, and fills in lag
// relative to the leader. Unreachable nodes are listed with their error.
func (n *Node) ClusterStatus(ctx context.Context) []NodeStatus {
	type target struct{ id, addr string }
	var targets []target
	voters := map[string]bool{}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			targets = append(targets, target{string(s.ID), string(s.Address)})
			voters[string(s.ID)] = s.Suffrage == raft.Voter
		}
	}
	gossip := map[string]Member{}
	for _, m := range n.Members() {
		gossip[m.Name] = m
		if _, ok := voters[m.Name]; !ok && m.Meta[metaClusterAddr] != "" && m.State == "alive" {
			targets = append(targets, target{m.Name, m.Meta[metaClusterAddr]})
		}
	}
	out := make([]NodeStatus, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func(i int, t target) {
			defer wg.Done()
			if t.id == n.cfg.NodeName {
				out[i] = n.LocalStatus()
				return
			}
			timeout := 3 * time.Second
			if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
				timeout = time.Until(d)
			}
			b, err := n.rpc.call(t.addr, methodStatus, nil, timeout)
			var st NodeStatus
			if err == nil {
				err = json.Unmarshal(b, &st)
			}
			if err != nil {
				out[i] = NodeStatus{Name: t.id, ClusterAddr: t.addr, Voter: voters[t.id], Error: err.Error()}
				return
			}
			out[i] = st
		}(i, t)
	}
	wg.Wait()
	var leaderApplied uint64
	leaderKnown := false
	nVoters, aliveVoters := 0, 0
	for _, st := range out {
		if st.Role == raft.Leader.String() {
			leaderApplied, leaderKnown = st.AppliedIndex, true
		}
		if voters[st.Name] {
			nVoters++
			if st.Name == n.cfg.NodeName || gossip[st.Name].State == "alive" {
				aliveVoters++
			}
		}
	}
	now := time.Now()
	for i := range out {
		if m, ok := gossip[out[i].Name]; ok && out[i].Name != n.cfg.NodeName {
			out[i].Gossip, out[i].GossipSince = m.State, m.Since
			if out[i].GossipAddr == "" {
				out[i].GossipAddr = m.Addr
			}
		} else if out[i].Name != n.cfg.NodeName {
			out[i].Gossip = "unknown"
		}
		if out[i].Reachable && leaderKnown {
			out[i].LagKnown = true
			if leaderApplied > out[i].AppliedIndex {
				out[i].Lag = leaderApplied - out[i].AppliedIndex
			}
		}
		// What the leader does about a dead voter, so that an operator
		// sees why it is still listed.
		if m, ok := gossip[out[i].Name]; ok && m.State != "alive" && voters[out[i].Name] {
			d := decideReap(&n.cfg, now.Sub(m.Since), nVoters, aliveVoters)
			out[i].Problems = append(out[i].Problems, d.why)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func parseUint(s string) uint64 {
	var v uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return v
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}
