package smtp

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

	gosmtp "github.com/emersion/go-smtp"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtp: server closed")

// Server is an SMTP server in one Mode. It may serve several listeners
// (for example 587 with Serve and 465 with ServeTLS). Safe for concurrent
// use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	smtp *gosmtp.Server

	// ctx ends when Shutdown gives up waiting: it bounds in-flight
	// commits and login delays.
	ctx    context.Context
	cancel context.CancelFunc

	nextID atomic.Uint64

	mu struct {
		sync.Mutex
		closing bool
		conns   map[*conn]struct{}
	}
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg: cfg,
		log: cfg.Logger.With("node", cfg.NodeName, "mode", cfg.Mode.String()),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.conns = make(map[*conn]struct{})

	gs := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	gs.Domain = cfg.Hostname
	gs.TLSConfig = cfg.TLS
	gs.MaxMessageBytes = cfg.MaxMessageBytes
	// The recipient limit is ours (452 4.5.3 Too many recipients), so
	// go-smtp's stays off.
	gs.MaxRecipients = 0
	gs.ReadTimeout = cfg.ReadTimeout
	gs.WriteTimeout = cfg.WriteTimeout
	// The session decides where AUTH is allowed (submission over TLS
	// only), so it can answer 530 5.7.0 rather than go-smtp's 523.
	gs.AllowInsecureAuth = true
	gs.EnableSMTPUTF8 = true
	gs.ErrorLog = errorLog{s.log}
	s.smtp = gs
	return s, nil
}

// Serve accepts connections on ln (plain TCP; STARTTLS is offered when
// Config.TLS is set) until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeTLS is Serve for an implicit-TLS listener (submissions, port 465,
// RFC 8314): the TLS handshake comes before the greeting.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("smtp: ServeTLS without Config.TLS")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	closing := s.mu.closing
	s.mu.Unlock()
	if closing {
		ln.Close()
		return ErrServerClosed
	}
	var l net.Listener = &listener{Listener: ln, srv: s}
	if implicitTLS {
		l = tls.NewListener(l, s.cfg.TLS)
	}
	s.log.Info("smtp listening", "addr", ln.Addr().String(), "implicit_tls", implicitTLS)
	if err := s.smtp.Serve(l); err != nil {
		return fmt.Errorf("smtp: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections, says goodbye to idle clients
// (421) and waits for sessions that are receiving or committing a message
// to finish, up to ctx. When ctx ends first it closes every connection,
// cancels in-flight commits and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closing = true
	conns := make([]*conn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, gosmtp.ErrServerClosed) {
		err = nil
	}
	if ctx.Err() == nil {
		return err
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.mu.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	return ctx.Err()
}

func (s *Server) track(c *conn) {
	s.mu.Lock()
	s.mu.conns[c] = struct{}{}
	closing := s.mu.closing
	s.mu.Unlock()
	if closing {
		c.shutdown()
	}
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
}

// listener wraps accepted connections in a *conn.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, srv: l.srv, id: l.srv.nextID.Add(1)}
	l.srv.track(c)
	return c, nil
}

// conn is an accepted connection (below TLS, if any). It is how Shutdown
// reaches sessions: once closing, a connection that is not inside a message
// gets a read deadline in the past, so go-smtp's next wait for a command
// times out and it answers 421 and closes. A session in the middle of a
// message is left alone until its Data returns.
type conn struct {
	net.Conn
	srv *Server
	id  uint64

	// readFailed is set once a read returned an error (EOF, reset,
	// timeout): see session.Data.
	readFailed atomic.Bool

	mu      sync.Mutex
	busy    bool // inside Data
	closing bool
	closed  bool
}

var past = time.Unix(1, 0)

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.readFailed.Store(true)
	}
	return n, err
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing && !c.busy {
		t = past
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) Close() error {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	c.mu.Unlock()
	if first {
		c.srv.untrack(c)
	}
	return c.Conn.Close()
}

func (c *conn) setBusy(b bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = b
	if !b && c.closing {
		_ = c.Conn.SetReadDeadline(past)
	}
}

func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	if !c.busy {
		_ = c.Conn.SetReadDeadline(past)
	}
}

// errorLog routes go-smtp's internal error log (connection errors, panics)
// into slog.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	l.log.Info("smtp connection error", "err", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l errorLog) Println(v ...any) {
	l.log.Info("smtp connection error", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
