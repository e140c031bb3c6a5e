package smtp

import (
	"bufio"
	"context"
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
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	return nc
}

// greeted dials from src and reads the 220 greeting.
func greeted(t *testing.T, src, addr string) *client {
	t.Helper()
	nc := dialFrom(t, src, addr)
	c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
	c.expect("220 ")
	return c
}

// refusedWith checks that a connection from src reads exactly want
// (nothing if ""), then the end of the connection.
func refusedWith(t *testing.T, src, addr, want string) {
	t.Helper()
	all, err := io.ReadAll(dialFrom(t, src, addr))
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

// serveLimited starts a Server on a plain and an implicit-TLS loopback
// listener, both wrapped by lim as cmd does, and returns their addresses.
func serveLimited(t *testing.T, cfg Config, lim *connlimit.Limiter) (plain, implicit string) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- s.Serve(lim.Wrap(ln1)) }()
	go func() { done <- s.ServeTLS(lim.WrapTLS(ln2)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return ln1.Addr().String(), ln2.Addr().String()
}

func newLimiter(t *testing.T, protocol string, perIP, perNode int) *connlimit.Limiter {
	t.Helper()
	lim, err := connlimit.New(connlimit.Config{
		Protocol: protocol, PerIP: perIP, PerNode: perNode,
		Exempt:      []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")},
		RefusePerIP: TooManyFromAddress, RefusePerNode: TooManyToServer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	return lim
}

// TestConnLimits: the caps of cmd's wiring with a cap of 3 per address and
// 5 for the node, on MX; then submission's 587 and 465 counting together.
func TestConnLimits(t *testing.T) {
	e := newEnv(t)
	e.addUser(t, "alice@example.test", "pw-alice-123")
	lim := newLimiter(t, "smtp", 3, 5)
	cfg := Config{Mode: ModeMX, Hostname: testHost, NodeName: "n1", TLS: e.tls, Accept: testPipeline(t, e.node), Store: e.st, Logger: clustertest.Logger()}
	mx, _ := serveLimited(t, cfg, lim)

	var held []*client
	for range 3 {
		held = append(held, greeted(t, "127.0.0.2", mx))
	}
	refusedWith(t, "127.0.0.2", mx, "421 4.7.0 Too many connections from your address, try again later")
	held = append(held, greeted(t, "127.0.0.4", mx), greeted(t, "127.0.0.3", mx))
	refusedWith(t, "127.0.0.3", mx, "421 4.7.0 Too many connections to this server, try again later")
	refusedWith(t, "127.0.0.4", mx, TooManyToServer)
	for range 30 {
		refusedWith(t, "127.0.0.2", mx, TooManyFromAddress)
	}
	if st := lim.Stats(); st.Open != 5 || st.RefusedPerIP != 31 || st.RefusedPerNode != 2 {
		t.Fatalf("stats %+v, want 5 open, 31 refused per address, 2 per node", st)
	}
	held[0].cmd("EHLO client.example", "250 ")
	for _, c := range held[:3] {
		c.cmd("QUIT", "221 ")
	}
	clustertest.WaitFor(t, 10*time.Second, "the closed connections to be released", func() bool { return lim.Stats().Open == 2 })
	c := greeted(t, "127.0.0.2", mx)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<bob@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: after the flood\r\n\r\nhello\r\n.")
	queuedID(t, c.expect("250 "))
	c.cmd("QUIT", "221 ")

	sub := newLimiter(t, "submission", 2, 10)
	cfg.Mode, cfg.Auth = ModeSubmission, e.auth
	p587, p465 := serveLimited(t, cfg, sub)
	greeted(t, "127.0.0.2", p587)
	nc := dialFrom(t, "127.0.0.2", p465)
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	tcl := &client{t: t, conn: tc, r: bufio.NewReader(tc)}
	tcl.expect("220 ")
	refusedWith(t, "127.0.0.2", p587, TooManyFromAddress)
	// 465 refuses without a word: no TLS handshake is spent.
	refusedWith(t, "127.0.0.2", p465, "")
	if st := sub.Stats(); st.Open != 2 || st.RefusedPerIP != 2 {
		t.Fatalf("submission stats %+v, want 2 open, 2 refused per address", st)
	}
	tcl.cmd("EHLO client.example", "250 ")
	tcl.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdy1hbGljZS0xMjM=", "235 ")
	tcl.cmd("QUIT", "221 ")
}

// TestSilentConnectionBounded: a client that connects and never sends
// EHLO is told 421 4.4.2 and closed after ReadTimeout; one that never
// starts its TLS handshake on 465 is closed after ReadTimeout too.
func TestSilentConnectionBounded(t *testing.T) {
	e := newEnv(t)
	lim := newLimiter(t, "submission", 0, 0)
	cfg := Config{Mode: ModeSubmission, Hostname: testHost, NodeName: "n1", TLS: e.tls, Accept: testPipeline(t, e.node), Store: e.st, Auth: e.auth,
		Logger: clustertest.Logger(), ReadTimeout: 300 * time.Millisecond}
	plain, implicit := serveLimited(t, cfg, lim)

	c := greeted(t, "127.0.0.2", plain)
	c.expect("421 4.4.2 ")
	c.expectClosed()
	if b, err := io.ReadAll(dialFrom(t, "127.0.0.2", implicit)); err != nil && !errors.Is(err, syscall.ECONNRESET) || len(b) != 0 {
		t.Fatalf("silent 465 client: read %q, %v; want the end of the connection", b, err)
	}
	clustertest.WaitFor(t, 10*time.Second, "both connections to be released", func() bool { return lim.Stats().Open == 0 })
}
