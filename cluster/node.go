package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/storage"
)

// Sentinel errors of the write path. Propose returns exactly one of them (or
// nil, or the caller's context error wrapped in one of them).
//
// Protocol packages do not import cluster; they classify errors through the
// methods these values carry: Temporary() reports a clean, retryable failure
// (nothing was committed), OutcomeUnknown() a write that may or may not
// have been committed.
var (
	// ErrNoQuorum: the command was certainly not committed. Safe to answer
	// a temporary failure (SMTP 451, IMAP NO [UNAVAILABLE]).
	ErrNoQuorum error = &writeError{msg: "cluster: no quorum: the cluster cannot commit writes right now", temporary: true}
	// ErrUnknownOutcome: the command may or may not have been committed and
	// retries could not find out. The client must not be told it failed.
	ErrUnknownOutcome error = &writeError{msg: "cluster: outcome unknown: the write may or may not have been committed", unknown: true}
	// ErrShutdown: the node is stopping.
	ErrShutdown error = &writeError{msg: "cluster: node is shutting down", temporary: true}
)

type writeError struct {
	msg       string
	temporary bool
	unknown   bool
}

func (e *writeError) Error() string { return e.msg }

// Temporary reports that nothing was committed and a retry may succeed.
func (e *writeError) Temporary() bool { return e.temporary }

// OutcomeUnknown reports that the write may have been committed.
func (e *writeError) OutcomeUnknown() bool { return e.unknown }

// Node is one member of the cluster: Raft, gossip, the cluster port, and the
// background loops (blob repair, membership reconciliation).
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *storage.Store

	mux       *muxListener
	dialer    *dialer
	rpc       *rpcClient
	transport *raft.NetworkTransport
	raft      *raft.Raft
	boltStore *raftboltdb.BoltStore
	ml        *memberlist.Memberlist
	events    *gossipEvents

	logHealth logHealth
	leaders   *leaderWatch // fires when this node's view of the leader changes

	certs    *certState                                  // this node's certificate (certs.go)
	revoked  atomic.Pointer[map[string]storage.NodeCert] // revocation list by serial
	conns    *connSet                                    // connections to close on revocation
	certKick chan struct{}

	instance instance   // this life of the data directory (remove.go)
	leader   leadership // the leader loop's state (leader.go)

	reconcileKick chan struct{}
	repairKick    chan struct{}
	departKick    chan struct{} // the FSM applied something: removed? (remove.go)
	stop          chan struct{}
	ready         chan struct{} // closed when Start has finished: RPCs wait for it
	wg            sync.WaitGroup

	mu struct {
		sync.Mutex
		leaving  bool       // Leave is under way: its own tombstone is expected
		departed *Departure // set once this node left or was removed
		stopped  bool
	}
}

// New validates the configuration; Start brings the node up.
func New(cfg Config, store *storage.Store) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:           cfg,
		log:           cfg.Logger.With("node", cfg.NodeName),
		store:         store,
		reconcileKick: make(chan struct{}, 1),
		repairKick:    make(chan struct{}, 1),
		departKick:    make(chan struct{}, 1),
		stop:          make(chan struct{}),
		ready:         make(chan struct{}),
		leaders:       newLeaderWatch(),
		conns:         newConnSet(),
		certKick:      make(chan struct{}, 1),
	}
	certs, err := newCertState(cfg.CACert, cfg.Cert)
	if err != nil {
		return nil, err
	}
	n.certs = certs
	n.leader.init()
	return n, nil
}

// Name is the node's name (its Raft server ID).
func (n *Node) Name() string { return n.cfg.NodeName }

// Store is the node's local state machine store.
func (n *Node) Store() *storage.Store { return n.store }

func (n *Node) clientTLS() *tls.Config { return clientTLS(n.cfg.CACert, n.tlsHooks()) }

