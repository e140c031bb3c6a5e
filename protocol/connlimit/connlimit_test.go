package connlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	refuseIP   = "421 4.7.0 Too many connections from your address, try again later"
	refuseNode = "421 4.7.0 Too many connections to this server, try again later"
	greeting   = "220 hello"
)

// server is a wrapped loopback listener whose accept loop greets every
// connection it gets and keeps it open until the client closes it.
type server struct {
	lim  *Limiter
	ln   net.Listener
	addr string
	done chan error
}

func newLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	if cfg.Protocol == "" {
		cfg.Protocol = "smtp"
	}
	cfg.RefusePerIP, cfg.RefusePerNode = refuseIP, refuseNode
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func serve(t *testing.T, l *Limiter, implicitTLS bool) *server {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Wrap(raw)
	if implicitTLS {
		ln = l.WrapTLS(raw)
	}
	s := &server{lim: l, ln: ln, addr: raw.Addr().String(), done: make(chan error, 1)}
	var wg sync.WaitGroup
	go func() {
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				s.done <- err
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.WriteString(c, greeting+"\r\n")
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if err := <-s.done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("accept loop ended with %v, want net.ErrClosed", err)
		}
	})
	return s
}

// dialFrom connects from the loopback address src (127.0.0.2, ...).
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

