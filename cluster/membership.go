package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// metaClusterAddr is the gossip metadata key holding a node's cluster
// (Raft/RPC) address.
const metaClusterAddr = "cluster"

func (n *Node) startGossip() error {
	host, portStr, _ := net.SplitHostPort(n.cfg.GossipBind)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("cluster: gossip port %q: %w", portStr, err)
	}
	advHost, advPortStr, _ := net.SplitHostPort(n.cfg.GossipAdvertise)
	advPort, err := strconv.Atoi(advPortStr)
	if err != nil {
		return fmt.Errorf("cluster: gossip advertise port %q: %w", advPortStr, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.NodeName
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr = advHost
	mc.AdvertisePort = advPort
	mc.SecretKey = n.cfg.GossipKey
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	n.events = newGossipEvents(n.reconcileKick)
	mc.Delegate = n.cfg.Gossip.delegate(&gossipDelegate{meta: n.gossipMeta()}, n.events.aliveMembers)
	mc.Events = n.events
	mc.Logger = NewStdLogger(n.log, "memberlist")
	if n.cfg.GossipInterval > 0 {
		mc.GossipInterval = n.cfg.GossipInterval
		mc.ProbeInterval = 5 * n.cfg.GossipInterval
		mc.ProbeTimeout = 2 * n.cfg.GossipInterval
		mc.SuspicionMult = 2
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("cluster: start gossip on %s: %w", n.cfg.GossipBind, err)
	}
	n.ml = ml
	return nil
}

func (n *Node) gossipMeta() []byte {
	m := map[string]string{metaClusterAddr: n.cfg.ClusterAdvertise}
	for k, v := range n.cfg.Meta {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	if len(b) > memberlist.MetaMaxSize {
		n.log.Warn("gossip metadata too large; advertising the cluster address only")
		b, _ = json.Marshal(map[string]string{metaClusterAddr: n.cfg.ClusterAdvertise})
	}
	return b
}

type gossipDelegate struct{ meta []byte }

func (d *gossipDelegate) NodeMeta(limit int) []byte                  { return d.meta }
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// gossipEvents keeps this node's own copy of the member list and kicks the
// reconcile loop. memberlist calls it under its own lock and changes the
// *memberlist.Node values in place afterwards, so the fields are copied
// here and nothing else reads memberlist's nodes (memberlist#306).
type gossipEvents struct {
	kick chan struct{}

	mu struct {
		sync.Mutex
		members map[string]Member
	}
}

func newGossipEvents(kick chan struct{}) *gossipEvents {
	e := &gossipEvents{kick: kick}
	e.mu.members = make(map[string]Member)
	return e
}

func (e *gossipEvents) record(n *memberlist.Node, state string) {
	m := memberOf(n, state)
	e.mu.Lock()
	e.mu.members[m.Name] = m
	e.mu.Unlock()
	kick(e.kick)
}

// The state comes from which callback fired: memberlist v0.7.0 does not
// update the Node.State it passes to NotifyLeave (only its own copy), so a
// node that left gracefully and one that failed both arrive as "dead".
// Leave removes a node from Raft before it leaves gossip, so the reconcile
// loop treats both alike.
func (e *gossipEvents) NotifyJoin(n *memberlist.Node)   { e.record(n, "alive") }
func (e *gossipEvents) NotifyLeave(n *memberlist.Node)  { e.record(n, "dead") }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) { e.record(n, "alive") }

func (e *gossipEvents) snapshot() []Member {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Member, 0, len(e.mu.members))
	for _, m := range e.mu.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Member is a node as gossip sees it.
type Member struct {
	Name  string            `json:"name"`
	Addr  string            `json:"gossip_addr"`
	State string            `json:"state"` // alive or dead
	Meta  map[string]string `json:"meta,omitempty"`
}

// Members lists every node gossip has seen, including failed and departed
// ones, by name.
func (n *Node) Members() []Member {
	if n.events == nil {
		return nil
	}
	return n.events.snapshot()
}

// memberOf copies what we need of a memberlist node. Call it only from a
// memberlist event callback (memberlist holds its lock then).
func memberOf(m *memberlist.Node, state string) Member {
	var meta map[string]string
	_ = json.Unmarshal(m.Meta, &meta)
	return Member{Name: m.Name, Addr: m.Address(), State: state, Meta: meta}
}

// peersFile remembers the gossip addresses of the other members, so a node
// that restarts (the first node has no seeds in its configuration) finds
// the cluster again.
const peersFile = "gossip-peers.json"

// joinLoop joins gossip through the configured seeds and the peers this
// node knew before it stopped, retrying until one answers. Afterwards it
// keeps the peers file current and, while a Raft server is not alive in
// gossip, tries to reach it again: gossip stops contacting a dead node
// after a while, so a node that returns would otherwise stay apart.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	known := n.loadPeers()
	delay := 200 * time.Millisecond
	for joined := false; !joined; {
		targets := n.joinTargets(known, false)
		if len(targets) == 0 {
			break
		}
		if _, err := n.ml.Join(targets); err == nil {
			joined = true
			n.log.Info("gossip: joined", "members", n.ml.NumMembers())
			break
		} else {
			n.log.Warn("gossip: cannot reach any known member yet", "tried", targets, "err", err)
		}
		select {
		case <-n.stop:
			return
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		known = n.savePeers(known)
		if tick%5 != 0 {
			continue
		}
		if targets := n.joinTargets(known, true); len(targets) > 0 {
			if _, err := n.ml.Join(targets); err == nil {
				n.log.Info("gossip: reached a Raft server that gossip had lost", "tried", targets)
			}
		}
	}
}

// joinTargets are gossip addresses to try: the configured seeds and known
// peers; with missingOnly, only known peers that are Raft servers but not
// alive in gossip.
func (n *Node) joinTargets(known map[string]string, missingOnly bool) []string {
	var out []string
	seen := map[string]bool{n.cfg.GossipAdvertise: true}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if !missingOnly {
		for _, s := range n.cfg.Seeds {
			add(s)
		}
		for name, a := range known {
			if name != n.cfg.NodeName {
				add(a)
			}
		}
		return out
	}
	servers, err := n.voters()
	if err != nil {
		return nil
	}
	alive := map[string]bool{}
	for _, m := range n.Members() {
		if m.State == "alive" {
			alive[m.Name] = true
		}
	}
	for name := range servers {
		if name != n.cfg.NodeName && !alive[name] {
			add(known[name])
		}
	}
	return out
}

func (n *Node) loadPeers() map[string]string {
	known := map[string]string{}
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, peersFile))
	if err == nil {
		if err := json.Unmarshal(b, &known); err != nil {
			n.log.Warn("gossip: ignoring unreadable peers file", "err", err)
			known = map[string]string{}
		}
	}
	return known
}

