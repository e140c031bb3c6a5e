package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestE2ELoginThrottle: three real nodes share login throttling over
// gossip and keep it across a restart of the whole cluster. Ten wrong
// passwords from one address on node2 lock that address for that account
// on node1 and node3 too (the old checker counted per node: they let it
// in), while the same user from another address logs in everywhere, node2
// included (the old checker locked the account for every address). After
// all three nodes are stopped and started again, the lock is still there.
func TestE2ELoginThrottle(t *testing.T) {
	nodes := newCluster(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	const (
		user      = "victim@example.test"
		attacker  = "127.0.0.21"
		elsewhere = "127.0.0.22"
		prober    = "127.0.0.23"
	)
	pass := randomHex(12)
	cliVia(t, n1, "", "domain", "add", "example.test")
	cliVia(t, n1, pass+"\n", "user", "add", user, "--password-stdin")
	for _, n := range nodes {
		waitFor(t, clusterTimeout, "the user on "+n.name, func() (bool, string) {
			l := imapLogin(t, prober, n.imapAddr, user, pass)
			return strings.HasPrefix(l, "a OK"), l
		})
	}

	// Ten guesses at once from one address, all on node2.
	var wg sync.WaitGroup
	answers := make([]string, 10)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = imapLogin(t, attacker, n2.imapAddr, user, fmt.Sprint("guess-", i))
		}()
	}
	wg.Wait()
	guessed := time.Now()
	for i, a := range answers {
		if !strings.HasPrefix(a, "a NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("guess %d: %q, want a failure", i, a)
		}
	}
	if l := imapLogin(t, attacker, n2.imapAddr, user, pass); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
		t.Fatalf("node2, right password from the attacker's address: %q, want NO [UNAVAILABLE]", l)
	}
	if l := imapLogin(t, elsewhere, n2.imapAddr, user, pass); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("node2, the user from another address: %q, want OK", l)
	}

	// The others learn the lock by gossip (polled on their metrics, which
	// a login would disturb: a success clears the pair).
	for _, n := range []*node{n1, n3} {
		waitFor(t, clusterTimeout, n.name+" counts the lock", func() (bool, string) {
			return metricValue(t, n, `raftmail_auth_throttle_locked_keys{key="ip_account",node="`+n.name+`"}`) == "1", ""
		})
		t.Logf("%s counted the lock %s after the last guess was answered (polled every 100ms)", n.name, time.Since(guessed).Round(time.Millisecond))
		if l := imapLogin(t, attacker, n.imapAddr, user, pass); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
			t.Fatalf("%s, right password from the attacker's address: %q, want NO [UNAVAILABLE]", n.name, l)
		}
		if l := imapLogin(t, elsewhere, n.imapAddr, user, pass); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("%s, the user from another address: %q, want OK", n.name, l)
		}
	}
	if l := pop3Login(t, attacker, n3.pop3Addr, user, pass); l != "-ERR [SYS/TEMP] Too many failed logins, try again later" {
		t.Fatalf("node3 POP3 from the attacker's address: %q", l)
	}

	// The whole cluster stops (each saves its table) and starts again.
	for _, n := range nodes {
		n.stopProcess(n.cmd, n.done)
		if fi, err := os.Stat(n.dir + "/" + throttleFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's saved throttle table: %v %v", n.name, fi, err)
		}
	}
	for _, n := range nodes {
		n.start()
	}
	for _, n := range nodes {
		if l := imapLogin(t, attacker, n.imapAddr, user, pass); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
			t.Fatalf("%s after the restart, right password from the attacker's address: %q, want NO [UNAVAILABLE]", n.name, l)
		}
		if l := imapLogin(t, elsewhere, n.imapAddr, user, pass); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("%s after the restart, the user from another address: %q, want OK", n.name, l)
		}
	}
}

// imapLogin connects to addr from the local address src, sends LOGIN and
// returns the tagged answer (or what went wrong, as text).
func imapLogin(t *testing.T, src, addr, user, pass string) string {
	t.Helper()
	return dialFrom(t, src, addr, func(r *bufio.Reader, w io.Writer) string {
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "* OK") {
			return "greeting: " + l
		}
		fmt.Fprintf(w, "a LOGIN %q %q\r\n", user, pass)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "read: " + err.Error()
			}
			if strings.HasPrefix(l, "a ") {
				return strings.TrimRight(l, "\r\n")
			}
		}
	})
}

// pop3Login is imapLogin for POP3 USER and PASS: it returns the answer
// to PASS.
func pop3Login(t *testing.T, src, addr, user, pass string) string {
	t.Helper()
	return dialFrom(t, src, addr, func(r *bufio.Reader, w io.Writer) string {
		for _, cmd := range []string{"", "USER " + user, "PASS " + pass} {
			if cmd != "" {
				fmt.Fprintf(w, "%s\r\n", cmd)
			}
			l, err := r.ReadString('\n')
			if err != nil {
				return "read: " + err.Error()
			}
			if l = strings.TrimRight(l, "\r\n"); cmd == "PASS "+pass || !strings.HasPrefix(l, "+OK") {
				return l
			}
		}
		return ""
	})
}

func dialFrom(t *testing.T, src, addr string, talk func(*bufio.Reader, io.Writer) string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return talk(bufio.NewReader(c), c)
}

// metricValue is the value of the sample named exactly series on n's
// /metrics, "" if there is none.
func metricValue(t *testing.T, n *node, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + n.adminAddr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}
