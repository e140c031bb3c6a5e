package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Every connection to the cluster port is TLS. After the handshake the
// client writes one tag byte saying what the connection carries.
const (
	tagRaft byte = 'R' // hashicorp/raft's NetworkTransport stream (mutual TLS)
	tagRPC  byte = 'C' // internal RPCs: forwarding, blobs, status (mutual TLS)
	tagJoin byte = 'J' // join handshake: the only tag allowed without a client certificate
)

// handshakeTimeout bounds the TLS handshake and the tag byte, so a client
// that connects and says nothing (or plain TCP) is dropped.
const handshakeTimeout = 10 * time.Second

// muxListener owns the cluster port. It terminates TLS, reads the tag byte
// and hands the connection to the raft stream layer, the RPC server or the
// join handler.
type muxListener struct {
	ln      net.Listener
	tlsConf *tls.Config
	log     *slog.Logger

	raftCh chan net.Conn
	rpc    func(net.Conn)
	join   func(net.Conn)
	// ready is closed once the node behind rpc and join is up; until then
	// those connections wait (Raft streams do not: raft takes them when
	// it starts).
	ready <-chan struct{}
	// conns, if set, tracks connections with a node certificate so a
	// revocation can end them.
	conns *connSet

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup

	mu struct {
		sync.Mutex
		conns map[net.Conn]struct{} // RPC and join connections being served
	}
}

func newMuxListener(ln net.Listener, tlsConf *tls.Config, log *slog.Logger) *muxListener {
	m := &muxListener{
		ln:      ln,
		tlsConf: tlsConf,
		log:     log,
		raftCh:  make(chan net.Conn, 16),
		closed:  make(chan struct{}),
	}
	m.mu.conns = make(map[net.Conn]struct{})
	return m
}

// track registers a connection served by this listener so close can end
// it; it reports false (and closes c) when the listener is closing.
func (m *muxListener) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		_ = c.Close()
		return false
	default:
	}
	m.mu.conns[c] = struct{}{}
	return true
}

func (m *muxListener) untrack(c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mu.conns, c)
}

// serve accepts connections until close. rpc and join must be set first.
func (m *muxListener) serve() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := m.ln.Accept()
			if err != nil {
				select {
				case <-m.closed:
					return
				default:
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				m.log.Error("cluster port accept failed", "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.route(c)
			}()
		}
	}()
}

func (m *muxListener) route(raw net.Conn) {
	peer := raw.RemoteAddr().String()
	tc := tls.Server(raw, m.tlsConf)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		m.log.Warn("cluster port: TLS handshake refused", "peer", peer, "err", err)
		_ = raw.Close()
		return
	}
	var tag [1]byte
	if _, err := io.ReadFull(tc, tag[:]); err != nil {
		m.log.Warn("cluster port: no connection tag", "peer", peer, "err", err)
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	authed := len(tc.ConnectionState().PeerCertificates) > 0
	if tag[0] == tagRPC || tag[0] == tagJoin {
		select {
		case <-m.ready:
		case <-m.closed:
			_ = tc.Close()
			return
		}
	}
	var c net.Conn = tc
	if authed {
		c = m.conns.track(tc, peerSerial(tc))
	}
	switch {
	case tag[0] == tagJoin:
		if m.track(c) {
			defer m.untrack(c)
			m.join(c)
		}
	case tag[0] == tagRaft && authed:
		select {
		case m.raftCh <- c:
		case <-m.closed:
			_ = c.Close()
		}
	case tag[0] == tagRPC && authed:
		if m.track(c) {
			defer m.untrack(c)
			m.rpc(c)
		}
	case !authed && (tag[0] == tagRaft || tag[0] == tagRPC):
		m.log.Warn("cluster port: refused connection without a node certificate", "peer", peer)
		_ = tc.Close()
	default:
		m.log.Warn("cluster port: unknown connection tag", "peer", peer, "tag", fmt.Sprintf("%#x", tag[0]))
		_ = tc.Close()
	}
}

func (m *muxListener) close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.closed)
		for c := range m.mu.conns {
			_ = c.Close()
		}
		m.mu.Unlock()
		_ = m.ln.Close()
	})
}

// wait blocks until every connection handler has returned.
func (m *muxListener) wait() { m.wg.Wait() }

// raftStream is the raft.StreamLayer over the cluster port.
type raftStream struct {
	mux    *muxListener
	dialer *dialer
	// advertise is the address other nodes dial: raft takes it as this
	// node's own address (it must not be a wildcard bind address such as
	// 0.0.0.0, or followers would forward to themselves).
	advertise net.Addr
}

var _ raft.StreamLayer = (*raftStream)(nil)

func (s *raftStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.mux.raftCh:
		return c, nil
	case <-s.mux.closed:
		return nil, errors.New("cluster: transport closed")
	}
}

func (s *raftStream) Close() error   { return nil } // the mux owns the socket
func (s *raftStream) Addr() net.Addr { return s.advertise }

// Dial opens a mutual-TLS raft stream to a peer.
func (s *raftStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dialer.dial(string(addr), tagRaft, timeout)
}

// dialer opens tagged TLS connections to other nodes.
type dialer struct {
	tlsConf func() *tls.Config
	conns   *connSet // nil: connections are not tracked (a joiner's)
}

func (d *dialer) dial(addr string, tag byte, timeout time.Duration) (net.Conn, error) {
	nd := &net.Dialer{Timeout: timeout}
	raw, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, d.tlsConf())
	_ = tc.SetDeadline(time.Now().Add(timeout + time.Second))
	if err := tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	if _, err := tc.Write([]byte{tag}); err != nil {
		_ = tc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return d.conns.track(tc, peerSerial(tc)), nil
}
