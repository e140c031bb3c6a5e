package chaos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/storage"
)

// adminClient is the admin API client of node n with an HTTP timeout.
func adminClient(n NodeInfo, timeout time.Duration) *ops.Client {
	return &ops.Client{Addr: n.Admin, Token: n.AdminToken, HTTP: &http.Client{Timeout: timeout}}
}

// statusOf asks node n for the cluster's status (GET /v1/status).
func statusOf(ctx context.Context, n NodeInfo, timeout time.Duration) ([]cluster.NodeStatus, error) {
	var out []cluster.NodeStatus
	if err := adminClient(n, timeout).Do(ctx, "GET", "/v1/status", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// self returns n's entry in its own status answer.
func self(n NodeInfo, sts []cluster.NodeStatus) (cluster.NodeStatus, bool) {
	for _, s := range sts {
		if s.Name == n.Name {
			return s, true
		}
	}
	return cluster.NodeStatus{}, false
}

// Sampler polls every node's /v1/status while a scenario runs and keeps
// each node's own view of its role, term and leader. An unreachable or
// frozen node yields no sample for that moment.
type Sampler struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		samples []Sample
	}
}

// StartSampler starts polling every node each interval (0 = 200ms).
func StartSampler(ctx context.Context, nodes []NodeInfo, interval time.Duration) *Sampler {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	s := &Sampler{}
	ctx, s.cancel = context.WithCancel(ctx)
	for _, n := range nodes {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			tk := time.NewTicker(interval)
			defer tk.Stop()
			for {
				// A frozen peer makes /v1/status wait for its RPC
				// timeout (3s); the answer is still worth keeping.
				// The time is this process's, when it asked: a node's own
				// clock may be skewed (clock-skew scenario).
				asked := time.Now()
				if sts, err := statusOf(ctx, n, 5*time.Second); err == nil {
					if st, ok := self(n, sts); ok {
						s.mu.Lock()
						s.mu.samples = append(s.mu.samples, Sample{Time: asked, Node: n.Name, Role: st.Role, Term: st.Term, Leader: st.Leader})
						s.mu.Unlock()
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
			}
		}()
	}
	return s
}

// Stop stops polling and returns the samples in time order.
func (s *Sampler) Stop() []Sample {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.mu.samples)
	slices.SortStableFunc(out, func(a, b Sample) int { return a.Time.Compare(b.Time) })
	return out
}

