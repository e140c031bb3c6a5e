package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

const (
	testUser = "alice@example.test"
	testPass = "correct horse battery staple"
	// testAppendLimit keeps the TOOBIG test cheap.
	testAppendLimit = 1 << 20
)

// testTLS makes a self-signed ECDSA certificate for localhost and
// 127.0.0.1 and returns the server config, a client config trusting it,
// and the certificate in PEM (for Python).
func testTLS(t testing.TB) (server, client *tls.Config, certPEM []byte) {
	t.Helper()
	server, certPEM = clustertest.SelfSignedTLS(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("self-signed certificate not accepted by the pool")
	}
	return server, &tls.Config{RootCAs: pool, ServerName: "localhost"}, certPEM
}

// env is a real cluster with an IMAP server on every node.
type env struct {
	t         testing.TB
	c         *clustertest.Cluster
	srvs      []*Server
	plain     []string // STARTTLS listener per node
	implicit  []string // implicit-TLS listener per node
	clientTLS *tls.Config
	certPEM   []byte
}

type envOptions struct {
	nodes   int
	cluster func(i int, n *clustertest.Node) Cluster // nil: the node itself
	auth    auth.Config
	config  func(c *Config)                                      // adjusts each node's Config
	wrap    func(ln net.Listener, implicitTLS bool) net.Listener // wraps each listener
	// prepare, if not nil, runs once the cluster is formed and before the
	// servers start (to restart a node on a different store).
	prepare func(c *clustertest.Cluster)
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 1
	}
	c := clustertest.New(t, o.nodes, nil)
	clustertest.AddUser(t, c.Leader().Node, testUser, testPass)
	c.WaitConverged()
	if o.prepare != nil {
		o.prepare(c)
	}
	serverTLS, clientTLS, certPEM := testTLS(t)
	e := &env{t: t, c: c, clientTLS: clientTLS, certPEM: certPEM}
	for i, n := range c.Nodes {
		var cl Cluster = n.Node
		if o.cluster != nil {
			cl = o.cluster(i, n)
		}
		ac := o.auth
		ac.Store = n.Store
		if ac.BaseDelay == 0 {
			ac.BaseDelay = -1
		}
		ap, err := accept.New(accept.Config{Cluster: proposeVia{n.Node, cl}, SpoolDir: t.TempDir(), Logger: clustertest.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{
			Cluster:      cl,
			Accept:       ap,
			Store:        n.Store,
			Auth:         auth.New(ac),
			TLS:          serverTLS,
			Logger:       clustertest.Logger(),
			AppendLimit:  testAppendLimit,
			NodeName:     n.Name,
			WriteTimeout: 3 * time.Second,
		}
		if o.config != nil {
			o.config(&cfg)
		}
		srv, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		implicit, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.plain = append(e.plain, plain.Addr().String())
		e.implicit = append(e.implicit, implicit.Addr().String())
		if o.wrap != nil {
			plain, implicit = o.wrap(plain, false), o.wrap(implicit, true)
		}
		errc := make(chan error, 2)
		go func() { errc <- srv.Serve(plain) }()
		go func() { errc <- srv.ServeTLS(implicit) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			for range 2 {
				if err := <-errc; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
		})
		e.srvs = append(e.srvs, srv)
	}
	return e
}

// deliver stores raw and delivers it to the test user's mailbox through
// node i, as SMTP would.
func (e *env) deliver(i int, mailbox string, raw string, flags ...string) storage.Placed {
	e.t.Helper()
	n := e.c.Nodes[i].Node
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := n.StoreBlob(ctx, []byte(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	res := clustertest.Propose(e.t, n, storage.CmdDeliver, storage.Deliver{
		Blob: h, Size: int64(len(raw)),
		Targets: []storage.DeliverTarget{{Account: testUser, Mailbox: mailbox, Flags: flags}},
	})
	var dr storage.DeliverResult
	if err := res.Decode(&dr); err != nil {
		e.t.Fatal(err)
	}
	return dr.Placed[0]
}

// raw is a line-based IMAP client for transcripts.
type raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &raw{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting: %q", g)
	}
	return c
}

// line reads one line (without CRLF), failing the test after 10 s.
func (c *raw) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *raw) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a tagged command and returns every line up to and including
// the tagged reply (whose tag is replaced by "TAG").
func (c *raw) cmd(s string) []string {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	c.send(tag + " " + s)
	return c.until(tag)
}

func (c *raw) until(tag string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return append(out, "TAG "+l[len(tag)+1:])
		}
		out = append(out, l)
	}
}

// expect runs cmd and checks that its tagged reply starts with want
// ("!OK": with anything but OK).
func (c *raw) expect(cmd, want string) []string {
	c.t.Helper()
	lines := c.cmd(cmd)
	got := lines[len(lines)-1]
	if neg, ok := strings.CutPrefix(want, "!"); ok {
		if strings.HasPrefix(got, "TAG "+neg) {
			c.t.Fatalf("%s: got %q, want anything else", cmd, got)
		}
		return lines
	}
	if !strings.HasPrefix(got, "TAG "+want) {
		c.t.Fatalf("%s: got %q, want %q; all: %q", cmd, got, want, lines)
	}
	return lines
}

func (c *raw) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.expect("STARTTLS", "OK")
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *raw) login() {
	c.t.Helper()
	c.expect(fmt.Sprintf("LOGIN %s %q", testUser, testPass), "OK")
}

func contains(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

const simpleMsg = "From: Bob <bob@example.test>\r\n" +
	"To: Alice <alice@example.test>\r\n" +
	"Subject: Hello there\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n" +
	"Message-ID: <m1@example.test>\r\n" +
	"\r\n" +
	"Lunch at noon?\r\n"

const multipartMsg = "From: Carol <carol@example.test>\r\n" +
	"To: alice@example.test\r\n" +
	"Subject: =?ISO-8859-1?Q?R=E9union?=\r\n" +
	"Date: Tue, 03 Mar 2026 09:00:00 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XX\"\r\n" +
	"\r\n" +
	"--XX\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=E9 tomorrow\r\n" +
	"--XX\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"a.bin\"\r\n" +
	"\r\n" +
	"AAECAwQF\r\n" +
	"--XX--\r\n"

// brokenMsg declares a multipart whose boundary never appears, has a
// non-UTF-8 subject and a NUL in the body.
const brokenMsg = "From: \xff\xfe <x@\xc3>\r\n" +
	"Subject: caf\xe9 \x00 broken\r\n" +
	"Content-Type: multipart/alternative; boundary=\"nowhere\"\r\n" +
	"Content-Transfer-Encoding: bogus\r\n" +
	"\r\n" +
	"no boundary here \xff\r\n"

// proposeVia is a node that proposes through c (which may inject faults),
// for the accept pipeline.
type proposeVia struct {
	*cluster.Node
	c Cluster
}

func (p proposeVia) Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	return p.c.Propose(ctx, cmd)
}

func (p proposeVia) ProposeNoWait(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	return p.c.Propose(ctx, cmd)
}
