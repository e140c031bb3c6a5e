package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/storage"
)

// A remote that answers 451 twice, then accepts: delivered after retries,
// with the attempts and the last reply visible in the entry and through
// the admin API's queue show route.
func TestDeferredThenDelivered(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	dns := remoteDNS(t)
	release := make(chan struct{})
	remote := startRemote(t, func(tx int, to string) error {
		switch tx {
		case 1, 2:
			return smtpErr(451, gosmtp.EnhancedCode{4, 7, 1}, "greylisted, try again later")
		case 3:
			<-release
		}
		return nil
	}, nil)
	admin, err := ops.NewAdmin(ops.AdminConfig{Addr: "127.0.0.1:0", Token: "0123456789abcdef0123456789abcdef", Node: n.Node})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Shutdown(context.Background()) })
	startService(t, n.Node, dns.Addr, remote.port, nil)
	id := enqueue(t, n.Node, "Q1", "a@example.test", []string{"x@remote.test"}, testMessage)

	clustertest.WaitFor(t, 20*time.Second, "two deferred attempts", func() bool {
		q, err := n.Store.QueueEntry(id)
		return err == nil && q.Attempts == 2
	})
	client := &ops.Client{Addr: admin.Addr(), Token: "0123456789abcdef0123456789abcdef"}
	var q storage.QueueEntry
	if err := client.Do(context.Background(), "GET", "/v1/queue/"+id, nil, &q); err != nil {
		t.Fatal(err)
	}
	if q.Attempts != 2 || len(q.Recipients) != 1 || q.Recipients[0].Attempts != 2 || q.Recipients[0].Status != storage.QueuePending ||
		!strings.HasPrefix(q.Recipients[0].LastReply, "451 4.7.1 greylisted") {
		t.Fatalf("queue show: %+v", q)
	}
	close(release)
	clustertest.WaitFor(t, 20*time.Second, "entry delivered and removed", queueGone(n.Store, id))
	_, msgs, _ := remote.snapshot()
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{"x@remote.test"}) || msgs[0].from != "a@example.test" {
		t.Fatalf("remote got %+v", msgs)
	}
	if !bytes.Equal(msgs[0].data, []byte(testMessage)) {
		t.Fatalf("message changed in transit:\n%q\nwant\n%q", msgs[0].data, testMessage)
	}
}

// EHLO says the configured hostname (before and after STARTTLS), STARTTLS
// is used when offered, and two recipients at one domain share one
// connection and one DATA.
func TestTLSHostnameAndOneConnection(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	dns := remoteDNS(t)
	remote := startRemote(t, nil, nil)
	svc := startService(t, n.Node, dns.Addr, remote.port, func(cfg *Config) { cfg.Hostname = "out.example.test" })
	id := enqueue(t, n.Node, "Q2", "a@example.test", []string{"x@remote.test", "y@remote.test"}, testMessage)
	clustertest.WaitFor(t, 20*time.Second, "delivered", queueGone(n.Store, id))
	conns, msgs, helos := remote.snapshot()
	if conns != 1 {
		t.Errorf("%d connections, want 1", conns)
	}
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{"x@remote.test", "y@remote.test"}) {
		t.Fatalf("messages %+v", msgs)
	}
	if !msgs[0].tls {
		t.Error("message not sent over TLS although STARTTLS was offered")
	}
	if msgs[0].helo != svc.cfg.Hostname || !slices.Equal(helos, []string{svc.cfg.Hostname}) {
		t.Errorf("EHLO names %q / %q, want %q", msgs[0].helo, helos, svc.cfg.Hostname)
	}
}

