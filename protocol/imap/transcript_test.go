package imap

import (
	"context"
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

// TestTranscriptBeforeAuth: LOGINDISABLED until STARTTLS, no login in
// clear text, an unknown command before login ends the connection.
func TestTranscriptBeforeAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := dialRaw(t, e.plain[0])
	caps := c.expect("CAPABILITY", "OK")
	if !contains(caps, "STARTTLS") || !contains(caps, "LOGINDISABLED") || contains(caps, "AUTH=PLAIN") {
		t.Fatalf("cleartext capabilities: %q", caps)
	}
	if contains(caps, "CONDSTORE") || contains(caps, "QUOTA") || contains(caps, " ID") {
		t.Fatalf("advertises what it does not implement: %q", caps)
	}
	c.expect(fmt.Sprintf("LOGIN %s %q", testUser, testPass), "NO [PRIVACYREQUIRED]")
	c.expect("AUTHENTICATE PLAIN", "NO [PRIVACYREQUIRED]")
	c.expect("SELECT INBOX", "BAD")

	c.startTLS(e.clientTLS)
	caps = c.expect("CAPABILITY", "OK")
	if contains(caps, "LOGINDISABLED") || contains(caps, "STARTTLS") || !contains(caps, "AUTH=PLAIN") || !contains(caps, "SASL-IR") {
		t.Fatalf("capabilities after STARTTLS: %q", caps)
	}
	c.expect(fmt.Sprintf("LOGIN %s wrong", testUser), "NO [AUTHENTICATIONFAILED]")
	c.login()
	caps = c.expect("CAPABILITY", "OK")
	for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "SPECIAL-USE",
		"LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "STATUS=SIZE", "LITERAL+", "UNSELECT", "ENABLE",
		fmt.Sprintf("APPENDLIMIT=%d", testAppendLimit), "CHILDREN"} {
		if !contains(caps, " "+want) {
			t.Errorf("capability %s missing: %q", want, caps)
		}
	}

	// An unknown command before authentication: BAD and BYE.
	d := dialRaw(t, e.plain[0])
	d.send("x1 HELO example.test")
	lines := []string{d.line(), d.line()}
	if !contains(lines, "BYE") || !contains(lines, "x1 BAD") {
		t.Fatalf("unknown command before login: %q", lines)
	}
}

