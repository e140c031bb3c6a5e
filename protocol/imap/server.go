package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// DefaultAppendLimit is the largest APPEND literal when Config.AppendLimit
// is 0: 50 MiB.
const DefaultAppendLimit = 50 << 20

// defaultWriteTimeout bounds one write (an APPEND's commit, a Propose) when the
// cluster gives none.
const defaultWriteTimeout = 15 * time.Second

// viewWaitTimeout bounds how long a command waits for the node's change
// feed to show its own write before it answers anyway.
const viewWaitTimeout = 5 * time.Second

// feedBuffer is the change-feed subscription's buffer. A feed that falls
// this far behind is dropped by the store and resynchronises.
const feedBuffer = 8192

// The lines a client past a connection cap reads instead of the greeting,
// before the connection is closed (RFC 9051 section 7.1.5: BYE may be the
// greeting). The caps are protocol/connlimit's, put around the listeners
// by cmd; no session is started.
const (
	TooManyFromAddress = "* BYE [UNAVAILABLE] Too many connections from your address, try again later"
	TooManyToServer    = "* BYE [UNAVAILABLE] Too many connections to this server, try again later"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("imap: server closed")

// Cluster is what this package needs from the cluster (satisfied by
// *cluster.Node).
type Cluster interface {
	// Propose commits cmd through Raft and returns once the local store
	// applied it.
	Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error)
	// FetchBlob reads a body locally, else from a peer.
	FetchBlob(ctx context.Context, h storage.Hash) ([]byte, error)
}

// Config configures a Server.
type Config struct {
	// Cluster commits writes and serves blobs. Required.
	Cluster Cluster
	// Accept is the node's accept pipeline, for APPEND. Required.
	Accept *accept.Pipeline
	// Store is this node's local store: every read goes to it. Required.
	Store *storage.Store
	// Auth checks credentials and throttles failures. Required.
	Auth *auth.Checker
	// TLS is offered through STARTTLS on plain listeners and used by
	// ServeTLS. nil: no TLS, so (unless InsecureAuth) nobody can log in.
	TLS *tls.Config
	// InsecureAuth allows LOGIN and AUTHENTICATE without TLS. Only for
	// tests and loopback development.
	InsecureAuth bool
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// AppendLimit is the largest message APPEND accepts, in bytes;
	// 0 = DefaultAppendLimit (50 MiB). At most 4 GiB - 1.
	AppendLimit int64
	// NodeName names this node in logs (key "node"); "" is allowed.
	NodeName string
	// WriteTimeout bounds one write to the cluster (an APPEND's commit, a
	// Propose);
	// 0 = 15 s.
	WriteTimeout time.Duration
	// PreAuthTimeout is how long a connection may stay without logging
	// in, counted from accept (a TLS handshake included); it is then told
	// "* BYE Login timeout" and closed. 0 = DefaultPreAuthTimeout (60 s).
	PreAuthTimeout time.Duration
	// IdleTimeout is how long a logged-in connection may leave the server
	// waiting for input (in IDLE too) before it is told "* BYE
	// Autologout" and closed. 0 = DefaultIdleTimeout (30 minutes, the
	// minimum of RFC 9051 section 5.4; shorter is allowed for tests).
	// Above 35 minutes it makes no difference: go-imap closes a connection
	// silent for 35 minutes itself, without a BYE.
	IdleTimeout time.Duration
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch {
	case c.Cluster == nil:
		return errors.New("imap: config: Cluster is required")
	case c.Store == nil:
		return errors.New("imap: config: Store is required")
	case c.Accept == nil:
		return errors.New("imap: config: Accept is required")
	case c.Auth == nil:
		return errors.New("imap: config: Auth is required")
	case c.AppendLimit < 0 || c.AppendLimit > 1<<32-1:
		return fmt.Errorf("imap: config: AppendLimit %d out of range [0, 4 GiB)", c.AppendLimit)
	case c.WriteTimeout < 0:
		return fmt.Errorf("imap: config: negative WriteTimeout %v", c.WriteTimeout)
	case c.PreAuthTimeout < 0 || c.IdleTimeout < 0:
		return fmt.Errorf("imap: config: negative PreAuthTimeout %v or IdleTimeout %v", c.PreAuthTimeout, c.IdleTimeout)
	}
	return nil
}

