package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// testCluster runs nodes in-process on loopback with tight timings.
type testCluster struct {
	t         testing.TB
	ca        *CA
	gossipKey []byte
	nodes     []*testNode
}

type testNode struct {
	cfg   Config
	dir   string
	store *storage.Store
	node  *Node
}

// freePort returns a loopback port free for TCP and UDP (gossip uses both).
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RAFTMAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newTestCluster(t testing.TB, size int, tweak func(*Config)) *testCluster {
	t.Helper()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	gk := make([]byte, 32)
	_, _ = rand.Read(gk)
	tc := &testCluster{t: t, ca: ca, gossipKey: gk}
	for i := 0; i < size; i++ {
		tc.addNode(tweak)
	}
	first := tc.nodes[0].node
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(t, 10*time.Second, "first node leads", func() bool { return first.IsLeader() })
	if err := first.InstallSecrets(ctx, "test", ca, gk); err != nil {
		t.Fatal(err)
	}
	tc.waitVoters(size)
	t.Cleanup(tc.stopAll)
	return tc
}

func (tc *testCluster) addNode(tweak func(*Config)) *testNode {
	t := tc.t
	i := len(tc.nodes)
	name := fmt.Sprintf("n%d", i+1)
	dir := t.TempDir()
	key, keyPEM, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := tc.ca.IssueNodeCert(name, key.Public(), nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlsKeyPair(append(certPEM, tc.ca.CertPEM...), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		NodeName:           name,
		DataDir:            filepath.Join(dir, "node"),
		ClusterBind:        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		GossipBind:         fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		CACert:             tc.ca.Cert,
		Cert:               cert,
		GossipKey:          tc.gossipKey,
		Bootstrap:          i == 0,
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		GossipInterval:     50 * time.Millisecond,
		ProposeTimeout:     5 * time.Second,
		Logger:             testLogger(t).With("test_node", name),
	}
	if i > 0 {
		cfg.Seeds = []string{tc.nodes[0].cfg.GossipBind}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	tn := &testNode{cfg: cfg, dir: dir}
	tc.nodes = append(tc.nodes, tn)
	tc.start(tn)
	return tn
}

func (tc *testCluster) start(tn *testNode) {
	t := tc.t
	st, err := storage.Open(storage.Config{Dir: filepath.Join(tn.dir, "store")})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(tn.cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	tn.store, tn.node = st, n
}

func (tc *testCluster) stop(tn *testNode) {
	if tn.node == nil {
		return
	}
	if err := tn.node.Shutdown(); err != nil {
		tc.t.Logf("shutdown %s: %v", tn.cfg.NodeName, err)
	}
	if err := tn.store.Close(); err != nil {
		tc.t.Logf("close store %s: %v", tn.cfg.NodeName, err)
	}
	tn.node, tn.store = nil, nil
}

func (tc *testCluster) stopAll() {
	for _, tn := range tc.nodes {
		tc.stop(tn)
	}
}

func (tc *testCluster) leader() *testNode {
	for _, tn := range tc.nodes {
		if tn.node != nil && tn.node.IsLeader() {
			return tn
		}
	}
	return nil
}

func (tc *testCluster) follower() *testNode {
	for _, tn := range tc.nodes {
		if tn.node != nil && !tn.node.IsLeader() {
			return tn
		}
	}
	return nil
}

func (tc *testCluster) waitVoters(n int) {
	waitFor(tc.t, 20*time.Second, fmt.Sprintf("%d voters", n), func() bool {
		l := tc.leader()
		if l == nil {
			return false
		}
		v, err := l.node.voters()
		return err == nil && len(v) == n
	})
}

func (tc *testCluster) waitConverged() {
	waitFor(tc.t, 20*time.Second, "all running nodes converge", func() bool {
		var want storage.Hash
		var idx uint64
		first := true
		for _, tn := range tc.nodes {
			if tn.node == nil {
				continue
			}
			h, i, err := tn.store.StateHash()
			if err != nil {
				return false
			}
			if first {
				want, idx, first = h, i, false
			} else if h != want || i != idx {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustCmd(t *testing.T, typ storage.CommandType, payload any) storage.Command {
	t.Helper()
	c, err := storage.NewCommand(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addDomain(t *testing.T, n *Node, name string) error {
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
	tc := newTestCluster(t, 3, nil)
	f := tc.follower()
	if err := addDomain(t, f.node, "example.test"); err != nil {
		t.Fatalf("propose through follower: %v", err)
	}
	// Read-your-writes on the proposing node, immediately.
	if _, err := f.store.Domain("example.test"); err != nil {
		t.Fatalf("proposing node does not see its own write: %v", err)
	}
	for _, tn := range tc.nodes {
		waitFor(t, 5*time.Second, "domain on "+tn.cfg.NodeName, func() bool {
			_, err := tn.store.Domain("example.test")
			return err == nil
		})
	}
	tc.waitConverged()
	st := tc.nodes[0].node.ClusterStatus(context.Background())
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
	tc := newTestCluster(t, 3, nil)
	f := tc.follower()
	cmd := mustCmd(t, storage.CmdDomainAdd, struct{ Name string }{"dup.test"})
	ctx := context.Background()
	i1, r1, err := f.node.Propose(ctx, cmd)
	if err != nil || r1.Err() != nil {
		t.Fatalf("first: %v %v", err, r1.Err())
	}
	// The same command ID again (as a retry after a lost answer would send
	// it) returns the first result rather than "exists".
	i2, r2, err := tc.leader().node.Propose(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Err() != nil || i2 <= i1 {
		t.Fatalf("retry: index %d (first %d), result %+v", i2, i1, r2)
	}
}

func TestLeaderFailover(t *testing.T) {
	tc := newTestCluster(t, 3, nil)
	if err := addDomain(t, tc.nodes[1].node, "before.test"); err != nil {
		t.Fatal(err)
	}
	old := tc.leader()
	start := time.Now()
	tc.stop(old)
	survivor := tc.follower()
	for {
		err := addDomain(t, survivor.node, "after.test")
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no write after leader loss: %v", err)
		}
	}
	t.Logf("failover: first successful write %s after stopping the leader", time.Since(start).Round(time.Millisecond))
	tc.start(old)
	tc.waitConverged()
	if _, err := old.store.Domain("after.test"); err != nil {
		t.Fatalf("restarted node did not catch up: %v", err)
	}
}

func TestMinorityRefusesWrites(t *testing.T) {
	tc := newTestCluster(t, 3, nil)
	var lone *testNode
	for _, tn := range tc.nodes {
		if !tn.node.IsLeader() && lone == nil {
			lone = tn
		}
	}
	for _, tn := range tc.nodes {
		if tn != lone {
			tc.stop(tn)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err := lone.node.Propose(ctx, mustCmd(t, storage.CmdDomainAdd, struct{ Name string }{"minority.test"}))
	if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("minority write: got %v, want ErrNoQuorum", err)
	}
	if _, err := lone.node.StoreBlob(ctx, []byte("x")); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("minority blob store: got %v, want ErrNoQuorum", err)
	}
}

func deliver(t *testing.T, n *Node, h storage.Hash, size int) error {
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

func setupAccount(t *testing.T, n *Node) {
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
	tc := newTestCluster(t, 3, nil)
	setupAccount(t, tc.nodes[0].node)
	f := tc.follower()
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	ctx := context.Background()
	h, err := f.node.StoreBlob(ctx, body)
	if err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, tn := range tc.nodes {
		if tn.store.HasBlob(h) {
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("blob on %d nodes after StoreBlob, want a majority", holders)
	}
	if err := deliver(t, f.node, h, len(body)); err != nil {
		t.Fatal(err)
	}

	// A node that is down while a message arrives pulls the blob on return.
	down := tc.nodes[2]
	if down.node.IsLeader() {
		down = tc.nodes[1]
	}
	tc.stop(down)
	var writer *testNode
	for _, tn := range tc.nodes {
		if tn.node != nil {
			writer = tn
			break
		}
	}
	body2 := []byte("Subject: while you were away\r\n\r\nhello\r\n")
	h2, err := writer.node.StoreBlob(ctx, body2)
	if err != nil {
		t.Fatal(err)
	}
	if err := deliver(t, writer.node, h2, len(body2)); err != nil {
		t.Fatal(err)
	}
	tc.start(down)
	tc.waitConverged()
	waitFor(t, 20*time.Second, "blob repaired on the returning node", func() bool {
		_, missing, err := down.store.MissingBlobs(0)
		return err == nil && missing == 0 && down.store.HasBlob(h2)
	})
	got, err := down.node.FetchBlob(ctx, h2)
	if err != nil || string(got) != string(body2) {
		t.Fatalf("fetch after repair: %q %v", got, err)
	}
}

func TestCatchUpFromSnapshot(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) {
		c.SnapshotThreshold = 16
		c.TrailingLogs = 4
		c.SnapshotInterval = 100 * time.Millisecond
	})
	down := tc.follower()
	downIndex, err := down.node.boltStore.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	tc.stop(down)
	l := tc.leader()
	for i := 0; i < 60; i++ {
		if err := addDomain(t, l.node, fmt.Sprintf("d%d.test", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Force a snapshot so the log the stopped node needs is gone.
	if err := l.node.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	first, err := l.node.boltStore.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= downIndex+1 {
		t.Fatalf("log not compacted past the stopped node: first index %d, node has up to %d", first, downIndex)
	}
	tc.start(down)
	tc.waitConverged()
	if _, err := down.store.Domain("d59.test"); err != nil {
		t.Fatalf("node did not catch up from the snapshot: %v", err)
	}
}

func TestJoinTokens(t *testing.T) {
	tc := newTestCluster(t, 1, nil)
	n := tc.nodes[0].node
	ctx := context.Background()
	key, _, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	req := JoinRequest{NodeName: "new", PublicKeyPEM: pub, ClusterAddr: "127.0.0.1:1", GossipAddr: "127.0.0.1:2"}
	addr := n.cfg.ClusterAdvertise

	good, _, err := n.CreateToken(ctx, time.Hour, "good")
	if err != nil {
		t.Fatal(err)
	}
	res, err := RequestJoin(ctx, addr, good, req)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if len(res.GossipKey) != 32 || len(res.CertPEM) == 0 {
		t.Fatalf("join result incomplete: %+v", res)
	}

	wrong := good
	wrong.Secret[0] ^= 1
	if _, err := RequestJoin(ctx, addr, wrong, req); !errors.Is(err, ErrJoinRefused) {
		t.Errorf("wrong secret: %v", err)
	}
	expired, _, err := n.CreateToken(ctx, time.Nanosecond, "expired")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := RequestJoin(ctx, addr, expired, req); !errors.Is(err, ErrJoinRefused) {
		t.Errorf("expired token: %v", err)
	}
	revoked, _, err := n.CreateToken(ctx, time.Hour, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := n.Propose(ctx, mustCmd(t, storage.CmdTokenRevoke, struct{ ID string }{revoked.ID})); err != nil || res.Err() != nil {
		t.Fatalf("revoke: %v %v", err, res.Err())
	}
	if _, err := RequestJoin(ctx, addr, revoked, req); !errors.Is(err, ErrJoinRefused) {
		t.Errorf("revoked token: %v", err)
	}
	otherCA, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewToken(otherCA.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RequestJoin(ctx, addr, other, req); err == nil || errors.Is(err, ErrJoinRefused) {
		t.Errorf("token of another cluster: %v (want a CA fingerprint mismatch before any request)", err)
	}
}

func TestClusterPortRefusesGarbage(t *testing.T) {
	tc := newTestCluster(t, 1, nil)
	n := tc.nodes[0].node
	addr := n.cfg.ClusterAdvertise
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
	d := &dialer{tlsConf: func() *tlsConfigT { return PinnedTLSConfig(n.CAFingerprint()) }}
	c, err := d.dial(addr, tagRPC, 5*time.Second)
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

type tlsConfigT = tls.Config

func tlsKeyPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	return tls.X509KeyPair(certPEM, keyPEM)
}

func TestLeaveShrinksVoters(t *testing.T) {
	tc := newTestCluster(t, 3, nil)
	leaving := tc.leader() // the hardest case: the leader leaves
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leaving.node.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	leaving.node = nil
	leaving.store.Close()
	tc.waitVoters(2)
	var rest *testNode
	for _, tn := range tc.nodes {
		if tn.node != nil {
			rest = tn
		}
	}
	if err := addDomain(t, rest.node, "after-leave.test"); err != nil {
		t.Fatalf("write after leave: %v", err)
	}
	if v, _ := tc.leader().node.voters(); len(v) != 2 {
		t.Fatalf("voters after leave: %v", v)
	}
}

func TestDeadServerRemovedAfterGrace(t *testing.T) {
	tc := newTestCluster(t, 4, func(c *Config) { c.DeadServerGrace = 500 * time.Millisecond })
	f := tc.follower()
	tc.stop(f)
	// Four voters, MinVoters 3: the dead one goes after the grace period.
	tc.waitVoters(3)
	// Three voters: a second death must not shrink the set below three.
	g := tc.follower()
	tc.stop(g)
	l := tc.leader()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if v, err := l.node.voters(); err == nil && len(v) < 3 {
			t.Fatalf("voters shrank below MinVoters: %v", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The first node has no seeds in its configuration: after a restart it
// must find the others through the peers it remembers.
func TestFirstNodeRejoinsGossipAfterRestart(t *testing.T) {
	tc := newTestCluster(t, 3, nil)
	first := tc.nodes[0]
	if len(first.cfg.Seeds) != 0 {
		t.Fatal("test assumes the first node has no seeds")
	}
	// Let the peers file be written (within a second).
	waitFor(t, 20*time.Second, "peers file", func() bool {
		return len(first.node.loadPeers()) == 2
	})
	tc.stop(first)
	other := tc.nodes[1]
	waitFor(t, 20*time.Second, "others see the first node dead", func() bool {
		for _, m := range other.node.Members() {
			if m.Name == first.cfg.NodeName {
				return m.State == "dead"
			}
		}
		return false
	})
	tc.start(first)
	waitFor(t, 30*time.Second, "gossip whole again", func() bool {
		for _, tn := range tc.nodes {
			alive := 0
			for _, m := range tn.node.Members() {
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
	tc.waitConverged()
}

// Raft takes the stream layer's address as this node's own: it must be the
// advertised address, never the (possibly wildcard) bind address.
func TestRaftStreamAddrIsAdvertised(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &raftStream{mux: newMuxListener(ln, nil, testLogger(t)), advertise: advertiseAddr("192.0.2.7:7947")}
	if got := s.Addr().String(); got != "192.0.2.7:7947" {
		t.Fatalf("Addr() = %s, want the advertised 192.0.2.7:7947", got)
	}
}