func TestTranscriptEdges(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.deliver(0, "INBOX", simpleMsg)
	c := dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.login()

	for _, tc := range []struct{ cmd, want string }{
		{"FROBNICATE", "BAD"},
		{"FETCH 1 FLAGS", "BAD"}, // not selected
		{"SELECT", "BAD"},
		{"SELECT Nope", "NO [NONEXISTENT]"},
		{"SELECT INBOX", "OK [READ-WRITE]"},
		{"FETCH", "BAD"},
		{"FETCH 0 FLAGS", "!OK"}, // imapserver answers NO [SERVERBUG] to a 0 in a set
		{"FETCH x:y FLAGS", "!OK"},
		{"FETCH 1:* FROB", "BAD"},
		{"FETCH 1 (FLAGS", "BAD"},
		{"FETCH 99 FLAGS", "OK"},
		{"UID FETCH 4000000000:* FLAGS", "OK"},
		{"STORE 1 +FLAGS (\\Bogus)", "BAD"},
		{"STORE 1 FROB (\\Seen)", "BAD"},
		{"SEARCH FROB", "!OK"},
		{"SEARCH CHARSET KOI8-R TEXT x", "NO [BADCHARSET]"},
		{"COPY 1 Nowhere", "NO [TRYCREATE]"},
		{"MOVE 1 INBOX", "NO"},
		{"CREATE INBOX", "NO [ALREADYEXISTS]"},
		{"DELETE INBOX", "NO"},
		{"RENAME Nope Other", "NO [NONEXISTENT]"},
		{"STATUS Nope (MESSAGES)", "NO [NONEXISTENT]"},
		{"STATUS INBOX (FROB)", "BAD"},
		{"NOOP", "OK"},
	} {
		c.expect(tc.cmd, tc.want)
	}

	// A literal over APPENDLIMIT is refused before the client sends it.
	c.send(fmt.Sprintf("big APPEND INBOX {%d}", 2*testAppendLimit))
	if l := c.line(); !strings.HasPrefix(l, "big NO [TOOBIG]") {
		t.Fatalf("huge literal: %q", l)
	}
	c.expect("NOOP", "OK")

	// A literal within the limit: synchronising, then LITERAL+.
	msg := "Subject: lit\r\n\r\nbody\r\n"
	c.send(fmt.Sprintf("a1 APPEND INBOX (\\Seen) {%d}", len(msg)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.send(msg)
	if got := c.until("a1"); !contains(got, "OK [APPENDUID ") {
		t.Fatalf("append: %q", got)
	}
	c.send(fmt.Sprintf("a2 APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	if got := c.until("a2"); !contains(got, "OK [APPENDUID ") || !contains(got, "* 3 EXISTS") {
		t.Fatalf("append literal+: %q", got)
	}

	// Malformed MIME and non-UTF-8 never panic; BODYSTRUCTURE is answered.
	e.deliver(0, "INBOX", brokenMsg)
	// The session hears of the delivery from the store's change feed,
	// which may come a moment after the commit: NOOP until it has.
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		lines = c.expect("NOOP", "OK")
		if contains(lines, "* 4 EXISTS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no EXISTS for a delivery: %q", lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines = c.expect("FETCH 4 (BODYSTRUCTURE ENVELOPE BODY[1] BINARY[1] BINARY.SIZE[1] BODY.PEEK[HEADER.FIELDS (Subject)])", "OK")
	if !contains(lines, "BODYSTRUCTURE (") || !contains(lines, "ENVELOPE (") {
		t.Fatalf("broken message: %q", lines)
	}
	c.expect("FETCH 1:* (BODY BODYSTRUCTURE)", "OK")

	// The connection survives all of it.
	c.expect("LOGOUT", "OK")
}

// TestTranscriptAuth: AUTHENTICATE PLAIN with SASL-IR and as a
// continuation, LOGIN mechanism, throttling lock answered NO [UNAVAILABLE].
func TestTranscriptAuth(t *testing.T) {
	e := newEnv(t, envOptions{auth: auth.Config{MaxFailures: 3}})
	plain := func(u, p string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + u + "\x00" + p))
	}
	c := dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.expect("AUTHENTICATE PLAIN "+plain(testUser, testPass), "OK")
	c.expect("SELECT INBOX", "OK")

	c = dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.send("a AUTHENTICATE PLAIN")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.send(plain(testUser, testPass))
	if got := c.until("a"); !strings.HasPrefix(got[len(got)-1], "TAG OK") {
		t.Fatalf("authenticate: %q", got)
	}

	c = dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.send("a AUTHENTICATE LOGIN")
	c.line()
	c.send(base64.StdEncoding.EncodeToString([]byte(testUser)))
	c.line()
	c.send(base64.StdEncoding.EncodeToString([]byte(testPass)))
	if got := c.until("a"); !strings.HasPrefix(got[len(got)-1], "TAG OK") {
		t.Fatalf("authenticate login: %q", got)
	}

	c = dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	for range 3 {
		c.expect("AUTHENTICATE PLAIN "+plain(testUser, "nope"), "NO [AUTHENTICATIONFAILED]")
	}
	c.expect(fmt.Sprintf("LOGIN %s %q", testUser, testPass), "NO [UNAVAILABLE]")
}

// failingCluster wraps a node and fails Propose with err once armed.
type failingCluster struct {
	Cluster
	err   error
	armed chan struct{}
}

func (f *failingCluster) Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	select {
	case <-f.armed:
		return 0, storage.Result{}, f.err
	default:
		return f.Cluster.Propose(ctx, cmd)
	}
}

type writeErr struct{ unknown bool }

func (w writeErr) Error() string        { return "test write error" }
func (w writeErr) OutcomeUnknown() bool { return w.unknown }

// TestWriteFailures: a clean write failure is NO [UNAVAILABLE] and the
// session goes on; an unknown outcome closes the connection with BYE and
// no tagged answer.
func TestWriteFailures(t *testing.T) {
	var fc *failingCluster
	e := newEnv(t, envOptions{cluster: func(i int, n *clustertest.Node) Cluster {
		fc = &failingCluster{Cluster: n.Node, armed: make(chan struct{})}
		return fc
	}})
	e.deliver(0, "INBOX", simpleMsg)
	c := dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.login()
	c.expect("SELECT INBOX", "OK")
	fc.err = writeErr{unknown: false}
	close(fc.armed)
	c.expect("STORE 1 +FLAGS (\\Flagged)", "NO [UNAVAILABLE]")
	c.expect("CREATE Later", "NO [UNAVAILABLE]")
	// Reads still work, and a non-peek fetch is answered without \Seen.
	if lines := c.expect("FETCH 1 (BODY[TEXT])", "OK"); !contains(lines, "Lunch at noon") {
		t.Fatalf("fetch during write failures: %q", lines)
	}
	c.expect("SEARCH TEXT lunch", "OK")

	fc.err = writeErr{unknown: true}
	c.send("x STORE 1 +FLAGS (\\Flagged)")
	if l := c.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("unknown outcome: %q", l)
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		t.Fatalf("connection still open after BYE, got %q", l)
	}
}

// TestShutdownSaysBye: Shutdown sends "* BYE" to connected clients (also
// while idling), stops accepting, and returns once they are gone.
func TestShutdownSaysBye(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.login()
	c.expect("SELECT INBOX", "OK")
	c.send("i IDLE")
	c.line()
	other := dialRaw(t, e.plain[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srvs[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*raw{c, other} {
		if l := cl.readUntil("BYE"); !strings.HasPrefix(l[len(l)-1], "* BYE") {
			t.Fatalf("shutdown: %q", l)
		}
	}
	if _, err := net.Dial("tcp", e.plain[0]); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}
