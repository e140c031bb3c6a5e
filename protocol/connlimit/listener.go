package connlimit

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// Accept backs off this long after its first failure for want of
// descriptors, doubling up to maxAcceptBackoff while the failures last.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = 500 * time.Millisecond
)

// Wrap returns ln with the Limiter's caps, for a listener on which the
// server speaks first in plain text (SMTP 25 and 587, IMAP 143, POP3
// 110): a refused client reads the refusal line. Closing the returned
// listener closes ln.
func (l *Limiter) Wrap(ln net.Listener) net.Listener { return l.wrap(ln, false) }

// WrapTLS is Wrap for an implicit-TLS listener (465, 993, 995), to be
// wrapped by TLS afterwards: a refused connection is closed without a word
// and without a handshake.
func (l *Limiter) WrapTLS(ln net.Listener) net.Listener { return l.wrap(ln, true) }

func (l *Limiter) wrap(ln net.Listener, silent bool) net.Listener {
	return &listener{Listener: ln, lim: l, silent: silent, done: make(chan struct{})}
}

type listener struct {
	net.Listener
	lim    *Limiter
	silent bool

	done      chan struct{} // closed by Close: ends a back-off
	closeOnce sync.Once

	mu struct {
		sync.Mutex
		logged   time.Time // last accept-failure line
		failures int       // accept failures since that line
	}
}

// Accept returns the next connection within the caps. Connections past a
// cap are refused here and never returned; running out of descriptors is
// waited out here, not returned.
func (ln *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			if !outOfDescriptors(err) {
				return nil, err
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			ln.acceptFailed(err, backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ln.done:
				t.Stop()
				return nil, &net.OpError{Op: "accept", Net: ln.Addr().Network(), Addr: ln.Addr(), Err: net.ErrClosed}
			case <-t.C:
			}
			continue
		}
		backoff = 0
		addr := remoteAddr(c)
		s, reason := ln.lim.acquire(addr)
		if s != nil {
			return &conn{Conn: c, lim: ln.lim, slot: s}, nil
		}
		ln.lim.refused(addr, reason)
		ln.refuse(c, reason)
	}
}

// refuse tells c why (unless silent) and closes it. The line is one small
// write to a socket that has sent nothing yet, so it goes to the socket
// buffer at once; the deadline is there for the impossible case.
func (ln *listener) refuse(c net.Conn, reason Reason) {
	line := ln.lim.cfg.RefusePerIP
	if reason == PerNode {
		line = ln.lim.cfg.RefusePerNode
	}
	if !ln.silent && line != "" {
		_ = c.SetWriteDeadline(time.Now().Add(ln.lim.cfg.RefuseTimeout))
		_, _ = c.Write([]byte(line + "\r\n"))
	}
	_ = c.Close()
}

// acceptFailed logs a failure for want of descriptors, at most once per
// LogInterval, with the number of failures since the last line.
func (ln *listener) acceptFailed(err error, backoff time.Duration) {
	now := time.Now()
	ln.mu.Lock()
	ln.mu.failures++
	if !ln.mu.logged.IsZero() && now.Sub(ln.mu.logged) < ln.lim.cfg.LogInterval {
		ln.mu.Unlock()
		return
	}
	n := ln.mu.failures
	ln.mu.failures = 0
	ln.mu.logged = now
	ln.mu.Unlock()
	ln.lim.log.Warn("accept failed: the process is out of file descriptors; retrying",
		"addr", ln.Addr().String(), "err", err, "failures", n, "retry_in", backoff.String(),
		"hint", "lower the connection caps or raise the descriptor limit (systemd LimitNOFILE=, docker --ulimit nofile=)")
}

// Close closes the underlying listener and ends a back-off in Accept.
func (ln *listener) Close() error {
	ln.closeOnce.Do(func() { close(ln.done) })
	return ln.Listener.Close()
}

// outOfDescriptors reports an accept error that only waiting can cure:
// the process or the system is out of file descriptors or socket memory.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// conn is an admitted connection: it gives its slot back when closed,
// once, however often Close is called.
type conn struct {
	net.Conn
	lim  *Limiter
	slot *slot
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.lim.release(c.slot)
	return err
}
