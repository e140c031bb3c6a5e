package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// Cluster is what this package needs from the cluster (satisfied by
// *cluster.Node).
type Cluster interface {
	// Propose commits cmd through Raft and returns after the local store
	// applied it. An error with an OutcomeUnknown() bool method reporting
	// true means the command may have been committed.
	Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error)
	// OpenBlob returns a reader of a blob, from the local store, else
	// from a peer. The caller closes it.
	OpenBlob(ctx context.Context, h storage.Hash) (io.ReadCloser, error)
}

// Defaults for zero Config fields.
const (
	// DefaultIdleTimeout is the autologout timer: RFC 1939 section 3 asks
	// for at least 10 minutes.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultPreAuthTimeout bounds the time from accept to login.
	DefaultPreAuthTimeout = time.Minute
	// DefaultMaxLineLength bounds a command line, CRLF included.
	DefaultMaxLineLength = 1024
	// DefaultWriteTimeout bounds one flush of replies to the client.
	DefaultWriteTimeout = 2 * time.Minute
	// DefaultHandshakeTimeout bounds a TLS handshake (STLS or implicit).
	DefaultHandshakeTimeout = 30 * time.Second
)

// maxTooLongLines is how many over-long lines a connection may send before
// it is closed.
const maxTooLongLines = 3

// Config configures a Server.
type Config struct {
	// Cluster commits writes (the expunge at QUIT) and fetches message
	// bodies. Required.
	Cluster Cluster
	// Store is the local node's store, read for maildrops. Required.
	Store *storage.Store
	// Auth checks credentials and throttles failures. Required.
	Auth *auth.Checker
	// TLS is the server's TLS configuration for STLS and implicit TLS.
	// nil: STLS is not offered and implicit-TLS listeners are refused.
	TLS *tls.Config
	// AllowInsecureAuth allows USER/PASS and AUTH on a connection without
	// TLS (tests, or a listener on a trusted loopback). Default false:
	// they are refused with -ERR [AUTH] until STLS.
	AllowInsecureAuth bool
	// Logger receives connection and error logs; protocol traces only at
	// debug level, with passwords and AUTH payloads redacted. nil: discard.
	Logger *slog.Logger
	// NodeName is this node's name, logged with key "node".
	NodeName string
	// Hostname is the name in the greeting; "" = "localhost".
	Hostname string
	// IdleTimeout closes a session that sends no command for this long
	// (nothing is deleted). 0 = DefaultIdleTimeout (10 minutes, the minimum
	// of RFC 1939). Values below 10 minutes are allowed for tests.
	IdleTimeout time.Duration
	// PreAuthTimeout is how long a connection may stay in the
	// AUTHORIZATION state, counted from accept (a TLS handshake included,
	// whatever commands it sends); it is then told "-ERR [SYS/TEMP] login
	// timeout" and closed. 0 = DefaultPreAuthTimeout (60 s).
	PreAuthTimeout time.Duration
	// MaxLineLength is the longest command line accepted, in octets
	// including CRLF. 0 = DefaultMaxLineLength (1024). Minimum 64.
	MaxLineLength int
	// WriteTimeout bounds sending one batch of replies (a RETR included).
	// 0 = DefaultWriteTimeout (2 minutes).
	WriteTimeout time.Duration
	// WriteOpTimeout bounds the Propose of the expunge at QUIT. 0 = no
	// bound of ours: the cluster's own propose timeout applies.
	WriteOpTimeout time.Duration
}

// Validate reports a Config that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Cluster == nil {
		errs = append(errs, errors.New("pop3: Config.Cluster is required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("pop3: Config.Store is required"))
	}
	if c.Auth == nil {
		errs = append(errs, errors.New("pop3: Config.Auth is required"))
	}
	if c.TLS == nil && !c.AllowInsecureAuth {
		errs = append(errs, errors.New("pop3: no TLS and AllowInsecureAuth false: nobody could log in"))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, errors.New("pop3: Config.IdleTimeout is negative"))
	}
	if c.PreAuthTimeout < 0 {
		errs = append(errs, errors.New("pop3: Config.PreAuthTimeout is negative"))
	}
	if c.MaxLineLength != 0 && c.MaxLineLength < 64 {
		errs = append(errs, errors.New("pop3: Config.MaxLineLength must be 0 or at least 64"))
	}
	if c.WriteTimeout < 0 || c.WriteOpTimeout < 0 {
		errs = append(errs, errors.New("pop3: negative write timeout"))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.PreAuthTimeout == 0 {
		c.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if c.MaxLineLength == 0 {
		c.MaxLineLength = DefaultMaxLineLength
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
}
