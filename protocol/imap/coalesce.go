package imap

import (
	"net"
	"sync"
	"time"
)

// Output coalescing. go-imap writes through a 4 KiB buffer that it flushes
// at the end of every response line, so a FETCH of many message bodies
// costs two or three write system calls per message. A coalescingConn holds
// the server's output until the server next waits for the client (a Read),
// until 64 KiB are pending, or until Close, whichever comes first. While a
// Read is blocked, writes (IDLE updates, a shutdown's BYE) go out at once.
// It sits under TLS (implicit or STARTTLS), so go-imap still sees a
// *tls.Conn where there is one.

// coalesceLimit is how much output is held before it is written anyway.
const coalesceLimit = 64 << 10

// coalesceFlushTimeout bounds a held flush when the server set no write
// deadline of its own (between responses go-imap clears it): a client
// that stops reading cannot hold the session forever.
const coalesceFlushTimeout = time.Minute

type coalescingListener struct{ net.Listener }

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &coalescingConn{Conn: c}, nil
}

type coalescingConn struct {
	net.Conn

	mu       sync.Mutex
	buf      []byte
	reading  bool      // a Read is in progress: write through
	deadline time.Time // the last write deadline set
	err      error     // a failed held flush, reported by the next call
}

// flushLocked writes what is held.
func (c *coalescingConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if len(c.buf) == 0 {
		return nil
	}
	if c.deadline.IsZero() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(coalesceFlushTimeout))
		defer func() { _ = c.Conn.SetWriteDeadline(time.Time{}) }()
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	c.err = err
	return err
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.reading && c.err == nil && len(c.buf)+len(p) <= coalesceLimit {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	if !c.reading && len(p) < coalesceLimit {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	// Written outside the lock, so that Close can interrupt it. Nothing
	// is held now, and go-imap (and TLS) never write from two goroutines
	// at once, so the order of the output is kept.
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}
	return n, err
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if err := c.flushLocked(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.reading = true
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return n, err
}

// Close writes what is held (a BYE), for two seconds at most, unless a
// flush is under way: closing is what ends a flush to a client that
// stopped reading.
func (c *coalescingConn) Close() error {
	if c.mu.TryLock() {
		if len(c.buf) > 0 && c.err == nil {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Conn.Write(c.buf)
			c.buf = nil
		}
		c.err = net.ErrClosed
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

func (c *coalescingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *coalescingConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}
