package smtp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/storage"
)

// Mode says what a Server is for.
type Mode int

const (
	// ModeMX receives mail for local domains from anyone, without AUTH
	// (port 25). It never relays.
	ModeMX Mode = iota + 1
	// ModeSubmission receives mail from authenticated users (ports 587
	// and 465): AUTH PLAIN and LOGIN, only over TLS; local recipients
	// are delivered, remote ones queued.
	ModeSubmission
)

func (m Mode) String() string {
	switch m {
	case ModeMX:
		return "mx"
	case ModeSubmission:
		return "submission"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Defaults for zero Config fields.
const (
	DefaultMaxMessageBytes = 50 << 20
	DefaultMaxRecipients   = 100
	DefaultReadTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = time.Minute
	DefaultCommitTimeout   = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Mode is ModeMX or ModeSubmission. Required.
	Mode Mode
	// Hostname is this node's public host name, used in the greeting, the
	// EHLO reply and Received headers. Required.
	Hostname string
	// NodeName names the cluster node in Received headers and logs.
	// Required.
	NodeName string
	// MaxMessageBytes bounds a message as the client sends it (SIZE,
	// DATA and BDAT); 0 = DefaultMaxMessageBytes (50 MiB). Messages are
	// spooled (protocol/accept), not held whole in memory.
	MaxMessageBytes int64
	// MaxRecipients bounds RCPT commands per transaction; 0 =
	// DefaultMaxRecipients (100).
	MaxRecipients int
	// TLS is offered as STARTTLS and used by ServeTLS. nil = no TLS; a
	// submission server requires it (AUTH is only allowed over TLS).
	TLS *tls.Config
	// Accept is the node's accept pipeline: it spools, stores and
	// commits messages. Required.
	Accept *accept.Pipeline
	// Store is the local replica, for reads (domains, accounts, aliases).
	// Required.
	Store *storage.Store
	// Auth checks credentials and throttles failures. Required in
	// ModeSubmission, ignored in ModeMX.
	Auth *auth.Checker
	// MailAuth checks SPF, DKIM and DMARC of mail received in ModeMX and
	// adds an Authentication-Results header; a DMARC reject is refused
	// with 550, a quarantine goes to the \Junk mailbox. nil = no inbound
	// checks. Ignored in ModeSubmission.
	MailAuth *mailauth.Checker
	// DKIMKeys returns the DKIM signing keys of a domain: mail accepted
	// in ModeSubmission is signed with those of its MAIL FROM domain.
	// nil, or no keys, = not signed. Ignored in ModeMX.
	DKIMKeys func(domain string) []mailauth.DKIMKey
	// SenderCheck says what of a submitted message must name an address
	// of the authenticated user (their account or an alias delivering to
	// it): MAIL FROM (553 5.7.1 otherwise), the From header field (550
	// 5.7.1 after DATA; 550 5.6.0 when it is missing, repeated or does not
	// parse), both (the zero value), or neither. Ignored in ModeMX.
	SenderCheck SenderCheck
	// Logger; nil = discard.
	Logger *slog.Logger
	// ReadTimeout is how long the server waits for a command line, and
	// for each read of message data; 0 = DefaultReadTimeout (5 minutes).
	ReadTimeout time.Duration
	// WriteTimeout bounds each reply write; 0 = DefaultWriteTimeout
	// (1 minute).
	WriteTimeout time.Duration
	// CommitTimeout bounds storing the blob and proposing the delivery of
	// one message; 0 = DefaultCommitTimeout (30 seconds).
	CommitTimeout time.Duration
}

// Validate reports the first problem with cfg.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.Mode != ModeMX && cfg.Mode != ModeSubmission {
		errs = append(errs, fmt.Errorf("unknown mode %d", int(cfg.Mode)))
	}
	if cfg.Hostname == "" {
		errs = append(errs, errors.New("missing Hostname"))
	}
	if cfg.NodeName == "" {
		errs = append(errs, errors.New("missing NodeName"))
	}
	if cfg.Accept == nil {
		errs = append(errs, errors.New("missing Accept"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("missing Store"))
	}
	if cfg.Mode == ModeSubmission {
		if cfg.Auth == nil {
			errs = append(errs, errors.New("missing Auth (required for submission)"))
		}
		if cfg.TLS == nil {
			errs = append(errs, errors.New("missing TLS (required for submission: AUTH only over TLS)"))
		}
	}
	if cfg.MaxMessageBytes < 0 || cfg.MaxMessageBytes > 1<<32-1 {
		errs = append(errs, fmt.Errorf("MaxMessageBytes %d out of range", cfg.MaxMessageBytes))
	}
	if cfg.SenderCheck < SenderCheckBoth || cfg.SenderCheck > SenderCheckOff {
		errs = append(errs, fmt.Errorf("unknown SenderCheck %d", int(cfg.SenderCheck)))
	}
	if cfg.MaxRecipients < 0 {
		errs = append(errs, fmt.Errorf("MaxRecipients %d is negative", cfg.MaxRecipients))
	}
	if cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.CommitTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("smtp: config: %w", err)
	}
	return nil
}

func (cfg *Config) setDefaults() {
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}
