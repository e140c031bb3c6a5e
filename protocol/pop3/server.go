package pop3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The lines a client past a connection cap reads instead of the greeting,
// before the connection is closed (SYS/TEMP, RFC 3206 section 4: a
// temporary problem, try again later). The caps are protocol/connlimit's,
// put around the listeners by cmd; no session is started.
const (
	TooManyFromAddress = "-ERR [SYS/TEMP] Too many connections from your address, try again later"
	TooManyToServer    = "-ERR [SYS/TEMP] Too many connections to this server, try again later"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// Server serves POP3 on any number of listeners. Safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	nextCID atomic.Uint64
	wg      sync.WaitGroup // sessions and Serve loops

	mu struct {
		sync.Mutex
		closed    bool
		listeners map[net.Listener]struct{}
		sessions  map[*session]struct{}
		// locked holds the maildrops (account addresses) in use by a
		// session on this node (RFC 1939 section 8).
		locked map[string]*session
	}
}

// ServeOption adjusts one Serve call.
type ServeOption func(*serveOptions)

type serveOptions struct{ implicitTLS bool }

// WithImplicitTLS makes Serve start TLS on every connection before the
// greeting (POP3S, port 995; RFC 8314). It needs Config.TLS.
func WithImplicitTLS() ServeOption { return func(o *serveOptions) { o.implicitTLS = true } }

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger}
	if cfg.NodeName != "" {
		s.log = s.log.With("node", cfg.NodeName)
	}
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.sessions = make(map[*session]struct{})
	s.mu.locked = make(map[string]*session)
	return s, nil
}

// Serve accepts connections on ln until Shutdown (then it returns
// ErrServerClosed) or an accept error that is not temporary. It closes ln
// when it returns.
func (s *Server) Serve(ln net.Listener, opts ...ServeOption) error {
	var o serveOptions
	for _, f := range opts {
		f(&o)
	}
	if o.implicitTLS && s.cfg.TLS == nil {
		ln.Close()
		return errors.New("pop3: implicit TLS needs Config.TLS")
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.mu.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	s.log.Info("pop3 listening", "addr", ln.Addr().String(), "implicit_tls", o.implicitTLS)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("pop3 accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pop3: accept: %w", err)
		}
		backoff = 0
		if !s.startSession(c, o.implicitTLS) {
			c.Close()
			return ErrServerClosed
		}
	}
}

// isTemporary reports an accept error worth retrying (out of file
// descriptors and the like).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// startSession registers and starts a session; false once shut down.
func (s *Server) startSession(c net.Conn, implicitTLS bool) bool {
	cid := s.nextCID.Add(1)
	ss := newSession(s, c, cid, implicitTLS)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return false
	}
	s.mu.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.endSession(ss)
		ss.run()
	}()
	return true
}

func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	delete(s.mu.sessions, ss)
	if ss.account != "" && s.mu.locked[ss.account] == ss {
		delete(s.mu.locked, ss.account)
	}
	s.mu.Unlock()
}

// lockMaildrop takes the node-local lock on account's maildrop for ss.
func (s *Server) lockMaildrop(account string, ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.mu.locked[account]; busy {
		return false
	}
	s.mu.locked[account] = ss
	return true
}

func (s *Server) unlockMaildrop(account string, ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.locked[account] == ss {
		delete(s.mu.locked, account)
	}
}

// Shutdown stops accepting, says goodbye ("-ERR [SYS/TEMP] server shutting
// down") to sessions waiting for a command and closes them, and waits for
// sessions in the middle of a command to finish theirs and get the same
// goodbye. When ctx ends first, the remaining connections are closed and
// ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closed = true
	for ln := range s.mu.listeners {
		ln.Close()
	}
	sessions := make([]*session, 0, len(s.mu.sessions))
	for ss := range s.mu.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.shutdown()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for ss := range s.mu.sessions {
			ss.forceClose()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
