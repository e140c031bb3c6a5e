package pop3

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

var testMsgs = []string{
	"From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n",
	"Subject: dots\r\n\r\n.hidden\r\n..two\r\nnormal\r\n.\r\nend\r\n",
	"Subject: three\r\nX-A: b\r\n\r\nl1\r\nl2\r\n.l3\r\n",
}

func plainB64(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

// TestTranscripts plays protocol transcripts over real sockets against a
// server on a real one-node cluster. Each case has its own account holding
// testMsgs.
func TestTranscripts(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, nil)

	const login = `
		S: +OK pop.example.test Raftmail POP3 server ready
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK Maildrop has 3 messages ({TOT} octets)`

	cases := []struct {
		name   string
		script string
		// left is the number of messages in the INBOX after the session.
		left int
	}{
		{"capa before and after login", `
			S: +OK pop.example.test Raftmail POP3 server ready
			C: CAPA
			S: +OK Capability list follows
			S: TOP
			S: UIDL
			S: RESP-CODES
			S: AUTH-RESP-CODE
			S: PIPELINING
			S: STLS
			S: USER
			S: SASL PLAIN LOGIN
			S: IMPLEMENTATION Raftmail
			S: .
			C: USER {U}
			S: +OK Send your password
			C: PASS {P}
			S: +OK Maildrop has 3 messages ({TOT} octets)
			C: CAPA
			S: +OK Capability list follows
			S: TOP
			S: UIDL
			S: RESP-CODES
			S: AUTH-RESP-CODE
			S: PIPELINING
			S: IMPLEMENTATION Raftmail
			S: .
			C: QUIT
			S: +OK Raftmail POP3 server signing off
			X:`, 3},
		{"auth plain initial response", `
			S: +OK*
			C: AUTH PLAIN {PLAIN}
			S: +OK Maildrop has 3 messages ({TOT} octets)
			C: STAT
			S: +OK 3 {TOT}
			C: QUIT
			S: +OK*`, 3},
		{"auth plain continuation, lower case", `
			S: +OK*
			C: auth plain
			S: {CONT}
			C: {PLAIN}
			S: +OK Maildrop has 3 messages*
			C: QUIT
			S: +OK*`, 3},
		{"auth plain authzid same user", `
			S: +OK*
			C: AUTH PLAIN {PLAINZ}
			S: +OK Maildrop has 3 messages*`, 3},
		{"auth plain other authzid refused", `
			S: +OK*
			C: AUTH PLAIN {PLAINOTHER}
			S: -ERR [AUTH] Authentication failed
			C: STAT
			S: -ERR Command not valid in this state`, 3},
		{"auth cancel, bad data, unknown mechanism", `
			S: +OK*
			C: AUTH PLAIN
			S: {CONT}
			C: *
			S: -ERR AUTH cancelled
			C: AUTH PLAIN
			S: {CONT}
			C: !!!notbase64
			S: -ERR invalid base64 data
			C: AUTH PLAIN =
			S: -ERR Malformed AUTH response
			C: AUTH PLAIN {NONUL}
			S: -ERR Malformed AUTH response
			C: AUTH CRAM-MD5
			S: -ERR Unsupported SASL mechanism
			C: AUTH
			S: +OK
			S: PLAIN
			S: LOGIN
			S: .
			C: AUTH PLAIN {PLAIN}
			S: +OK*`, 3},
		{"auth login", `
			S: +OK*
			C: AUTH LOGIN
			S: + VXNlcm5hbWU6
			C: {UB64}
			S: + UGFzc3dvcmQ6
			C: {PB64}
			S: +OK Maildrop has 3 messages*`, 3},
		{"wrong password", `
			S: +OK*
			C: USER {U}
			S: +OK*
			C: PASS wrong
			S: -ERR [AUTH] Authentication failed
			C: PASS {P}
			S: -ERR USER first
			C: AUTH PLAIN {PLAINBAD}
			S: -ERR [AUTH] Authentication failed
			C: USER nobody@example.test
			S: +OK*
			C: PASS {P}
			S: -ERR [AUTH] Authentication failed
			C: STAT
			S: -ERR Command not valid in this state
			` + login[strings.Index(login, "C:"):] + `
			C: QUIT
			S: +OK*`, 3},
		{"stat list uidl", login + `
			C: STAT
			S: +OK 3 {TOT}
			C: LIST
			S: +OK 3 messages ({TOT} octets)
			S: 1 {S1}
			S: 2 {S2}
			S: 3 {S3}
			S: .
			C: LIST 2
			S: +OK 2 {S2}
			C: UIDL
			S: +OK*
			S: 1 {V}.{UID1}
			S: 2 {V}.{UID2}
			S: 3 {V}.{UID3}
			S: .
			C: UIDL 3
			S: +OK 3 {V}.{UID3}
			C: LIST 0
			S: -ERR No such message
			C: LIST 4
			S: -ERR No such message
			C: LIST abc
			S: -ERR No such message
			C: LIST +1
			S: -ERR No such message
			C: UIDL 99999999999999999999
			S: -ERR No such message
			C: LIST 1 2
			S: -ERR Syntax: LIST [msg]
			C: STAT 1
			S: -ERR Syntax: STAT takes no arguments
			C: NOOP
			S: +OK
			C: QUIT
			S: +OK Raftmail POP3 server signing off
			X:`, 3},
		{"retr dot-stuffing", login + `
			C: RETR 2
			S: +OK {S2} octets
			S: Subject: dots
			S:
			S: ..hidden
			S: ...two
			S: normal
			S: ..
			S: end
			S: .
			C: RETR 1
			S: +OK {S1} octets
			S: From: a@example.test
			S: Subject: one
			S:
			S: Hello
			S: .
			C: RETR
			S: -ERR Syntax: RETR msg
			C: RETR 4
			S: -ERR No such message`, 3},
		{"top", login + `
			C: TOP 3 1
			S: +OK*
			S: Subject: three
			S: X-A: b
			S:
			S: l1
			S: .
			C: TOP 3 0
			S: +OK*
			S: Subject: three
			S: X-A: b
			S:
			S: .
			C: TOP 3 100
			S: +OK*
			S: Subject: three
			S: X-A: b
			S:
			S: l1
			S: l2
			S: ..l3
			S: .
			C: TOP 3
			S: -ERR Syntax: TOP msg lines
			C: TOP 3 -1
			S: -ERR Invalid number of lines
			C: TOP 9 1
			S: -ERR No such message`, 3},
		{"dele rset", login + `
			C: DELE 1
			S: +OK Message 1 deleted
			C: STAT
			S: +OK 2 {S23}
			C: LIST
			S: +OK 2 messages ({S23} octets)
			S: 2 {S2}
			S: 3 {S3}
			S: .
			C: LIST 1
			S: -ERR Message 1 already deleted
			C: RETR 1
			S: -ERR Message 1 already deleted
			C: DELE 1
			S: -ERR Message 1 already deleted
			C: UIDL 1
			S: -ERR Message 1 already deleted
			C: RSET
			S: +OK Maildrop has 3 messages ({TOT} octets)
			C: RETR 1
			S: +OK*
			S: From: a@example.test
			S: Subject: one
			S:
			S: Hello
			S: .
			C: QUIT
			S: +OK Raftmail POP3 server signing off`, 3},
		{"dele quit deletes", login + `
			C: DELE 1
			S: +OK*
			C: DELE 3
			S: +OK*
			C: QUIT
			S: +OK Raftmail POP3 server signing off (2 messages deleted)
			X:`, 1},
		{"unknown and malformed commands", `
			S: +OK*
			C: FOO
			S: -ERR Unknown command
			C:
			S: -ERR empty command
			C: ST@T
			S: -ERR invalid command keyword
			R: STAT\x01\r\n
			S: -ERR invalid character in command
			C: STAT
			S: -ERR Command not valid in this state
			C: NOOP
			S: -ERR Command not valid in this state
			C: PASS {P}
			S: -ERR USER first
			C: USER
			S: -ERR Syntax: USER name
			C: CAPA x
			S: -ERR Syntax: CAPA takes no arguments
			` + login[strings.Index(login, "C:"):] + `
			C: USER {U}
			S: -ERR Command not valid in this state
			C: STLS
			S: -ERR Command not valid in this state
			C: XYZZY 1 2
			S: -ERR Unknown command
			C: DELE
			S: -ERR Syntax: DELE msg
			C: stat
			S: +OK 3 {TOT}
			C: QUIT extra
			S: +OK*`, 3},
		{"bare LF", `
			S: +OK*
			R: USER {U}\nPASS {P}\nSTAT\n
			S: +OK*
			S: +OK*
			S: +OK 3 {TOT}`, 3},
		{"pipelining", `
			S: +OK*
			R: USER {U}\r\nPASS {P}\r\nSTAT\r\nLIST 1\r\nUIDL 1\r\nDELE 2\r\nRETR 1\r\nNOOP\r\nQUIT\r\n
			S: +OK*
			S: +OK Maildrop has 3 messages*
			S: +OK 3 {TOT}
			S: +OK 1 {S1}
			S: +OK 1 {V}.{UID1}
			S: +OK Message 2 deleted
			S: +OK {S1} octets
			S: From: a@example.test
			S: Subject: one
			S:
			S: Hello
			S: .
			S: +OK
			S: +OK Raftmail POP3 server signing off (1 messages deleted)
			X:`, 2},
		{"too long lines", `
			S: +OK*
			C: NOOP {LONG}
			S: -ERR line too long
			C: CAPA
			S: +OK*
			S: TOP
			S: UIDL
			S: RESP-CODES
			S: AUTH-RESP-CODE
			S: PIPELINING
			S: STLS
			S: USER
			S: SASL PLAIN LOGIN
			S: IMPLEMENTATION Raftmail
			S: .
			C: NOOP {LONG}
			S: -ERR line too long
			C: NOOP {LONG}
			S: -ERR line too long, closing connection
			X:`, 3},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("t%d@example.test", i)
			addUser(t, node, user, testMsgs...)
			msgs, v := inbox(t, node.Store(), user)
			vars := map[string]string{
				"U": user, "P": testPassword, "V": fmt.Sprint(v), "CONT": "+ ",
				"TOT":        fmt.Sprint(len(testMsgs[0]) + len(testMsgs[1]) + len(testMsgs[2])),
				"S23":        fmt.Sprint(len(testMsgs[1]) + len(testMsgs[2])),
				"PLAIN":      plainB64("", user, testPassword),
				"PLAINZ":     plainB64(user, user, testPassword),
				"PLAINOTHER": plainB64("t0@example.test", user, testPassword),
				"PLAINBAD":   plainB64("", user, "wrong"),
				"NONUL":      base64.StdEncoding.EncodeToString([]byte(user)),
				"UB64":       base64.StdEncoding.EncodeToString([]byte(user)),
				"PB64":       base64.StdEncoding.EncodeToString([]byte(testPassword)),
				"LONG":       strings.Repeat("x", 2000),
			}
			for j, m := range msgs {
				vars[fmt.Sprintf("UID%d", j+1)] = fmt.Sprint(m.UID)
				vars[fmt.Sprintf("S%d", j+1)] = fmt.Sprint(len(testMsgs[j]))
			}
			cl := dial(t, e.addr)
			cl.run(tc.script, vars)
			cl.conn.Close()
			e.waitNoSessions()
			if got, _ := inbox(t, node.Store(), user); len(got) != tc.left {
				t.Fatalf("INBOX has %d messages after the session, want %d", len(got), tc.left)
			}
		})
	}
}

