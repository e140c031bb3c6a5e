package smtp

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
	"github.com/raftmail/raftmail/storage"
)

// txtRR is a TXT record in zone syntax, split into 255-byte strings.
func txtRR(name, txt string) string {
	var parts []string
	for len(txt) > 255 {
		parts = append(parts, `"`+txt[:255]+`"`)
		txt = txt[255:]
	}
	parts = append(parts, `"`+txt+`"`)
	return name + " 300 IN TXT " + strings.Join(parts, " ")
}

func publishDKIM(t *testing.T, d *dnstest.Server, domain string, keys []mailauth.DKIMKey) {
	t.Helper()
	for _, k := range keys {
		txt, err := k.TXTRecord()
		if err != nil {
			t.Fatal(err)
		}
		d.Add(t, txtRR(k.Selector+"._domainkey."+domain+".", txt))
	}
}

// mailboxMsgs returns the messages in account's mailbox name.
func mailboxMsgs(t *testing.T, st *storage.Store, account, name string) []storage.Message {
	t.Helper()
	mb, err := st.Mailbox(account, name)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Messages(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// headerNames returns the names of the first n header fields of msg.
func headerNames(msg []byte, n int) []string {
	var names []string
	for _, line := range strings.Split(string(msg), "\r\n") {
		if line == "" || len(names) == n {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		names = append(names, name)
	}
	return names
}

func TestMailAuth(t *testing.T) {
	e := newEnv(t)
	e.addUser(t, "user@example.test", "user-password")
	e.addUser(t, "sender@example.test", "sender-password")

	d := dnstest.Start(t)
	d.Add(t,
		`pass.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.pass.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`reject.test. 300 IN TXT "v=spf1 ip4:10.0.0.1 -all"`,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`quar.test. 300 IN TXT "v=spf1 ip4:10.0.0.1 -all"`,
		`_dmarc.quar.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
	)
	d.ServFail("down.test", true)
	d.ServFail("_dmarc.down.test", true)
	remoteKeys, err := mailauth.GenerateDKIMKeys("rm20261128")
	if err != nil {
		t.Fatal(err)
	}
	publishDKIM(t, d, "pass.test", remoteKeys)
	localKeys, err := mailauth.GenerateDKIMKeys("rm20261201")
	if err != nil {
		t.Fatal(err)
	}
	publishDKIM(t, d, "example.test", localKeys)
	resolver := mailauth.NewResolver(d.Addr)

	_, mx := e.server(t, ModeMX, func(c *Config) {
		c.MailAuth = &mailauth.Checker{Resolver: resolver, AuthServID: testHost}
	})
	var askedMu sync.Mutex
	var asked []string
	_, sub := e.server(t, ModeSubmission, func(c *Config) {
		c.DKIMKeys = func(domain string) []mailauth.DKIMKey {
			askedMu.Lock()
			asked = append(asked, domain)
			askedMu.Unlock()
			if domain == "example.test" {
				return localKeys
			}
			return nil
		}
	})

	// send delivers msg from mailFrom to user@example.test over MX and
	// returns the reply to DATA.
	send := func(t *testing.T, mailFrom, msg string) string {
		t.Helper()
		c := dial(t, mx)
		c.cmd("EHLO client.remote.test", "250 ")
		c.cmd("MAIL FROM:<"+mailFrom+">", "250 ")
		c.cmd("RCPT TO:<user@example.test>", "250 ")
		r := c.sendData(msg)
		c.cmd("QUIT", "221 ")
		return r
	}
	msgFrom := func(from, id string) string {
		return fmt.Sprintf("From: <%s>\r\nTo: <user@example.test>\r\nSubject: test %s\r\nMessage-ID: <%s@remote>\r\n\r\nHello.\r\n", from, id, id)
	}
	count := func(name string) int { return len(mailboxMsgs(t, e.st, "user@example.test", name)) }

	t.Run("DMARCReject", func(t *testing.T) {
		inbox0, junk0 := count("INBOX"), count("Junk")
		r := send(t, "bounce@reject.test", msgFrom("ceo@reject.test", "r1"))
		if r != "550 5.7.1 Rejected by DMARC policy of reject.test" {
			t.Fatalf("reply %q", r)
		}
		if count("INBOX") != inbox0 || count("Junk") != junk0 {
			t.Fatal("a rejected message was stored")
		}
	})

	t.Run("DMARCQuarantine", func(t *testing.T) {
		inbox0, junk0 := count("INBOX"), count("Junk")
		queuedID(t, send(t, "bounce@quar.test", msgFrom("news@quar.test", "q1")))
		if count("INBOX") != inbox0 || count("Junk") != junk0+1 {
			t.Fatalf("INBOX %d->%d, Junk %d->%d", inbox0, count("INBOX"), junk0, count("Junk"))
		}
		msgs := mailboxMsgs(t, e.st, "user@example.test", "Junk")
		blob, err := e.st.Blob(msgs[len(msgs)-1].Blob)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(blob, []byte("dmarc=fail (p=quarantine dis=quarantine) header.from=quar.test")) {
			t.Fatalf("quarantined message header:\n%s", blob)
		}
	})

	t.Run("AllPassAndForgedHeaderStripped", func(t *testing.T) {
		body := "Authentication-Results: " + strings.ToUpper(testHost) + "; dkim=pass header.d=paypal.test; dmarc=pass\r\n" +
			"Authentication-Results: mx.elsewhere.test; spf=pass\r\n" +
			msgFrom("alice@pass.test", "p1")
		signed, err := mailauth.SignDKIM([]byte(body), "pass.test", remoteKeys, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		inbox0 := count("INBOX")
		queuedID(t, send(t, "alice@pass.test", string(signed)))
		msgs := inbox(t, e.st, "user@example.test")
		if len(msgs) != inbox0+1 {
			t.Fatalf("INBOX has %d messages, want %d", len(msgs), inbox0+1)
		}
		blob, err := e.st.Blob(msgs[len(msgs)-1].Blob)
		if err != nil {
			t.Fatal(err)
		}
		names := headerNames(blob, 3)
		if len(names) != 3 || names[0] != "Received" || names[1] != "Authentication-Results" || names[2] != "DKIM-Signature" {
			t.Fatalf("header starts %v:\n%s", names, blob)
		}
		s := string(blob)
		for _, want := range []string{
			"Authentication-Results: " + testHost + ";\r\n\tspf=pass smtp.mailfrom=alice@pass.test;\r\n",
			"dkim=pass header.d=pass.test header.s=rm20261128e",
			"dkim=pass header.d=pass.test header.s=rm20261128r",
			"dmarc=pass (p=reject dis=none) header.from=pass.test\r\n",
			"Authentication-Results: mx.elsewhere.test; spf=pass\r\n",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("stored message lacks %q:\n%s", want, s)
			}
		}
		if strings.Contains(s, "paypal") {
			t.Errorf("forged Authentication-Results kept:\n%s", s)
		}
	})

	t.Run("DNSDownNeverRejects", func(t *testing.T) {
		inbox0 := count("INBOX")
		queuedID(t, send(t, "x@down.test", msgFrom("ceo@down.test", "d1")))
		msgs := inbox(t, e.st, "user@example.test")
		if len(msgs) != inbox0+1 {
			t.Fatalf("INBOX has %d messages, want %d", len(msgs), inbox0+1)
		}
		blob, _ := e.st.Blob(msgs[len(msgs)-1].Blob)
		if !bytes.Contains(blob, []byte("spf=temperror")) || !bytes.Contains(blob, []byte("dmarc=temperror")) {
			t.Fatalf("header:\n%s", blob)
		}
	})

	t.Run("SubmissionSigned", func(t *testing.T) {
		e.addUser(t, "local@example.test", "pw")
		c := dial(t, sub)
		c.cmd("EHLO client.example", "250 ")
		c.startTLS()
		c.cmd("EHLO client.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("sender@example.test", "sender-password"), "235 ")
		c.cmd("MAIL FROM:<sender@example.test>", "250 ")
		c.cmd("RCPT TO:<friend@remote.example>", "250 ")
		c.cmd("RCPT TO:<local@example.test>", "250 ")
		msg := "From: Sender <sender@example.test>\r\nTo: friend@remote.example, local@example.test\r\n" +
			"Subject: signed\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <s1@example.test>\r\n\r\nHello, signed world.\r\n"
		id := queuedID(t, c.sendData(msg))
		c.cmd("QUIT", "221 ")
		askedMu.Lock()
		if len(asked) != 1 || asked[0] != "example.test" {
			t.Errorf("keys asked for %v", asked)
		}
		askedMu.Unlock()
		q, err := e.st.QueueEntry(id)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := e.st.Blob(q.Blob)
		if err != nil {
			t.Fatal(err)
		}
		if names := headerNames(blob, 3); len(names) != 3 || names[0] != "Received" || names[1] != "DKIM-Signature" || names[2] != "DKIM-Signature" {
			t.Fatalf("header starts %v:\n%s", names, blob)
		}
		if !bytes.HasSuffix(blob, []byte(msg)) {
			t.Fatalf("message changed:\n%s", blob)
		}
		res, err := mailauth.VerifyDKIM(context.Background(), resolver, blob, 0)
		if err != nil || len(res) != 2 {
			t.Fatalf("verify: %+v %v", res, err)
		}
		for i, r := range res {
			if r.Result != "pass" || r.Domain != "example.test" || r.Selector != localKeys[i].Selector {
				t.Fatalf("signature %d: %+v", i, r)
			}
		}
		if local := inbox(t, e.st, "local@example.test"); len(local) != 1 || local[0].Blob != q.Blob {
			t.Fatalf("local copy %+v", local)
		}
	})
}
