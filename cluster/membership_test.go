package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
)

func voterCount(tc *clustertest.Cluster) int {
	l := tc.Leader()
	if l == nil {
		return -1
	}
	v, err := l.Node.Voters()
	if err != nil {
		return -1
	}
	return len(v)
}

// A dead voter's grace period is measured from when gossip saw it fail,
// which every node records: leadership changing hands does not start it
// again. (It used to be measured by the leader from its first reconcile
// pass, and forgotten by a node that lost leadership, so a cluster whose
// leadership moved more often than the grace period never removed a
// dead voter.)
func TestDeadGraceSurvivesLeaderChange(t *testing.T) {
	const grace = 4 * time.Second
	tc := clustertest.New(t, 4, func(c *cluster.Config) { c.DeadServerGrace = grace })
	dead := tc.Follower()
	tc.Stop(dead)
	transfers := 0
	deadline := time.Now().Add(60 * time.Second)
	for voterCount(tc) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the dead voter %s was not removed after %d leadership transfers; voters: %d", dead.Name, transfers, voterCount(tc))
		}
		// Move leadership well within the grace period.
		if l := tc.Leader(); l != nil {
			for _, n := range tc.Nodes {
				if n.Node != nil && n != l {
					if err := l.Node.TransferLeadershipTo(n.Name); err == nil {
						transfers++
					} else {
						t.Logf("transfer to %s: %v", n.Name, err)
					}
					break
				}
			}
		}
		clustertest.WaitFor(t, 10*time.Second, "a leader after the transfer", func() bool { return tc.Leader() != nil })
		next := time.Now().Add(time.Second)
		for time.Now().Before(next) && voterCount(tc) != 3 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("dead voter removed; %d leadership transfers meanwhile", transfers)
}

// remove of a node that is still running: it is taken out of the
// configuration, it notices (OnRemoved, a problem in its health, a
// departure marker), the reconcile loop does not add it back although it
// is alive in gossip, and it refuses to start again on its data directory.
func TestRemovedNodeStopsAndStaysOut(t *testing.T) {
	removed := make(chan string, 4)
	tc := clustertest.New(t, 3, func(c *cluster.Config) {
		name := c.NodeName
		c.OnRemoved = func(*cluster.Departure) { removed <- name }
	})
	var victim *clustertest.Node
	for _, n := range tc.Nodes {
		if !n.Node.IsLeader() {
			victim = n
		}
	}
	via := tc.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := via.Node.Remove(ctx, victim.Name, false); err != nil {
		t.Fatalf("remove %s: %v", victim.Name, err)
	}
	// Remove returns once the configuration no longer has it.
	if v, _ := via.Node.Voters(); len(v) != 2 {
		t.Fatalf("voters after remove returned: %v", v)
	}
	select {
	case name := <-removed:
		if name != victim.Name {
			t.Fatalf("OnRemoved called on %s, want %s", name, victim.Name)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not notice its removal", victim.Name)
	}
	if d := victim.Node.Departed(); d == nil || d.Reason != cluster.DepartedRemoved {
		t.Fatalf("Departed() = %+v, want removed", d)
	}
	found := false
	for _, p := range victim.Node.Problems() {
		if strings.Contains(p, "removed from cluster") {
			found = true
		}
	}
	if !found {
		t.Errorf("problems of the removed node: %q, want one saying it was removed from the cluster", victim.Node.Problems())
	}
	// The removed node still runs and gossips (OnRemoved did not stop
	// it): the leader's reconcile passes (every second) must not add it
	// back.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if v, err := via.Node.Voters(); err == nil && len(v) != 2 {
			t.Fatalf("the removed node was added back: %v", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cfg := victim.Cfg
	tc.Stop(victim)
	d, err := cluster.ReadDeparture(cfg.DataDir)
	if err != nil || d == nil {
		t.Fatalf("departure marker after removal: %v %v", d, err)
	}
	n, err := cluster.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); !errors.Is(err, cluster.ErrDeparted) {
		t.Fatalf("start after removal: %v, want ErrDeparted", err)
	} else {
		t.Logf("restart refused: %v", err)
	}
}

// remove refuses to leave the cluster without a quorum of live voters
// (a live node of three while another is dead) unless forced, and removes
// the dead one.
func TestRemoveRefusesToBreakQuorum(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	leader := tc.Leader()
	var live, dead *clustertest.Node
	for _, n := range tc.Nodes {
		if n == leader {
			continue
		}
		if dead == nil {
			dead = n
		} else {
			live = n
		}
	}
	tc.Stop(dead)
	clustertest.WaitFor(t, 20*time.Second, "gossip sees "+dead.Name+" dead", func() bool {
		for _, m := range leader.Node.Members() {
			if m.Name == dead.Name {
				return m.State == "dead"
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := live.Node.Remove(ctx, live.Name, false)
	if !errors.Is(err, cluster.ErrWouldLoseQuorum) {
		t.Fatalf("remove of a live node with another dead: %v, want ErrWouldLoseQuorum", err)
	}
	t.Logf("refused: %v", err)
	if v, _ := leader.Node.Voters(); len(v) != 3 {
		t.Fatalf("voters after the refusal: %v", v)
	}
	if err := live.Node.Remove(ctx, "nosuchnode", false); !errors.Is(err, cluster.ErrUnknownNode) {
		t.Fatalf("remove of an unknown node: %v, want ErrUnknownNode", err)
	}
	if err := live.Node.Remove(ctx, dead.Name, false); err != nil {
		t.Fatalf("remove of the dead node: %v", err)
	}
	if v, _ := live.Node.Voters(); len(v) != 2 {
		t.Fatalf("voters after removing the dead node: %v", v)
	}
	if err := addDomain(t, leader.Node, "after-remove.test"); err != nil {
		t.Fatalf("write after remove: %v", err)
	}
}

// Values a node did not report are null in JSON, not 0, and come back
// as unknown.
func TestNodeStatusJSONUnknowns(t *testing.T) {
	down := cluster.NodeStatus{Name: "c", Voter: true, Error: "connection refused"}
	b, err := json.Marshal(down)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"applied_index", "lag", "missing_blobs", "state_hash", "hash_index"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("%s = %v in %s, want null", k, v, b)
		}
	}
	up := cluster.NodeStatus{Name: "a", Reachable: true, AppliedIndex: 7, Lag: 2, LagKnown: true, MissingBlobs: 1, StateHash: "ab", HashIndex: 7}
	b, err = json.Marshal(up)
	if err != nil {
		t.Fatal(err)
	}
	var back cluster.NodeStatus
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.AppliedIndex != 7 || back.Lag != 2 || !back.LagKnown || back.MissingBlobs != 1 || back.StateHash != "ab" || back.HashIndex != 7 || !back.Reachable {
		t.Errorf("round trip: %+v from %s", back, b)
	}
	up.LagKnown = false // the leader did not answer
	b, _ = json.Marshal(up)
	back = cluster.NodeStatus{}
	_ = json.Unmarshal(b, &back)
	if back.LagKnown || !strings.Contains(string(b), `"lag":null`) {
		t.Errorf("lag unknown: %s", b)
	}
}
