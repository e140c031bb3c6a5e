package cluster

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Wire format of an internal RPC (requests and responses alike):
//
//	uint32 big-endian header length | JSON header | uint64 big-endian body length | body
//
// The body carries blob bytes; everything else is in the header.
const (
	maxHeaderLen = 1 << 20
	maxBodyLen   = 256 << 20
)

// rpcHeader is the union of all request and response headers.
type rpcHeader struct {
	Method string `json:"m,omitempty"`

	// Errors: Code is one of the errCode* values; Error is for the log.
	Code  string `json:"code,omitempty"`
	Error string `json:"err,omitempty"`

	Command []byte          `json:"cmd,omitempty"`    // apply
	Index   uint64          `json:"index,omitempty"`  // apply response
	Result  json.RawMessage `json:"result,omitempty"` // apply response (storage.Result)
	Hash    string          `json:"hash,omitempty"`   // blob.put, blob.get
	ID      string          `json:"id,omitempty"`     // addvoter, remove
	Addr    string          `json:"addr,omitempty"`   // addvoter
	Status  *NodeStatus     `json:"status,omitempty"` // status response
	Join    *joinRequest    `json:"join,omitempty"`
	Joined  *joinResponse   `json:"joined,omitempty"`
}

const (
	methodApply        = "apply"
	methodBlobPut      = "blob.put"
	methodBlobGet      = "blob.get"
	methodStatus       = "status"
	methodAddVoter     = "addvoter"
	methodRemove       = "remove"
	methodTransfer     = "transfer"
	methodJoin         = "join"
	errCodeNotLead     = "not_leader"
	errCodeUnknown     = "unknown_outcome"
	errCodeNotFound    = "not_found"
	errCodeRefused     = "refused"
	errCodeInternal    = "internal"
	errCodeUnknownNode = "unknown_node"
)

func writeFrame(w *bufio.Writer, h *rpcHeader, body []byte) error {
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.BigEndian.PutUint32(n[:4], uint32(len(hb)))
	if _, err := w.Write(n[:4]); err != nil {
		return err
	}
	if _, err := w.Write(hb); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(n[:], uint64(len(body)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader) (*rpcHeader, []byte, error) {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:4]); err != nil {
		return nil, nil, err
	}
	hl := binary.BigEndian.Uint32(n[:4])
	if hl == 0 || hl > maxHeaderLen {
		return nil, nil, fmt.Errorf("rpc: header length %d out of range", hl)
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, err
	}
	var h rpcHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, nil, fmt.Errorf("rpc: bad header: %w", err)
	}
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	bl := binary.BigEndian.Uint64(n[:])
	if bl > maxBodyLen {
		return nil, nil, fmt.Errorf("rpc: body length %d out of range", bl)
	}
	var body []byte
	if bl > 0 {
		body = make([]byte, bl)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, nil, err
		}
	}
	return &h, body, nil
}

// rpcError is an error answered by the remote node.
type rpcError struct {
	Code string
	Msg  string
}

func (e *rpcError) Error() string { return fmt.Sprintf("remote: %s: %s", e.Code, e.Msg) }

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
// end: one TLS record. Larger bodies (blobs) bypass the buffers, and a busy
// node keeps dozens of these connections open per peer.
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

// call sends one request and reads its response. A failure to connect is
// returned as is; a failure after the request was written wraps errSent.
// A remote error is returned as *rpcError.
func (c *rpcClient) call(addr string, req *rpcHeader, body []byte, timeout time.Duration) (*rpcHeader, []byte, error) {
	rc, err := c.get(addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = rc.c.SetDeadline(time.Now().Add(timeout))
	if err := writeFrame(rc.w, req, body); err != nil {
		_ = rc.c.Close()
		return nil, nil, fmt.Errorf("%w: %v", errSent, err)
	}
	resp, rbody, err := readFrame(rc.r)
	if err != nil {
		_ = rc.c.Close()
		return nil, nil, fmt.Errorf("%w: %v", errSent, err)
	}
	_ = rc.c.SetDeadline(time.Time{})
	c.put(addr, rc)
	if resp.Code != "" {
		return resp, rbody, &rpcError{Code: resp.Code, Msg: resp.Error}
	}
	return resp, rbody, nil
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