// TestDeleQuitRemovesTheRightMessages checks which messages an expunge at
// QUIT removed, and that the next session sees the rest renumbered.
func TestDeleQuitRemovesTheRightMessages(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, nil)
	const user = "dq@example.test"
	addUser(t, node, user, testMsgs...)
	before, v := inbox(t, node.Store(), user)

	cl := dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*
		C: DELE 2
		S: +OK*
		C: QUIT
		S: +OK Raftmail POP3 server signing off (1 messages deleted)
		X:`, map[string]string{"U": user, "P": testPassword})
	after, _ := inbox(t, node.Store(), user)
	if len(after) != 2 || after[0].UID != before[0].UID || after[1].UID != before[2].UID {
		t.Fatalf("after DELE 2 + QUIT: %+v", after)
	}
	cl = dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK Maildrop has 2 messages*
		C: UIDL
		S: +OK*
		S: 1 {V}.{UID1}
		S: 2 {V}.{UID3}
		S: .`, map[string]string{"U": user, "P": testPassword, "V": fmt.Sprint(v), "CONT": "+ ",
		"UID1": fmt.Sprint(before[0].UID), "UID3": fmt.Sprint(before[2].UID)})
}

// TestDroppedConnectionDeletesNothing: DELE then a dropped connection
// leaves the maildrop as it was (RFC 1939 section 6).
func TestDroppedConnectionDeletesNothing(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, nil)
	const user = "drop@example.test"
	addUser(t, node, user, testMsgs...)
	cl := dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*
		C: DELE 1
		S: +OK*
		C: DELE 2
		S: +OK*`, map[string]string{"U": user, "P": testPassword})
	cl.conn.Close()
	e.waitNoSessions()
	if got, _ := inbox(t, node.Store(), user); len(got) != 3 {
		t.Fatalf("INBOX has %d messages after a dropped connection, want 3", len(got))
	}
}

// TestSTLS: without TLS, credentials are refused and not advertised; STLS
// upgrades, drops plaintext sent ahead of the handshake, and then login
// works.
func TestSTLS(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	const user = "tls@example.test"
	addUser(t, node, user, testMsgs...)
	vars := map[string]string{"U": user, "P": testPassword, "PLAIN": plainB64("", user, testPassword)}

	cl := dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: CAPA
		S: +OK*
		S: TOP
		S: UIDL
		S: RESP-CODES
		S: AUTH-RESP-CODE
		S: PIPELINING
		S: STLS
		S: IMPLEMENTATION Raftmail
		S: .
		C: USER {U}
		S: -ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS
		C: PASS {P}
		S: -ERR [AUTH]*
		C: AUTH PLAIN {PLAIN}
		S: -ERR [AUTH]*
		# CAPA pipelined after STLS must be dropped, not answered.
		R: STLS\r\nCAPA\r\n
		S: +OK Begin TLS negotiation`, vars)
	tc := tls.Client(cl.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl = &client{t: t, conn: tc, r: newReader(tc)}
	cl.run(`
		C: NOOP
		S: -ERR Command not valid in this state
		C: CAPA
		S: +OK*
		S: TOP
		S: UIDL
		S: RESP-CODES
		S: AUTH-RESP-CODE
		S: PIPELINING
		S: USER
		S: SASL PLAIN LOGIN
		S: IMPLEMENTATION Raftmail
		S: .
		C: STLS
		S: -ERR Already using TLS
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK Maildrop has 3 messages*
		C: QUIT
		S: +OK*`, vars)
}

