package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EConnLimits: the real node wraps its mail listeners with the
// connection caps given by flags, refuses with the protocol's line (and
// silently on IMAPS), and exposes the counts on /metrics.
func TestE2EConnLimits(t *testing.T) {
	nodes := newClusterArgs(t, 1,
		"--imap-conn-limit-per-ip", "2", "--imap-conn-limit", "3",
		"--smtp-conn-limit-per-ip", "1", "--conn-limit-exempt", "127.0.0.1/32")
	n := nodes[0]

	// first dials from src and returns the first line, "" at the end of
	// the connection; the connection stays open until the test ends.
	first := func(src, addr string) string {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, src, err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read from %s: %v", addr, err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	for _, src := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3"} {
		if l := first(src, n.imapAddr); !strings.HasPrefix(l, "* OK ") {
			t.Fatalf("IMAP from %s: %q, want the greeting", src, l)
		}
	}
	for _, tc := range []struct{ src, addr, want string }{
		{"127.0.0.2", n.imapAddr, "* BYE [UNAVAILABLE] Too many connections from your address, try again later"},
		{"127.0.0.3", n.imapAddr, "* BYE [UNAVAILABLE] Too many connections to this server, try again later"},
		{"127.0.0.2", n.imapsAddr, ""},
		{"127.0.0.1", n.imapAddr, "* BYE [UNAVAILABLE] Too many connections to this server, try again later"},
	} {
		if l := first(tc.src, tc.addr); l != tc.want {
			t.Fatalf("IMAP(S) from %s: %q, want %q", tc.src, l, tc.want)
		}
	}
	if l := first("127.0.0.2", n.smtpAddr); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("SMTP: %q, want the greeting", l)
	}
	if l := first("127.0.0.2", n.smtpAddr); l != "421 4.7.0 Too many connections from your address, try again later" {
		t.Fatalf("second SMTP connection: %q", l)
	}
	// 127.0.0.1 is exempt from the per-address caps.
	for range 2 {
		if l := first("127.0.0.1", n.smtpAddr); !strings.HasPrefix(l, "220 ") {
			t.Fatalf("SMTP from the exempt address: %q, want the greeting", l)
		}
	}

	resp, err := http.Get("http://" + n.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`raftmail_connections_open{node="node1",protocol="imap"} 3`,
		`raftmail_connections_open{node="node1",protocol="smtp"} 3`,
		`raftmail_connections_refused_total{node="node1",protocol="imap",reason="per_ip"} 2`,
		`raftmail_connections_refused_total{node="node1",protocol="imap",reason="per_node"} 2`,
		`raftmail_connections_refused_total{node="node1",protocol="smtp",reason="per_ip"} 1`,
		`raftmail_connections_refused_total{node="node1",protocol="pop3",reason="per_node"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	logb, err := os.ReadFile(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"msg=\"connection caps\" protocol=imap per_ip=2 per_node=3", "connection refused: too many connections from one address", "ip=127.0.0.2"} {
		if !strings.Contains(string(logb), want) {
			t.Errorf("node log lacks %q", want)
		}
	}
}
