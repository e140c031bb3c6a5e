// Package clustertest starts real Raftmail clusters in-process for tests of
// the packages built on cluster (protocols, ops, chaos): real loopback
// sockets, real Raft and Pebble in t.TempDir(), tight timings.
//
// Only tests import it.
package clustertest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/storage"
)

// Cluster is a set of running nodes.
type Cluster struct {
	t         testing.TB
	ca        *cluster.CA
	gossipKey []byte
	kek       []byte
	// dir holds every node's data directory. It is made before StopAll
	// is registered, so the test's cleanup (last registered, first run)
	// stops the nodes before their directories are removed.
	dir   string
	Nodes []*Node
}

// Node is one member: its store and cluster node (nil while stopped).
type Node struct {
	Name  string
	Cfg   cluster.Config
	dir   string
	Store *storage.Store
	Node  *cluster.Node
	// StoreConfig, if not nil, adjusts the store's configuration when the
	// node is next started (a file system that reports little free space,
	// a free-space floor).
	StoreConfig func(*storage.Config)
}

// New starts size nodes, waits until all are voters, and stops them when
// the test ends. tweak, if not nil, adjusts each node's configuration.
func New(t testing.TB, size int, tweak func(*cluster.Config)) *Cluster {
	t.Helper()
	ca, err := cluster.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	gk := make([]byte, 32)
	_, _ = rand.Read(gk)
	kek, err := cluster.NewKEK()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, ca: ca, gossipKey: gk, kek: kek, dir: t.TempDir()}
	t.Cleanup(c.StopAll)
	for i := 0; i < size; i++ {
		c.add(tweak)
	}
	first := c.Nodes[0].Node
	WaitFor(t, 10*time.Second, "first node leads", first.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := first.InstallSecrets(ctx, "test", ca, gk); err != nil {
		t.Fatal(err)
	}
	c.WaitVoters(size)
	return c
}

// CA is the cluster's certificate authority, private key included.
func (c *Cluster) CA() *cluster.CA { return c.ca }

// WaitVoters waits until the leader counts n voters.
func (c *Cluster) WaitVoters(n int) {
	c.t.Helper()
	WaitFor(c.t, 20*time.Second, fmt.Sprintf("%d voters", n), func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		v := 0
		for _, s := range l.Node.ClusterStatus(context.Background()) {
			if s.Voter {
				v++
			}
		}
		return v == n
	})
}

