package smtp

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

const testMsg = "From: <sender@remote.example>\r\nTo: <user@example.test>\r\nSubject: hello\r\n\r\nHello there.\r\n.. a dot-stuffed line\r\n"

// sendData sends DATA, the message (dot-stuffed by the caller) and the
// terminator, and returns the final reply.
func (c *client) sendData(msg string) string {
	c.t.Helper()
	c.cmd("DATA", "354 ")
	if _, err := c.conn.Write([]byte(msg + ".\r\n")); err != nil {
		c.t.Fatal(err)
	}
	r, err := c.reply()
	if err != nil {
		c.t.Fatalf("reply to DATA: %v", err)
	}
	return r
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestSMTP(t *testing.T) {
	e := newEnv(t)
	e.addUser(t, "user@example.test", "user-password")
	e.addUser(t, "other@example.test", "other-password")
	e.propose(t, storage.CmdAliasAdd, storage.AliasAdd{Address: "info@example.test", Targets: []string{"user@example.test"}})
	e.propose(t, storage.CmdAliasAdd, storage.AliasAdd{Address: "team@example.test", Targets: []string{"other@example.test", "user@example.test"}})
	appHash, err := storage.HashPassword("app-secret")
	if err != nil {
		t.Fatal(err)
	}
	e.propose(t, storage.CmdAppPasswordAdd, storage.AppPasswordAdd{Address: "other@example.test", Name: "phone", PasswordHash: appHash})

	mxSrv, mx := e.server(t, ModeMX, nil)
	_, sub := e.server(t, ModeSubmission, nil)
	_ = mxSrv

	t.Run("GreetingAndCapabilities", func(t *testing.T) {
		common := []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "SIZE 52428800"}
		check := func(t *testing.T, ehlo string, want, notWant []string) {
			t.Helper()
			caps := map[string]bool{}
			for _, l := range strings.Split(ehlo, "\n") {
				caps[l[4:]] = true
			}
			for _, w := range append(want, common...) {
				if !caps[w] {
					t.Errorf("EHLO reply lacks %q:\n%s", w, ehlo)
				}
			}
			for _, w := range notWant {
				if strings.Contains(ehlo, w) {
					t.Errorf("EHLO reply offers %q:\n%s", w, ehlo)
				}
			}
		}
		nc := dial(t, mx) // greeting checked by dial
		ehlo := nc.cmd("EHLO client.example", "250 ")
		if !strings.HasPrefix(ehlo, "250-Hello client.example") {
			t.Errorf("EHLO first line: %q", ehlo)
		}
		check(t, ehlo, []string{"STARTTLS"}, []string{"AUTH"})
		nc.startTLS()
		check(t, nc.cmd("EHLO client.example", "250 "), nil, []string{"AUTH", "STARTTLS"})

		sc := dial(t, sub)
		check(t, sc.cmd("EHLO client.example", "250 "), []string{"STARTTLS"}, []string{"AUTH"})
		sc.startTLS()
		check(t, sc.cmd("EHLO client.example", "250 "), []string{"AUTH PLAIN LOGIN"}, []string{"STARTTLS"})

		// The greeting names the host.
		raw := dialRaw(t, mx)
		if g, _ := raw.reply(); g != "220 "+testHost+" ESMTP Service Ready" {
			t.Errorf("greeting %q", g)
		}
		raw.cmd("HELO old.example", "250 ")
		raw.cmd("QUIT", "221 ")
	})

	t.Run("MXTranscripts", func(t *testing.T) {
		long := strings.Repeat("x", 3000)
		tests := []struct {
			name   string
			script [][2]string // command, expected reply prefix
		}{
			{"relay denied", [][2]string{
				{"MAIL FROM:<someone@remote.example>", "250 "},
				{"RCPT TO:<victim@elsewhere.example>", "554 5.7.1 Relay access denied"},
				{"RCPT TO:<user@example.test.elsewhere.example>", "554 5.7.1 "},
				{"RCPT TO:<user@[127.0.0.1]>", "501 5.1.3 "},
			}},
			{"unknown user", [][2]string{
				{"MAIL FROM:<someone@remote.example>", "250 "},
				{"RCPT TO:<nobody@example.test>", "550 5.1.1 "},
				{"RCPT TO:<user@example.test>", "250 "},
			}},
			{"null sender", [][2]string{
				{"MAIL FROM:<>", "250 "},
				{"RCPT TO:<User@Example.Test>", "250 "},
			}},
			{"malformed addresses", [][2]string{
				{"MAIL FROM:someone", "501 "},
				{"MAIL FROM:<@>", "501 "},
				{"MAIL FROM:<a@-bad-.example>", "501 5.1.7 "},
				{"MAIL FROM:<someone@remote.example>", "250 "},
				{"RCPT TO:<nodomain>", "501 "},
				{"RCPT TO:<a@b..example>", "501 5.1.3 "},
				{"RCPT TO:<" + strings.Repeat("a", 65) + "@example.test>", "501 5.1.3 "},
				{"RCPT TO:user@example.test", "250 "},
			}},
			{"utf8 needs SMTPUTF8", [][2]string{
				{"MAIL FROM:<jöran@remote.example>", "553 5.6.7 "},
				{"MAIL FROM:<jöran@remote.example> SMTPUTF8", "250 "},
				{"RCPT TO:<user@example.test>", "250 "},
				{"RSET", "250 "},
				{"MAIL FROM:<a@remote.example>", "250 "},
				{"RCPT TO:<ü@example.test>", "553 5.6.7 "},
			}},
			{"declared size too big", [][2]string{
				{"MAIL FROM:<someone@remote.example> SIZE=60000000", "552 5.3.4 "},
				{"MAIL FROM:<someone@remote.example> SIZE=1000", "250 "},
			}},
			{"sequence errors", [][2]string{
				{"RCPT TO:<user@example.test>", "502 5.5.1 "},
				{"DATA", "502 5.5.1 "},
				{"MAIL FROM:<someone@remote.example>", "250 "},
				{"DATA", "502 5.5.1 "},
				{"BDAT 10 LAST", "502 5.5.1 "},
			}},
			{"unknown commands", [][2]string{
				{"FROB nicate", "500 5.5.2 "},
				{"EXPN staff", "502 5.5.1 "},
				{"VRFY user", "252 "},
				{"NOOP", "250 "},
			}},
			{"no AUTH on MX", [][2]string{
				{"AUTH PLAIN " + plainAuth("user@example.test", "user-password"), "503 5.5.1 "},
			}},
			{"huge line", [][2]string{
				{"NOOP " + long, "500 5.4.0 "},
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := dial(t, mx)
				c.cmd("EHLO client.example", "250 ")
				for _, step := range tc.script {
					c.cmd(step[0], step[1])
				}
			})
		}
	})

	t.Run("TooManyRecipients", func(t *testing.T) {
		_, addr := e.server(t, ModeMX, func(c *Config) { c.MaxRecipients = 2 })
		c := dial(t, addr)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<user@example.test>", "250 ")
		c.cmd("RCPT TO:<nobody@example.test>", "550 ")
		c.cmd("RCPT TO:<other@example.test>", "250 ")
		c.cmd("RCPT TO:<info@example.test>", "452 4.5.3 Too many recipients")
	})

	t.Run("DeliverToInbox", func(t *testing.T) {
		e.addUser(t, "deliver@example.test", "pw")
		c := dial(t, mx)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<Deliver@EXAMPLE.test>", "250 ")
		id := queuedID(t, c.sendData(testMsg))
		if len(id) < 12 || strings.ToUpper(id) != id {
			t.Errorf("queue id %q: want 12+ upper-case characters", id)
		}
		msgs := inbox(t, e.st, "deliver@example.test")
		if len(msgs) != 1 {
			t.Fatalf("INBOX has %d messages, want 1", len(msgs))
		}
		blob, err := e.node.FetchBlob(context.Background(), msgs[0].Blob)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(blob)) != msgs[0].Size {
			t.Errorf("size %d, blob %d bytes", msgs[0].Size, len(blob))
		}
		s := string(blob)
		for _, want := range []string{
			"Received: from client.example ([127.0.0.1])\r\n\tby " + testHost + " (Raftmail node n1) with ESMTP id " + id + "\r\n\tfor <Deliver@example.test>;\r\n\t",
			"\r\nFrom: <sender@remote.example>\r\n",
			"\r\nHello there.\r\n. a dot-stuffed line\r\n",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("blob lacks %q:\n%s", want, s)
			}
		}
		if !strings.HasPrefix(s, "Received: ") {
			t.Errorf("blob does not start with Received:\n%s", s)
		}
		c.cmd("QUIT", "221 ")
	})

	t.Run("AliasAndDuplicates", func(t *testing.T) {
		before := len(inbox(t, e.st, "user@example.test"))
		beforeOther := len(inbox(t, e.st, "other@example.test"))
		c := dial(t, mx)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<info@example.test>", "250 ")
		c.cmd("RCPT TO:<user@example.test>", "250 ")
		c.cmd("RCPT TO:<USER@example.test>", "250 ")
		c.cmd("RCPT TO:<team@example.test>", "250 ")
		queuedID(t, c.sendData(testMsg))
		msgs := inbox(t, e.st, "user@example.test")
		if len(msgs) != before+1 {
			t.Fatalf("user INBOX has %d messages, want %d (one delivery for four addresses)", len(msgs), before+1)
		}
		if n := len(inbox(t, e.st, "other@example.test")); n != beforeOther+1 {
			t.Fatalf("other INBOX has %d messages, want %d", n, beforeOther+1)
		}
		blob, err := e.st.Blob(msgs[len(msgs)-1].Blob)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(blob[:bytes.Index(blob, []byte("\r\nFrom:"))]), "for <") {
			t.Errorf("Received names a recipient although there are several:\n%s", blob)
		}
	})

	t.Run("SizeStreamed", func(t *testing.T) {
		e.addUser(t, "size@example.test", "pw")
		srv, addr := e.server(t, ModeMX, func(c *Config) { c.MaxMessageBytes = 1000 })
		c := dial(t, addr)
		ehlo := c.cmd("EHLO client.example", "250 ")
		if !strings.Contains(ehlo, "SIZE 1000") {
			t.Errorf("EHLO does not advertise SIZE 1000:\n%s", ehlo)
		}
		c.cmd("MAIL FROM:<a@remote.example> SIZE=1001", "552 5.3.4 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<size@example.test>", "250 ")
		big := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", 100)
		if r := c.sendData(big); !strings.HasPrefix(r, "552 5.3.4 ") {
			t.Fatalf("oversized DATA: %q", r)
		}
		// BDAT: refused by chunk size.
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<size@example.test>", "250 ")
		c.send(fmt.Sprintf("BDAT %d LAST", len(big)))
		c.conn.Write([]byte(big))
		c.expect("552 5.3.4 ")
		// The session goes on, and a small message fits.
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<size@example.test>", "250 ")
		queuedID(t, c.sendData("Subject: small\r\n\r\nsmall\r\n"))
		c.cmd("QUIT", "221 ")
		waitNoConns(t, srv)
		if n := len(inbox(t, e.st, "size@example.test")); n != 1 {
			t.Fatalf("INBOX has %d messages, want only the small one", n)
		}
	})

	t.Run("PipelinedAndBDAT", func(t *testing.T) {
		e.addUser(t, "pipe@example.test", "pw")
		c := dial(t, mx)
		c.send("EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<pipe@example.test>\r\nDATA")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("550 5.1.1 ")
		c.expect("250 ")
		c.expect("354 ")
		c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nMAIL FROM:<b@remote.example>\r\nRCPT TO:<pipe@example.test>")
		queuedID(t, c.expect("250 2.0.0 Ok: queued as "))
		c.expect("250 ")
		c.expect("250 ")
		part1, part2 := "Subject: chunked\r\n\r\nfirst ", "second\r\n"
		c.send(fmt.Sprintf("BDAT %d", len(part1)))
		c.conn.Write([]byte(part1))
		c.expect("250 2.0.0 ")
		c.send(fmt.Sprintf("BDAT %d LAST", len(part2)))
		c.conn.Write([]byte(part2))
		queuedID(t, c.expect("250 2.0.0 Ok: queued as "))
		msgs := inbox(t, e.st, "pipe@example.test")
		if len(msgs) != 2 {
			t.Fatalf("INBOX has %d messages, want 2", len(msgs))
		}
		blob, _ := e.st.Blob(msgs[1].Blob)
		if !strings.HasSuffix(string(blob), "\r\nSubject: chunked\r\n\r\nfirst second\r\n") {
			t.Errorf("BDAT blob:\n%q", blob)
		}
	})

	t.Run("BareLF", func(t *testing.T) {
		e.addUser(t, "barelf@example.test", "pw")
		c := dial(t, mx)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<barelf@example.test>", "250 ")
		// A "\n.\n" smuggling attempt rides inside the message.
		r := c.sendData("Subject: x\r\n\r\nline one\n.\nMAIL FROM:<evil@remote.example>\r\n")
		if !strings.HasPrefix(r, "554 5.5.2 ") {
			t.Fatalf("bare LF: %q", r)
		}
		c.cmd("NOOP", "250 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<barelf@example.test>", "250 ")
		chunk := "a\nb\r\nc\r\n"
		c.send(fmt.Sprintf("BDAT %d LAST", len(chunk)))
		c.conn.Write([]byte(chunk))
		c.expect("554 5.5.2 ")
		if n := len(inbox(t, e.st, "barelf@example.test")); n != 0 {
			t.Fatalf("INBOX has %d messages, want 0", n)
		}
	})

	t.Run("DisconnectMidData", func(t *testing.T) {
		e.addUser(t, "cut@example.test", "pw")
		srv, addr := e.server(t, ModeMX, nil)
		for _, bdat := range []bool{false, true} {
			c := dial(t, addr)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<a@remote.example>", "250 ")
			c.cmd("RCPT TO:<cut@example.test>", "250 ")
			if bdat {
				c.send("BDAT 10")
				c.conn.Write([]byte("0123456789"))
				c.expect("250 ")
				c.send("BDAT 100 LAST")
				c.conn.Write([]byte("only part"))
			} else {
				c.cmd("DATA", "354 ")
				c.conn.Write([]byte("Subject: cut\r\n\r\nhalf a mess"))
			}
			c.conn.Close()
			waitNoConns(t, srv)
		}
		if n := len(inbox(t, e.st, "cut@example.test")); n != 0 {
			t.Fatalf("INBOX has %d messages after disconnects, want 0", n)
		}
	})

	t.Run("SubmissionAuth", func(t *testing.T) {
		c := dial(t, sub)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("user@example.test", "user-password"), "530 5.7.0 Must issue a STARTTLS command first")
		c.cmd("MAIL FROM:<user@example.test>", "530 5.7.0 Authentication required")
		c.startTLS()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<user@example.test>", "530 5.7.0 Authentication required")
		c.cmd("AUTH PLAIN "+plainAuth("user@example.test", "wrong"), "535 5.7.8 ")
		c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("other@example.test\x00user@example.test\x00user-password")), "535 5.7.8 ")
		c.cmd("AUTH PLAIN !!!", "454 4.7.0 ")
		c.cmd("AUTH CRAM-MD5", "504 5.7.4 ")
		c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.cmd(base64.StdEncoding.EncodeToString([]byte("user@example.test")), "334 UGFzc3dvcmQ6")
		c.cmd(base64.StdEncoding.EncodeToString([]byte("nope")), "535 5.7.8 ")
		c.cmd("AUTH LOGIN "+base64.StdEncoding.EncodeToString([]byte("user@example.test")), "334 UGFzc3dvcmQ6")
		c.cmd(base64.StdEncoding.EncodeToString([]byte("user-password")), "235 2.0.0 ")
		c.cmd("AUTH PLAIN "+plainAuth("user@example.test", "user-password"), "503 5.5.1 ")
		c.cmd("MAIL FROM:<other@example.test>", "553 5.7.1 ")
		c.cmd("MAIL FROM:<>", "553 5.7.1 ")
		c.cmd("MAIL FROM:<info@example.test>", "250 ")
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<team@example.test>", "250 ")
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<User@Example.Test>", "250 ")
		c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1 ")

		// An app password, over implicit TLS.
		_, sTLS := startServer(t, Config{
			Mode: ModeSubmission, Hostname: testHost, NodeName: "n1", TLS: e.tls,
			Accept: testPipeline(t, e.node), Store: e.st, Auth: e.auth, Logger: clustertest.Logger(),
		}, true)
		tc := dialTLS(t, sTLS)
		ehlo := tc.cmd("EHLO client.example", "250 ")
		if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("implicit TLS EHLO:\n%s", ehlo)
		}
		tc.cmd("AUTH PLAIN", "334 ")
		tc.cmd(plainAuth("other@example.test", "app-secret"), "235 2.0.0 ")
		tc.cmd("MAIL FROM:<other@example.test>", "250 ")
	})

	t.Run("LoginThrottled", func(t *testing.T) {
		checker := auth.New(auth.Config{Store: e.st, BaseDelay: -1, MaxFailures: 2})
		_, addr := e.server(t, ModeSubmission, func(c *Config) { c.Auth = checker })
		c := dial(t, addr)
		c.cmd("EHLO client.example", "250 ")
		c.startTLS()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("other@example.test", "bad"), "535 5.7.8 ")
		c.cmd("AUTH PLAIN "+plainAuth("other@example.test", "bad"), "535 5.7.8 ")
		c.cmd("AUTH PLAIN "+plainAuth("other@example.test", "other-password"), "454 4.7.0 ")
	})

	t.Run("SubmissionRemoteQueued", func(t *testing.T) {
		e.addUser(t, "sender@example.test", "sender-password")
		e.addUser(t, "local@example.test", "pw")
		c := dial(t, sub)
		c.cmd("EHLO client.example", "250 ")
		c.startTLS()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("sender@example.test", "sender-password"), "235 ")
		c.cmd("MAIL FROM:<sender@example.test>", "250 ")
		c.cmd("RCPT TO:<friend@Remote.EXAMPLE>", "250 ")
		c.cmd("RCPT TO:<friend@remote.example>", "250 ")
		c.cmd("RCPT TO:<second@other.example>", "250 ")
		c.cmd("RCPT TO:<local@example.test>", "250 ")
		id := queuedID(t, c.sendData("From: <sender@example.test>\r\nSubject: out\r\n\r\nbody\r\n"))
		q, err := e.st.QueueEntry(id)
		if err != nil {
			t.Fatalf("queue entry %s: %v", id, err)
		}
		if q.From != "sender@example.test" || len(q.Recipients) != 2 ||
			q.Recipients[0] != (storage.QueueRecipient{Address: "friend@remote.example", Status: "pending"}) ||
			q.Recipients[1] != (storage.QueueRecipient{Address: "second@other.example", Status: "pending"}) {
			t.Errorf("queue entry: %+v", q)
		}
		all, err := e.st.QueueEntries()
		if err != nil || len(all) != 1 {
			t.Errorf("queue has %d entries (%v), want 1", len(all), err)
		}
		msgs := inbox(t, e.st, "local@example.test")
		if len(msgs) != 1 || msgs[0].Blob != q.Blob {
			t.Fatalf("local copy: %+v, queue blob %s", msgs, q.Blob)
		}
		blob, _ := e.st.Blob(q.Blob)
		if !strings.Contains(string(blob), "with ESMTPSA id "+id+";\r\n") {
			t.Errorf("Received does not say ESMTPSA:\n%s", blob)
		}
		c.cmd("QUIT", "221 ")
	})

	t.Run("OverQuota", func(t *testing.T) {
		e.addUser(t, "full@example.test", "pw")
		e.propose(t, storage.CmdAccountQuota, storage.AccountQuota{Address: "full@example.test", QuotaBytes: 600})
		c := dial(t, mx)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<full@example.test>", "250 ")
		if r := c.sendData("Subject: big\r\n\r\n" + strings.Repeat("x", 700) + "\r\n"); !strings.HasPrefix(r, "552 5.2.2 Mailbox full") {
			t.Fatalf("over quota: %q", r)
		}
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<full@example.test>", "250 ")
		queuedID(t, c.sendData("Subject: small\r\n\r\nsmall\r\n"))
		e.propose(t, storage.CmdAccountQuota, storage.AccountQuota{Address: "full@example.test", QuotaBytes: 100})
		// Now at or over its quota: refused at RCPT.
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<full@example.test>", "552 5.2.2 ")
	})

	t.Run("CommitFailures", func(t *testing.T) {
		e.addUser(t, "fail@example.test", "pw")
		tests := []struct {
			name       string
			blobErr    error
			proposeErr error
			closed     bool
		}{
			{"blob no quorum", writeErr{msg: "cluster: no quorum"}, nil, false},
			{"propose no quorum", nil, writeErr{msg: "cluster: no quorum"}, false},
			{"propose other error", nil, fmt.Errorf("wrapped: %w", context.DeadlineExceeded), false},
			{"outcome unknown", nil, fmt.Errorf("propose: %w", writeErr{msg: "cluster: outcome unknown", unknown: true}), true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				fc := &faultyCluster{Node: e.node, blobErr: tc.blobErr, proposeErr: tc.proposeErr}
				srv, addr := e.server(t, ModeMX, func(c *Config) { c.Accept = testPipeline(t, fc) })
				c := dial(t, addr)
				c.cmd("EHLO client.example", "250 ")
				c.cmd("MAIL FROM:<a@remote.example>", "250 ")
				c.cmd("RCPT TO:<fail@example.test>", "250 ")
				c.cmd("DATA", "354 ")
				c.conn.Write([]byte(testMsg + ".\r\n"))
				if tc.closed {
					c.expectClosed()
				} else {
					c.expect("451 4.3.0 ")
					c.cmd("NOOP", "250 ")
				}
				c.conn.Close()
				waitNoConns(t, srv)
				wantProposed := int32(1)
				if tc.blobErr != nil {
					wantProposed = 0
				}
				if got := fc.proposed.Load(); got != wantProposed {
					t.Errorf("proposed %d times, want %d", got, wantProposed)
				}
			})
		}
		if n := len(inbox(t, e.st, "fail@example.test")); n != 0 {
			t.Fatalf("INBOX has %d messages, want 0", n)
		}
	})

	t.Run("ShutdownSays421", func(t *testing.T) {
		cfg := Config{Mode: ModeMX, Hostname: testHost, NodeName: "n1", Accept: testPipeline(t, e.node), Store: e.st, Logger: clustertest.Logger()}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := netListen(t)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		c := dial(t, ln.Addr().String())
		c.cmd("EHLO client.example", "250 ")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		c.expect("421 ")
		if err := <-done; err != nil {
			t.Fatalf("serve: %v", err)
		}
		if err := s.Serve(ln); err != ErrServerClosed {
			t.Fatalf("serve after shutdown: %v", err)
		}
	})
}

