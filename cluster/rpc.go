package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// Wire format of an internal RPC, version 2. Every frame starts with the
// version, so that a node meeting another version refuses cleanly:
//
//	request:  u8 version | u8 method | u32 timeout in ms (0 = none) | u32 length | payload
//	response: u8 version | u8 status | u32 length | payload
//
// Status 0 is success and the payload is the method's result; any other
// status is an error code and the payload its text. Payloads are typed per
// method (rpcmsg.go). A stream of blob bytes (blob.put of a blob larger than
// one chunk, after the request; blob.get, after a successful response) is a
// run of chunks, `u32 length | bytes`, ended by a zero length.
const (
	rpcVersion   byte = 2
	maxPayload        = 16 << 20
	maxChunkWire      = storage.BlobChunkSize
)

// method numbers are never reused.
type method byte

const (
	methodApply    method = 1
	methodBlobPut  method = 2
	methodBlobGet  method = 3
	methodStatus   method = 4
	methodAddVoter method = 5
	// 6 was an unchecked removal (no tombstone, no quorum check), retired
	// for methodRemoveNode: a node that still sends it is answered
	// "unknown method".
	methodTransfer method = 7
	methodJoin     method = 8
	// methodRemoveNode is a checked removal (remove.go).
	methodRemoveNode method = 20
)

func (m method) String() string {
	switch m {
	case methodApply:
		return "apply"
	case methodBlobPut:
		return "blob.put"
	case methodBlobGet:
		return "blob.get"
	case methodStatus:
		return "status"
	case methodAddVoter:
		return "addvoter"
	case methodTransfer:
		return "transfer"
	case methodJoin:
		return "join"
	case methodRemoveNode:
		return "remove.node"
	}
	return fmt.Sprintf("method(%d)", byte(m))
}

// Status codes of a response; numbers are never reused.
const (
	statusOK            byte = 0
	codeNotLeader       byte = 1 // this node does not lead: nothing was done
	codeUnknown         byte = 2 // the command may have been committed
	codeNotFound        byte = 3
	codeRefused         byte = 4
	codeInternal        byte = 5
	codeUnknownNode     byte = 6
	codeNoSpace         byte = 7 // below the free-space floor: nothing stored
	codeVersion         byte = 8 // the request's version is not spoken here
	codeCorrupt         byte = 9 // blob bytes that do not match their hash
	codeUnknownMethod   byte = 10
	codeWouldLoseQuorum byte = 20 // a removal refused: ErrWouldLoseQuorum
)

// rpcRequest is one request as read by the server.
type rpcRequest struct {
	method  method
	timeout time.Duration // 0: the caller gave none
	payload []byte
}

// errFrame marks a malformed frame: the connection is closed.
var errFrame = errors.New("cluster rpc: malformed frame")

