package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// Removing a node, and a node leaving, are remembered in two places:
//
//   - a tombstone in the replicated store (setting "cluster/removed/NAME"),
//     naming the instance of the node that was removed: the leader's
//     reconcile loop never adds that instance back, and the instance
//     itself, when it applies the tombstone, stops;
//   - a departure marker in the node's own data directory
//     (departed.json): a node that finds one refuses to start, so a
//     restart policy cannot bring back a node that left or was removed.
//
// An instance is one life of a data directory: a random ID made the first
// time the node starts (raft/instance.json) and advertised in gossip. A
// node that joins again (a new data directory) is a new instance and is
// not affected by its name's old tombstone.

// Departure reasons.
const (
	DepartedRemoved = "removed" // `raftmail remove` named this node
	DepartedLeft    = "left"    // `raftmail leave` on this node
)

// ErrDeparted: the node left or was removed from the cluster; it does not
// start again on the same data directory.
var ErrDeparted = errors.New("cluster: this node is no longer a member of the cluster")

// ErrWouldLoseQuorum: removing the node would leave fewer live voters than
// a quorum of the remaining ones (or no voter at all).
var ErrWouldLoseQuorum = errors.New("cluster: removing the node would leave the cluster without a quorum")

// Departure is what a departed node remembers in its data directory.
type Departure struct {
	Reason string    `json:"reason"` // DepartedRemoved or DepartedLeft
	Time   time.Time `json:"time"`
	By     string    `json:"by,omitempty"` // the node that carried out the removal
	Dir    string    `json:"-"`            // the data directory
}

func (d *Departure) Error() string {
	what := "was removed from the cluster"
	if d.Reason == DepartedLeft {
		what = "left the cluster"
	}
	return fmt.Sprintf("%v: this node %s at %s; it will not serve again from this data directory. "+
		"To bring it back, run `raftmail join --data-dir %s` with a new token (`raftmail token create` on a member), "+
		"or delete %s", ErrDeparted, what, d.Time.UTC().Format(time.RFC3339), d.Dir, d.Dir)
}

func (d *Departure) Unwrap() error { return ErrDeparted }

// departedFile is the departure marker in the data directory.
const departedFile = "departed.json"

// ReadDeparture returns the departure recorded in dataDir, or nil when the
// node there has not departed.
func ReadDeparture(dataDir string) (*Departure, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, departedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: read departure marker: %w", err)
	}
	var d Departure
	if err := json.Unmarshal(b, &d); err != nil || d.Reason == "" {
		// A marker we cannot read still means the node departed.
		d = Departure{Reason: DepartedRemoved}
		if fi, err := os.Stat(filepath.Join(dataDir, departedFile)); err == nil {
			d.Time = fi.ModTime()
		}
	}
	d.Dir = dataDir
	return &d, nil
}

// ClearDeparture deletes dataDir's departure marker and the Raft state of
// the departed instance, so that `join` can make a new node there. It does
// nothing to a data directory whose node has not departed.
func ClearDeparture(dataDir string) error {
	d, err := ReadDeparture(dataDir)
	if err != nil || d == nil {
		return err
	}
	for _, p := range []string{"raft", peersFile, departedFile} {
		if err := os.RemoveAll(filepath.Join(dataDir, p)); err != nil {
			return fmt.Errorf("cluster: clear departed node's state: %w", err)
		}
	}
	return nil
}