// savePeers merges what gossip knows into known and writes it when it
// changed; it returns the merged map.
func (n *Node) savePeers(known map[string]string) map[string]string {
	changed := false
	for _, m := range n.Members() {
		if m.Name != n.cfg.NodeName && m.Addr != "" && known[m.Name] != m.Addr {
			known[m.Name] = m.Addr
			changed = true
		}
	}
	if !changed {
		return known
	}
	b, _ := json.Marshal(known)
	path := filepath.Join(n.cfg.DataDir, peersFile)
	if err := os.WriteFile(path+".tmp", b, 0o600); err == nil {
		if err := os.Rename(path+".tmp", path); err != nil {
			n.log.Warn("gossip: save peers", "err", err)
		}
	}
	return known
}

// reconcileLoop runs on every node but acts only on the leader: it adds
// alive gossip members that are missing from the Raft configuration, and
// removes voters that have been dead longer than DeadServerGrace, never
// shrinking below MinVoters or below what keeps a quorum alive.
func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.reconcileKick:
		}
		if n.raft.State() != raft.Leader {
			n.mu.Lock()
			clear(n.mu.deadSince)
			n.mu.Unlock()
			continue
		}
		n.reconcileOnce()
	}
}

func (n *Node) reconcileOnce() {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	servers := cf.Configuration().Servers
	inRaft := make(map[string]raft.Server, len(servers))
	voters := 0
	for _, s := range servers {
		inRaft[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	alive := make(map[string]Member)
	for _, m := range n.Members() {
		if m.State == "alive" {
			alive[m.Name] = m
		}
	}
	for name, m := range alive {
		if _, ok := inRaft[name]; ok || m.Meta[metaClusterAddr] == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := n.AddVoter(ctx, name, m.Meta[metaClusterAddr])
		cancel()
		if err != nil {
			n.log.Warn("reconcile: add voter failed", "peer", name, "err", err)
		}
	}
	now := time.Now()
	aliveVoters := 0
	for id, s := range inRaft {
		if _, ok := alive[id]; (ok || id == n.cfg.NodeName) && s.Suffrage == raft.Voter {
			aliveVoters++
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, s := range inRaft {
		if _, ok := alive[id]; ok || id == n.cfg.NodeName {
			delete(n.mu.deadSince, id)
			continue
		}
		since, seen := n.mu.deadSince[id]
		if !seen {
			n.mu.deadSince[id] = now
			continue
		}
		if now.Sub(since) < n.cfg.DeadServerGrace {
			continue
		}
		after := voters
		if s.Suffrage == raft.Voter {
			after--
		}
		if after < n.cfg.MinVoters {
			continue
		}
		if aliveVoters < after/2+1 {
			continue
		}
		n.log.Warn("reconcile: removing failed server", "peer", id, "dead_for", now.Sub(since).Round(time.Second).String())
		if err := n.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			n.log.Warn("reconcile: remove failed", "peer", id, "err", err)
			continue
		}
		delete(n.mu.deadSince, id)
		voters = after
	}
}
