package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/storage"
)

func mustCmd(t *testing.T, typ storage.CommandType, payload any) storage.Command {
	t.Helper()
	c, err := storage.NewCommand(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addDomain(t *testing.T, n *cluster.Node, name string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, res, err := n.Propose(ctx, mustCmd(t, storage.CmdDomainAdd, struct{ Name string }{name}))
	if err != nil {
		return err
	}
	return res.Err()
}

func TestClusterFormsAndReplicates(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	f := tc.Follower()
	if err := addDomain(t, f.Node, "example.test"); err != nil {
		t.Fatalf("propose through follower: %v", err)
	}
	// Read-your-writes on the proposing node, immediately.
	if _, err := f.Store.Domain("example.test"); err != nil {
		t.Fatalf("proposing node does not see its own write: %v", err)
	}
	for _, tn := range tc.Nodes {
		clustertest.WaitFor(t, 5*time.Second, "domain on "+tn.Name, func() bool {
			_, err := tn.Store.Domain("example.test")
			return err == nil
		})
	}
	tc.WaitConverged()
	st := tc.Nodes[0].Node.ClusterStatus(context.Background())
	leaders := 0
	for _, s := range st {
		if !s.Voter || !s.Reachable {
			t.Errorf("node %s: voter=%v reachable=%v (%s)", s.Name, s.Voter, s.Reachable, s.Error)
		}
		if s.Role == "Leader" {
			leaders++
		}
	}
	if len(st) != 3 || leaders != 1 {
		t.Fatalf("status: %d nodes, %d leaders: %+v", len(st), leaders, st)
	}
}

func TestProposeRetryIsDeduplicated(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	f := tc.Follower()
	cmd := mustCmd(t, storage.CmdDomainAdd, struct{ Name string }{"dup.test"})
	ctx := context.Background()
	i1, r1, err := f.Node.Propose(ctx, cmd)
	if err != nil || r1.Err() != nil {
		t.Fatalf("first: %v %v", err, r1.Err())
	}
	// The same command ID again (as a retry after a lost answer would send
	// it) returns the first result rather than "exists".
	i2, r2, err := tc.Leader().Node.Propose(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Err() != nil || i2 <= i1 {
		t.Fatalf("retry: index %d (first %d), result %+v", i2, i1, r2)
	}
}

func TestLeaderFailover(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	if err := addDomain(t, tc.Nodes[1].Node, "before.test"); err != nil {
		t.Fatal(err)
	}
	old := tc.Leader()
	start := time.Now()
	tc.Stop(old)
	survivor := tc.Follower()
	for {
		err := addDomain(t, survivor.Node, "after.test")
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no write after leader loss: %v", err)
		}
	}
	t.Logf("failover: first successful write %s after stopping the leader", time.Since(start).Round(time.Millisecond))
	tc.Start(old)
	tc.WaitConverged()
	if _, err := old.Store.Domain("after.test"); err != nil {
		t.Fatalf("restarted node did not catch up: %v", err)
	}
}

func TestMinorityRefusesWrites(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	var lone *clustertest.Node
	for _, tn := range tc.Nodes {
		if !tn.Node.IsLeader() && lone == nil {
			lone = tn
		}
	}
	for _, tn := range tc.Nodes {
		if tn != lone {
			tc.Stop(tn)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err := lone.Node.Propose(ctx, mustCmd(t, storage.CmdDomainAdd, struct{ Name string }{"minority.test"}))
	if !errors.Is(err, cluster.ErrNoQuorum) && !errors.Is(err, cluster.ErrUnknownOutcome) {
		t.Fatalf("minority write: got %v, want cluster.ErrNoQuorum", err)
	}
	if _, err := lone.Node.StoreBlob(ctx, []byte("x")); !errors.Is(err, cluster.ErrNoQuorum) {
		t.Fatalf("minority blob store: got %v, want cluster.ErrNoQuorum", err)
	}
}

func deliver(t *testing.T, n *cluster.Node, h storage.Hash, size int) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, res, err := n.Propose(ctx, mustCmd(t, storage.CmdDeliver, storage.Deliver{
		QueueID: "q" + h.String()[:8], Blob: h, Size: int64(size),
		Targets: []storage.DeliverTarget{{Account: "u@example.test"}},
	}))
	if err != nil {
		return err
	}
	return res.Err()
}

func setupAccount(t *testing.T, n *cluster.Node) {
	t.Helper()
	if err := addDomain(t, n, "example.test"); err != nil {
		t.Fatal(err)
	}
	hash, err := storage.HashPassword("secret-password")
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := n.Propose(context.Background(), mustCmd(t, storage.CmdAccountAdd, struct {
		Address, PasswordHash string
		QuotaBytes            int64
	}{"u@example.test", hash, 0}))
	if err != nil || res.Err() != nil {
		t.Fatalf("account add: %v %v", err, res.Err())
	}
}

func TestBlobReplicationAndRepair(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	setupAccount(t, tc.Nodes[0].Node)
	f := tc.Follower()
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	ctx := context.Background()
	h, err := f.Node.StoreBlob(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, tn := range tc.Nodes {
		if tn.Store.HasBlob(h) {
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("blob on %d nodes after StoreBlob, want a majority", holders)
	}
	if err := deliver(t, f.Node, h, len(body)); err != nil {
		t.Fatal(err)
	}

	// A node that is down while a message arrives pulls the blob on return.
	down := tc.Nodes[2]
	if down.Node.IsLeader() {
		down = tc.Nodes[1]
	}
	tc.Stop(down)
	var writer *clustertest.Node
	for _, tn := range tc.Nodes {
		if tn.Node != nil {
			writer = tn
			break
		}
	}
	body2 := []byte("Subject: while you were away\r\n\r\nhello\r\n")
	h2, err := writer.Node.StoreBlob(ctx, body2)
	if err != nil {
		t.Fatal(err)
	}
	if err := deliver(t, writer.Node, h2, len(body2)); err != nil {
		t.Fatal(err)
	}
	tc.Start(down)
	tc.WaitConverged()
	clustertest.WaitFor(t, 20*time.Second, "blob repaired on the returning node", func() bool {
		_, missing, err := down.Store.MissingBlobs(0)
		return err == nil && missing == 0 && down.Store.HasBlob(h2)
	})
	got, err := down.Node.FetchBlob(ctx, h2)
	if err != nil || string(got) != string(body2) {
		t.Fatalf("fetch after repair: %q %v", got, err)
	}
}

func TestCatchUpFromSnapshot(t *testing.T) {
	tc := clustertest.New(t, 3, func(c *cluster.Config) {
		c.SnapshotThreshold = 16
		c.TrailingLogs = 4
		c.SnapshotInterval = 100 * time.Millisecond
	})
	down := tc.Follower()
	downIndex, err := down.Node.LastLogIndex()
	if err != nil {
		t.Fatal(err)
	}
	tc.Stop(down)
	l := tc.Leader()
	for i := 0; i < 60; i++ {
		if err := addDomain(t, l.Node, fmt.Sprintf("d%d.test", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Force a snapshot so the log the stopped node needs is gone.
	if err := l.Node.SnapshotNow(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	first, err := l.Node.FirstLogIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= downIndex+1 {
		t.Fatalf("log not compacted past the stopped node: first index %d, node has up to %d", first, downIndex)
	}
	tc.Start(down)
	tc.WaitConverged()
	if _, err := down.Store.Domain("d59.test"); err != nil {
		t.Fatalf("node did not catch up from the snapshot: %v", err)
	}
}

func TestJoinTokens(t *testing.T) {
	tc := clustertest.New(t, 1, nil)
	n := tc.Nodes[0].Node
	ctx := context.Background()
	key, _, err := cluster.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cluster.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	req := cluster.JoinRequest{NodeName: "new", PublicKeyPEM: pub, ClusterAddr: "127.0.0.1:1", GossipAddr: "127.0.0.1:2"}
	addr := tc.Nodes[0].Cfg.ClusterBind

	good, _, err := n.CreateToken(ctx, time.Hour, 1, "good")
	if err != nil {
		t.Fatal(err)
	}
	res, err := cluster.RequestJoin(ctx, addr, good, req)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if len(res.GossipKey) != 32 || len(res.CertPEM) == 0 {
		t.Fatalf("join result incomplete: %+v", res)
	}

	wrong := good
	wrong.Secret[0] ^= 1
	if _, err := cluster.RequestJoin(ctx, addr, wrong, req); !errors.Is(err, cluster.ErrJoinRefused) {
		t.Errorf("wrong secret: %v", err)
	}
	expired, _, err := n.CreateToken(ctx, time.Nanosecond, 1, "expired")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := cluster.RequestJoin(ctx, addr, expired, req); !errors.Is(err, cluster.ErrJoinRefused) {
		t.Errorf("expired token: %v", err)
	}
	revoked, _, err := n.CreateToken(ctx, time.Hour, 1, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := n.Propose(ctx, mustCmd(t, storage.CmdTokenRevoke, struct{ ID string }{revoked.ID})); err != nil || res.Err() != nil {
		t.Fatalf("revoke: %v %v", err, res.Err())
	}
	if _, err := cluster.RequestJoin(ctx, addr, revoked, req); !errors.Is(err, cluster.ErrJoinRefused) {
		t.Errorf("revoked token: %v", err)
	}
	otherCA, err := cluster.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	other, err := cluster.NewToken(otherCA.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.RequestJoin(ctx, addr, other, req); err == nil || errors.Is(err, cluster.ErrJoinRefused) {
		t.Errorf("token of another cluster: %v (want a CA fingerprint mismatch before any request)", err)
	}
}

func TestClusterPortRefusesGarbage(t *testing.T) {
	tc := clustertest.New(t, 1, nil)
	n := tc.Nodes[0].Node
	addr := tc.Nodes[0].Cfg.ClusterBind
	var wg sync.WaitGroup
	for _, payload := range [][]byte{
		[]byte("GET / HTTP/1.0\r\n\r\n"),
		{0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0},
		make([]byte, 4096),
	} {
		wg.Add(1)
		go func(p []byte) {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_, _ = c.Write(p)
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					return // closed by the node
				}
			}
		}(payload)
	}
	wg.Wait()
	// A TLS client without a certificate may only use the join tag.
	c, err := cluster.DialRPCWithoutCert(addr, n.CAFingerprint(), 5*time.Second)
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("RPC without a client certificate was not closed")
		}
		c.Close()
	}
	// The node still works.
	if err := addDomain(t, n, "still-alive.test"); err != nil {
		t.Fatalf("node broken after garbage: %v", err)
	}
}

func TestLeaveShrinksVoters(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	leaving := tc.Leader() // the hardest case: the leader leaves
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leaving.Node.Leave(ctx, false); err != nil {
		t.Fatalf("leave: %v", err)
	}
	tc.Stop(leaving)
	tc.WaitVoters(2)
	var rest *clustertest.Node
	for _, tn := range tc.Nodes {
		if tn.Node != nil {
			rest = tn
		}
	}
	if err := addDomain(t, rest.Node, "after-leave.test"); err != nil {
		t.Fatalf("write after leave: %v", err)
	}
	if v, _ := tc.Leader().Node.Voters(); len(v) != 2 {
		t.Fatalf("voters after leave: %v", v)
	}
}

func TestDeadServerRemovedAfterGrace(t *testing.T) {
	tc := clustertest.New(t, 4, func(c *cluster.Config) { c.DeadServerGrace = 500 * time.Millisecond })
	f := tc.Follower()
	tc.Stop(f)
	// Four voters, MinVoters 3: the dead one goes after the grace period.
	tc.WaitVoters(3)
	// Three voters: a second death must not shrink the set below three.
	g := tc.Follower()
	tc.Stop(g)
	l := tc.Leader()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if v, err := l.Node.Voters(); err == nil && len(v) < 3 {
			t.Fatalf("voters shrank below MinVoters: %v", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The first node has no seeds in its configuration: after a restart it
// must find the others through the peers it remembers.
func TestFirstNodeRejoinsGossipAfterRestart(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	first := tc.Nodes[0]
	if len(first.Cfg.Seeds) != 0 {
		t.Fatal("test assumes the first node has no seeds")
	}
	// Let the peers file be written (within a second).
	clustertest.WaitFor(t, 20*time.Second, "peers file", func() bool {
		return len(first.Node.KnownPeers()) == 2
	})
	tc.Stop(first)
	other := tc.Nodes[1]
	clustertest.WaitFor(t, 20*time.Second, "others see the first node dead", func() bool {
		for _, m := range other.Node.Members() {
			if m.Name == first.Name {
				return m.State == "dead"
			}
		}
		return false
	})
	tc.Start(first)
	clustertest.WaitFor(t, 30*time.Second, "gossip whole again", func() bool {
		for _, tn := range tc.Nodes {
			alive := 0
			for _, m := range tn.Node.Members() {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	tc.WaitConverged()
}

// TestBigBlobStreams stores a blob of several chunks from a follower, checks
// every voter holds the same bytes, then loses one copy and fetches it back
// from a peer.
func TestBigBlobStreams(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	setupAccount(t, tc.Nodes[0].Node)
	f := tc.Follower()
	body := make([]byte, 3*storage.BlobChunkSize+12345)
	copy(body, "Subject: big\r\n\r\n")
	for i := 16; i < len(body); i++ {
		body[i] = byte('a' + i%26)
		if i%77 == 0 {
			body[i] = '\n'
		}
	}
	ctx := context.Background()
	h, err := f.Node.StoreBlob(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, 20*time.Second, "the blob on every node", func() bool {
		for _, tn := range tc.Nodes {
			if !tn.Store.HasBlob(h) {
				return false
			}
		}
		return true
	})
	for _, tn := range tc.Nodes {
		got, err := tn.Store.Blob(h)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: %d bytes, %v", tn.Name, len(got), err)
		}
	}
	if err := deliver(t, f.Node, h, len(body)); err != nil {
		t.Fatal(err)
	}
	// A second, identical push is accepted and changes nothing.
	if _, err := f.Node.StoreBlob(ctx, body); err != nil {
		t.Fatal(err)
	}
	other := tc.Nodes[0]
	if other == f {
		other = tc.Nodes[1]
	}
	if err := other.Store.DropBlob(h); err != nil {
		t.Fatal(err)
	}
	got, err := other.Node.FetchBlob(ctx, h)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("fetch from a peer: %d bytes, %v", len(got), err)
	}
	if !other.Store.HasBlob(h) {
		t.Fatal("fetched blob not kept")
	}
	// OpenBlob streams it, from a peer when the local copy is gone.
	if err := other.Store.DropBlob(h); err != nil {
		t.Fatal(err)
	}
	r, err := other.Node.OpenBlob(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("open from a peer: %d bytes, %v", len(got), err)
	}
}