func writeDeparture(dataDir string, d Departure) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, departedFile)
	f, err := os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cluster: write departure marker: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err == nil {
		err = syncDir(dataDir)
	}
	if err != nil {
		return fmt.Errorf("cluster: write departure marker: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// instance identifies one life of a data directory.
type instance struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

const instanceFile = "instance.json"

// loadInstance reads the instance of the data directory, making one the
// first time.
func loadInstance(raftDir string) (instance, error) {
	path := filepath.Join(raftDir, instanceFile)
	var in instance
	b, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(b, &in); err == nil && in.ID != "" {
			return in, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return in, fmt.Errorf("cluster: read %s: %w", path, err)
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return in, err
	}
	in = instance{ID: hex.EncodeToString(id[:]), Created: time.Now().UTC()}
	b, _ = json.Marshal(in)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return in, fmt.Errorf("cluster: write %s: %w", path, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return in, fmt.Errorf("cluster: write %s: %w", path, err)
	}
	return in, nil
}

// settingRemovedPrefix + node name: a tombstone (JSON tombstone).
const settingRemovedPrefix = "cluster/removed/"

// tombstone is the replicated record of a removal.
type tombstone struct {
	Node     string    `json:"node"`
	Instance string    `json:"instance,omitempty"` // "" = not known when removed
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
	By       string    `json:"by"`
}

// covers reports whether the tombstone applies to the instance id created
// at created: the same instance, or, when the removed instance was not
// known, any instance made before the removal.
func (t tombstone) covers(id string, created time.Time) bool {
	if t.Instance != "" {
		return t.Instance == id
	}
	return created.IsZero() || created.Before(t.Time)
}

func (n *Node) tombstoneOf(name string) (tombstone, bool) {
	b, err := n.store.Setting(settingRemovedPrefix + name)
	if err != nil {
		return tombstone{}, false
	}
	var t tombstone
	if json.Unmarshal(b, &t) != nil {
		return tombstone{}, false
	}
	return t, true
}

// removeRequest is the payload of a remove.node RPC (JSON: rare).
type removeRequest struct {
	Node     string `json:"node"`
	Instance string `json:"instance,omitempty"` // the caller's own instance when it leaves
	Reason   string `json:"reason"`
	Force    bool   `json:"force,omitempty"`
}

func decodeRemoveRequest(b []byte) (removeRequest, error) {
	var r removeRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%w: remove.node: %v", errFrame, err)
	}
	if err := CheckNodeName(r.Node); err != nil {
		return r, fmt.Errorf("%w: remove.node: %v", errFrame, err)
	}
	if r.Reason != DepartedRemoved && r.Reason != DepartedLeft {
		return r, fmt.Errorf("%w: remove.node: reason %q", errFrame, r.Reason)
	}
	return r, nil
}

// Remove takes name out of the cluster, from any node: the leader records
// a tombstone (so the reconcile loop never adds that instance back, and
// the node itself, if it is running, stops), removes it from the Raft
// configuration, and Remove returns once this node's configuration no
// longer has it. The leader then revokes the node's certificates, so that
// it cannot come back on the cluster port (it joins again with a new
// token); a node already out of the configuration whose certificates are
// not all revoked yet has them revoked. It refuses with ErrWouldLoseQuorum when the remaining voters would have
// fewer live members than a quorum, unless force.
func (n *Node) Remove(ctx context.Context, name string, force bool) error {
	if err := CheckNodeName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownNode, err)
	}
	if err := n.remove(ctx, removeRequest{Node: name, Reason: DepartedRemoved, Force: force}); err != nil {
		return err
	}
	if name == n.cfg.NodeName {
		return nil // revoked, this node is cut off: nothing to wait for
	}
	deadline := time.Now().Add(revocationWait)
	for n.revocationPending(name) {
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s is removed, but its certificates are not revoked yet (the leader keeps trying; run the removal again to check)", name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s is removed, its certificates not yet revoked: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (n *Node) remove(ctx context.Context, req removeRequest) error {
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	err = n.onLeader(ctx, methodRemoveNode, payload, func() error { return n.removeChecked(ctx, req) })
	if err != nil {
		return err
	}
	// The leader has committed the new configuration; wait until this
	// node has it too, so the caller's next status shows it.
	for {
		cf := n.raft.GetConfiguration()
		if cf.Error() == nil && !inConfig(cf.Configuration(), req.Node) {
			return nil
		}
		if req.Node == n.cfg.NodeName {
			return nil // a node that left stops receiving the log
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s removed by the leader, not yet seen here: %w", req.Node, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func inConfig(c raft.Configuration, name string) bool {
	for _, s := range c.Servers {
		if string(s.ID) == name {
			return true
		}
	}
	return false
}

// removeChecked runs on the leader.
func (n *Node) removeChecked(ctx context.Context, req removeRequest) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	servers := cf.Configuration().Servers
	if !inConfig(cf.Configuration(), req.Node) {
		// Removed before (by an earlier removal whose revocation failed,
		// or as a dead voter): revoke what is left of it, if anything.
		serials, err := n.RevokeNode(ctx, req.Node)
		if err != nil {
			return fmt.Errorf("cluster: %s is not in the cluster; revoking its certificates: %w", req.Node, err)
		}
		if len(serials) == 0 {
			return ErrUnknownNode
		}
		n.log.Warn("revoked the certificates of a node no longer in the cluster", "peer", req.Node, "certificates", len(serials))
		return nil
	}
	if req.Node == n.cfg.NodeName {
		// The leader does not remove itself: it hands over and the new
		// leader does it (the caller retries on "not the leader").
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("cluster: hand over leadership before removing this node: %w", err)
		}
		return raft.ErrNotLeader
	}
	alive := n.aliveNames()
	after, aliveAfter := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter || string(s.ID) == req.Node {
			continue
		}
		after++
		if alive[string(s.ID)] {
			aliveAfter++
		}
	}
	if after == 0 {
		return fmt.Errorf("%w: %s is the only voter", ErrWouldLoseQuorum, req.Node)
	}
	if aliveAfter < after/2+1 && !req.Force {
		return fmt.Errorf("%w: %d voters would remain, %d of them alive, and %d are needed", ErrWouldLoseQuorum, after, aliveAfter, after/2+1)
	}
	ts := tombstone{Node: req.Node, Instance: req.Instance, Reason: req.Reason, Time: time.Now().UTC(), By: n.cfg.NodeName}
	if ts.Instance == "" {
		if m, ok := n.member(req.Node); ok {
			ts.Instance = m.Meta[metaInstance]
		}
	}
	b, _ := json.Marshal(ts)
	cmd, err := storage.NewCommand(storage.CmdSettingSet, storage.SettingSet{Key: settingRemovedPrefix + req.Node, Value: b})
	if err != nil {
		return err
	}
	idx, res, err := n.Propose(ctx, cmd)
	if err != nil {
		return err
	} else if err := res.Err(); err != nil {
		return err
	}
	if alive[req.Node] {
		var addr string
		for _, s := range servers {
			if string(s.ID) == req.Node {
				addr = string(s.Address)
			}
		}
		n.waitApplied(ctx, req.Node, addr, idx, removeNoticeWait)
	}
	n.log.Warn("removing node from the cluster", "peer", req.Node, "reason", req.Reason, "instance", ts.Instance, "forced", req.Force)
	if err := n.raft.RemoveServer(raft.ServerID(req.Node), 0, time.Until(deadlineOf(ctx))).Error(); err != nil {
		return err
	}
	n.revokeSoon(req.Node)
	return nil
}