// Leader returns the name of the node that every reachable node names as
// leader, polling until they agree or ctx ends.
func Leader(ctx context.Context, nodes []NodeInfo) (string, error) {
	var last error
	for {
		leader, err := agreedLeader(ctx, nodes)
		if err == nil {
			return leader, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("chaos: no leader: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func agreedLeader(ctx context.Context, nodes []NodeInfo) (string, error) {
	leader, seen := "", 0
	for _, n := range nodes {
		sts, err := statusOf(ctx, n, 2*time.Second)
		if err != nil {
			continue
		}
		st, ok := self(n, sts)
		if !ok || st.Leader == "" {
			return "", fmt.Errorf("%s knows no leader", n.Name)
		}
		if leader != "" && st.Leader != leader {
			return "", fmt.Errorf("%s names leader %s, another node %s", n.Name, st.Leader, leader)
		}
		leader = st.Leader
		seen++
	}
	if seen == 0 {
		return "", errors.New("no node answered")
	}
	return leader, nil
}

// Converged reports whether the cluster has converged, and if not why:
// every node answers, all have the same applied index and the same state
// hash taken at that index, no missing blobs, one leader they all name,
// every node a voter and alive in every node's gossip view.
func Converged(ctx context.Context, nodes []NodeInfo) error {
	views := make([][]cluster.NodeStatus, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i], errs[i] = statusOf(ctx, n, 5*time.Second)
		}()
	}
	wg.Wait()
	var first cluster.NodeStatus
	for i, n := range nodes {
		if errs[i] != nil {
			return fmt.Errorf("%s: %w", n.Name, errs[i])
		}
		st, ok := self(n, views[i])
		switch {
		case !ok:
			return fmt.Errorf("%s: not in its own status", n.Name)
		case st.Leader == "":
			return fmt.Errorf("%s: no leader", n.Name)
		case !st.Voter:
			return fmt.Errorf("%s: not a voter", n.Name)
		case st.MissingBlobs != 0:
			return fmt.Errorf("%s: %d missing blobs", n.Name, st.MissingBlobs)
		case st.HashIndex != st.AppliedIndex:
			return fmt.Errorf("%s: state hash at index %d, applied %d", n.Name, st.HashIndex, st.AppliedIndex)
		}
		if i == 0 {
			first = st
		} else if st.AppliedIndex != first.AppliedIndex || st.StateHash != first.StateHash || st.Leader != first.Leader {
			return fmt.Errorf("%s: applied %d hash %.12s leader %s; %s: applied %d hash %.12s leader %s",
				nodes[0].Name, first.AppliedIndex, first.StateHash, first.Leader, n.Name, st.AppliedIndex, st.StateHash, st.Leader)
		}
		for _, o := range nodes {
			if g := gossipOf(o.Name, views[i]); g != "alive" {
				return fmt.Errorf("%s sees %s as %q in gossip", n.Name, o.Name, g)
			}
		}
	}
	return nil
}

func gossipOf(node string, view []cluster.NodeStatus) string {
	for _, s := range view {
		if s.Name == node {
			return s.Gossip
		}
	}
	return "absent"
}

// WaitConverged polls Converged every 200ms until it holds twice in a row
// or ctx ends; it returns how long that took and the last reason it did
// not hold.
func WaitConverged(ctx context.Context, nodes []NodeInfo) (time.Duration, error) {
	start := time.Now()
	held := false // it held at the previous poll too
	for {
		err := Converged(ctx, nodes)
		if err == nil && held {
			return time.Since(start), nil
		}
		held = err == nil
		if err == nil {
			err = errors.New("it held at one poll only")
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("chaos: cluster did not converge in %s: %w", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ReadBack reads the final state of every node, in parallel: its status
// through its admin API, every mailbox of every account through its IMAPS
// (EXAMINE, then every message's X-Chaos-Id and body hash), and its
// outbound queue (GET /v1/queue). A queue entry is named by the chaos ID
// in its remote recipient's local part ("chaos-ID@remote.test"), else by
// the queue ID an OK send in ops was told ("queued as ID"), else
// "queue:ID". NodeState.Gossip is the worst state any node reports for
// the node ("alive" only if every answering node sees it alive).
func ReadBack(ctx context.Context, nodes []NodeInfo, accounts []Account, sent []Op, timeout time.Duration) []NodeState {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	byQueueID := map[string]string{}
	for _, op := range sent {
		if op.Kind == OpSend && op.Outcome == OK {
			if id := QueueIDOf(op.Detail); id != "" {
				byQueueID[id] = op.ChaosID
			}
		}
	}
	// The statuses first, all at once, again until every node that
	// answers reports the same applied index and state hash (background
	// work such as the outbound queue's attempts may still commit), for
	// up to 10s: the state hashes compared are then those of one moment.
	views := make([][]cluster.NodeStatus, len(nodes))
	errs := make([]error, len(nodes))
	for try := 0; try < 40; try++ {
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				views[i], errs[i] = statusOf(ctx, n, timeout)
			}()
		}
		wg.Wait()
		if sameState(nodes, views) || ctx.Err() != nil || wait(ctx, 250*time.Millisecond) != nil {
			break
		}
	}
	out := make([]NodeState, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = readNode(ctx, n, views[i], errs[i], accounts, byQueueID, timeout)
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if !out[i].Reachable {
			continue
		}
		out[i].Gossip = "alive"
		for _, v := range views {
			if g := gossipOf(n.Name, v); v != nil && g != "alive" {
				out[i].Gossip = g
				break
			}
		}
	}
	return out
}

// sameState reports whether every node that answered has the same applied
// index and state hash, the hash taken at that index.
func sameState(nodes []NodeInfo, views [][]cluster.NodeStatus) bool {
	var first *cluster.NodeStatus
	for i, n := range nodes {
		st, ok := self(n, views[i])
		if !ok {
			continue
		}
		if st.HashIndex != st.AppliedIndex {
			return false
		}
		if first == nil {
			first = &st
		} else if st.AppliedIndex != first.AppliedIndex || st.StateHash != first.StateHash {
			return false
		}
	}
	return true
}

// readNode reads one node's mailboxes and queue; sts and err are what its
// status call answered.
func readNode(ctx context.Context, n NodeInfo, sts []cluster.NodeStatus, err error, accounts []Account, byQueueID map[string]string, timeout time.Duration) NodeState {
	ns := NodeState{Node: n.Name, Mailboxes: []MailboxState{}, Queue: []string{}}
	var errs []string
	if err != nil {
		ns.Error = "status: " + err.Error()
		return ns
	}
	st, ok := self(n, sts)
	if !ok {
		ns.Error = "status: the node is not in its own status"
		return ns
	}
	ns.Reachable = true
	ns.AppliedIndex, ns.StateHash, ns.MissingBlobs = st.AppliedIndex, st.StateHash, st.MissingBlobs
	ns.Leader, ns.Voter, ns.Gossip = st.Leader, st.Voter, st.Gossip
	if st.Error != "" {
		errs = append(errs, "status: "+st.Error)
	}

	tlsCfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	for _, a := range accounts {
		mbs, err := readAccount(ctx, n, a, tlsCfg, timeout)
		if err != nil {
			errs = append(errs, fmt.Sprintf("imap %s: %v", a.Address, err))
		}
		ns.Mailboxes = append(ns.Mailboxes, mbs...)
	}

	var q []storage.QueueEntry
	if err := adminClient(n, timeout).Do(ctx, "GET", "/v1/queue", nil, &q); err != nil {
		errs = append(errs, "queue: "+err.Error())
	}
	for _, e := range q {
		ns.Queue = append(ns.Queue, queueChaosID(e, byQueueID))
	}
	slices.Sort(ns.Queue)
	ns.Error = strings.Join(errs, "; ")
	return ns
}

// queueChaosID names the message a queue entry holds.
func queueChaosID(e storage.QueueEntry, byQueueID map[string]string) string {
	for _, r := range e.Recipients {
		local, domain, ok := strings.Cut(r.Address, "@")
		if ok && isOutside(domain) && strings.HasPrefix(local, "chaos-") {
			return strings.TrimPrefix(local, "chaos-")
		}
	}
	if id, ok := byQueueID[e.ID]; ok {
		return id
	}
	return "queue:" + e.ID
}

// readAccount reads every mailbox of one account on one node.
func readAccount(ctx context.Context, n NodeInfo, a Account, tlsCfg *tls.Config, timeout time.Duration) ([]MailboxState, error) {
	ic, err := dialIMAP(ctx, n.IMAPS, a, tlsCfg, timeout)
	if err != nil {
		return nil, err
	}
	defer ic.close()
	var list []*imap.ListData
	err = ic.do(func() (err error) {
		list, err = ic.c.List("", "*", nil).Collect()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []MailboxState
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		var op Op
		if err := ic.selectAndFetch(&op, l.Mailbox, true); err != nil {
			return out, err
		}
		msgs := op.Seen
		if msgs == nil {
			msgs = []Msg{}
		}
		out = append(out, MailboxState{Account: a.Address, Name: l.Mailbox, UIDValidity: op.UIDValidity, UIDNext: op.UIDNext, Messages: msgs})
	}
	slices.SortFunc(out, func(x, y MailboxState) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}
