package smtp

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// TestThreeNodes submits through node 1 and finds the message, with its
// blob, on every node.
func TestThreeNodes(t *testing.T) {
	c := clustertest.New(t, 3, nil)
	n1 := c.Nodes[0]
	clustertest.AddUser(t, n1.Node, "alice@example.test", "alice-password")
	clustertest.AddUser(t, n1.Node, "bob@example.test", "bob-password")
	_, addr := startServer(t, Config{
		Mode: ModeSubmission, Hostname: testHost, NodeName: n1.Name, TLS: testTLS(t),
		Accept: testPipeline(t, n1.Node), Store: n1.Store, Logger: clustertest.Logger(),
		Auth: auth.New(auth.Config{Store: n1.Store, BaseDelay: -1}),
	}, false)
	cl := dial(t, addr)
	cl.cmd("EHLO client.example", "250 ")
	cl.startTLS()
	cl.cmd("EHLO client.example", "250 ")
	cl.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "alice-password"), "235 ")
	cl.cmd("MAIL FROM:<alice@example.test>", "250 ")
	cl.cmd("RCPT TO:<bob@example.test>", "250 ")
	id := queuedID(t, cl.sendData("From: alice@example.test\r\nSubject: replicated\r\n\r\nto every node\r\n"))
	cl.cmd("QUIT", "221 ")

	var want []byte
	for _, n := range c.Nodes {
		var msgs []storage.Message
		clustertest.WaitFor(t, 20*time.Second, "message on "+n.Name, func() bool {
			mb, err := n.Store.Mailbox("bob@example.test", "INBOX")
			if err != nil {
				return false
			}
			msgs, err = n.Store.Messages(mb.ID)
			return err == nil && len(msgs) == 1
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		blob, err := n.Node.FetchBlob(ctx, msgs[0].Blob)
		cancel()
		if err != nil {
			t.Fatalf("%s: fetch blob: %v", n.Name, err)
		}
		if want == nil {
			want = blob
			if !strings.Contains(string(blob), "(Raftmail node n1) with ESMTPSA id "+id) {
				t.Errorf("blob:\n%s", blob)
			}
		} else if !bytes.Equal(blob, want) {
			t.Errorf("%s: blob differs", n.Name)
		}
	}
	c.WaitConverged()
}

// TestPythonSmtplib is a real client: STARTTLS, AUTH and sendmail.
func TestPythonSmtplib(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	e := newEnv(t)
	e.addUser(t, "py@example.test", "py-password")
	e.addUser(t, "rcpt@example.test", "pw")
	_, addr := e.server(t, ModeSubmission, nil)
	host, port, _ := strings.Cut(addr, ":")
	script := `
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.ehlo("python.example")
s.starttls(context=ctx)
s.ehlo("python.example")
assert "plain" in s.esmtp_features.get("auth", "").lower(), s.esmtp_features
s.login("py@example.test", "py-password")
msg = "From: py@example.test\r\nTo: rcpt@example.test\r\nSubject: from python\r\n\r\nHi from smtplib.\r\n"
refused = s.sendmail("py@example.test", ["rcpt@example.test", "someone@remote.example"], msg)
assert not refused, refused
s.quit()
print("sent")
`
	out, err := exec.Command("python3", "-c", script, host, port).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sent") {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	msgs := inbox(t, e.st, "rcpt@example.test")
	if len(msgs) != 1 {
		t.Fatalf("INBOX has %d messages, want 1", len(msgs))
	}
	blob, err := e.st.Blob(msgs[0].Blob)
	if err != nil || !strings.HasPrefix(string(blob), "Received: from python.example ([127.0.0.1])") || !strings.Contains(string(blob), "Hi from smtplib.") {
		t.Fatalf("blob (%v):\n%s", err, blob)
	}
	q, err := e.st.QueueEntries()
	if err != nil || len(q) != 1 || q[0].Recipients[0].Address != "someone@remote.example" || q[0].Blob != msgs[0].Blob {
		t.Fatalf("queue (%v): %+v", err, q)
	}
}
