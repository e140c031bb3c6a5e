package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Config is everything a node needs to take part in the cluster. cmd builds
// it from flags, environment and the node's data directory.
type Config struct {
	// NodeName is the node's unique, stable name; it is its Raft server ID
	// and its memberlist name. Required.
	NodeName string
	// DataDir holds the Raft log (raft/raft.db) and snapshots
	// (raft/snapshots). Required.
	DataDir string

	// ClusterBind is the host:port of the mutual-TLS cluster port (Raft and
	// internal RPCs). Required.
	ClusterBind string
	// ClusterAdvertise is the host:port other nodes dial; "" = ClusterBind,
	// which then must name a specific address.
	ClusterAdvertise string
	// GossipBind is the host:port for memberlist (TCP and UDP). Required.
	GossipBind string
	// GossipAdvertise is the host:port other nodes gossip to; "" = GossipBind.
	GossipAdvertise string

	// CACert is the cluster CA; Cert is this node's certificate (chain: leaf
	// then CA) and key, signed by CACert. Required.
	CACert *x509.Certificate
	Cert   tls.Certificate
	// GossipKey is the memberlist encryption key (32 bytes). Required.
	GossipKey []byte
	// CAKeyKEK is the key-encryption key of the cluster CA's private key
	// (KEKSize bytes; never in the Raft log). nil: this node cannot sign
	// certificates, so it neither admits joins nor renews its own.
	CAKeyKEK []byte
	// CertLifetime is the validity of the node certificates this node
	// signs (at a join, and its own renewals); a node renews its own at
	// two thirds of it. 0 = DefaultCertLifetime (30 days).
	CertLifetime time.Duration
	// OnCertRenewed, if set, is called with the renewed certificate chain
	// (leaf then CA) and its new private key, both PEM, before the node
	// starts using them: the caller keeps them for the next start. An
	// error keeps the old certificate; renewal is tried again later.
	OnCertRenewed func(certPEM, keyPEM []byte) error

	// Bootstrap makes a node with no Raft state form a one-node cluster.
	Bootstrap bool
	// Seeds are gossip addresses of existing members to join at start.
	Seeds []string
	// Meta is advertised to the other nodes through gossip (for example the
	// admin and mail endpoints). Keep it small: memberlist allows 512 bytes.
	Meta map[string]string

	// Raft timings; zero means the LAN defaults of DESIGN.md: heartbeat and
	// election 500ms, leader lease 250ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// LogStallTimeout: a Raft log write that has not returned after this
	// long makes the node send no appends or heartbeats until it returns
	// (disk.go, "A hung disk"), so that a leader on a hung disk loses its
	// leadership instead of holding the cluster; 0 = 1s.
	LogStallTimeout time.Duration
	// CommitTimeout is how soon after the last append the leader tells
	// followers the new commit index when no further entries flow (raft
	// waits between 1x and 2x this); it bounds how late a write becomes
	// visible on other nodes. 0 = 5ms (raft's default 50ms would add up to
	// 100ms to cross-node visibility).
	CommitTimeout time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot; 0 = 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked; 0 = 30s.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot so a
	// restarted follower catches up from the log; 0 = 20480.
	TrailingLogs uint64

	// ProposeTimeout bounds Propose when the caller's context has no
	// deadline; 0 = 10s.
	ProposeTimeout time.Duration
	// NoLeaderTimeout: Propose gives up with ErrNoQuorum once no leader has
	// been known for this long and nothing was sent; 0 = 10 election
	// timeouts (5s with the LAN defaults).
	NoLeaderTimeout time.Duration
	// DeadServerGrace is how long a voter must be dead in gossip before the
	// leader removes it (never below MinVoters); 0 = 5 minutes.
	DeadServerGrace time.Duration
	// MinVoters is the size below which the leader never shrinks the voter
	// set on its own; 0 = 3.
	MinVoters int
	// GossipInterval speeds up memberlist in tests; 0 = memberlist's LAN
	// defaults.
	GossipInterval time.Duration
	// Gossip, if not nil, carries an application's small shared state
	// between the members (login throttling); see GossipChannel.
	Gossip *GossipChannel

	// Logger receives all cluster logs, including raft's and memberlist's.
	// nil = discard.
	Logger *slog.Logger
	// OnFatal is called once, in a goroutine of its own, when raft cannot
	// record its current term (the disk failed): the caller should stop the
	// process. Raft's goroutine waits for that. nil = raft panics, as it
	// does on its own.
	OnFatal func(error)
	// OnRemoved is called once, in a goroutine of its own, when this
	// node finds it was removed from the cluster (`raftmail remove`): the
	// departure is already recorded in DataDir, so the node will not
	// start again there; the caller should stop serving and exit. nil =
	// the node only logs it and reports it in Problems.
	OnRemoved func(*Departure)
}

func (c *Config) setDefaults() {
	if c.ClusterAdvertise == "" {
		c.ClusterAdvertise = c.ClusterBind
	}
	if c.GossipAdvertise == "" {
		c.GossipAdvertise = c.GossipBind
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 500 * time.Millisecond
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = 250 * time.Millisecond
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 5 * time.Millisecond
	}
	if c.LogStallTimeout == 0 {
		c.LogStallTimeout = time.Second
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 20480
	}
	if c.NoLeaderTimeout == 0 {
		c.NoLeaderTimeout = 10 * c.ElectionTimeout
	}
	if c.ProposeTimeout == 0 {
		c.ProposeTimeout = 10 * time.Second
	}
	if c.DeadServerGrace == 0 {
		c.DeadServerGrace = 5 * time.Minute
	}
	if c.MinVoters == 0 {
		c.MinVoters = 3
	}
	if c.CertLifetime == 0 {
		c.CertLifetime = DefaultCertLifetime
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first missing or malformed field.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("cluster: config: NodeName is required")
	}
	if c.DataDir == "" {
		return errors.New("cluster: config: DataDir is required")
	}
	for name, addr := range map[string]string{"ClusterBind": c.ClusterBind, "GossipBind": c.GossipBind} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("cluster: config: %s %q: %w", name, addr, err)
		}
	}
	for name, addr := range map[string]string{"ClusterAdvertise": c.ClusterAdvertise, "GossipAdvertise": c.GossipAdvertise} {
		if addr == "" {
			continue
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("cluster: config: %s %q: %w", name, addr, err)
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			return fmt.Errorf("cluster: config: %s %q must be a specific IP address other nodes can reach", name, addr)
		}
	}
	if c.CACert == nil || len(c.Cert.Certificate) == 0 {
		return errors.New("cluster: config: the cluster CA and node certificate are required")
	}
	if len(c.GossipKey) != 32 {
		return errors.New("cluster: config: GossipKey must be 32 bytes")
	}
	if c.CAKeyKEK != nil && len(c.CAKeyKEK) != KEKSize {
		return fmt.Errorf("cluster: config: CAKeyKEK must be %d bytes", KEKSize)
	}
	if c.CertLifetime < 0 {
		return errors.New("cluster: config: CertLifetime must not be negative")
	}
	return nil
}