// TestShutdownWaitsForMessage: a message in progress at Shutdown is
// finished and acknowledged, then the client gets 421.
func TestShutdownWaitsForMessage(t *testing.T) {
	e := newEnv(t)
	e.addUser(t, "late@example.test", "pw")
	s, err := New(Config{Mode: ModeMX, Hostname: testHost, NodeName: "n1", Accept: testPipeline(t, e.node), Store: e.st, Logger: clustertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<a@remote.example>", "250 ")
	c.cmd("RCPT TO:<late@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.conn.Write([]byte("Subject: late\r\n\r\nfirst half, "))
	// Data is running once the connection is busy.
	clustertest.WaitFor(t, 10*time.Second, "DATA in progress", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for cn := range s.mu.conns {
			cn.mu.Lock()
			busy := cn.busy
			cn.mu.Unlock()
			if busy {
				return true
			}
		}
		return false
	})
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	clustertest.WaitFor(t, 10*time.Second, "shutdown started", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.mu.closing
	})
	c.conn.Write([]byte("second half\r\n.\r\n"))
	queuedID(t, c.expect("250 2.0.0 Ok: queued as "))
	c.expect("421 ")
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if n := len(inbox(t, e.st, "late@example.test")); n != 1 {
		t.Fatalf("INBOX has %d messages, want 1", n)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	if err := (Config{Mode: ModeSubmission, Hostname: "h", NodeName: "n", Accept: testPipeline(t, &faultyCluster{}), Store: &storage.Store{}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "missing TLS") || !strings.Contains(err.Error(), "missing Auth") {
		t.Fatalf("submission without TLS and Auth: %v", err)
	}
	if err := (Config{Mode: ModeMX, Hostname: "h", NodeName: "n", Accept: testPipeline(t, &faultyCluster{}), Store: &storage.Store{}}).Validate(); err != nil {
		t.Fatalf("minimal MX config: %v", err)
	}
}
