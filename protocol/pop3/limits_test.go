package pop3

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/connlimit"
)

// dialFrom connects to addr from the loopback address src (127.0.0.2,
// ...), so that one test can play several clients.
func dialFrom(t *testing.T, src, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// refusedWith checks that a connection from src reads exactly want
// (nothing if ""), then the end of the connection.
func refusedWith(t *testing.T, src, addr, want string) {
	t.Helper()
	c := dialFrom(t, src, addr)
	all, err := io.ReadAll(c.conn)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read from %s: %v (got %q)", src, err, all)
	}
	if want != "" {
		want += "\r\n"
	}
	if string(all) != want {
		t.Fatalf("from %s: got %q, want %q and the end of the connection", src, all, want)
	}
}

// TestConnLimits: the caps of cmd's wiring (a connlimit.Limiter around
// 110 and 995, with this package's refusal lines) with a cap of 3 per
// address and 5 for the node.
func TestConnLimits(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	const user = "limits@example.test"
	addUser(t, node, user, testMsgs...)
	vars := map[string]string{"U": user, "P": testPassword}
	lim, err := connlimit.New(connlimit.Config{
		Protocol: "pop3", PerIP: 3, PerNode: 5,
		Exempt:      []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")},
		RefusePerIP: TooManyFromAddress, RefusePerNode: TooManyToServer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	e := startServerWrapped(t, node, nil, func(ln net.Listener, implicitTLS bool) net.Listener {
		if implicitTLS {
			return lim.WrapTLS(ln)
		}
		return lim.Wrap(ln)
	})

	var held []*client
	for range 3 {
		cl := dialFrom(t, "127.0.0.2", e.addr)
		cl.expect("+OK *")
		held = append(held, cl)
	}
	refusedWith(t, "127.0.0.2", e.addr, "-ERR [SYS/TEMP] Too many connections from your address, try again later")
	// 995 counts with 110, and refuses without a TLS handshake.
	refusedWith(t, "127.0.0.2", e.tls, "")
	for _, src := range []string{"127.0.0.4", "127.0.0.3"} {
		cl := dialFrom(t, src, e.addr)
		cl.expect("+OK *")
		held = append(held, cl)
	}
	refusedWith(t, "127.0.0.3", e.addr, "-ERR [SYS/TEMP] Too many connections to this server, try again later")
	refusedWith(t, "127.0.0.4", e.addr, TooManyToServer)
	for range 30 {
		refusedWith(t, "127.0.0.2", e.addr, TooManyFromAddress)
	}
	if st := lim.Stats(); st.Open != 5 || st.RefusedPerIP != 32 || st.RefusedPerNode != 2 {
		t.Fatalf("stats %+v, want 5 open, 32 refused per address, 2 per node", st)
	}

	for _, cl := range held[:3] {
		cl.run(`
			C: QUIT
			S: +OK*
			X:`, nil)
	}
	clustertest.WaitFor(t, 10*time.Second, "the closed connections to be released", func() bool { return lim.Stats().Open == 2 })
	cl := dialFrom(t, "127.0.0.2", e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK Maildrop has 3 messages*
		C: QUIT
		S: +OK*
		X:`, vars)
	tc := tls.Client(dialFrom(t, "127.0.0.2", e.tls).conn, &tls.Config{InsecureSkipVerify: true})
	tcl := &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	tcl.run(`
		S: +OK*
		C: QUIT
		S: +OK*`, nil)
}

// TestPreAuthTimeout: a connection still in AUTHORIZATION at
// PreAuthTimeout is told so and closed, whatever it sends meanwhile; a
// silent client on 995 (no TLS handshake) is closed too; a logged-in one
// is held to the idle timeout only.
func TestPreAuthTimeout(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	const user = "preauth@example.test"
	addUser(t, node, user, testMsgs...)
	vars := map[string]string{"U": user, "P": testPassword}
	e := startServer(t, node, func(cfg *Config) { cfg.PreAuthTimeout = 300 * time.Millisecond })

	cl := dial(t, e.addr)
	cl.expect("+OK *")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no login timeout in 10 s")
		}
		cl.send("CAPA\r\n")
		l, err := cl.line()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if l == "-ERR [SYS/TEMP] login timeout, closing connection" {
			break
		}
		for l != "." {
			if l, err = cl.line(); err != nil {
				t.Fatalf("read CAPA: %v", err)
			}
		}
	}
	cl.expectEOF()

	silent := dial(t, e.tls)
	if b, err := io.ReadAll(silent.conn); err != nil && !errors.Is(err, syscall.ECONNRESET) || len(b) != 0 {
		t.Fatalf("silent 995 client: read %q, %v; want the end of the connection", b, err)
	}

	// The login itself must fit in the timeout, and password hashing on a
	// loaded machine can take longer than 300 ms: a second server with a
	// longer timeout.
	e2 := startServer(t, node, func(cfg *Config) { cfg.PreAuthTimeout = 2 * time.Second })
	in := dial(t, e2.addr)
	in.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*`, vars)
	time.Sleep(4 * time.Second) // twice the timeout: nothing happens
	in.run(`
		C: NOOP
		S: +OK
		C: QUIT
		S: +OK*`, vars)
}