// revokeSoon revokes node's certificates from the leader, in the
// background and a moment from now: applying a revocation closes every
// connection of the revoked node, so revoking inline would cut off the
// answer to the node that asked to leave (or the removal made through its
// own admin API). It tries until it succeeds or this node stops; Remove
// waits for the result on the node that asked.
func (n *Node) revokeSoon(node string) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		delay := 200 * time.Millisecond
		for {
			select {
			case <-time.After(delay):
			case <-n.stop:
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ProposeTimeout)
			_, err := n.RevokeNode(ctx, node)
			cancel()
			if err == nil {
				return
			}
			n.log.Warn("revoking the certificates of a removed node", "peer", node, "err", err)
			delay = min(2*delay, 5*time.Second)
		}
	}()
}

// revocationPending reports whether node has a recorded certificate that
// is not revoked.
func (n *Node) revocationPending(node string) bool {
	_, unrevoked, err := n.certRecords(node)
	return err != nil || unrevoked
}

// revocationWait bounds how long Remove waits to see the removed node's
// certificates revoked.
const revocationWait = 15 * time.Second

// VoterNames lists the voters in this node's Raft configuration, sorted.
func (n *Node) VoterNames() []string {
	v, err := n.voters()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(v))
	for id := range v {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// aliveNames are the nodes gossip says are alive, and this node.
func (n *Node) aliveNames() map[string]bool {
	alive := map[string]bool{n.cfg.NodeName: true}
	for _, m := range n.Members() {
		if m.State == "alive" {
			alive[m.Name] = true
		}
	}
	return alive
}

func (n *Node) member(name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Leave takes this node out of the cluster: it records the departure in
// the data directory first (so a restart does not bring it back), hands
// over leadership if it leads, and has the leader remove it (refusing,
// like Remove, when that would cost the others their quorum, unless
// force). On failure the marker is deleted and the node goes on as a
// member. Leave does not stop the node: the caller runs the ordered
// shutdown next, which leaves gossip.
func (n *Node) Leave(ctx context.Context, force bool) error {
	d := Departure{Reason: DepartedLeft, Time: time.Now().UTC(), By: n.cfg.NodeName}
	n.mu.Lock()
	n.mu.leaving = true
	n.mu.Unlock()
	if err := writeDeparture(n.cfg.DataDir, d); err != nil {
		return err
	}
	err := n.remove(ctx, removeRequest{Node: n.cfg.NodeName, Instance: n.instance.ID, Reason: DepartedLeft, Force: force})
	if err != nil {
		n.mu.Lock()
		n.mu.leaving = false
		n.mu.Unlock()
		if rerr := os.Remove(filepath.Join(n.cfg.DataDir, departedFile)); rerr != nil {
			n.log.Error("leave failed and its departure marker could not be deleted: the node will not start again", "err", rerr)
		}
		return fmt.Errorf("cluster: leave: %w", err)
	}
	d.Dir = n.cfg.DataDir
	n.mu.Lock()
	n.mu.departed = &d
	n.mu.Unlock()
	n.log.Warn("left the cluster", "at", d.Time)
	return nil
}

// Departed returns this node's departure, or nil while it is a member.
func (n *Node) Departed() *Departure {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.departed
}

// departWatch notices that this instance was removed: each time the FSM
// applies a batch (and every few seconds) it looks for a tombstone naming
// it. It then records the departure in the data directory, logs it and
// calls Config.OnRemoved.
func (n *Node) departWatch() {
	defer n.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.departKick:
		}
		if n.checkRemoved() {
			return
		}
	}
}