// Server serves IMAP on any number of listeners. It owns one change-feed
// goroutine that keeps the per-mailbox trackers of this node up to date.
type Server struct {
	cfg  Config
	log  *slog.Logger
	imap *imapserver.Server

	// ctx is cancelled when Shutdown gives up waiting; sessions derive
	// their request contexts from it.
	ctx    context.Context
	cancel context.CancelFunc

	nextCID atomic.Uint64
	wg      sync.WaitGroup // sessions
	feed    *feed

	mu struct {
		sync.Mutex
		closed    bool
		listeners map[net.Listener]struct{}
		sessions  map[*session]struct{}
	}
}

// New returns a server and starts its change feed. Call Shutdown to stop
// it.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AppendLimit == 0 {
		cfg.AppendLimit = DefaultAppendLimit
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	if cfg.PreAuthTimeout == 0 {
		cfg.PreAuthTimeout = DefaultPreAuthTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeName, "component", "imap")
	s := &Server{cfg: cfg, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.sessions = make(map[*session]struct{})
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities(),
		Logger:       libLogger{log},
		TLSConfig:    cfg.TLS,
		InsecureAuth: cfg.InsecureAuth,
	})
	s.feed = newFeed(cfg.Store, log)
	return s, nil
}

// capabilities is what this server implements beyond what imapserver adds
// on its own (SASL-IR, LITERAL-, UNSELECT, ENABLE, IDLE, UTF8=ACCEPT,
// STARTTLS, AUTH=, LOGINDISABLED, APPENDLIMIT=). Every entry must be backed
// by the session: imapserver panics on a capability without its interface,
// and has no handler at all for CONDSTORE, QRESYNC, QUOTA or ID.
func capabilities() imap.CapSet {
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2,
		imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch, imap.CapSearchRes,
		imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
		imap.CapBinary, imap.CapChildren, imap.CapSpecialUse,
		imap.CapCreateSpecialUse, imap.CapLiteralPlus,
	} {
		caps[c] = struct{}{}
	}
	return caps
}

// Serve accepts connections on ln (cleartext, STARTTLS offered when
// Config.TLS is set; port 143) until Shutdown. It returns nil after
// Shutdown closed ln, else the accept error.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(coalescingListener{activityListener{ln}})
}

// ServeTLS accepts implicit-TLS connections (port 993) on ln, which must
// be a plain TCP listener: ServeTLS wraps it with Config.TLS.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imap: ServeTLS needs Config.TLS")
	}
	return s.serve(tls.NewListener(coalescingListener{activityListener{ln}}, s.cfg.TLS))
}

func (s *Server) serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.log.Info("imap listening", "addr", ln.Addr().String())
	err := s.imap.Serve(ln)
	s.mu.Lock()
	delete(s.mu.listeners, ln)
	closed := s.mu.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, says "* BYE" to every client,
// waits for their sessions to end until ctx is done (then closes what is
// left), and stops the change feed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	sessions := make([]*session, 0, len(s.mu.sessions))
	for sess := range s.mu.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()

	for _, sess := range sessions {
		go sess.bye("Server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		s.imap.Close() // closes every remaining connection
		<-done
	}
	s.cancel()
	s.feed.stop()
	return err
}

func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	sess := newSession(s, conn)
	s.mu.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	sess.log.Debug("connection opened", "remote", conn.NetConn().RemoteAddr().String())
	return sess, nil, nil
}

func (s *Server) sessionClosed(sess *session) {
	s.mu.Lock()
	if _, ok := s.mu.sessions[sess]; ok {
		delete(s.mu.sessions, sess)
		s.wg.Done()
	}
	s.mu.Unlock()
}

// libLogger routes imapserver's messages into slog: panics at error level,
// the routine rest (clients that vanish, syntax errors) at debug level.
type libLogger struct{ l *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, "panic") {
		l.l.Error("imapserver: " + msg)
		return
	}
	l.l.Debug("imapserver: " + msg)
}
