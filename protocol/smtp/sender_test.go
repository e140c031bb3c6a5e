package smtp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/storage"
)

func TestParseSenderCheck(t *testing.T) {
	for _, c := range []SenderCheck{SenderCheckBoth, SenderCheckEnvelope, SenderCheckHeader, SenderCheckOff} {
		got, err := ParseSenderCheck(c.String())
		if err != nil || got != c {
			t.Errorf("ParseSenderCheck(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseSenderCheck("strict"); err == nil || !strings.Contains(err.Error(), "want both, envelope, header or off") {
		t.Errorf("ParseSenderCheck(strict): %v", err)
	}
	cfg := Config{Mode: ModeMX, Hostname: "h", NodeName: "n", Accept: testPipeline(t, &faultyCluster{}), Store: &storage.Store{}, SenderCheck: 9}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SenderCheck") {
		t.Errorf("Validate with SenderCheck 9: %v", err)
	}
}

// TestSubmissionFromHeader: on submission the From header field must name
// only addresses of the authenticated user (account or alias delivering to
// it), like MAIL FROM; SenderCheck relaxes either. On the old code only
// MAIL FROM was checked, so "header other" and the rest were accepted.
func TestSubmissionFromHeader(t *testing.T) {
	e := newEnv(t)
	e.addUser(t, "user@example.test", "user-password")
	e.addUser(t, "other@example.test", "other-password")
	e.addUser(t, "rcpt@example.test", "pw")
	e.propose(t, storage.CmdAliasAdd, storage.AliasAdd{Address: "info@example.test", Targets: []string{"user@example.test"}})
	e.propose(t, storage.CmdAliasAdd, storage.AliasAdd{Address: "team@example.test", Targets: []string{"other@example.test", "user@example.test"}})
	e.propose(t, storage.CmdAliasAdd, storage.AliasAdd{Address: "sales@example.test", Targets: []string{"other@example.test"}})

	const (
		ok       = "250 2.0.0 "
		notOwned = "550 5.7.1 From header address rejected"
		noFrom   = "550 5.6.0 Message must have a From header field"
		manyFrom = "550 5.6.0 Message must have only one From header field"
	)
	headerCases := []struct {
		name, header, want string
	}{
		{"own", "From: user@example.test\r\n", ok},
		{"display name and case", "From: \"User, The\" <User@EXAMPLE.test>\r\n", ok},
		{"encoded display name, alias", "From: =?UTF-8?B?w4Fsw61jZQ==?= <info@example.test>\r\n", ok},
		{"alias shared with another user", "From: Team <team@example.test>\r\n", ok},
		{"comment and folding", "From: User\r\n <user@example.test> (phone)\r\n", ok},
		{"group of own addresses", "From: Me: user@example.test, info@example.test;\r\n", ok},
		{"another user", "From: Other <other@example.test>\r\n", notOwned},
		{"another user's alias", "From: sales@example.test\r\n", notOwned},
		{"one of two not owned", "From: user@example.test, other@example.test\r\n", notOwned},
		{"look-alike domain", "From: user@example.test.evil.example\r\n", notOwned},
		{"display name that looks like an address", "From: \"user@example.test\" <other@example.test>\r\n", notOwned},
		{"address literal", "From: user@[127.0.0.1]\r\n", notOwned},
		{"missing", "Reply-To: user@example.test\r\n", noFrom},
		{"empty group", "From: undisclosed-recipients:;\r\n", noFrom},
		{"does not parse", "From: User <user@example.test\r\n", noFrom},
		{"empty", "From:\r\n", noFrom},
		{"two fields", "From: user@example.test\r\nfrom: other@example.test\r\n", manyFrom},
	}
	_, sub := e.server(t, ModeSubmission, nil)
	accepted := 0
	for _, tc := range headerCases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := submitClient(t, sub, "user@example.test", "user-password")
			c.cmd("MAIL FROM:<user@example.test>", "250 ")
			c.cmd("RCPT TO:<rcpt@example.test>", "250 ")
			r := c.sendData(tc.header + "Subject: " + tc.name + "\r\n\r\nbody\r\n")
			if !strings.HasPrefix(r, tc.want) {
				t.Fatalf("reply %q, want %q", r, tc.want)
			}
			if tc.want == ok {
				accepted++
			}
			// The session goes on after a refusal.
			c.cmd("RSET", "250 ")
		})
	}
	t.Run("BDAT", func(t *testing.T) {
		c := submitClient(t, sub, "user@example.test", "user-password")
		c.cmd("MAIL FROM:<user@example.test>", "250 ")
		c.cmd("RCPT TO:<rcpt@example.test>", "250 ")
		msg := "From: other@example.test\r\nSubject: bdat\r\n\r\nbody\r\n"
		c.send(fmt.Sprintf("BDAT %d LAST", len(msg)))
		if _, err := c.conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.expect(notOwned)
	})
	if n := len(inbox(t, e.st, "rcpt@example.test")); n != accepted {
		t.Errorf("rcpt's INBOX has %d messages, want the %d accepted", n, accepted)
	}

	for _, tc := range []struct {
		check            SenderCheck
		mailFrom, header string
		mail, data       string
	}{
		{SenderCheckEnvelope, "user@example.test", "From: other@example.test\r\n", "250 ", ok},
		{SenderCheckEnvelope, "user@example.test", "Subject: no from\r\n", "250 ", ok},
		{SenderCheckEnvelope, "other@example.test", "From: user@example.test\r\n", "553 5.7.1 ", ""},
		{SenderCheckHeader, "other@example.test", "From: user@example.test\r\n", "250 ", ok},
		{SenderCheckHeader, "", "From: user@example.test\r\n", "250 ", ok},
		{SenderCheckHeader, "user@example.test", "From: other@example.test\r\n", "250 ", notOwned},
		{SenderCheckOff, "other@example.test", "From: other@example.test\r\n", "250 ", ok},
		{SenderCheckOff, "", "Subject: no from\r\n", "250 ", ok},
	} {
		t.Run(fmt.Sprintf("%s_%s_%s", tc.check, tc.mailFrom, strings.TrimSpace(tc.header)), func(t *testing.T) {
			_, addr := e.server(t, ModeSubmission, func(c *Config) { c.SenderCheck = tc.check })
			c := submitClient(t, addr, "user@example.test", "user-password")
			c.cmd("MAIL FROM:<"+tc.mailFrom+">", tc.mail)
			if tc.data == "" {
				return
			}
			c.cmd("RCPT TO:<rcpt@example.test>", "250 ")
			if r := c.sendData(tc.header + "Subject: relaxed\r\n\r\nbody\r\n"); !strings.HasPrefix(r, tc.data) {
				t.Fatalf("reply %q, want %q", r, tc.data)
			}
		})
	}

	// MX mail is not submission: any From goes.
	_, mx := e.server(t, ModeMX, nil)
	c := dial(t, mx)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<someone@remote.example>", "250 ")
	c.cmd("RCPT TO:<rcpt@example.test>", "250 ")
	if r := c.sendData("From: user@example.test\r\n\r\nbody\r\n"); !strings.HasPrefix(r, ok) {
		t.Errorf("MX: %q", r)
	}
}

// submitClient connects to a submission server, starts TLS and logs in.
func submitClient(t *testing.T, addr, user, password string) *client {
	t.Helper()
	c := dial(t, addr)
	c.cmd("EHLO client.example", "250 ")
	c.startTLS()
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth(user, password), "235 ")
	return c
}