// FreePort returns a loopback port free for both TCP and UDP.
func FreePort(t testing.TB) int {
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

// Logger discards, unless RAFTMAIL_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("RAFTMAIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Cluster) add(tweak func(*cluster.Config)) {
	t := c.t
	i := len(c.Nodes)
	name := fmt.Sprintf("n%d", i+1)
	dir, err := os.MkdirTemp(c.dir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEM, err := cluster.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := c.ca.IssueNodeCert(name, key.Public(), nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(append(certPEM, c.ca.CertPEM...), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.Config{
		NodeName:           name,
		DataDir:            filepath.Join(dir, "node"),
		ClusterBind:        fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		GossipBind:         fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		CACert:             c.ca.Cert,
		Cert:               cert,
		GossipKey:          c.gossipKey,
		CAKeyKEK:           c.kek,
		Bootstrap:          i == 0,
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		GossipInterval:     50 * time.Millisecond,
		ProposeTimeout:     5 * time.Second,
		Logger:             Logger().With("test_node", name),
	}
	if i > 0 {
		cfg.Seeds = []string{c.Nodes[0].Cfg.GossipBind}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n := &Node{Name: name, Cfg: cfg, dir: dir}
	c.Nodes = append(c.Nodes, n)
	c.Start(n)
}

// Start (re)starts a stopped node on its data directory.
func (c *Cluster) Start(n *Node) {
	t := c.t
	sc := storage.Config{Dir: filepath.Join(n.dir, "store"), ApplyNoSync: true}
	if n.StoreConfig != nil {
		n.StoreConfig(&sc)
	}
	st, err := storage.Open(sc)
	if err != nil {
		t.Fatal(err)
	}
	node, err := cluster.New(n.Cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	n.Store, n.Node = st, node
}

// Stop shuts a node down (as a crash would look to the others: it does not
// leave the cluster).
func (c *Cluster) Stop(n *Node) {
	if n.Node == nil {
		return
	}
	if err := n.Node.Shutdown(); err != nil {
		c.t.Logf("shutdown %s: %v", n.Name, err)
	}
	if err := n.Store.Close(); err != nil {
		c.t.Logf("close store %s: %v", n.Name, err)
	}
	n.Node, n.Store = nil, nil
}

// StopAll stops every running node.
func (c *Cluster) StopAll() {
	for _, n := range c.Nodes {
		c.Stop(n)
	}
}

// Leader is the running node that leads, waiting up to 10 s for one, or nil.
func (c *Cluster) Leader() *Node {
	// Leadership can be between two holders for an election timeout (a
	// loaded machine misses a heartbeat): wait for one.
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, n := range c.Nodes {
			if n.Node != nil && n.Node.IsLeader() {
				return n
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Follower is a running node that does not lead, or nil.
func (c *Cluster) Follower() *Node {
	for _, n := range c.Nodes {
		if n.Node != nil && !n.Node.IsLeader() {
			return n
		}
	}
	return nil
}

// Propose commits one command through n and fails the test on any error,
// including a refusal by the state machine.
func Propose(t testing.TB, n *cluster.Node, typ storage.CommandType, payload any) storage.Result {
	t.Helper()
	cmd, err := storage.NewCommand(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, res, err := n.Propose(ctx, cmd)
	if err != nil {
		t.Fatalf("propose %d: %v", typ, err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("propose %d: refused: %v", typ, err)
	}
	return res
}

// AddUser creates the domain (if needed) and an account with password.
func AddUser(t testing.TB, n *cluster.Node, addr, password string) {
	t.Helper()
	at := len(addr) - 1
	for at >= 0 && addr[at] != '@' {
		at--
	}
	domain := addr[at+1:]
	if _, err := n.Store().Domain(domain); err != nil {
		Propose(t, n, storage.CmdDomainAdd, struct{ Name string }{domain})
	}
	hash, err := storage.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	Propose(t, n, storage.CmdAccountAdd, struct {
		Address, PasswordHash string
		QuotaBytes            int64
	}{addr, hash, 0})
}

// WaitConverged waits until every running node has the same applied index
// and state hash.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	WaitFor(c.t, 20*time.Second, "all running nodes converge", func() bool {
		var want storage.Hash
		var idx uint64
		first := true
		for _, n := range c.Nodes {
			if n.Node == nil {
				continue
			}
			h, i, err := n.Store.StateHash()
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

// WaitFor polls cond every 20ms until it holds or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DiskFS is the real file system with a free-space answer (statfs) that a
// test sets, for tests of the store's free-space floor above storage. The
// file system's size is 1 GiB.
type DiskFS struct {
	vfs.FS
	avail atomic.Uint64
}

// SetAvail sets the free bytes reported from now on (the store measures
// at most once a second).
func (fs *DiskFS) SetAvail(n uint64) { fs.avail.Store(n) }

// GetDiskUsage implements vfs.FS.
func (fs *DiskFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	a := fs.avail.Load()
	return vfs.DiskUsage{AvailBytes: a, TotalBytes: 1 << 30, UsedBytes: 1<<30 - min(a, 1<<30)}, nil
}

// RestartWithDisk restarts n on a store whose file system reports avail
// free bytes, with a free-space floor of floor bytes, and returns the
// file system to change the answer later.
func (c *Cluster) RestartWithDisk(n *Node, avail, floor uint64) *DiskFS {
	fs := &DiskFS{FS: vfs.Default}
	fs.SetAvail(avail)
	c.Stop(n)
	n.StoreConfig = func(sc *storage.Config) {
		sc.FS = fs
		sc.MinFreeBytes = int64(floor)
	}
	c.Start(n)
	return fs
}
