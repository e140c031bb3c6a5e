package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
	"github.com/raftmail/raftmail/storage"
)

// remoteMX is a scripted SMTP server on loopback standing in for a remote
// MX. It offers STARTTLS with a self-signed certificate.
type remoteMX struct {
	addr string
	port int
	srv  *gosmtp.Server

	// rcpt and data, if set, decide the reply to RCPT and to the end of
	// DATA; tx counts MAIL commands from 1. A nil error accepts.
	rcpt func(tx int, to string) error
	data func(tx int) error

	mu struct {
		sync.Mutex
		conns int
		tx    int
		helos []string
		tls   []bool // per transaction
		msgs  []received
	}
}

type received struct {
	helo  string
	from  string
	rcpts []string
	data  []byte
	tls   bool
}

func selfSignedTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, _ := clustertest.SelfSignedTLS(t)
	return cfg
}

// startRemote starts a scripted MX; configure rcpt/data before mail comes.
func startRemote(t testing.TB, rcpt func(int, string) error, data func(int) error) *remoteMX {
	t.Helper()
	r := &remoteMX{rcpt: rcpt, data: data}
	s := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &remoteSession{r: r, c: c}, nil
	}))
	s.Domain = "mx.remote.test"
	s.TLSConfig = selfSignedTLS(t)
	s.ReadTimeout = 30 * time.Second
	s.WriteTimeout = 30 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.port = ln.Addr().(*net.TCPAddr).Port
	r.srv = s
	go func() { _ = s.Serve(&countingListener{Listener: ln, r: r}) }()
	t.Cleanup(func() { _ = s.Close() })
	return r
}

type countingListener struct {
	net.Listener
	r *remoteMX
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.r.mu.Lock()
		l.r.mu.conns++
		l.r.mu.Unlock()
	}
	return c, err
}

func (r *remoteMX) snapshot() (conns int, msgs []received, helos []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.conns, append([]received(nil), r.mu.msgs...), append([]string(nil), r.mu.helos...)
}

type remoteSession struct {
	r     *remoteMX
	c     *gosmtp.Conn
	tx    int
	from  string
	rcpts []string
}

func (s *remoteSession) Mail(from string, _ *gosmtp.MailOptions) error {
	_, isTLS := s.c.TLSConnectionState()
	s.r.mu.Lock()
	s.r.mu.tx++
	s.tx = s.r.mu.tx
	s.r.mu.helos = append(s.r.mu.helos, s.c.Hostname())
	s.r.mu.tls = append(s.r.mu.tls, isTLS)
	s.r.mu.Unlock()
	s.from, s.rcpts = from, nil
	return nil
}

func (s *remoteSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.r.rcpt != nil {
		if err := s.r.rcpt(s.tx, to); err != nil {
			return err
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *remoteSession) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	if s.r.data != nil {
		if err := s.r.data(s.tx); err != nil {
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.r.mu.Lock()
	s.r.mu.msgs = append(s.r.mu.msgs, received{helo: s.c.Hostname(), from: s.from, rcpts: s.rcpts, data: b, tls: isTLS})
	s.r.mu.Unlock()
	return nil
}

func (s *remoteSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *remoteSession) Logout() error { return nil }

func smtpErr(code int, enh gosmtp.EnhancedCode, msg string) error {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// remoteDNS serves remote.test's MX (mx.remote.test -> 127.0.0.1).
func remoteDNS(t testing.TB) *dnstest.Server {
	d := dnstest.Start(t)
	d.Add(t,
		"remote.test. 300 IN MX 10 mx.remote.test.",
		"mx.remote.test. 300 IN A 127.0.0.1",
	)
	return d
}

// startService runs a delivery service on node n until the test ends.
func startService(t testing.TB, n *cluster.Node, dnsAddr string, port int, tweak func(*Config)) *Service {
	t.Helper()
	ap, err := accept.New(accept.Config{Cluster: n, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Hostname:       n.Name() + ".mail.test",
		Cluster:        n,
		Accept:         ap,
		Store:          n.Store(),
		Resolver:       mailauth.NewResolver(dnsAddr),
		Port:           port,
		RetrySchedule:  []time.Duration{50 * time.Millisecond},
		PollInterval:   50 * time.Millisecond,
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 20 * time.Second,
		Logger:         clustertest.Logger().With("component", "delivery"),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// enqueue stores body and queues it for rcpts from from, as submission
// does, and returns the queue ID.
func enqueue(t testing.TB, n *cluster.Node, id, from string, rcpts []string, body string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := n.StoreBlob(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	q := &storage.QueueEntry{ID: id, Blob: h, Size: int64(len(body)), From: from}
	for _, r := range rcpts {
		q.Recipients = append(q.Recipients, storage.QueueRecipient{Address: r, Status: storage.QueuePending})
	}
	clustertest.Propose(t, n, storage.CmdDeliver, storage.Deliver{QueueID: id, Blob: h, Size: int64(len(body)), Remote: q})
	return id
}

func queueGone(st *storage.Store, id string) func() bool {
	return func() bool {
		_, err := st.QueueEntry(id)
		return errors.Is(err, storage.ErrNotFound)
	}
}

const testMessage = "From: <a@example.test>\r\nTo: <x@remote.test>\r\nSubject: outbound test\r\nMessage-ID: <m1@example.test>\r\n\r\nHello remote.\r\n.leading dot line\r\n"