// Start opens the cluster port, starts Raft (bootstrapping a one-node
// cluster if configured and there is no state yet), joins gossip and starts
// the background loops. A node that left or was removed (its data
// directory says so) does not start: the error is a *Departure.
func (n *Node) Start() error {
	if d, err := ReadDeparture(n.cfg.DataDir); err != nil {
		return err
	} else if d != nil {
		return d
	}
	raftDir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(filepath.Join(raftDir, "snapshots"), 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	in, err := loadInstance(raftDir)
	if err != nil {
		return err
	}
	n.instance = in
	ln, err := net.Listen("tcp", n.cfg.ClusterBind)
	if err != nil {
		return fmt.Errorf("cluster: listen on cluster port %s: %w", n.cfg.ClusterBind, err)
	}
	n.loadRevocations()
	n.dialer = &dialer{tlsConf: n.clientTLS, conns: n.conns}
	n.rpc = newRPCClient(n.dialer)
	n.mux = newMuxListener(ln, serverTLS(n.cfg.CACert, n.tlsHooks()), n.log)
	n.mux.conns = n.conns
	n.mux.rpc = n.serveRPC
	n.mux.join = n.serveJoin
	n.mux.ready = n.ready
	n.mux.serve()

	if err := n.startRaft(raftDir); err != nil {
		n.mux.close()
		return err
	}
	if err := n.startGossip(); err != nil {
		_ = n.raft.Shutdown().Error()
		n.mux.close()
		return err
	}
	n.RunAsLeader("reconcile", n.reconcile)
	n.wg.Add(5)
	go n.leaderLoop()
	go n.repairLoop()
	go n.joinLoop()
	go n.departWatch()
	go n.certLoop()
	close(n.ready)
	return nil
}

func (n *Node) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeName)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	// The store persists its applied index with every change, so a restart
	// resumes from there instead of restoring the last snapshot: raft
	// replays every entry after the snapshot and the store skips those at
	// or below its index. That replay is also what makes a store opened
	// with storage.Config.ApplyNoSync safe (one fsync per batch fewer).
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = NewHCLogger(n.log, "raft", hclog.Info)
	return rc
}

func (n *Node) startRaft(dir string) error {
	rc := n.raftConfig()
	// The freelist is not written at every commit (bbolt rebuilds it
	// when it opens the file): with message bodies of small messages in
	// the log, it is many pages long and was rewritten with every entry.
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bbolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	}})
	if err != nil {
		return fmt.Errorf("cluster: open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	n.boltStore = bolt
	logs, err := raft.NewLogCache(1024, &raftLog{LogStore: bolt, n: n})
	if err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, NewHCLogger(n.log, "snapshots", hclog.Info))
	if err != nil {
		return fmt.Errorf("cluster: snapshot store: %w", err)
	}
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &raftStream{mux: n.mux, dialer: n.dialer, advertise: advertiseAddr(n.cfg.ClusterAdvertise)},
		MaxPool: 4,
		// No pipelined replication: raft v1.8.0's pipeline can deadlock
		// when a follower answers an append with Success=false (the
		// decoder stops, the sender parks on a full channel, and neither
		// replication to that follower nor Shutdown ever finishes: seen
		// as a node that hung in Shutdown after a leave). One append in
		// flight per follower costs little with batching (see
		// cluster/DESIGN.md, "The Raft log").
		MaxRPCsInFlight: 1,
		Timeout:         10 * time.Second,
		Logger:          NewHCLogger(n.log, "raft-net", hclog.Warn),
	})
	if n.cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, bolt, snaps)
		if err != nil {
			return fmt.Errorf("cluster: read raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter,
				ID:       raft.ServerID(n.cfg.NodeName),
				Address:  raft.ServerAddress(n.cfg.ClusterAdvertise),
			}}}
			if err := raft.BootstrapCluster(rc, logs, bolt, snaps, n.transport, conf); err != nil {
				return fmt.Errorf("cluster: bootstrap: %w", err)
			}
			n.log.Info("bootstrapped a one-node cluster")
		}
	}
	r, err := raft.NewRaft(rc, &fsm{store: n.store, node: n}, logs, &raftStable{StableStore: bolt, n: n}, snaps, &stallGate{NetworkTransport: n.transport, n: n})
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.watchLeader()
	return nil
}

// Shutdown stops the node without leaving the cluster: the others see it
// as failed and keep its place as a voter. It closes the cluster port,
// gossip and Raft; the caller closes the store afterwards.
func (n *Node) Shutdown() error {
	n.mu.Lock()
	if n.mu.stopped {
		n.mu.Unlock()
		return nil
	}
	n.mu.stopped = true
	n.mu.Unlock()

	close(n.stop)
	n.wg.Wait()
	var errs []error
	if n.ml != nil {
		if n.Departed() != nil {
			// Tell the others at once that it is gone for good.
			_ = n.ml.Leave(5 * time.Second)
		}
		errs = append(errs, n.ml.Shutdown())
	}
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	if n.mux != nil {
		n.mux.close()
	}
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
	}
	if n.mux != nil {
		n.mux.wait()
	}
	if n.rpc != nil {
		n.rpc.close()
	}
	if n.boltStore != nil {
		errs = append(errs, n.boltStore.Close())
	}
	return errors.Join(errs...)
}

// IsLeader reports whether this node currently leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's cluster address and ID, or empty strings.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// WaitLeader blocks until some node leads (as far as this node knows).
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if a, _ := n.raft.LeaderWithID(); a != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no leader elected", ErrNoQuorum)
		case <-t.C:
		}
	}
}

// advertiseAddr is the advertised cluster address as a net.Addr (Validate
// has checked it is IP:port).
func advertiseAddr(hostport string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