// TestImplicitTLS logs in on the implicit-TLS listener.
func TestImplicitTLS(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	const user = "pop3s@example.test"
	addUser(t, node, user, testMsgs...)
	conn, err := tls.DialWithDialer(&netDialer, "tcp", e.tls, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := &client{t: t, conn: conn, r: newReader(conn)}
	cl.run(`
		S: +OK*
		C: CAPA
		S: +OK*
		S: TOP
		S: UIDL
		S: RESP-CODES
		S: AUTH-RESP-CODE
		S: PIPELINING
		S: USER
		S: SASL PLAIN LOGIN
		S: IMPLEMENTATION Raftmail
		S: .
		C: STLS
		S: -ERR Already using TLS
		C: AUTH PLAIN {PLAIN}
		S: +OK Maildrop has 3 messages*`, map[string]string{"PLAIN": plainB64("", user, testPassword)})
}

// TestInUse: a second session for the same maildrop on the same node gets
// [IN-USE] until the first ends.
func TestInUse(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, nil)
	const user = "busy@example.test"
	addUser(t, node, user, testMsgs...)
	vars := map[string]string{"U": user, "P": testPassword}
	a := dial(t, e.addr)
	a.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*`, vars)
	b := dial(t, e.addr)
	b.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: -ERR [IN-USE] Maildrop already in use
		C: STAT
		S: -ERR Command not valid in this state`, vars)
	a.run(`
		C: QUIT
		S: +OK*
		X:`, vars)
	b.run(`
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK Maildrop has 3 messages*`, vars)
}

