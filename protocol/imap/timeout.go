package imap

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"time"
)

// Timeouts.
//
// go-imap v2 beta.8 sets read deadlines of its own, each once, as an
// absolute time: 30 s to wait for and read a command before login, 35 min
// after login (and in IDLE), 5 min for an APPEND literal. It bounds
// neither the time before login as a whole (a client that sends NOOP every
// 29 s stays for ever) nor the TLS handshake of port 993 (it happens in
// the greeting's write, before any read deadline is set), and it closes a
// timed-out connection without a BYE. Its 5-minute literal deadline cuts
// off a large APPEND that arrives slowly but steadily.
//
// activityConn, the innermost wrapper of every accepted connection (under
// TLS and the output coalescing), turns go-imap's read deadlines into
// inactivity timeouts: a deadline set d from now is pushed to d from the
// start of each read, so a literal is cut off when the client stops
// sending for 5 minutes, not when it has been sending for 5 minutes. It
// also records when the server last waited for or received input.
//
// Each session's watchdog (a timer, stopped by Close) enforces Raftmail's
// two timeouts, with a BYE:
//
//   - PreAuthTimeout, counted from accept and pushed out by nothing: a
//     connection not logged in by then is told "* BYE Login timeout".
//   - IdleTimeout, after login: a connection that has left the server
//     waiting for input that long without sending a byte is told
//     "* BYE Autologout; idle for too long" (RFC 9051 section 5.4). IDLE
//     is a wait like any other, so a client in IDLE must end and re-issue
//     it within the timeout (RFC 2177 asks clients to do so every 29
//     minutes). A session busy with a command (a long FETCH to a slow
//     reader) is not idle.
//
// The BYE goes through go-imap's Conn.Bye, as at shutdown. If the
// connection's writer is stuck (a TLS handshake with a silent client, a
// write to a client that does not read), the connection is closed under it
// after byeGrace.

// Defaults for zero Config fields.
const (
	// DefaultPreAuthTimeout bounds the time from accept to login.
	DefaultPreAuthTimeout = time.Minute
	// DefaultIdleTimeout is the autologout timer, RFC 9051's minimum.
	DefaultIdleTimeout = 30 * time.Minute
)

// byeGrace is how long a timed-out connection's BYE may take before the
// connection is closed without it.
const byeGrace = 2 * time.Second

type activityListener struct{ net.Listener }

func (l activityListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &activityConn{Conn: c}, nil
}

// activityConn is an accepted connection whose read deadlines are
// inactivity timeouts, and which records input activity for the
// watchdog. Read and SetReadDeadline are called by the connection's
// goroutine only; the watchdog reads the atomics.
type activityConn struct {
	net.Conn
	timeout atomic.Int64 // ns; the read inactivity timeout, 0 = none
	lastIn  atomic.Int64 // unix ns: the last read began or brought data
	reading atomic.Bool  // a Read is waiting
}

func (c *activityConn) Read(p []byte) (int, error) {
	now := time.Now()
	c.lastIn.Store(now.UnixNano())
	if d := c.timeout.Load(); d > 0 {
		_ = c.Conn.SetReadDeadline(now.Add(time.Duration(d)))
	}
	c.reading.Store(true)
	n, err := c.Conn.Read(p)
	c.reading.Store(false)
	if n > 0 {
		c.lastIn.Store(time.Now().UnixNano())
	}
	return n, err
}

// setTimeout records the inactivity timeout a deadline t stands for. A
// deadline already past is not pushed out: it is there to stop reads now.
func (c *activityConn) setTimeout(t time.Time) {
	var d time.Duration
	if !t.IsZero() {
		d = max(time.Until(t), 0)
	}
	c.timeout.Store(int64(d))
}

func (c *activityConn) SetReadDeadline(t time.Time) error {
	c.setTimeout(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *activityConn) SetDeadline(t time.Time) error {
	c.setTimeout(t)
	return c.Conn.SetDeadline(t)
}

// waiting reports whether the server is waiting for input, and since
// when nothing has arrived.
func (c *activityConn) waiting() (bool, time.Time) {
	return c.reading.Load(), time.Unix(0, c.lastIn.Load())
}

// activityOf finds the activityConn under c's TLS and coalescing layers.
func activityOf(c net.Conn) *activityConn {
	for {
		switch x := c.(type) {
		case *activityConn:
			return x
		case *coalescingConn:
			c = x.Conn
		case *tls.Conn:
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// startWatchdog arms the session's timer; called once by newSession.
func (s *session) startWatchdog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = time.AfterFunc(s.srv.cfg.PreAuthTimeout, s.watch)
}

// rearmWatchdog sets the timer to check again after d (from now on the
// idle timeout once logged in).
func (s *session) rearmWatchdog(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.timer.Reset(d)
	}
}

// watch runs when the session's timer fires: it ends a session past one
// of its timeouts, or sets the timer for the next check.
func (s *session) watch() {
	cfg := &s.srv.cfg
	var wait time.Duration
	var text, reason string
	if !s.loggedIn.Load() {
		wait = time.Until(s.start.Add(cfg.PreAuthTimeout))
		if wait <= 0 {
			text, reason = "Login timeout", "pre-auth timeout"
		}
	} else {
		wait = cfg.IdleTimeout
		if s.ac != nil {
			if waiting, since := s.ac.waiting(); waiting {
				wait = time.Until(since.Add(cfg.IdleTimeout))
				if wait <= 0 {
					text, reason = "Autologout; idle for too long", "idle timeout"
				}
			}
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if text == "" {
		s.timer.Reset(wait)
		s.mu.Unlock()
		return
	}
	s.expiring.Add(1)
	s.mu.Unlock()
	defer s.expiring.Done()

	if s.loggedIn.Load() {
		// s.user was set before loggedIn: safe to read now.
		s.connLog.Info("closing connection", "reason", reason, "user", s.user, "timeout", cfg.IdleTimeout.String())
	} else {
		s.connLog.Debug("closing connection", "reason", reason, "ip", s.ip, "timeout", cfg.PreAuthTimeout.String())
	}
	force := time.AfterFunc(byeGrace, func() { _ = s.raw.Close() })
	s.bye(text)
	force.Stop()
}
