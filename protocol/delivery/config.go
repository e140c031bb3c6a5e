package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/storage"
)

// Cluster is what this package needs from the cluster (satisfied by
// *cluster.Node). Write errors are classified by their Temporary() and
// OutcomeUnknown() methods, never by cluster's sentinels.
type Cluster interface {
	// Propose commits cmd through Raft and returns once the local store
	// applied it.
	Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error)
	// FetchBlob returns a blob from the local store or a peer.
	FetchBlob(ctx context.Context, h storage.Hash) ([]byte, error)
	// RunAsLeader calls task, in a goroutine of its own, each time this
	// node establishes leadership (after a Barrier: the local store has
	// everything earlier leaders committed), with a context cancelled
	// when leadership is lost.
	RunAsLeader(name string, task func(ctx context.Context))
	// Name is this node's name, as queue leases name it.
	Name() string
	// LiveNodes lists the voters that gossip reports alive.
	LiveNodes() []string
}

// Defaults for zero Config fields.
const (
	DefaultPort             = 25
	DefaultLeaseDuration    = 5 * time.Minute
	DefaultMaxQueueLifetime = 5 * 24 * time.Hour
	DefaultPollInterval     = time.Second
	DefaultConnectTimeout   = 30 * time.Second
	DefaultCommandTimeout   = 5 * time.Minute
	DefaultDataTimeout      = 10 * time.Minute
	DefaultMaxConcurrent    = 20
	DefaultMaxLeasesPerTick = 200
)

// DefaultRetrySchedule is the delay after the first, second, ... failed
// attempt; the last delay repeats: like Postfix (minimal_backoff_time 5m,
// doubling, capped at maximal_backoff_time), 5m, 10m, 20m, 40m, then hourly.
var DefaultRetrySchedule = []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour}

// Config configures a Service.
type Config struct {
	// Hostname is this node's public host name: said in EHLO and used in
	// DSNs (Reporting-MTA, From: MAILER-DAEMON@Hostname). Required.
	Hostname string
	// Cluster commits queue changes and fetches blobs. Required.
	Cluster Cluster
	// Accept stores and delivers bounces (the node's accept pipeline).
	// Required.
	Accept *accept.Pipeline
	// Store is the local replica: the queue, accounts and domains are read
	// from it. Required.
	Store *storage.Store
	// Resolver does every MX and address lookup. Required
	// (mailauth.NewResolver("") is the system's resolver).
	Resolver mailauth.Resolver
	// Port is the TCP port of remote MX hosts; 0 = DefaultPort (25).
	// Other values are for tests.
	Port int
	// RequireTLS refuses to deliver over a connection without STARTTLS
	// (the attempt is deferred). false = opportunistic TLS: STARTTLS
	// whenever the server offers it, plain text otherwise.
	RequireTLS bool
	// VerifyTLS checks the remote certificate against the system roots and
	// the MX host name. false (the default) = encryption without
	// authentication, as Postfix's smtp_tls_security_level=may; a failed
	// verification would otherwise only push mail to plain text.
	VerifyTLS bool
	// LeaseDuration is how long a node may hold an entry for one delivery
	// attempt; while the attempt runs the holder renews it every third of
	// it. An entry whose holder died is delivered by another node once the
	// lease expires. 0 = DefaultLeaseDuration (5 minutes).
	LeaseDuration time.Duration
	// RetrySchedule is the delay after the 1st, 2nd, ... failed attempt;
	// the last element repeats. nil = DefaultRetrySchedule.
	RetrySchedule []time.Duration
	// MaxQueueLifetime is how long a message may stay queued: a recipient
	// still deferred after that fails and is bounced. 0 =
	// DefaultMaxQueueLifetime (5 days, Postfix's maximal_queue_lifetime).
	MaxQueueLifetime time.Duration
	// PollInterval is how often the scheduler and the worker look at the
	// queue; 0 = DefaultPollInterval (1 second).
	PollInterval time.Duration
	// ConnectTimeout bounds one TCP connect; 0 = DefaultConnectTimeout (30s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds the wait for each SMTP reply; 0 =
	// DefaultCommandTimeout (5 minutes, RFC 5321 §4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply after the message data;
	// 0 = DefaultDataTimeout (10 minutes, RFC 5321 §4.5.3.2.6).
	DataTimeout time.Duration
	// MaxConcurrent bounds the entries this node delivers at once; 0 =
	// DefaultMaxConcurrent (20).
	MaxConcurrent int
	// MaxLeasesPerTick bounds the leases the scheduler grants per poll;
	// 0 = DefaultMaxLeasesPerTick (200).
	MaxLeasesPerTick int
	// Logger; nil = discard.
	Logger *slog.Logger
	// Now is the clock; nil = time.Now. For tests.
	Now func() time.Time
}

// Validate reports every problem with cfg.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.Hostname == "" {
		errs = append(errs, errors.New("missing Hostname"))
	}
	if cfg.Cluster == nil {
		errs = append(errs, errors.New("missing Cluster"))
	}
	if cfg.Accept == nil {
		errs = append(errs, errors.New("missing Accept"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("missing Store"))
	}
	if cfg.Resolver == nil {
		errs = append(errs, errors.New("missing Resolver"))
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", cfg.Port))
	}
	if cfg.LeaseDuration < 0 || cfg.MaxQueueLifetime < 0 || cfg.PollInterval < 0 ||
		cfg.ConnectTimeout < 0 || cfg.CommandTimeout < 0 || cfg.DataTimeout < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	for _, d := range cfg.RetrySchedule {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("RetrySchedule: delay %s is not positive", d))
			break
		}
	}
	if cfg.MaxConcurrent < 0 || cfg.MaxLeasesPerTick < 0 {
		errs = append(errs, errors.New("MaxConcurrent and MaxLeasesPerTick must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delivery: config: %w", err)
	}
	return nil
}

func (cfg *Config) setDefaults() {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if len(cfg.RetrySchedule) == 0 {
		cfg.RetrySchedule = DefaultRetrySchedule
	}
	if cfg.MaxQueueLifetime == 0 {
		cfg.MaxQueueLifetime = DefaultMaxQueueLifetime
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.DataTimeout == 0 {
		cfg.DataTimeout = DefaultDataTimeout
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxLeasesPerTick == 0 {
		cfg.MaxLeasesPerTick = DefaultMaxLeasesPerTick
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = wallclock.Now
	}
}

// backoff is the delay after the attempts-th failed attempt (1-based).
func (cfg *Config) backoff(attempts int) time.Duration {
	i := min(max(attempts-1, 0), len(cfg.RetrySchedule)-1)
	return cfg.RetrySchedule[i]
}