// TestShutdownAndIdleTimeout: an idle session is told the server shuts
// down; a silent one is logged out by the idle timer, deleting nothing.
func TestShutdownAndIdleTimeout(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	const user = "idle@example.test"
	addUser(t, node, user, testMsgs...)
	vars := map[string]string{"U": user, "P": testPassword}

	e := startServer(t, node, func(cfg *Config) { cfg.IdleTimeout = 300 * time.Millisecond })
	cl := dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*
		C: DELE 1
		S: +OK*
		S: -ERR [SYS/TEMP] idle timeout, closing connection
		X:`, vars)
	e.waitNoSessions()
	if got, _ := inbox(t, node.Store(), user); len(got) != 3 {
		t.Fatalf("INBOX has %d messages after an idle timeout, want 3", len(got))
	}

	e2 := startServer(t, node, nil)
	cl = dial(t, e2.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*
		C: DELE 1
		S: +OK*`, vars)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e2.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cl.run(`
		S: -ERR [SYS/TEMP] server shutting down
		X:`, vars)
	if got, _ := inbox(t, node.Store(), user); len(got) != 3 {
		t.Fatalf("INBOX has %d messages after shutdown, want 3", len(got))
	}
	if _, err := dialErr(e2.addr); err == nil {
		t.Fatal("listener still accepts after Shutdown")
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	base := Config{Cluster: node, Store: node.Store(), Auth: auth.New(auth.Config{Store: node.Store()})}
	if err := base.Validate(); err == nil {
		t.Fatal("config without TLS and without AllowInsecureAuth accepted")
	}
	base.AllowInsecureAuth = true
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := base
	bad.MaxLineLength = 10
	if err := bad.Validate(); err == nil {
		t.Fatal("MaxLineLength 10 accepted")
	}
	srv, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln, WithImplicitTLS()); err == nil {
		t.Fatal("implicit TLS without Config.TLS accepted")
	}
}

