package imap

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/protocol/connlimit"
)

// dialFrom connects to addr from the loopback address src (127.0.0.2,
// ...), so that one test can play several clients.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawFrom is dialRaw from src: it checks the greeting.
func rawFrom(t *testing.T, src, addr string) *raw {
	t.Helper()
	c := &raw{t: t, conn: dialFrom(t, src, addr)}
	c.r = bufio.NewReader(c.conn)
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting from %s: %q", src, g)
	}
	return c
}

// refusedWith checks that a connection from src reads exactly want, then
// the end of the connection.
func refusedWith(t *testing.T, src, addr, want string) {
	t.Helper()
	c := dialFrom(t, src, addr)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read from %s: %v (got %q)", src, err, all)
	}
	if want != "" {
		want += "\r\n"
	}
	if got := string(all); got != want {
		t.Fatalf("from %s: got %q, want %q and the end of the connection", src, got, want)
	}
}

// waitUntil polls cond until it holds or 10 seconds pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnLimits: the caps of cmd's wiring (a connlimit.Limiter around
// 143 and 993, with this package's refusal lines) with a cap of 3 per
// address and 5 for the node.
func TestConnLimits(t *testing.T) {
	lim, err := connlimit.New(connlimit.Config{
		Protocol: "imap", PerIP: 3, PerNode: 5,
		Exempt:      []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")},
		RefusePerIP: TooManyFromAddress, RefusePerNode: TooManyToServer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	e := newEnv(t, envOptions{
		config: func(c *Config) { c.InsecureAuth = true },
		wrap: func(ln net.Listener, implicitTLS bool) net.Listener {
			if implicitTLS {
				return lim.WrapTLS(ln)
			}
			return lim.Wrap(ln)
		},
	})
	plain, implicit := e.plain[0], e.implicit[0]

	var held []*raw
	for range 3 {
		held = append(held, rawFrom(t, "127.0.0.2", plain))
	}
	refusedWith(t, "127.0.0.2", plain, "* BYE [UNAVAILABLE] Too many connections from your address, try again later")
	// 993 counts with 143, and refuses without a TLS handshake.
	refusedWith(t, "127.0.0.2", implicit, "")
	// The exempt address is not held to the per-address cap...
	held = append(held, rawFrom(t, "127.0.0.4", plain))
	held = append(held, rawFrom(t, "127.0.0.3", plain))
	// ... but to the node's, as everyone is.
	refusedWith(t, "127.0.0.3", plain, "* BYE [UNAVAILABLE] Too many connections to this server, try again later")
	refusedWith(t, "127.0.0.4", plain, TooManyToServer)
	// A flood from one address changes nothing.
	for range 30 {
		refusedWith(t, "127.0.0.2", plain, TooManyFromAddress)
	}
	if st := lim.Stats(); st.Open != 5 || st.RefusedPerIP != 32 || st.RefusedPerNode != 2 {
		t.Fatalf("stats %+v, want 5 open, 32 refused per address, 2 per node", st)
	}
	// The held connections still work.
	held[0].login()
	held[0].expect("SELECT INBOX", "OK")

	// Closing frees places: after the flood a new client gets a normal
	// session, over 993 too.
	for _, c := range held[:3] {
		c.expect("LOGOUT", "OK")
	}
	waitUntil(t, "the closed connections to be released", func() bool { return lim.Stats().Open == 2 })
	c := rawFrom(t, "127.0.0.2", plain)
	c.login()
	c.expect("SELECT INBOX", "OK")
	c.expect("LOGOUT", "OK")
	tc := tls.Client(dialFrom(t, "127.0.0.2", implicit), e.clientTLS)
	ic := &raw{t: t, conn: tc, r: bufio.NewReader(tc)}
	if g := ic.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("993 greeting: %q", g)
	}
	ic.login()
	ic.expect("LOGOUT", "OK")
}

// TestPreAuthTimeout: a connection that has not logged in by
// PreAuthTimeout is told BYE and closed, however busy it keeps itself; a
// silent client on 993 (no TLS handshake) is closed too; a client that
// logged in is not affected.
func TestPreAuthTimeout(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.InsecureAuth = true
		c.PreAuthTimeout = 300 * time.Millisecond
	}})
	c := dialRaw(t, e.plain[0])
	seen := false
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; !seen; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no BYE after %d NOOPs in 10 s", i)
		}
		c.send(fmt.Sprintf("n%d NOOP", i))
		for {
			l := c.line()
			if l == "* BYE Login timeout" {
				seen = true
				break
			}
			if strings.HasPrefix(l, fmt.Sprintf("n%d ", i)) {
				break
			}
		}
	}
	expectEOF(t, c.conn, c.r)

	silent := dialFrom(t, "127.0.0.1", e.implicit[0])
	expectEOF(t, silent, bufio.NewReader(silent))

	// The login itself must fit in the timeout, and password hashing on a
	// loaded machine can take longer than 300 ms: a second server with a
	// longer timeout.
	e2 := newEnv(t, envOptions{config: func(c *Config) {
		c.InsecureAuth = true
		c.PreAuthTimeout = 2 * time.Second
	}})
	in := dialRaw(t, e2.plain[0])
	in.login()
	time.Sleep(4 * time.Second) // twice the timeout: nothing happens
	in.expect("NOOP", "OK")
}