// A remote that refuses a recipient with 550: a DSN (multipart/report)
// lands in the local sender's INBOX; a recipient it accepts is delivered
// in the same transaction and not in the report.
func TestPermanentFailureBounces(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, "a@example.test", "secret-password-1")
	dns := remoteDNS(t)
	remote := startRemote(t, func(_ int, to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user here")
		}
		return nil
	}, nil)
	startService(t, n.Node, dns.Addr, remote.port, nil)
	id := enqueue(t, n.Node, "Q3", "a@example.test", []string{"nobody@remote.test", "x@remote.test"}, testMessage)
	clustertest.WaitFor(t, 20*time.Second, "entry finished", queueGone(n.Store, id))
	_, msgs, _ := remote.snapshot()
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{"x@remote.test"}) {
		t.Fatalf("remote got %+v", msgs)
	}

	var dsn []byte
	clustertest.WaitFor(t, 10*time.Second, "bounce in the sender's INBOX", func() bool {
		mb, err := n.Store.Mailbox("a@example.test", "INBOX")
		if err != nil || mb.Messages == 0 {
			return false
		}
		ms, err := n.Store.Messages(mb.ID)
		if err != nil || len(ms) != 1 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dsn, err = n.Node.FetchBlob(ctx, ms[0].Blob)
		return err == nil
	})
	checkDSN(t, dsn, "a@example.test", "nobody@remote.test", "5.1.1", "x@remote.test")
}

// checkDSN parses a bounce and checks it is an RFC 3464 report for
// failedRcpt to sender, with status, the original headers attached, and no
// mention of notRcpt as failed.
func checkDSN(t *testing.T, raw []byte, sender, failedRcpt, status, notRcpt string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("bounce does not parse: %v\n%s", err, raw)
	}
	if to := m.Header.Get("To"); !strings.Contains(to, sender) {
		t.Errorf("To %q, want the sender %s", to, sender)
	}
	if from := m.Header.Get("From"); !strings.Contains(from, "MAILER-DAEMON@") {
		t.Errorf("From %q", from)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q (%v)", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	var status3464, headers string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		b, _ := io.ReadAll(p)
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		switch ct {
		case "message/delivery-status":
			status3464 = string(b)
		case "text/rfc822-headers":
			headers = string(b)
		}
	}
	if !slices.Equal(types, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}) {
		t.Fatalf("parts %q", types)
	}
	for _, want := range []string{"Reporting-MTA: dns; ", "Final-Recipient: rfc822; " + failedRcpt, "Action: failed", "Status: " + status, "Diagnostic-Code: smtp; 5"} {
		if !strings.Contains(status3464, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status3464)
		}
	}
	if notRcpt != "" && strings.Contains(status3464, notRcpt) {
		t.Errorf("delivered recipient %s in the report:\n%s", notRcpt, status3464)
	}
	if !strings.Contains(headers, "Subject: outbound test") {
		t.Errorf("original headers missing:\n%s", headers)
	}
}

// A null sender gets no bounce; the entry is removed all the same.
func TestNullSenderNoBounce(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, "a@example.test", "secret-password-1")
	dns := remoteDNS(t)
	remote := startRemote(t, func(int, string) error { return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no") }, nil)
	startService(t, n.Node, dns.Addr, remote.port, nil)
	id := enqueue(t, n.Node, "Q4", "", []string{"nobody@remote.test"}, testMessage)
	clustertest.WaitFor(t, 20*time.Second, "entry finished", queueGone(n.Store, id))
	if qs, _ := n.Store.QueueEntries(); len(qs) != 0 {
		t.Fatalf("queue %+v", qs)
	}
	if mb, _ := n.Store.Mailbox("a@example.test", "INBOX"); mb.Messages != 0 {
		t.Fatal("bounce delivered for a null sender")
	}
}

// Temporary failures past MaxQueueLifetime fail with 4.4.7 and bounce.
func TestQueueLifetimeExpires(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, "a@example.test", "secret-password-1")
	dns := remoteDNS(t)
	remote := startRemote(t, func(int, string) error { return smtpErr(452, gosmtp.EnhancedCode{4, 2, 2}, "mailbox full") }, nil)
	var mu sync.Mutex
	skew := time.Duration(0)
	startService(t, n.Node, dns.Addr, remote.port, func(cfg *Config) {
		cfg.MaxQueueLifetime = time.Hour
		cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(skew) }
	})
	id := enqueue(t, n.Node, "Q5", "a@example.test", []string{"x@remote.test"}, testMessage)
	clustertest.WaitFor(t, 20*time.Second, "a deferred attempt", func() bool {
		q, err := n.Store.QueueEntry(id)
		return err == nil && q.Attempts >= 1
	})
	mu.Lock()
	skew = 2 * time.Hour
	mu.Unlock()
	clustertest.WaitFor(t, 20*time.Second, "entry expired", queueGone(n.Store, id))
	mb, err := n.Store.Mailbox("a@example.test", "INBOX")
	if err != nil || mb.Messages != 1 {
		t.Fatalf("INBOX %+v %v", mb, err)
	}
	ms, _ := n.Store.Messages(mb.ID)
	raw, err := n.Store.Blob(ms[0].Blob)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "Status: 4.4.7") || !strings.Contains(string(raw), "Diagnostic-Code: smtp; 452 4.2.2 mailbox full") {
		t.Fatalf("expiry bounce:\n%s", raw)
	}
}

