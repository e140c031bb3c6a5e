package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

const testHost = "mx.example.test"

// testTLS returns a server config with a fresh self-signed ECDSA
// certificate for localhost and 127.0.0.1.
func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, _ := clustertest.SelfSignedTLS(t)
	return cfg
}

// env is a running 1-node cluster with accounts, shared by subtests.
type env struct {
	c    *clustertest.Cluster
	node *cluster.Node
	st   *storage.Store
	tls  *tls.Config
	auth *auth.Checker
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	e := &env{c: c, node: n.Node, st: n.Store, tls: testTLS(t)}
	e.auth = auth.New(auth.Config{Store: n.Store, BaseDelay: -1, MaxFailures: 1000})
	return e
}

func (e *env) propose(t *testing.T, typ storage.CommandType, payload any) {
	t.Helper()
	clustertest.Propose(t, e.node, typ, payload)
}

// server starts a Server on a loopback listener and returns its address.
func (e *env) server(t *testing.T, mode Mode, tweak func(*Config)) (*Server, string) {
	t.Helper()
	cfg := Config{
		Mode:     mode,
		Hostname: testHost,
		NodeName: "n1",
		TLS:      e.tls,
		Accept:   testPipeline(t, e.node),
		Store:    e.st,
		Auth:     e.auth,
		Logger:   clustertest.Logger(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return startServer(t, cfg, false)
}

func startServer(t *testing.T, cfg Config, implicitTLS bool) (*Server, string) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if implicitTLS {
			done <- s.ServeTLS(ln)
		} else {
			done <- s.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// client speaks SMTP line by line for transcripts.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c.expect("220 ")
	return c
}

func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c.expect("220 ")
	return c
}

// reply reads one (possibly multi-line) reply; lines joined by "\n".
func (c *client) reply() (string, error) {
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// expect reads a reply and checks its last line starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply (want %q): %v (got %q)", prefix, err, r)
	}
	last := r[strings.LastIndexByte(r, '\n')+1:]
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("reply %q, want prefix %q", r, prefix)
	}
	return r
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// cmd sends line and expects a reply starting with prefix.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(prefix)
}

func (c *client) startTLS() {
	c.t.Helper()
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// expectClosed checks the server closes the connection without a reply.
func (c *client) expectClosed() {
	c.t.Helper()
	r, err := c.reply()
	if r != "" || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
		c.t.Fatalf("want the connection closed without a reply, got %q, %v", r, err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// queuedID returns the queue ID from a "250 2.0.0 Ok: queued as ID" reply.
func queuedID(t *testing.T, r string) string {
	t.Helper()
	const p = "250 2.0.0 Ok: queued as "
	if !strings.HasPrefix(r, p) {
		t.Fatalf("reply %q, want %q...", r, p)
	}
	return strings.TrimPrefix(r, p)
}

// inbox returns the messages in account's INBOX on st.
func inbox(t testing.TB, st *storage.Store, account string) []storage.Message {
	t.Helper()
	mb, err := st.Mailbox(account, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Messages(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// addUser creates an account (and its domain when missing).
func (e *env) addUser(t *testing.T, addr, password string) {
	t.Helper()
	clustertest.AddUser(t, e.node, addr, password)
}

// waitNoConns waits until the server has no open connections, i.e. every
// session has ended.
func waitNoConns(t *testing.T, s *Server) {
	t.Helper()
	clustertest.WaitFor(t, 10*time.Second, "sessions end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.mu.conns) == 0
	})
}

// faultyCluster is a real node whose writes can be made to fail: the tiny
// fake for failure paths only.
type faultyCluster struct {
	*cluster.Node
	blobErr, proposeErr error
	proposed            atomic.Int32
}

func (f *faultyCluster) StoreBlobFrom(ctx context.Context, src storage.BlobSource) error {
	if f.blobErr != nil {
		return f.blobErr
	}
	return f.Node.StoreBlobFrom(ctx, src)
}

// testPipeline is an accept pipeline on c, spooling under t's temporary
// directory.
func testPipeline(t testing.TB, c accept.Cluster) *accept.Pipeline {
	t.Helper()
	p, err := accept.New(accept.Config{Cluster: c, SpoolDir: t.TempDir(), Logger: clustertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *faultyCluster) Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	f.proposed.Add(1)
	if f.proposeErr != nil {
		return 0, storage.Result{}, f.proposeErr
	}
	return f.Node.Propose(ctx, cmd)
}

func (f *faultyCluster) ProposeNoWait(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	f.proposed.Add(1)
	if f.proposeErr != nil {
		return 0, storage.Result{}, f.proposeErr
	}
	return f.Node.ProposeNoWait(ctx, cmd)
}

// writeErr imitates cluster's classified write errors.
type writeErr struct {
	msg     string
	unknown bool
}

func (e writeErr) Error() string        { return e.msg }
func (e writeErr) OutcomeUnknown() bool { return e.unknown }
func (e writeErr) Temporary() bool      { return !e.unknown }

// dialRaw connects without reading the greeting.
func dialRaw(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{t: t, conn: nc, r: bufio.NewReader(nc)}
}

func netListen(t *testing.T) (net.Listener, error) {
	t.Helper()
	return net.Listen("tcp", "127.0.0.1:0")
}
