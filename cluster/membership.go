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

// Gossip metadata keys: a node's cluster (Raft/RPC) address, and the ID
// and creation time of its instance (remove.go).
const (
	metaClusterAddr = "cluster"
	metaInstance    = "iid"
	metaBorn        = "born"
)

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
	own := map[string]string{
		metaClusterAddr: n.cfg.ClusterAdvertise,
		metaInstance:    n.instance.ID,
		metaBorn:        n.instance.Created.Format(time.RFC3339),
	}
	m := map[string]string{}
	for k, v := range n.cfg.Meta {
		m[k] = v
	}
	for k, v := range own {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	if len(b) > memberlist.MetaMaxSize {
		n.log.Warn("gossip metadata too large; advertising the cluster address and instance only")
		b, _ = json.Marshal(own)
	}
	return b
}

type gossipDelegate struct{ meta []byte }

func (d *gossipDelegate) NodeMeta(limit int) []byte                  { return d.meta }
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// gossipEvents keeps this node's own copy of the member list, with the
// time each member entered its current state, and kicks the reconcile
// loop. memberlist calls it under its own lock and changes the
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
	m.Since = time.Now().UTC()
	e.mu.Lock()
	if old, ok := e.mu.members[m.Name]; ok && old.State == state {
		m.Since = old.Since
	}
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
	Since time.Time         `json:"since"` // when this node saw it enter State
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

// reconcile is a leader task (leader.go): while this node leads it adds
// alive gossip members that are missing from the Raft configuration
// (unless a tombstone names that instance: it was removed or left), and
// removes voters that have been dead longer than DeadServerGrace, never
// shrinking below MinVoters or below what keeps a quorum alive.
//
// "Dead since" is the time this node's gossip saw the member fail, which
// every node records whether it leads or not, so a new leader does not
// start the grace period again. A voter that gossip has never seen (this
// node started after it died) counts from the moment this term's
// reconcile first missed it.
func (n *Node) reconcile(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	r := &reconciler{n: n, missingSince: map[string]time.Time{}, reported: map[string]string{}}
	for {
		r.once()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.reconcileKick:
		}
	}
}

// reconciler is the state of one leadership term's reconcile task.
type reconciler struct {
	n            *Node
	missingSince map[string]time.Time // voters gossip has never seen
	reported     map[string]string    // last decision logged per voter
}

// reapDecision says what the leader does with a voter that is not alive.
type reapDecision struct {
	remove bool
	kind   string // grace, min-voters, quorum, remove
	why    string // for the log and status
}

// decideReap decides about one voter dead for deadFor, with voters voters
// of which aliveVoters alive, under cfg's grace and minimum.
func decideReap(cfg *Config, deadFor time.Duration, voters, aliveVoters int) reapDecision {
	if deadFor < cfg.DeadServerGrace {
		return reapDecision{kind: "grace", why: fmt.Sprintf("dead for %s; removed once dead for %s (--dead-server-grace) if at least %d voters remain",
			deadFor.Round(time.Second), cfg.DeadServerGrace, cfg.MinVoters)}
	}
	after := voters - 1
	if after < cfg.MinVoters {
		return reapDecision{kind: "min-voters", why: fmt.Sprintf("dead for %s; kept as a voter: removing it would leave %d voters, fewer than the minimum of %d (replace it: join a new node, then `raftmail remove` this one)",
			deadFor.Round(time.Second), after, cfg.MinVoters)}
	}
	if aliveVoters < after/2+1 {
		return reapDecision{kind: "quorum", why: fmt.Sprintf("dead for %s; kept as a voter: only %d of the other %d voters are alive, fewer than a quorum",
			deadFor.Round(time.Second), aliveVoters, after)}
	}
	return reapDecision{remove: true, kind: "remove", why: fmt.Sprintf("dead for %s, longer than --dead-server-grace (%s)", deadFor.Round(time.Second), cfg.DeadServerGrace)}
}

func (r *reconciler) once() {
	n := r.n
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
	members := map[string]Member{}
	for _, m := range n.Members() {
		members[m.Name] = m
	}
	for name, m := range members {
		if _, ok := inRaft[name]; ok || m.State != "alive" || m.Meta[metaClusterAddr] == "" || n.nodeRevoked(name) {
			continue
		}
		if ts, ok := n.tombstoneOf(name); ok {
			born, _ := time.Parse(time.RFC3339, m.Meta[metaBorn])
			if ts.covers(m.Meta[metaInstance], born) {
				if r.reported[name] != "tombstone" {
					r.reported[name] = "tombstone"
					n.log.Info("reconcile: not adding a node that was removed or left; it must join again with a new token",
						"peer", name, "reason", ts.Reason, "at", ts.Time)
				}
				continue
			}
		}
		if err := n.addVoterLocal(name, m.Meta[metaClusterAddr]); err != nil {
			n.log.Warn("reconcile: add voter failed", "peer", name, "err", err)
		}
	}
	now := time.Now()
	aliveVoters := 0
	for id, s := range inRaft {
		if s.Suffrage == raft.Voter && (id == n.cfg.NodeName || members[id].State == "alive") {
			aliveVoters++
		}
	}
	for id, s := range inRaft {
		if id == n.cfg.NodeName || members[id].State == "alive" {
			delete(r.missingSince, id)
			delete(r.reported, id)
			continue
		}
		since := members[id].Since
		if _, seen := members[id]; !seen {
			if _, ok := r.missingSince[id]; !ok {
				r.missingSince[id] = now
			}
			since = r.missingSince[id]
		}
		d := decideReap(&n.cfg, now.Sub(since), voters, aliveVoters)
		if s.Suffrage != raft.Voter {
			d = reapDecision{remove: now.Sub(since) >= n.cfg.DeadServerGrace, kind: "non-voter", why: "a dead non-voter"}
		}
		if !d.remove {
			if d.kind != "grace" && r.reported[id] != d.kind {
				r.reported[id] = d.kind
				n.log.Warn("reconcile: dead voter not removed", "peer", id, "why", d.why)
			}
			continue
		}
		n.log.Warn("reconcile: removing failed server", "peer", id, "why", d.why)
		if err := n.raft.RemoveServer(s.ID, 0, 10*time.Second).Error(); err != nil {
			n.log.Warn("reconcile: remove failed", "peer", id, "err", err)
			continue
		}
		delete(r.missingSince, id)
		delete(r.reported, id)
		if s.Suffrage == raft.Voter {
			voters--
		}
	}
}