func (n *Node) checkRemoved() bool {
	ts, ok := n.tombstoneOf(n.cfg.NodeName)
	if !ok || !ts.covers(n.instance.ID, n.instance.Created) {
		return false
	}
	n.mu.Lock()
	if n.mu.leaving || n.mu.departed != nil {
		done := n.mu.departed != nil
		n.mu.Unlock()
		return done
	}
	d := &Departure{Reason: ts.Reason, Time: ts.Time, By: ts.By, Dir: n.cfg.DataDir}
	n.mu.departed = d
	n.mu.Unlock()
	if err := writeDeparture(n.cfg.DataDir, *d); err != nil {
		n.log.Error("cannot record the removal in the data directory", "err", err)
	}
	n.log.Error("this node was removed from the cluster: it stops serving and will not start again from this data directory",
		"by", ts.By, "at", ts.Time, "reason", ts.Reason)
	if n.cfg.OnRemoved != nil {
		go n.cfg.OnRemoved(d)
	}
	return true
}

// departedProblem is the health problem of a departed node.
func (n *Node) departedProblem() []string {
	d := n.Departed()
	if d == nil {
		return nil
	}
	if d.Reason == DepartedLeft {
		return []string{"left the cluster at " + d.Time.UTC().Format(time.RFC3339)}
	}
	return []string{fmt.Sprintf("removed from cluster at %s (by %s)", d.Time.UTC().Format(time.RFC3339), d.By)}
}

// removeNoticeWait bounds how long the leader waits for a living node to
// apply its own tombstone before taking it out of the configuration: once
// out, the leader sends it no more entries, and its certificates are
// revoked right after, so a node that had not applied the tombstone by
// then would never learn it was removed.
const removeNoticeWait = 5 * time.Second

// waitApplied waits, at most limit, until node (at addr) has applied
// index, asking it for its status.
func (n *Node) waitApplied(ctx context.Context, node, addr string, index uint64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		b, err := n.rpc.call(addr, methodStatus, []byte(statusQuick), time.Second)
		if err == nil {
			var st NodeStatus
			if json.Unmarshal(b, &st) == nil && st.AppliedIndex >= index {
				return
			}
		}
		if time.Now().After(deadline) {
			n.log.Warn("removing a node that has not applied its removal yet: it will not learn it was removed", "peer", node, "index", index, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
