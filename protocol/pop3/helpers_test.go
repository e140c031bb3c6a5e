package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// Compile-time check: the cluster node is a Cluster.
var _ Cluster = (*cluster.Node)(nil)

const testPassword = "secret pass 123"

// testTLS returns a server TLS config with a self-signed ECDSA certificate
// for localhost and 127.0.0.1.
func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, _ := clustertest.SelfSignedTLS(t)
	return cfg
}

// env is a POP3 server on one node of a real cluster.
type env struct {
	t    testing.TB
	node *cluster.Node
	srv  *Server
	addr string // plain listener
	tls  string // implicit TLS listener
}

// startServer serves POP3 for node on two loopback listeners (plain and
// implicit TLS) until the test ends.
func startServer(t testing.TB, node *cluster.Node, tweak func(*Config)) *env {
	t.Helper()
	return startServerWrapped(t, node, tweak, nil)
}

// startServerWrapped is startServer with each listener wrapped by wrap
// (nil: not wrapped) before Serve gets it.
func startServerWrapped(t testing.TB, node *cluster.Node, tweak func(*Config), wrap func(ln net.Listener, implicitTLS bool) net.Listener) *env {
	t.Helper()
	cfg := Config{
		Cluster:           node,
		Store:             node.Store(),
		Auth:              auth.New(auth.Config{Store: node.Store(), BaseDelay: -1}),
		TLS:               testTLS(t),
		AllowInsecureAuth: true,
		Logger:            clustertest.Logger(),
		NodeName:          node.Name(),
		Hostname:          "pop.example.test",
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, node: node, srv: srv}
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr, e.tls = ln1.Addr().String(), ln2.Addr().String()
	var l1, l2 net.Listener = ln1, ln2
	if wrap != nil {
		l1, l2 = wrap(ln1, false), wrap(ln2, true)
	}
	done := make(chan error, 2)
	go func() { done <- srv.Serve(l1) }()
	go func() { done <- srv.Serve(l2, WithImplicitTLS()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for i := 0; i < 2; i++ {
			if err := <-done; !errors.Is(err, ErrServerClosed) {
				t.Errorf("serve returned %v", err)
			}
		}
	})
	return e
}

// addUser creates an account with testPassword and delivers msgs to its
// INBOX through node.
func addUser(t testing.TB, node *cluster.Node, addr string, msgs ...string) {
	t.Helper()
	clustertest.AddUser(t, node, addr, testPassword)
	for _, m := range msgs {
		deliver(t, node, addr, m)
	}
}

func deliver(t testing.TB, node *cluster.Node, addr, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h, err := node.StoreBlob(ctx, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Propose(t, node, storage.CmdDeliver, storage.Deliver{
		Blob: h, Size: int64(len(msg)),
		Targets: []storage.DeliverTarget{{Account: addr}},
	})
}

// inbox returns the messages in addr's INBOX on st, and its UIDVALIDITY.
func inbox(t testing.TB, st *storage.Store, addr string) ([]storage.Message, uint32) {
	t.Helper()
	mb, err := st.Mailbox(addr, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Messages(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	return msgs, mb.UIDValidity
}

// client is a line-oriented test client.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one reply line without CRLF, checking it ends in CRLF.
func (c *client) line() (string, error) {
	s, err := c.r.ReadString('\n')
	if err != nil {
		return s, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return s, fmt.Errorf("line %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

// expect reads a line and checks it: exact, or a prefix when want ends
// in "*".
func (c *client) expect(want string) string {
	c.t.Helper()
	got, err := c.line()
	if err != nil {
		c.t.Fatalf("want %q: read: %v (got %q)", want, err, got)
	}
	if !match(got, want) {
		c.t.Fatalf("got %q, want %q", got, want)
	}
	return got
}

func (c *client) expectEOF() {
	c.t.Helper()
	got, err := c.line()
	if err == nil {
		c.t.Fatalf("got %q, want the connection closed", got)
	}
}

func match(got, want string) bool {
	if p, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(got, p)
	}
	return got == want
}

// run plays a transcript: "C: line" sends line+CRLF, "R: text" sends text
// after expanding Go escapes (\r, \n, \x01), "S: line" expects a reply line
// (a trailing * matches a prefix), "X:" expects the connection closed.
// vars are substituted as {NAME} everywhere.
func (c *client) run(script string, vars map[string]string) {
	c.t.Helper()
	for _, l := range strings.Split(script, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for k, v := range vars {
			l = strings.ReplaceAll(l, "{"+k+"}", v)
		}
		kind, arg, _ := strings.Cut(l, ":")
		arg = strings.TrimPrefix(arg, " ")
		switch kind {
		case "C":
			c.send(arg + "\r\n")
		case "R":
			raw, err := strconv.Unquote(`"` + arg + `"`)
			if err != nil {
				c.t.Fatalf("bad raw line %q: %v", arg, err)
			}
			c.send(raw)
		case "S":
			c.expect(arg)
		case "X":
			c.expectEOF()
		default:
			c.t.Fatalf("bad script line %q", l)
		}
	}
}

// waitNoSessions waits until the server has no session left.
func (e *env) waitNoSessions() {
	e.t.Helper()
	clustertest.WaitFor(e.t, 10*time.Second, "sessions end", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return len(e.srv.mu.sessions) == 0
	})
}

var netDialer = net.Dialer{Timeout: 5 * time.Second}

func newReader(c net.Conn) *bufio.Reader {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return bufio.NewReader(c)
}

func dialErr(addr string) (net.Conn, error) {
	c, err := netDialer.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return c, err
}
