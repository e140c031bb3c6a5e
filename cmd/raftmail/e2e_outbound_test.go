package main

// End-to-end test of outbound delivery: a three-node cluster of the real
// binary (see e2e_helpers_test.go) whose DNS is a real DNS server on
// loopback (dnstest) and whose "remote MX" is a go-smtp server on loopback.
// Mail submitted by a local user must leave signed with both DKIM keys of
// its domain (checked with mailauth and with python3-dkim against the
// records `dns records` prints), greeted with the node's --hostname, and
// leave the queue; a recipient the remote refuses with 5xx must come back
// as a bounce in the sender's INBOX.
//
// Run it alone with: go test -race -count=1 -run TestE2EOutbound -v ./cmd/raftmail/

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
	"github.com/raftmail/raftmail/storage"
)

const (
	// outHostname is every node's --hostname: what they must say in EHLO.
	outHostname = "mail.example.test"
	// deliveryTimeout bounds waits for the queue to deliver or bounce;
	// the scheduler leases due entries every second.
	deliveryTimeout = 60 * time.Second
	// refusedRcpt is the remote recipient the sink refuses with 550 5.1.1.
	refusedRcpt = "nobody@remote.test"
)

func TestE2EOutbound(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	dnsSrv := dnstest.Start(t)
	sink := startSink(t)
	dnsSrv.Add(t,
		"remote.test. 300 IN MX 10 mx.remote.test.",
		"mx.remote.test. 300 IN A 127.0.0.1",
	)
	nodes := newClusterArgs(t, 3,
		"--dns-resolver", dnsSrv.Addr,
		"--smtp-out-port", strconv.Itoa(sink.port),
		"--hostname", outHostname,
	)
	n1, n2 := nodes[0], nodes[1]
	alice := mailUser{"alice@example.test", "alice-Pass-0001"}
	const bob = "bob@remote.test"

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("1_setup_and_publish_dns", func(t *testing.T) {
		cliVia(t, n1, "", "domain", "add", "example.test")
		cliVia(t, n1, alice.password+"\n", "user", "add", alice.addr, "--password-stdin")
		var plan ops.DNSPlan
		mustCLIJSON(t, &plan, append([]string{"dns", "records", "example.test", "--json"}, n1.adminFlags()...)...)
		var published []string
		dkim := 0
		for _, r := range plan.Records {
			line := zoneLine(r)
			if line == "" {
				continue
			}
			dnsSrv.Add(t, line)
			published = append(published, r.Type+" "+r.Name+" ("+r.Purpose+")")
			if r.Purpose == ops.PurposeDKIM {
				dkim++
			}
		}
		t.Logf("published %d records: %s", len(published), strings.Join(published, "; "))
		if dkim != 2 {
			t.Fatalf("dns records has %d DKIM records, want 2 (ed25519 and rsa): %+v", dkim, plan.Records)
		}
	})

	var sent testMsg
	step("2_submit_deliver_dkim", func(t *testing.T) {
		sent = newTestMsg(alice.addr, bob, "outbound")
		res := mustSend(t, n1, smtpRequest{submission: true, user: &alice, from: alice.addr, to: []string{bob}, msg: sent})
		t.Logf("node1 submission: %d %s", res.Data.Code, res.Data.Text)

		var got sinkMsg
		d := waitFor(t, deliveryTimeout, "the message at the remote MX", func() (bool, string) {
			msgs := sink.withSubject(sent.subject)
			if len(msgs) == 0 {
				return false, fmt.Sprintf("sink has %d messages, none with subject %q", sink.count(), sent.subject)
			}
			got = msgs[0]
			return true, ""
		})
		t.Logf("remote MX got it after %s: EHLO %q, MAIL FROM <%s>, RCPT TO %v, TLS %v, %d bytes",
			d.Round(time.Millisecond), got.helo, got.from, got.rcpts, got.tls, len(got.data))

		if got.from != alice.addr || !slices.Equal(got.rcpts, []string{bob}) {
			t.Errorf("envelope: MAIL FROM <%s> RCPT TO %v, want <%s> [%s]", got.from, got.rcpts, alice.addr, bob)
		}
		if got.helo != outHostname {
			t.Errorf("EHLO %q, want --hostname %q", got.helo, outHostname)
		}
		if !got.tls {
			t.Errorf("delivered in plain text although the remote MX offers STARTTLS")
		}
		checkMessage(t, "remote MX", string(got.data), sent)

		m, err := mail.ReadMessage(bytes.NewReader(got.data))
		if err != nil {
			t.Fatalf("parse delivered message: %v", err)
		}
		var algs []string
		for _, sig := range m.Header["Dkim-Signature"] {
			algs = append(algs, dkimTag(sig, "a")+" s="+dkimTag(sig, "s")+" d="+dkimTag(sig, "d"))
		}
		t.Logf("DKIM-Signature fields: %q", algs)
		if len(algs) != 2 {
			t.Fatalf("%d DKIM-Signature fields, want 2:\n%s", len(algs), got.data)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		results, err := mailauth.VerifyDKIM(ctx, mailauth.NewResolver(dnsSrv.Addr), got.data, 0)
		if err != nil {
			t.Fatalf("VerifyDKIM: %v", err)
		}
		var seen []string
		for _, r := range results {
			t.Logf("mailauth: %s a=%s s=%s d=%s (%v)", r.Result, r.Algorithm, r.Selector, r.Domain, r.Err)
			if r.Result != "pass" || r.Domain != "example.test" {
				t.Errorf("mailauth: signature a=%s s=%s d=%s: %s (%v), want pass for example.test", r.Algorithm, r.Selector, r.Domain, r.Result, r.Err)
			}
			seen = append(seen, r.Algorithm)
		}
		slices.Sort(seen)
		if want := []string{"ed25519-sha256", "rsa-sha256"}; !slices.Equal(seen, want) {
			t.Errorf("mailauth verified signatures with %q, want %q", seen, want)
		}

		if py := pythonWithDKIM(); py == "" {
			t.Log("python3-dkim check skipped: no python3 with the dkim, dns and nacl modules")
		} else {
			verdicts := pythonDKIMVerify(t, py, dnsSrv.Addr, got.data)
			t.Logf("python3-dkim (%s): %v", py, verdicts)
			if !slices.Equal(verdicts, []string{"pass", "pass"}) {
				t.Errorf("python3-dkim: %v, want both signatures to pass", verdicts)
			}
		}

		waitQueueWithout(t, n1, bob)
		if n := len(sink.withSubject(sent.subject)); n != 1 {
			t.Errorf("the remote MX got the message %d times, want once", n)
		}
	})

	step("3_remote_5xx_bounces_to_inbox", func(t *testing.T) {
		msg := newTestMsg(alice.addr, refusedRcpt, "refused")
		mustSend(t, n1, smtpRequest{submission: true, user: &alice, from: alice.addr, to: []string{refusedRcpt}, msg: msg})

		var bounce imapMessage
		d := waitFor(t, deliveryTimeout, "a bounce in alice's INBOX through node2", func() (bool, string) {
			mb, err := imapList(t, n2, alice, "INBOX")
			if err != nil {
				return false, err.Error()
			}
			for _, m := range mb.Messages {
				if strings.Contains(m.Raw, msg.subject) {
					bounce = m
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d messages in alice's INBOX, none about %q (sink refused RCPT %d times)", len(mb.Messages), msg.subject, sink.refusedCount())
		})
		t.Logf("bounce in alice's INBOX through node2's IMAPS after %s (UID %d)", d.Round(time.Millisecond), bounce.UID)

		m, err := mail.ReadMessage(strings.NewReader(bounce.Raw))
		if err != nil {
			t.Fatalf("parse bounce: %v\n%s", err, bounce.Raw)
		}
		from, ct := m.Header.Get("From"), m.Header.Get("Content-Type")
		t.Logf("bounce: From %q, Subject %q, Content-Type %q", from, m.Header.Get("Subject"), ct)
		if !strings.Contains(strings.ToUpper(from), "MAILER-DAEMON@") {
			t.Errorf("bounce From %q, want MAILER-DAEMON", from)
		}
		if !strings.HasPrefix(ct, "multipart/report") || !strings.Contains(ct, "report-type=delivery-status") {
			t.Errorf("bounce Content-Type %q, want multipart/report; report-type=delivery-status", ct)
		}
		for _, want := range []string{
			refusedRcpt,
			"5.1.1",
			"Final-Recipient: rfc822; " + refusedRcpt,
			"Action: failed",
			"Status: 5.1.1",
		} {
			if !strings.Contains(bounce.Raw, want) {
				t.Errorf("bounce does not mention %q:\n%s", want, bounce.Raw)
			}
		}
		if sink.refusedCount() == 0 {
			t.Errorf("the remote MX never saw RCPT TO:<%s>", refusedRcpt)
		}
		if n := len(sink.withSubject(msg.subject)); n != 0 {
			t.Errorf("the remote MX accepted the refused message %d times", n)
		}
		waitQueueWithout(t, n1, refusedRcpt)
	})
}

// zoneLine renders a `dns records --json` record for dnstest.Add; "" for
// the PTR records (not ours to publish).
func zoneLine(r ops.Record) string {
	switch r.Type {
	case "MX":
		return fmt.Sprintf("%s %d IN MX %d %s", r.Name, r.TTL, r.Priority, r.Value)
	case "A", "AAAA":
		return fmt.Sprintf("%s %d IN %s %s", r.Name, r.TTL, r.Type, r.Value)
	case "TXT":
		// At most 255 bytes per character-string (RFC 1035 §3.3).
		var parts []string
		for v := r.Value; ; v = v[255:] {
			if len(v) <= 255 {
				parts = append(parts, strconv.Quote(v))
				break
			}
			parts = append(parts, strconv.Quote(v[:255]))
		}
		return fmt.Sprintf("%s %d IN TXT %s", r.Name, r.TTL, strings.Join(parts, " "))
	}
	return ""
}

// dkimTag returns the value of tag in a DKIM-Signature field value.
func dkimTag(sig, tag string) string {
	for _, kv := range strings.Split(sig, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

// waitQueueWithout polls `queue list --json` through n until no entry has
// rcpt as a recipient.
func waitQueueWithout(t *testing.T, n *node, rcpt string) {
	t.Helper()
	d := waitFor(t, deliveryTimeout, "no queue entry for "+rcpt, func() (bool, string) {
		res := n.tryCLI("", "queue", "list", "--json")
		if res.exitCode != 0 {
			return false, strings.TrimSpace(res.stderr)
		}
		var q []storage.QueueEntry
		if err := json.Unmarshal([]byte(res.stdout), &q); err != nil {
			return false, err.Error()
		}
		for _, e := range q {
			for _, r := range e.Recipients {
				if r.Address == rcpt {
					return false, fmt.Sprintf("entry %s: %s %s (attempts %d, last error %q)", e.ID, r.Address, r.Status, e.Attempts, e.LastError)
				}
			}
		}
		return true, ""
	})
	t.Logf("queue through %s has no entry for %s after %s", n.name, rcpt, d.Round(time.Millisecond))
}

// ---- Cluster with extra serve flags ----

// newClusterArgs is newCluster, but every serve gets extra after the
// harness's flags (the last occurrence of a flag wins).
func newClusterArgs(t *testing.T, size int, extra ...string) []*node {
	t.Helper()
	nodes := make([]*node, size)
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("node%d", i+1))
	}
	first := nodes[0]
	first.initCluster()
	startArgs(first, extra...)
	for _, n := range nodes[1:] {
		var created struct {
			Token string `json:"token"`
		}
		mustCLIJSON(t, &created, append([]string{"token", "create", "--ttl", "10m", "--json"}, first.adminFlags()...)...)
		if res := n.join(created.Token, first.clusterAddr); res.exitCode != 0 {
			t.Fatalf("join %s: %s", n.name, res)
		}
		startArgs(n, extra...)
	}
	waitHealthy(t, first, size)
	return nodes
}

// startArgs is node.start with extra serve flags.
func startArgs(n *node, extra ...string) {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logf.Close() // the child has its own copy
	args := append(append(append([]string{"serve"}, n.nodeFlags()...), fastTimings...), extra...)
	fmt.Fprintf(logf, "==== %s: serve %s %v\n", time.Now().Format(time.RFC3339Nano), n.name, extra)
	cmd := exec.Command(binary(n.t), args...)
	cmd.Env = cliEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.cmd, n.done = cmd, done
	n.t.Cleanup(func() { n.stopProcess(cmd, done) })
	waitFor(n.t, clusterTimeout, n.name+"'s admin API", func() (bool, string) {
		select {
		case <-done:
			n.t.Fatalf("%s exited during start-up: %v\n%s", n.name, cmd.ProcessState, tail(n.logPath, 30))
		default:
		}
		res := n.tryCLI("", "status")
		return res.exitCode == 0 || res.exitCode == 1, strings.TrimSpace(res.stderr)
	})
}

// ---- The remote MX ----

// sink is a go-smtp server on loopback standing in for remote.test's MX:
// it offers STARTTLS (self-signed), refuses refusedRcpt with 550 5.1.1 and
// records every message it takes.
type sink struct {
	port int
	mu   sync.Mutex
	msgs []sinkMsg
	// refused counts RCPT TO:<refusedRcpt>.
	refused int
}

type sinkMsg struct {
	helo  string // EHLO name of the session the message came in
	tls   bool
	from  string
	rcpts []string
	data  []byte
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	srv.Domain = "mx.remote.test"
	srv.TLSConfig = sinkTLS(t)
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *sink) withSubject(subject string) []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sinkMsg
	for _, m := range s.msgs {
		if subjectOf(string(m.data)) == subject {
			out = append(out, m)
		}
	}
	return out
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func (s *sink) refusedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

type sinkSession struct {
	s     *sink
	c     *gosmtp.Conn
	from  string
	rcpts []string
}

func (ss *sinkSession) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if strings.EqualFold(to, refusedRcpt) {
		ss.s.mu.Lock()
		ss.s.refused++
		ss.s.mu.Unlock()
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sinkMsg{helo: ss.c.Hostname(), tls: isTLS, from: ss.from, rcpts: slices.Clone(ss.rcpts), data: b})
	ss.s.mu.Unlock()
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *sinkSession) Logout() error { return nil }

// sinkTLS is a self-signed certificate for mx.remote.test.
func sinkTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, _ := clustertest.SelfSignedTLS(t)
	return cfg
}

// ---- python3-dkim ----

// pythonWithDKIM returns a python3 that has python3-dkim with dnspython
// and nacl (for ed25519), or "".
func pythonWithDKIM() string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if _, err := exec.LookPath(p); err != nil {
			continue
		}
		if exec.Command(p, "-c", "import dkim, dns.resolver, nacl").Run() == nil {
			return p
		}
	}
	return ""
}

// dkimVerifyScript verifies every DKIM signature of the message on stdin,
// asking the DNS server argv[1] (host:port) for keys, and prints "pass" or
// "fail" per signature.
const dkimVerifyScript = `
import sys, dkim, dns.resolver
host, port = sys.argv[1].rsplit(':', 1)
res = dns.resolver.Resolver(configure=False)
res.nameservers = [host]
res.port = int(port)
def txt(name, timeout=5):
    try:
        a = res.resolve(name.decode(), 'TXT', lifetime=timeout)
    except dns.exception.DNSException:
        return None
    for r in a:
        return b''.join(r.strings)
    return None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = sum(1 for line in msg.split(b'\r\n\r\n', 1)[0].split(b'\r\n') if line.lower().startswith(b'dkim-signature:'))
for i in range(n):
    try:
        ok = d.verify(idx=i, dnsfunc=txt)
    except Exception as e:
        print('error', e, file=sys.stderr)
        ok = False
    print('pass' if ok else 'fail')
`

func pythonDKIMVerify(t *testing.T, py, dnsAddr string, msg []byte) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", dkimVerifyScript, dnsAddr)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3-dkim: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("python3-dkim stderr: %s", stderr.String())
	}
	return strings.Fields(string(out))
}