// MX lookups: no MX falls back to the domain's address (RFC 5321 §5.1);
// a null MX (RFC 7505) and a domain without MX or address fail at once;
// a DNS failure defers.
func TestMXLookup(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	dns := remoteDNS(t)
	dns.Add(t,
		"implicit.test. 300 IN A 127.0.0.1",
		"nullmx.test. 300 IN MX 0 .",
		`nothing.test. 300 IN TXT "v=spf1 -all"`,
	)
	dns.ServFail("broken.test", true)
	remote := startRemote(t, nil, nil)
	startService(t, n.Node, dns.Addr, remote.port, func(cfg *Config) { cfg.RetrySchedule = []time.Duration{time.Hour} })
	id := enqueue(t, n.Node, "Q6", "", []string{"a@implicit.test", "b@nullmx.test", "c@nothing.test", "d@broken.test"}, testMessage)
	clustertest.WaitFor(t, 20*time.Second, "one attempt", func() bool {
		q, err := n.Store.QueueEntry(id)
		return err == nil && q.Attempts == 1
	})
	q, _ := n.Store.QueueEntry(id)
	want := map[string]string{
		"a@implicit.test": storage.QueueDelivered + " 250",
		"b@nullmx.test":   storage.QueueFailed + " 556 5.1.10",
		"c@nothing.test":  storage.QueueFailed + " 550 5.1.2",
		"d@broken.test":   storage.QueuePending + " 451 4.4.3",
	}
	for _, r := range q.Recipients {
		got := r.Status + " " + r.LastReply
		if !strings.HasPrefix(got, want[r.Address]) {
			t.Errorf("%s: %q, want prefix %q", r.Address, got, want[r.Address])
		}
	}
}

// Postfix's smtp-sink, a real MTA peer, accepts the message.
func TestDeliverToSMTPSink(t *testing.T) {
	sink, err := exec.LookPath("smtp-sink")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/smtp-sink"); err2 != nil {
			t.Skip("smtp-sink (Debian package postfix) not installed")
		}
		sink = "/usr/sbin/smtp-sink"
	}
	port := clustertest.FreePort(t)
	cmd := exec.Command(sink, "-u", "root", fmt.Sprintf("127.0.0.1:%d", port), "100")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	clustertest.WaitFor(t, 10*time.Second, "smtp-sink listening", func() bool {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	dns := remoteDNS(t)
	startService(t, n.Node, dns.Addr, port, nil)
	id := enqueue(t, n.Node, "Q7", "a@example.test", []string{"x@remote.test", "y@remote.test"}, testMessage)
	clustertest.WaitFor(t, 20*time.Second, "delivered to smtp-sink", func() bool {
		q, err := n.Store.QueueEntry(id)
		if errors.Is(err, storage.ErrNotFound) {
			return true
		}
		for _, r := range q.Recipients {
			if err == nil && r.Status != storage.QueueDelivered && r.Attempts > 0 {
				t.Fatalf("not delivered: %+v (smtp-sink said: %s)", q, out.String())
			}
		}
		return false
	})
}