// firstLine reads one line, or "" at the end of the connection.
func firstLine(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func expectLine(t *testing.T, c net.Conn, want string) {
	t.Helper()
	if got := firstLine(t, c); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCapsPerAddressAndPerNode(t *testing.T) {
	l := newLimiter(t, Config{PerIP: 3, PerNode: 5, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}})
	s := serve(t, l, false)

	var held []net.Conn
	for range 3 {
		c := dialFrom(t, "127.0.0.2", s.addr)
		expectLine(t, c, greeting)
		held = append(held, c)
	}
	expectLine(t, dialFrom(t, "127.0.0.2", s.addr), refuseIP)
	for range 2 {
		c := dialFrom(t, "127.0.0.3", s.addr)
		expectLine(t, c, greeting)
		held = append(held, c)
	}
	// 127.0.0.3 holds 2 of its 3, but the node holds its 5.
	expectLine(t, dialFrom(t, "127.0.0.3", s.addr), refuseNode)
	// An exempt address is held to the node cap too.
	expectLine(t, dialFrom(t, "127.0.0.4", s.addr), refuseNode)
	if st := l.Stats(); st.Open != 5 || st.RefusedPerIP != 1 || st.RefusedPerNode != 2 {
		t.Fatalf("stats %+v, want 5 open, 1 refused per address, 2 per node", st)
	}

	// Closing two frees two places; 127.0.0.2 gets one back.
	held[0].Close()
	held[3].Close()
	waitFor(t, "two connections to be released", func() bool { return l.Stats().Open == 3 })
	expectLine(t, dialFrom(t, "127.0.0.2", s.addr), greeting)
	// The exempt address may exceed the per-address cap within the
	// node's: close the rest and open four from it.
	for _, c := range held {
		c.Close()
	}
	waitFor(t, "the connections to be released", func() bool { return l.Stats().Open == 1 })
	for range 4 {
		expectLine(t, dialFrom(t, "127.0.0.4", s.addr), greeting)
	}
	expectLine(t, dialFrom(t, "127.0.0.4", s.addr), refuseNode)
}

// TestSharedAcrossListeners: two listeners of one Limiter (587 and 465)
// count together; the implicit-TLS one refuses without a word.
func TestSharedAcrossListeners(t *testing.T) {
	l := newLimiter(t, Config{Protocol: "submission", PerIP: 2, PerNode: 10})
	plain := serve(t, l, false)
	implicit := serve(t, l, true)
	expectLine(t, dialFrom(t, "127.0.0.2", plain.addr), greeting)
	expectLine(t, dialFrom(t, "127.0.0.2", implicit.addr), greeting)
	expectLine(t, dialFrom(t, "127.0.0.2", plain.addr), refuseIP)
	c := dialFrom(t, "127.0.0.2", implicit.addr)
	if got := firstLine(t, c); got != "" {
		t.Fatalf("implicit-TLS refusal said %q, want nothing", got)
	}
	if st := l.Stats(); st.Open != 2 || st.RefusedPerIP != 2 {
		t.Fatalf("stats %+v, want 2 open, 2 refused per address", st)
	}
}

// TestRefusalsLoggedOncePerInterval: a flood of refusals from one address
// is one log line, and so is a flood of node-cap refusals from many; the
// next line, after the interval, carries the count.
func TestRefusalsLoggedOncePerInterval(t *testing.T) {
	var buf syncBuffer
	l := newLimiter(t, Config{PerIP: 1, LogInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	s := serve(t, l, false)
	expectLine(t, dialFrom(t, "127.0.0.2", s.addr), greeting)
	for range 20 {
		expectLine(t, dialFrom(t, "127.0.0.2", s.addr), refuseIP)
	}
	expectLine(t, dialFrom(t, "127.0.0.3", s.addr), greeting)
	expectLine(t, dialFrom(t, "127.0.0.3", s.addr), refuseIP)
	out := buf.String()
	if n := strings.Count(out, "connection refused"); n != 2 {
		t.Fatalf("%d log lines, want one per address:\n%s", n, out)
	}
	// Node-cap refusals: one line whatever the address.
	node := newLimiter(t, Config{PerNode: 1, LogInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ns := serve(t, node, false)
	expectLine(t, dialFrom(t, "127.0.0.2", ns.addr), greeting)
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		expectLine(t, dialFrom(t, src, ns.addr), refuseNode)
	}
	if n := strings.Count(buf.String(), "too many connections to this node"); n != 1 || !strings.Contains(buf.String(), "last_ip=127.0.0.3") {
		t.Fatalf("%d node-cap lines, want one naming 127.0.0.3:\n%s", n, buf.String())
	}
	for _, want := range []string{"ip=127.0.0.2", "ip=127.0.0.3", "reason=per_ip", "protocol=smtp", "count=1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	// The interval is over: the next line counts the 19 unlogged and
	// this one.
	l.mu.Lock()
	l.mu.logged[logKey{addr: netip.MustParseAddr("127.0.0.2"), reason: PerIP}].last = time.Now().Add(-2 * time.Hour)
	l.mu.Unlock()
	expectLine(t, dialFrom(t, "127.0.0.2", s.addr), refuseIP)
	if out := buf.String(); !strings.Contains(out, "count=20") {
		t.Fatalf("the second line lacks count=20:\n%s", out)
	}
	// The flood stops: the flusher logs what is left once the interval
	// is over (here called at once, an interval later), and then forgets
	// the addresses.
	for range 4 {
		expectLine(t, dialFrom(t, "127.0.0.3", s.addr), refuseIP)
		expectLine(t, dialFrom(t, "127.0.0.4", ns.addr), refuseNode)
	}
	later := time.Now().Add(2 * time.Hour)
	l.flushLogs(later)
	node.flushLogs(later)
	out = buf.String()
	if !strings.Contains(out, "ip=127.0.0.3 reason=per_ip limit=1 count=4") || !strings.Contains(out, "reason=per_node limit=1 count=6") ||
		!strings.Contains(out, "last_ip=127.0.0.4") {
		t.Fatalf("the flushed lines lack the counts:\n%s", out)
	}
	l.flushLogs(later.Add(2 * time.Hour))
	l.mu.Lock()
	left := len(l.mu.logged)
	l.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d addresses still remembered after a quiet interval", left)
	}
}

func TestCollector(t *testing.T) {
	smtp := newLimiter(t, Config{Protocol: "smtp", PerIP: 1})
	imap := newLimiter(t, Config{Protocol: "imap", PerNode: 1})
	s := serve(t, smtp, false)
	i := serve(t, imap, false)
	expectLine(t, dialFrom(t, "127.0.0.2", s.addr), greeting)
	expectLine(t, dialFrom(t, "127.0.0.2", s.addr), refuseIP)
	expectLine(t, dialFrom(t, "127.0.0.2", i.addr), greeting)
	expectLine(t, dialFrom(t, "127.0.0.3", i.addr), refuseNode)
	expectLine(t, dialFrom(t, "127.0.0.3", i.addr), refuseNode)

	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector("node1", smtp, imap))
	got := gather(t, reg)
	want := map[string]float64{
		`raftmail_connections_open{node="node1",protocol="imap"}`:                            1,
		`raftmail_connections_open{node="node1",protocol="smtp"}`:                            1,
		`raftmail_connections_refused_total{node="node1",protocol="imap",reason="per_ip"}`:   0,
		`raftmail_connections_refused_total{node="node1",protocol="imap",reason="per_node"}`: 2,
		`raftmail_connections_refused_total{node="node1",protocol="smtp",reason="per_ip"}`:   1,
		`raftmail_connections_refused_total{node="node1",protocol="smtp",reason="per_node"}`: 0,
	}
	if len(got) != len(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// gather returns every sample of reg as name{label="value",...} -> value,
// labels sorted by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(labels)
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::ff", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
	} {
		if got := clientKey(netip.MustParseAddr(tc.in)).String(); got != tc.want {
			t.Errorf("clientKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestFit(t *testing.T) {
	for _, tc := range []struct {
		caps   []int
		budget int
		want   []int
		scaled bool
	}{
		{[]int{1000, 500, 8000, 1000}, 17952, []int{1000, 500, 8000, 1000}, false},
		{[]int{1000, 500, 8000, 1000}, 10500, []int{1000, 500, 8000, 1000}, false},
		{[]int{1000, 500, 8000, 1000}, 5250, []int{500, 250, 4000, 500}, true},
		{[]int{1000, 500, 8000, 1000}, 512, []int{48, 24, 390, 48}, true},
		{[]int{10, 10}, 1, []int{1, 1}, true},
	} {
		got, scaled := Fit(tc.caps, tc.budget)
		if scaled != tc.scaled || !slicesEqual(got, tc.want) {
			t.Errorf("Fit(%v, %d) = %v, %v; want %v, %v", tc.caps, tc.budget, got, scaled, tc.want, tc.scaled)
		}
		if sum := sumOf(got); scaled && tc.budget >= len(tc.caps) && sum > tc.budget {
			t.Errorf("Fit(%v, %d) sums to %d", tc.caps, tc.budget, sum)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sumOf(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// TestAcceptOutOfDescriptors runs in a child process with a low
// descriptor limit, filled up: Accept waits (logging once) instead of
// returning EMFILE, and delivers the waiting connection once descriptors
// are free again.
func TestAcceptOutOfDescriptors(t *testing.T) {
	if os.Getenv("CONNLIMIT_EMFILE_CHILD") == "1" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptOutOfDescriptors$", "-test.v")
	cmd.Env = append(os.Environ(), "CONNLIMIT_EMFILE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func emfileChild(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	var buf syncBuffer
	l := newLimiter(t, Config{PerIP: 10, LogInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Wrap(raw)
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	// Fill the table, then free one descriptor for the client's socket.
	var files []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		files = append(files, f)
	}
	files[len(files)-1].Close()
	files = files[:len(files)-1]
	client, err := net.DialTimeout("tcp", raw.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	defer client.Close()
	waitFor(t, "the out-of-descriptors log line", func() bool {
		return strings.Contains(buf.String(), "out of file descriptors")
	})
	// Let the loop fail and back off a few more times: still no error
	// out of Accept, still one line.
	wl := ln.(*listener)
	waitFor(t, "more failed accepts", func() bool {
		wl.mu.Lock()
		defer wl.mu.Unlock()
		return wl.mu.failures >= 3
	})
	select {
	case err := <-acceptErr:
		t.Fatalf("Accept returned %v", err)
	default:
	}
	if n := strings.Count(buf.String(), "out of file descriptors"); n != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", n, buf.String())
	}
	for _, f := range files[len(files)-8:] {
		f.Close()
	}
	select {
	case c := <-accepted:
		c.Close()
	case err := <-acceptErr:
		t.Fatalf("Accept returned %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted once descriptors were free")
	}
	// Close ends the loop with net.ErrClosed.
	ln.Close()
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	for _, f := range files {
		f.Close()
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