// expectEOF reads until the end of the connection, which must come
// within 10 seconds, with nothing but a BYE on the way.
func expectEOF(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return
			}
			t.Fatalf("want the end of the connection, got %v (partial %q)", err, l)
		}
		if !strings.HasPrefix(l, "* BYE") {
			t.Fatalf("want the end of the connection, got %q", l)
		}
	}
}

// TestIdleTimeout: a logged-in connection that leaves the server waiting
// IdleTimeout, in IDLE too, is told BYE and closed; one sending an APPEND
// literal slowly but steadily for longer is not.
func TestIdleTimeout(t *testing.T) {
	const idle = 2 * time.Second
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.InsecureAuth = true
		c.IdleTimeout = idle
	}})

	c := dialRaw(t, e.plain[0])
	c.login()
	if l := c.line(); l != "* BYE Autologout; idle for too long" {
		t.Fatalf("got %q, want the autologout BYE", l)
	}
	expectEOF(t, c.conn, c.r)

	c = dialRaw(t, e.plain[0])
	c.login()
	c.expect("SELECT INBOX", "OK")
	c.send("i IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	if l := c.line(); l != "* BYE Autologout; idle for too long" {
		t.Fatalf("in IDLE: got %q, want the autologout BYE", l)
	}
	expectEOF(t, c.conn, c.r)

	// A literal sent over 2.5 idle timeouts, one chunk every 1/20.
	c = dialRaw(t, e.plain[0])
	c.login()
	msg := "Subject: slow\r\n\r\n" + strings.Repeat("x", 50*100-19) + "\r\n"
	c.send(fmt.Sprintf("a APPEND INBOX {%d}", len(msg)))
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("APPEND: %q", l)
	}
	for i := 0; i < len(msg); i += 100 {
		time.Sleep(idle / 20)
		if _, err := io.WriteString(c.conn, msg[i:min(i+100, len(msg))]); err != nil {
			t.Fatalf("after %d bytes: %v", i, err)
		}
	}
	c.send("")
	if got := c.until("a"); !strings.HasPrefix(got[len(got)-1], "TAG OK") {
		t.Fatalf("slow APPEND: %q", got)
	}
}

// TestActivityConnPushesDeadline: a read deadline set through
// activityConn is an inactivity timeout (go-imap's 5-minute literal
// deadline, here 1 s): data trickling in for 3 s keeps the reads going;
// silence for the timeout ends them.
func TestActivityConnPushesDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := activityListener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	go func() {
		for range 30 {
			time.Sleep(100 * time.Millisecond)
			if _, err := client.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	if err := sc.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	for i := range 30 {
		if _, err := io.ReadFull(sc, buf); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	_, err = sc.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("after the trickle: %v, want a timeout", err)
	}
}