func writeRequest(w *bufio.Writer, m method, timeout time.Duration, payload []byte) error {
	var h [10]byte
	h[0], h[1] = rpcVersion, byte(m)
	ms := timeout.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	if ms > 1<<32-1 {
		ms = 1<<32 - 1
	}
	binary.BigEndian.PutUint32(h[2:], uint32(ms))
	binary.BigEndian.PutUint32(h[6:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// maxJoinPayload bounds a join request, read before the peer is
// authenticated.
const maxJoinPayload = 64 << 10

// readRequest reads one request. A request of another version is
// errVersion (the caller answers codeVersion and closes).
func readRequest(r *bufio.Reader) (*rpcRequest, error) {
	return readRequestLimit(r, maxPayload)
}

// readRequestLimit is readRequest for a payload of at most limit bytes.
func readRequestLimit(r *bufio.Reader, limit uint32) (*rpcRequest, error) {
	var h [10]byte
	if _, err := io.ReadFull(r, h[:1]); err != nil {
		return nil, err
	}
	if h[0] != rpcVersion {
		return nil, fmt.Errorf("%w: version %d (this node speaks %d)", errVersion, h[0], rpcVersion)
	}
	if _, err := io.ReadFull(r, h[1:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[6:])
	if n > limit {
		return nil, fmt.Errorf("%w: payload of %d bytes", errFrame, n)
	}
	req := &rpcRequest{method: method(h[1]), timeout: time.Duration(binary.BigEndian.Uint32(h[2:])) * time.Millisecond}
	req.payload = make([]byte, n)
	if _, err := io.ReadFull(r, req.payload); err != nil {
		return nil, err
	}
	return req, nil
}

var errVersion = errors.New("cluster rpc: unsupported protocol version")

func writeResponse(w *bufio.Writer, status byte, payload []byte) error {
	var h [6]byte
	h[0], h[1] = rpcVersion, status
	binary.BigEndian.PutUint32(h[2:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readResponse reads one response: the payload on success, else a
// *rpcError.
func readResponse(r *bufio.Reader) ([]byte, error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0] != rpcVersion {
		return nil, fmt.Errorf("%w: peer answered with version %d (this node speaks %d)", errVersion, h[0], rpcVersion)
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n > maxPayload {
		return nil, fmt.Errorf("%w: payload of %d bytes", errFrame, n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	if h[1] != statusOK {
		return nil, &rpcError{Code: h[1], Msg: string(payload)}
	}
	return payload, nil
}

// writeChunk writes one chunk of a blob stream; an empty p ends it.
func writeChunk(w *bufio.Writer, p []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// copyChunks sends what r holds as a blob stream (ended), in chunks of at
// most len(buf), and returns the number of bytes sent.
func copyChunks(w *bufio.Writer, r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := writeChunk(w, buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return total, writeChunk(w, nil)
		}
		if err != nil {
			return total, errSource{err}
		}
	}
}

// errSource is a failure to read the local source of a blob stream (not
// the connection's fault).
type errSource struct{ err error }

func (e errSource) Error() string { return "read blob source: " + e.err.Error() }
func (e errSource) Unwrap() error { return e.err }

// readChunks copies a blob stream from r to w, in chunks of at most
// maxChunkWire bytes, with at most limit bytes in all (limit < 0: no
// limit). buf must hold maxChunkWire bytes. With a nil w the bytes are
// read and dropped. A failure of w does not stop the reading: the stream
// is drained so the connection stays usable, and the first error of w is
// returned as werr.
func readChunks(r *bufio.Reader, w io.Writer, limit int64, buf []byte) (n int64, werr, err error) {
	var h [4]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return n, werr, err
		}
		k := binary.BigEndian.Uint32(h[:])
		if k == 0 {
			return n, werr, nil
		}
		if k > maxChunkWire || limit >= 0 && n+int64(k) > limit {
			return n, werr, fmt.Errorf("%w: chunk of %d bytes after %d", errFrame, k, n)
		}
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return n, werr, err
		}
		n += int64(k)
		if w != nil && werr == nil {
			if _, err := w.Write(buf[:k]); err != nil {
				werr = err
			}
		}
	}
}

// chunkBufs are the buffers blob streams are read and written through.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, maxChunkWire); return &b }}

// rpcError is an error answered by the remote node. It matches the
// sentinel its code stands for with errors.Is.
type rpcError struct {
	Code byte
	Msg  string
}

func (e *rpcError) Error() string { return "remote: " + e.Msg }

func (e *rpcError) Unwrap() error {
	switch e.Code {
	case codeNotLeader:
		return raft.ErrNotLeader
	case codeNotFound:
		return storage.ErrNotFound
	case codeUnknownNode:
		return ErrUnknownNode
	case codeCorrupt:
		return storage.ErrCorrupt
	case codeVersion:
		return errVersion
	case codeNoSpace:
		return storage.ErrInsufficientStorage
	case codeWouldLoseQuorum:
		return ErrWouldLoseQuorum
	}
	return nil
}

// codeOf is the status code that answers err.
func codeOf(err error) byte {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return codeNotLeader
	case errors.Is(err, storage.ErrNotFound):
		return codeNotFound
	case errors.Is(err, ErrUnknownNode):
		return codeUnknownNode
	case errors.Is(err, storage.ErrCorrupt):
		return codeCorrupt
	case errors.Is(err, errVersion):
		return codeVersion
	case errors.Is(err, storage.ErrInsufficientStorage):
		return codeNoSpace
	case errors.Is(err, ErrWouldLoseQuorum):
		return codeWouldLoseQuorum
	}
	return codeInternal
}

// errSent marks a transport failure after the request may have reached the
// peer: the caller cannot know whether it was acted on.
var errSent = errors.New("cluster: connection lost after the request was sent")

type rpcConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
	// watch receives the result of a Peek that runs while the connection
	// sits idle in the pool: a peer that closed it (it died or restarted)
	// shows up as EOF before the connection is reused, so a request is
	// never written to a dead connection and misread as "maybe sent".
	watch chan error
}

// watchIdle starts the idle watcher.
func (rc *rpcConn) watchIdle() {
	rc.watch = make(chan error, 1)
	go func() {
		_, err := rc.r.Peek(1)
		rc.watch <- err
	}()
}

// reclaim stops the idle watcher and reports whether the connection is
// still usable: the Peek must have ended by our deadline, not by EOF or by
// unexpected bytes.
func (rc *rpcConn) reclaim() bool {
	_ = rc.c.SetReadDeadline(time.Unix(1, 0))
	err := <-rc.watch
	_ = rc.c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rpcClient keeps a small pool of idle connections per peer address.
type rpcClient struct {
	dialer *dialer

	mu struct {
		sync.Mutex
		idle   map[string][]*rpcConn
		closed bool
	}
}

const maxIdlePerPeer = 128

// rpcBufSize is the read and write buffer of each RPC connection, at either
// end: one TLS record. Larger payloads (blob chunks) bypass the buffers,
// and a busy node keeps dozens of these connections open per peer.
const rpcBufSize = 16 << 10

func newRPCClient(d *dialer) *rpcClient {
	c := &rpcClient{dialer: d}
	c.mu.idle = make(map[string][]*rpcConn)
	return c
}

func (c *rpcClient) get(addr string, timeout time.Duration) (*rpcConn, error) {
	for {
		c.mu.Lock()
		l := c.mu.idle[addr]
		if len(l) == 0 {
			c.mu.Unlock()
			break
		}
		rc := l[len(l)-1]
		c.mu.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		if rc.reclaim() {
			return rc, nil
		}
		_ = rc.c.Close()
	}
	nc, err := c.dialer.dial(addr, tagRPC, timeout)
	if err != nil {
		return nil, err
	}
	return &rpcConn{c: nc, r: bufio.NewReaderSize(nc, rpcBufSize), w: bufio.NewWriterSize(nc, rpcBufSize)}, nil
}

func (c *rpcClient) put(addr string, rc *rpcConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed || len(c.mu.idle[addr]) >= maxIdlePerPeer {
		_ = rc.c.Close()
		return
	}
	rc.watchIdle()
	c.mu.idle[addr] = append(c.mu.idle[addr], rc)
}

// exchange is one request on a pooled connection: send writes the
// request (and any stream after it), recv reads the response (and any
// stream after it). A failure to connect is returned as is; a transport
// failure after the request may have been written wraps errSent; a remote
// error is an *rpcError. The connection goes back to the pool only after
// a complete exchange.
func (c *rpcClient) exchange(addr string, timeout time.Duration, send func(w *bufio.Writer) error, recv func(r *bufio.Reader) error) error {
	return c.exchangeAbort(addr, timeout, nil, send, recv)
}

// exchangeAbort is exchange that also ends, with errAborted (wrapping
// errSent once the request may have been written), when abort is closed.
func (c *rpcClient) exchangeAbort(addr string, timeout time.Duration, abort <-chan struct{}, send func(w *bufio.Writer) error, recv func(r *bufio.Reader) error) error {
	if timeout <= 0 {
		return fmt.Errorf("cluster rpc to %s: %w", addr, errDeadline)
	}
	// A peer that is cut off does not refuse a connection, it drops the
	// packets: the dial would wait for all of the caller's time.
	rc, err := c.get(addr, min(timeout, rpcDialTimeout))
	if err != nil {
		return err
	}
	_ = rc.c.SetDeadline(time.Now().Add(timeout))
	var aborted atomic.Bool
	var stopWatch func()
	if abort != nil {
		done := make(chan struct{})
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			select {
			case <-abort:
				aborted.Store(true)
				_ = rc.c.SetDeadline(time.Unix(1, 0))
			case <-done:
			}
		}()
		stopWatch = func() { close(done); <-watching }
	}
	reuse, err := exchangeOn(rc, send, recv)
	if stopWatch != nil {
		stopWatch()
		if aborted.Load() {
			// The deadline was moved: the connection is not reusable.
			_ = rc.c.Close()
			var re *rpcError
			if err == nil || errors.As(err, &re) {
				return err // the peer answered before the abort: its answer stands
			}
			if errors.Is(err, errSent) {
				return fmt.Errorf("%w: %w", errSent, errAborted)
			}
			return errAborted
		}
	}
	if reuse {
		_ = rc.c.SetDeadline(time.Time{})
		c.put(addr, rc)
	} else {
		_ = rc.c.Close()
	}
	return err
}

// rpcDialTimeout bounds connecting to a peer: within a cluster's network a
// connection is made in milliseconds or not at all.
const rpcDialTimeout = 2 * time.Second

// errAborted: the caller gave up on the exchange (its abort channel closed).
var errAborted = errors.New("cluster rpc: abandoned by the caller")

// exchangeOn runs one exchange on rc and says whether rc can be reused.
func exchangeOn(rc *rpcConn, send func(w *bufio.Writer) error, recv func(r *bufio.Reader) error) (reuse bool, err error) {
	err = send(rc.w)
	if err == nil {
		err = rc.w.Flush()
	}
	if err != nil {
		var se errSource
		if errors.As(err, &se) {
			// The request is incomplete, so the peer does nothing with it.
			return false, err
		}
		return false, fmt.Errorf("%w: %w", errSent, err)
	}
	if err := recv(rc.r); err != nil {
		var re *rpcError
		if errors.As(err, &re) {
			return true, err
		}
		return false, fmt.Errorf("%w: %w", errSent, err)
	}
	return true, nil
}

var errDeadline = errors.New("deadline already passed")

// call sends one request with payload and returns the response payload.
func (c *rpcClient) call(addr string, m method, payload []byte, timeout time.Duration) ([]byte, error) {
	return c.callAbort(addr, m, payload, timeout, nil)
}

// callAbort is call that gives up when abort is closed (see exchangeAbort).
func (c *rpcClient) callAbort(addr string, m method, payload []byte, timeout time.Duration, abort <-chan struct{}) ([]byte, error) {
	var out []byte
	err := c.exchangeAbort(addr, timeout, abort,
		func(w *bufio.Writer) error { return writeRequest(w, m, timeout, payload) },
		func(r *bufio.Reader) error {
			var err error
			out, err = readResponse(r)
			return err
		})
	return out, err
}

func (c *rpcClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.closed = true
	for _, l := range c.mu.idle {
		for _, rc := range l {
			_ = rc.c.Close()
		}
	}
	c.mu.idle = nil
}
