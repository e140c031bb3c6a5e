package auth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/auth"
)

// TestClusterSharesThrottle: three real nodes, each with its checker on
// its own store, sharing throttle records over gossip. Ten failures from
// one address on node 2 lock that address for that account on nodes 1
// and 3 (the old checker counted per node: the others let it in); the
// same account from another address logs in everywhere; node 2, restarted
// with an empty table, learns the lock again from the others.
func TestClusterSharesThrottle(t *testing.T) {
	const (
		user     = "u@example.test"
		password = "right-password"
		attacker = "192.0.2.66"
		other    = "198.51.100.7"
	)
	chans := map[string]*cluster.GossipChannel{}
	c := clustertest.New(t, 3, func(cfg *cluster.Config) {
		ch := cluster.NewGossipChannel()
		chans[cfg.NodeName] = ch
		cfg.Gossip = ch
	})
	clustertest.AddUser(t, c.Leader().Node, user, password)
	c.WaitConverged()
	checkers := make([]*auth.Checker, len(c.Nodes))
	open := func(i int) {
		n := c.Nodes[i]
		ck := auth.New(auth.Config{Store: n.Store, Node: n.Name, Peers: chans[n.Name], BaseDelay: -1, Logger: clustertest.Logger()})
		chans[n.Name].SetHandler(ck)
		checkers[i] = ck
	}
	for i := range c.Nodes {
		open(i)
	}
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := checkers[1].Authenticate(ctx, attacker, user, fmt.Sprint("guess", i)); !errors.Is(err, auth.ErrFailed) {
			t.Fatalf("guess %d on n2: %v", i, err)
		}
	}
	for _, i := range []int{0, 2} {
		clustertest.WaitFor(t, 10*time.Second, c.Nodes[i].Name+" sees the lock", func() bool { return checkers[i].Locked(attacker, user) })
		if _, err := checkers[i].Authenticate(ctx, attacker, user, password); !errors.Is(err, auth.ErrLocked) {
			t.Fatalf("%s from the locked address: %v, want ErrLocked", c.Nodes[i].Name, err)
		}
		if _, err := checkers[i].Authenticate(ctx, other, user, password); err != nil {
			t.Fatalf("%s from another address: %v", c.Nodes[i].Name, err)
		}
	}

	c.Stop(c.Nodes[1])
	c.Start(c.Nodes[1])
	open(1)
	clustertest.WaitFor(t, 20*time.Second, "restarted n2 learns the lock", func() bool { return checkers[1].Locked(attacker, user) })
	if _, err := checkers[1].Authenticate(ctx, attacker, user, password); !errors.Is(err, auth.ErrLocked) {
		t.Fatalf("restarted n2 from the locked address: %v, want ErrLocked", err)
	}
	if st := chans["n1"].Stats(); st.Received == 0 || st.Rejected != 0 {
		t.Errorf("n1's channel: %+v", st)
	}
}