// TestRetrAfterExpungeElsewhere: a message expunged by another session
// (IMAP) after login stays in the session's snapshot; its body can still be
// read (storage deletes unreferenced blobs only after a grace period), and
// deleting it again at QUIT is harmless.
func TestRetrAfterExpungeElsewhere(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, nil)
	const user = "gone@example.test"
	addUser(t, node, user, "Subject: unique to this test\r\n\r\nbody\r\n")
	msgs, _ := inbox(t, node.Store(), user)
	vars := map[string]string{"U": user, "P": testPassword}
	cl := dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK Maildrop has 1 messages*`, vars)
	clustertest.Propose(t, node, storage.CmdExpunge, storage.Expunge{MailboxID: msgs[0].MailboxID, UIDs: []uint32{msgs[0].UID}})
	cl.run(`
		C: STAT
		S: +OK 1 *
		C: RETR 1
		S: +OK 38 octets
		S: Subject: unique to this test
		S:
		S: body
		S: .
		C: DELE 1
		S: +OK*
		C: QUIT
		S: +OK Raftmail POP3 server signing off (1 messages deleted)`, vars)
	if got, _ := inbox(t, node.Store(), user); len(got) != 0 {
		t.Fatalf("INBOX has %d messages, want 0", len(got))
	}
}
