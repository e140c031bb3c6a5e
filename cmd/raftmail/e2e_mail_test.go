package main

// End-to-end mail tests: one three-node cluster of the real binary (see
// e2e_helpers_test.go), driven by independent client implementations:
// Python's smtplib, imaplib and poplib, one python3 process per client
// session. Each script gets its arguments as one JSON object in argv[1] and
// prints one JSON object per line on stdout, which the test decodes and
// checks. Cross-node visibility is awaited by polling with a deadline;
// measured times are logged, never asserted.
//
// Run them alone with: go test -race -count=1 -run TestE2EMail ./cmd/raftmail/

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/mail"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// pyTimeout guards every Python client run against hangs; it is not an
	// assertion.
	pyTimeout = 90 * time.Second
	// mailTimeout bounds waits for mail or a change to be visible through
	// another node.
	mailTimeout = 60 * time.Second
)

func TestE2EMail(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	nodes := newCluster(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	alice := mailUser{"alice@example.test", "alice-Pass-0001"}
	bob := mailUser{"bob@example.test", "bob-Pass-0002"}
	const alias = "info@example.test"

	// Each step builds on the state the earlier ones left, so the first
	// failure ends the test.
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	var (
		uidValidity uint32  // of bob's INBOX, as first read
		msgA        testMsg // alice -> bob through submission; flagged, then moved to Archive
		uidA        uint32  // msgA's UID in bob's INBOX
		msgC        testMsg // seen by IDLE; stays in bob's INBOX
		lastUID     uint32  // highest UID seen in bob's INBOX so far
	)

	step("1_setup", func(t *testing.T) {
		cliVia(t, n1, "", "domain", "add", "example.test")
		cliVia(t, n2, alice.password+"\n", "user", "add", alice.addr, "--password-stdin")
		cliVia(t, n3, bob.password+"\n", "user", "add", bob.addr, "--password-stdin")
		cliVia(t, n1, "", "alias", "add", alias, alice.addr)
		for _, n := range nodes {
			waitFor(t, clusterTimeout, "users and alias on "+n.name, func() (bool, string) {
				return hasUsersAndAlias(t, n, []string{alice.addr, bob.addr}, alias, alice.addr)
			})
		}
	})

	step("2_submission_then_imaps_and_pop3s", func(t *testing.T) {
		msgA = newTestMsg(alice.addr, bob.addr, "submission")
		res := mustSend(t, n1, smtpRequest{submission: true, user: &alice, from: alice.addr, to: []string{bob.addr}, msg: msgA})
		t.Logf("node1 submission: %d %s (EHLO after STARTTLS offered %v)", res.Data.Code, res.Data.Text, res.ESMTP)
		if !slices.Contains(res.ESMTP, "auth") {
			t.Errorf("submission after STARTTLS does not offer AUTH: %v", res.ESMTP)
		}

		got, d := waitIMAPMessage(t, n3, bob, "INBOX", msgA.subject)
		t.Logf("found through node3's IMAPS after %s of polling (each poll is a whole Python session; UID %d, flags %v)", d.Round(time.Millisecond), got.UID, got.Flags)
		checkMessage(t, "IMAPS via node3", got.Raw, msgA)
		uidA, lastUID = got.UID, got.UID

		mb, err := imapList(t, n3, bob, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		uidValidity = mb.UIDValidity
		if uidValidity == 0 {
			t.Errorf("UIDVALIDITY through node3 is 0")
		}

		var pm popMessage
		d = waitFor(t, mailTimeout, "message in bob's POP3 maildrop via node2", func() (bool, string) {
			drop, err := popList(t, n2, bob)
			if err != nil {
				return false, err.Error()
			}
			uidls := map[string]bool{}
			for _, m := range drop.Messages {
				if m.UIDL == "" || uidls[m.UIDL] {
					t.Fatalf("POP3 via node2: empty or repeated UIDL in %+v", drop.Messages)
				}
				uidls[m.UIDL] = true
			}
			if drop.Count != len(drop.Messages) {
				t.Fatalf("POP3 via node2: STAT says %d messages, UIDL lists %d", drop.Count, len(drop.Messages))
			}
			for _, m := range drop.Messages {
				if subjectOf(m.Raw) == msgA.subject {
					pm = m
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d messages, none with subject %q", drop.Count, msgA.subject)
		})
		t.Logf("POP3S via node2: message %d, UIDL %s (visible after %s of polling)", pm.N, pm.UIDL, d.Round(time.Millisecond))
		checkMessage(t, "POP3S via node2", pm.Raw, msgA)
	})

	step("3_mx_alias_relay_unknown", func(t *testing.T) {
		msgB := newTestMsg("carol@outside.test", alias, "mx-alias")
		res := mustSend(t, n2, smtpRequest{from: "carol@outside.test", to: []string{alias}, msg: msgB})
		if slices.Contains(res.ESMTP, "auth") {
			t.Errorf("MX offers AUTH: %v", res.ESMTP)
		}
		got, d := waitIMAPMessage(t, n1, alice, "INBOX", msgB.subject)
		t.Logf("mail to %s via node2's MX is in alice's INBOX through node1 after %s", alias, d.Round(time.Millisecond))
		checkMessage(t, "IMAPS via node1", got.Raw, msgB)

		for _, tc := range []struct {
			rcpt     string
			code     int
			enhanced string
		}{
			{"someone@elsewhere.test", 554, "5.7.1"}, // relay
			{"nobody@example.test", 550, "5.1.1"},    // unknown local user
		} {
			msg := newTestMsg("carol@outside.test", tc.rcpt, "refused")
			res, err := sendSMTP(t, n2, smtpRequest{from: msg.from, to: []string{tc.rcpt}, msg: msg})
			if err != nil {
				t.Fatal(err)
			}
			r := res.Rcpt[0]
			t.Logf("MX RCPT TO:<%s>: %d %s", tc.rcpt, r.Code, r.Text)
			if r.Code != tc.code || !strings.HasPrefix(r.Text, tc.enhanced) {
				t.Errorf("RCPT TO:<%s> via node2's MX: %d %s, want %d %s", tc.rcpt, r.Code, r.Text, tc.code, tc.enhanced)
			}
			if res.Data != nil {
				t.Errorf("DATA was accepted after a refused recipient: %+v", res.Data)
			}
		}
	})

	step("4_idle_on_node3_sees_node1", func(t *testing.T) {
		idle := startPy(t, idleScript, map[string]any{"addr": n3.imapsAddr, "user": bob.addr, "password": bob.password})
		var ready struct {
			Ready  bool `json:"ready"`
			Exists int  `json:"exists"`
		}
		idle.next(t, &ready)
		t.Logf("IDLE client on node3 is idling (EXISTS %d)", ready.Exists)

		msgC = newTestMsg(alice.addr, bob.addr, "idle")
		res := mustSend(t, n1, smtpRequest{submission: true, user: &alice, from: alice.addr, to: []string{bob.addr}, msg: msgC})

		var seen struct {
			Exists int     `json:"exists"`
			SeenAt float64 `json:"seen_at"`
			Done   string  `json:"done"`
		}
		idle.next(t, &seen)
		idle.wait(t)
		if seen.Exists <= ready.Exists {
			t.Errorf("IDLE: EXISTS %d after %d", seen.Exists, ready.Exists)
		}
		if !strings.HasPrefix(seen.Done, "a OK") {
			t.Errorf("IDLE: DONE answered %q, want a OK", seen.Done)
		}
		t.Logf("latency from node1's 250 to node3's * %d EXISTS on IDLE: %s", seen.Exists,
			time.Duration((seen.SeenAt-res.RepliedAt)*float64(time.Second)).Round(time.Millisecond))

		got, _ := waitIMAPMessage(t, n3, bob, "INBOX", msgC.subject)
		checkMessage(t, "IMAPS via node3", got.Raw, msgC)
		if got.UID <= lastUID {
			t.Errorf("UID %d of the newer message is not above %d", got.UID, lastUID)
		}
		lastUID = got.UID
	})

	step("5_flag_via_node2_seen_via_node3", func(t *testing.T) {
		ops := mustIMAPDo(t, n2, bob, "INBOX", []string{"uid", "STORE", fmt.Sprint(uidA), "+FLAGS", `(\Flagged)`})
		t.Logf("node2 UID STORE: %s %v", ops[0].Typ, ops[0].Data)
		var flags []string
		d := waitFor(t, mailTimeout, `\Flagged through node3`, func() (bool, string) {
			m, err := imapFind(t, n3, bob, "INBOX", msgA.subject)
			if err != nil {
				return false, err.Error()
			}
			flags = m.Flags
			return slices.Contains(m.Flags, `\Flagged`), fmt.Sprintf("flags %v", m.Flags)
		})
		t.Logf(`\Flagged set through node2 seen through node3 after %s of polling: %v`, d.Round(time.Millisecond), flags)
	})

	step("6_move_and_expunge_agree_on_every_node", func(t *testing.T) {
		msgD := newTestMsg("dave@outside.test", bob.addr, "to-expunge")
		mustSend(t, n3, smtpRequest{from: msgD.from, to: []string{bob.addr}, msg: msgD})
		d, _ := waitIMAPMessage(t, n1, bob, "INBOX", msgD.subject)
		if d.UID <= lastUID {
			t.Errorf("UID %d of the newer message is not above %d", d.UID, lastUID)
		}
		lastUID = d.UID

		ops := mustIMAPDo(t, n1, bob, "INBOX",
			[]string{"uid", "MOVE", fmt.Sprint(uidA), "Archive"},
			[]string{"uid", "STORE", fmt.Sprint(d.UID), "+FLAGS", `(\Deleted)`},
			[]string{"expunge"},
		)
		t.Logf("node1: UID MOVE %d Archive: %s %v COPYUID %v; EXPUNGE: %s %v", uidA, ops[0].Typ, ops[0].Data, ops[0].CopyUID, ops[2].Typ, ops[2].Data)

		// Node 1 answered OK, so it reads its own writes at once.
		ref := map[string]imapMailbox{}
		for _, box := range []string{"INBOX", "Archive"} {
			mb, err := imapList(t, n1, bob, box)
			if err != nil {
				t.Fatal(err)
			}
			ref[box] = mb
			t.Logf("%s through node1: %s", box, mb.view())
		}
		inbox, archive := ref["INBOX"].subjects(), ref["Archive"].subjects()
		if want := []string{msgC.subject}; !slices.Equal(inbox, want) {
			t.Errorf("bob's INBOX through node1: %q, want %q", inbox, want)
		}
		if want := []string{msgA.subject}; !slices.Equal(archive, want) {
			t.Fatalf("bob's Archive through node1: %q, want %q", archive, want)
		}
		if moved := ref["Archive"].Messages[0]; !slices.Contains(moved.Flags, `\Flagged`) {
			t.Errorf("the moved message lost \\Flagged: %v", moved.Flags)
		} else if len(ops[0].CopyUID) == 1 && !strings.HasSuffix(ops[0].CopyUID[0], fmt.Sprintf(" %d %d", uidA, moved.UID)) {
			t.Errorf("COPYUID %q does not map UID %d to Archive UID %d", ops[0].CopyUID[0], uidA, moved.UID)
		}

		for _, n := range []*node{n2, n3} {
			for _, box := range []string{"INBOX", "Archive"} {
				want := ref[box].view()
				d := waitFor(t, mailTimeout, box+" through "+n.name+" equal to node1's", func() (bool, string) {
					mb, err := imapList(t, n, bob, box)
					if err != nil {
						return false, err.Error()
					}
					return mb.view() == want, fmt.Sprintf("%s has %s, node1 has %s", n.name, mb.view(), want)
				})
				t.Logf("%s through %s agrees with node1 after %s of polling", box, n.name, d.Round(time.Millisecond))
			}
		}
	})

	step("7_uids_ascend_across_nodes", func(t *testing.T) {
		tag := fmt.Sprintf("uidorder-%d", time.Now().UnixNano())
		var order []string
		for i := range 6 {
			via := nodes[i%3]
			msg := newTestMsg("erin@outside.test", bob.addr, fmt.Sprintf("%s #%d via %s", tag, i+1, via.name))
			mustSend(t, via, smtpRequest{from: msg.from, to: []string{bob.addr}, msg: msg})
			order = append(order, msg.subject)
		}
		var (
			views  []string
			newest uint32
		)
		for _, n := range nodes {
			var mb imapMailbox
			d := waitFor(t, mailTimeout, "6 messages through "+n.name, func() (bool, string) {
				var err error
				mb, err = imapList(t, n, bob, "INBOX", "SUBJECT", imapQuote(tag))
				if err != nil {
					return false, err.Error()
				}
				return len(mb.Messages) == len(order), fmt.Sprintf("%d messages", len(mb.Messages))
			})
			sort.Slice(mb.Messages, func(i, j int) bool { return mb.Messages[i].UID < mb.Messages[j].UID })
			t.Logf("through %s after %s: %s", n.name, d.Round(time.Millisecond), mb.view())
			if got := mb.subjects(); !slices.Equal(got, order) {
				t.Errorf("through %s, by UID: %q, want delivery order %q", n.name, got, order)
			}
			prev := lastUID
			for _, m := range mb.Messages {
				if m.UID <= prev {
					t.Errorf("through %s: UID %d does not ascend past %d: %s", n.name, m.UID, prev, mb.view())
				}
				prev = m.UID
			}
			if mb.UIDValidity != uidValidity {
				t.Errorf("through %s: UIDVALIDITY %d, want %d as first read through node3", n.name, mb.UIDValidity, uidValidity)
			}
			views = append(views, mb.view())
			newest = prev
		}
		lastUID = newest
		for i := range views {
			if views[i] != views[0] {
				t.Errorf("%s and %s disagree:\n%s\n%s", nodes[0].name, nodes[i].name, views[0], views[i])
			}
		}
	})

	step("8_kill_9_after_250", func(t *testing.T) {
		x, others := waitLeader(t, n1, nodes)
		msgF := newTestMsg(alice.addr, bob.addr, "kill-9")
		res := sendThenKill(t, x, smtpRequest{submission: true, user: &alice, from: alice.addr, to: []string{bob.addr}, msg: msgF})
		killedAt := time.Now()
		t.Logf("%s (the leader) answered %d %s and was killed before the client's QUIT", x.name, res.Data.Code, res.Data.Text)

		for _, n := range others {
			got, _ := waitIMAPMessage(t, n, bob, "INBOX", msgF.subject)
			t.Logf("IMAPS via %s has it %s after kill -9 of %s", n.name, time.Since(killedAt).Round(time.Millisecond), x.name)
			checkMessage(t, "IMAPS via "+n.name, got.Raw, msgF)
			pm := waitPOPMessage(t, n, bob, msgF.subject)
			t.Logf("POP3S via %s has it %s after kill -9 of %s", n.name, time.Since(killedAt).Round(time.Millisecond), x.name)
			checkMessage(t, "POP3S via "+n.name, pm.Raw, msgF)
		}

		x.start()
		restartedAt := time.Now()
		for _, n := range nodes {
			waitConverged(t, n, 3)
		}
		t.Logf("all 3 nodes converged (applied index, state hash, no missing blobs) %s after restarting %s", time.Since(restartedAt).Round(time.Millisecond), x.name)
		got, _ := waitIMAPMessage(t, x, bob, "INBOX", msgF.subject)
		checkMessage(t, "IMAPS via restarted "+x.name, got.Raw, msgF)
		mb, err := imapList(t, x, bob, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if mb.UIDValidity != uidValidity {
			t.Errorf("UIDVALIDITY through restarted %s: %d, want %d", x.name, mb.UIDValidity, uidValidity)
		}
		if got.UID <= lastUID {
			t.Errorf("UID %d of the newest message is not above %d", got.UID, lastUID)
		}
	})

	step("9_wrong_password", func(t *testing.T) {
		var res struct {
			IMAP string `json:"imap"`
			POP3 string `json:"pop3"`
		}
		if err := runPy(t, authFailScript, map[string]any{
			"imaps": n1.imapsAddr, "pop3s": n2.pop3sAddr, "user": alice.addr, "password": "not-" + alice.password,
		}, &res); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrong password: IMAPS via node1: %s; POP3S via node2: %s", res.IMAP, res.POP3)
		if !strings.Contains(res.IMAP, "[AUTHENTICATIONFAILED]") {
			t.Errorf("IMAPS login with a wrong password: %q, want NO [AUTHENTICATIONFAILED]", res.IMAP)
		}
		if !strings.HasPrefix(res.POP3, "-ERR [AUTH]") {
			t.Errorf("POP3S PASS with a wrong password: %q, want -ERR [AUTH]", res.POP3)
		}
		// Plain IMAP and POP3 on loopback take a password without TLS,
		// as Dovecot counts loopback connections as secure.
		var plain struct {
			Caps string `json:"caps"`
			IMAP string `json:"imap"`
			POP3 string `json:"pop3"`
		}
		if err := runPy(t, plainLoopbackScript, map[string]any{
			"imap": n3.imapAddr, "pop3": n3.pop3Addr, "user": alice.addr, "password": alice.password,
		}, &plain); err != nil {
			t.Fatal(err)
		}
		t.Logf("plain IMAP on loopback: %s (capabilities %s); plain POP3: %s", plain.IMAP, plain.Caps, plain.POP3)
		if plain.IMAP != "OK" || strings.Contains(plain.Caps, "LOGINDISABLED") {
			t.Errorf("plain IMAP LOGIN on a loopback listener: %q, capabilities %q; want OK without LOGINDISABLED", plain.IMAP, plain.Caps)
		}
		if !strings.HasPrefix(plain.POP3, "+OK") {
			t.Errorf("plain POP3 USER/PASS on a loopback listener: %q, want +OK", plain.POP3)
		}
		// One failure does not lock the account out.
		if _, err := imapList(t, n1, alice, "INBOX"); err != nil {
			t.Errorf("IMAPS login with the right password after one failure: %v", err)
		}
		if _, err := popList(t, n2, alice); err != nil {
			t.Errorf("POP3S login with the right password after one failure: %v", err)
		}
	})
}

// cliVia runs a client command against n's admin API; it must succeed.
func cliVia(t *testing.T, n *node, stdin string, args ...string) string {
	t.Helper()
	return mustCLI(t, stdin, append(args, n.adminFlags()...)...)
}

// hasUsersAndAlias reports whether n lists every user and the alias with
// target.
func hasUsersAndAlias(t *testing.T, n *node, users []string, alias, target string) (bool, string) {
	t.Helper()
	res := runCLI(t, "", append([]string{"user", "list", "--json"}, n.adminFlags()...)...)
	if res.exitCode != 0 {
		return false, strings.TrimSpace(res.stderr)
	}
	var listed []struct{ Address string }
	if err := json.Unmarshal([]byte(res.stdout), &listed); err != nil {
		return false, err.Error()
	}
	for _, u := range users {
		if !slices.ContainsFunc(listed, func(l struct{ Address string }) bool { return l.Address == u }) {
			return false, fmt.Sprintf("%s lists users %s", n.name, res.stdout)
		}
	}
	res = runCLI(t, "", append([]string{"alias", "list", "--json"}, n.adminFlags()...)...)
	if res.exitCode != 0 {
		return false, strings.TrimSpace(res.stderr)
	}
	var aliases []struct {
		Address string
		Targets []string
	}
	if err := json.Unmarshal([]byte(res.stdout), &aliases); err != nil {
		return false, err.Error()
	}
	for _, a := range aliases {
		if a.Address == alias && slices.Equal(a.Targets, []string{target}) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s lists aliases %s", n.name, res.stdout)
}

// ---- Test messages ----

type mailUser struct{ addr, password string }

// testMsg is a message the test sends: unique subject and Message-ID, and
// a body with a line that starts with a dot (dot-stuffed by the clients).
type testMsg struct {
	from, to, subject, msgID, body string
	header                         string // more header fields, each ending in CRLF, put first
}

var msgSeq atomic.Int64

func newTestMsg(from, to, tag string) testMsg {
	id := fmt.Sprintf("%d.%d", time.Now().UnixNano(), msgSeq.Add(1))
	return testMsg{
		from:    from,
		to:      to,
		subject: "e2e " + tag + " " + id,
		msgID:   "<e2e-" + id + "@client.example.net>",
		body:    "Hello,\r\n\r\nthis is " + tag + " " + id + ".\r\n.a line that starts with a dot\r\n..and one with two\r\n\r\n-- \r\ne2e\r\n",
	}
}

func (m testMsg) String() string {
	return m.header + "From: <" + m.from + ">\r\n" +
		"To: <" + m.to + ">\r\n" +
		"Subject: " + m.subject + "\r\n" +
		"Message-ID: " + m.msgID + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"\r\n" + m.body
}

// checkMessage checks that raw, as read back through via, is want: same
// Subject, Message-ID, From and body, plus a Received header added by the
// server.
func checkMessage(t *testing.T, via, raw string, want testMsg) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Errorf("%s: parse message: %v\n%s", via, err, raw)
		return
	}
	for _, h := range []struct{ name, want string }{
		{"Subject", want.subject}, {"Message-Id", want.msgID}, {"From", "<" + want.from + ">"},
	} {
		if got := m.Header.Get(h.name); got != h.want {
			t.Errorf("%s: %s %q, want %q", via, h.name, got, h.want)
		}
	}
	if m.Header.Get("Received") == "" {
		t.Errorf("%s: no Received header:\n%s", via, raw)
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		t.Errorf("%s: read body: %v", via, err)
		return
	}
	if got, w := normBody(string(body)), normBody(want.body); got != w {
		t.Errorf("%s: body differs:\ngot  %q\nwant %q", via, got, w)
	}
}

func normBody(s string) string {
	return strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
}

// subjectOf is the Subject of a raw message, "" if it does not parse.
func subjectOf(raw string) string {
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		return ""
	}
	return m.Header.Get("Subject")
}

// ---- Running Python clients ----

// pyPrelude is put before every script: the arguments, an unverified TLS
// context (the nodes have self-signed certificates) and small helpers.
const pyPrelude = `
import email, imaplib, json, poplib, re, smtplib, ssl, sys, time
A = json.loads(sys.argv[1])
CTX = ssl._create_unverified_context()
TIMEOUT = 30

def hostport(addr):
    host, port = addr.rsplit(':', 1)
    return host, int(port)

def text(b):
    return b.decode('utf-8', 'replace') if isinstance(b, (bytes, bytearray)) else str(b)

def out(v):
    sys.stdout.write(json.dumps(v) + '\n')
    sys.stdout.flush()

def imap_login(addr, user, password):
    m = imaplib.IMAP4_SSL(*hostport(addr), ssl_context=CTX, timeout=TIMEOUT)
    m.login(user, password)
    return m
`

// pyCommand starts building python3 -c prelude+script with args as JSON.
func pyCommand(t *testing.T, ctx context.Context, script string, args any) *exec.Cmd {
	t.Helper()
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return exec.CommandContext(ctx, "python3", "-c", pyPrelude+script, string(a))
}

// runPy runs one Python client script to completion and decodes the JSON
// it prints into out. A script that fails (an exception, a refused login)
// is an error, with its traceback; a hang fails the test.
func runPy(t *testing.T, script string, args, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pyTimeout)
	defer cancel()
	cmd := pyCommand(t, ctx, script, args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hang guard: python client still running after %s\nstdout: %s\nstderr: %s", pyTimeout, stdout.String(), stderr.String())
	}
	if err != nil {
		return fmt.Errorf("python client: %v: %s", err, lastLines(stderr.String(), 3))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("python client: decode %q: %v", stdout.String(), err)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// pyProc is a Python client that runs alongside the test and reports
// through JSON lines (the IDLE client).
type pyProc struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	lines  chan string // closed at EOF on stdout
	stderr bytes.Buffer
	waited bool
}

func startPy(t *testing.T, script string, args any) *pyProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pyTimeout)
	p := &pyProc{cancel: cancel, lines: make(chan string, 16)}
	p.cmd = pyCommand(t, ctx, script, args)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		p.cancel()
		if !p.waited {
			for range p.lines {
			}
			_ = p.cmd.Wait()
		}
	})
	return p
}

// next decodes the next JSON line the script prints. The process's own
// hang guard (its context) ends the wait if nothing comes.
func (p *pyProc) next(t *testing.T, out any) {
	t.Helper()
	line, ok := <-p.lines
	if !ok {
		p.wait(t)
		t.Fatalf("python client ended without the expected output")
	}
	if err := json.Unmarshal([]byte(line), out); err != nil {
		t.Fatalf("python client: decode %q: %v", line, err)
	}
}

// wait waits for the script to exit and fails the test unless it exited 0.
func (p *pyProc) wait(t *testing.T) {
	t.Helper()
	for range p.lines {
	}
	err := p.cmd.Wait()
	p.waited = true
	p.cancel()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, p.stderr.String())
	}
}

// ---- SMTP ----

const smtpScript = `
def reply(code, msg):
    return {'code': code, 'text': text(msg)}

s = smtplib.SMTP(*hostport(A['addr']), local_hostname='client.example.net', timeout=TIMEOUT)
s.ehlo()
r = {}
if A.get('starttls'):
    code, msg = s.starttls(context=CTX)
    s.ehlo()
if A.get('user'):
    s.login(A['user'], A['password'])  # smtplib picks PLAIN or LOGIN
r['esmtp'] = sorted(s.esmtp_features)
r['mail'] = reply(*s.mail(A['from']))
r['rcpt'] = [reply(*s.rcpt(x)) for x in A['to']]
if any(200 <= x['code'] < 300 for x in r['rcpt']):
    try:
        code, msg = s.data(A['msg'].encode())
    except smtplib.SMTPDataError as e:
        code, msg = e.smtp_code, e.smtp_error
    r['replied_at'] = time.time()
    r['data'] = reply(code, msg)
else:
    s.rset()
if A.get('report_before_quit'):
    out(r)
try:
    s.quit()
except (smtplib.SMTPException, OSError):
    if not A.get('report_before_quit'):
        raise
if not A.get('report_before_quit'):
    out(r)
`

type smtpReply struct {
	Code int    `json:"code"`
	Text string `json:"text"`
}

type smtpResult struct {
	ESMTP     []string    `json:"esmtp"` // EHLO keywords, lower case (after STARTTLS if any)
	Mail      smtpReply   `json:"mail"`
	Rcpt      []smtpReply `json:"rcpt"`
	Data      *smtpReply  `json:"data"`       // nil when no recipient was accepted
	RepliedAt float64     `json:"replied_at"` // Unix seconds when the DATA reply arrived
}

// smtpRequest is one SMTP transaction: on the node's submission port with
// STARTTLS and AUTH as user, or else on its MX port without either.
type smtpRequest struct {
	submission bool
	user       *mailUser
	from       string
	to         []string
	msg        testMsg
}

func (req smtpRequest) args(n *node) map[string]any {
	args := map[string]any{"addr": n.smtpAddr, "from": req.from, "to": req.to, "msg": req.msg.String()}
	if req.submission {
		args["addr"], args["starttls"] = n.submissionAddr, true
	}
	if req.user != nil {
		args["user"], args["password"] = req.user.addr, req.user.password
	}
	return args
}

func sendSMTP(t *testing.T, n *node, req smtpRequest) (smtpResult, error) {
	t.Helper()
	var res smtpResult
	err := runPy(t, smtpScript, req.args(n), &res)
	return res, err
}

// sendThenKill sends through n and kills n with SIGKILL as soon as the
// client reports the reply to DATA, before it sends QUIT. The message
// must have been accepted with 250.
func sendThenKill(t *testing.T, n *node, req smtpRequest) smtpResult {
	t.Helper()
	args := req.args(n)
	args["report_before_quit"] = true
	client := startPy(t, smtpScript, args)
	var res smtpResult
	client.next(t, &res)
	if res.Data == nil || res.Data.Code != 250 {
		t.Fatalf("send via %s: not accepted: MAIL %+v, RCPT %+v, DATA %+v", n.name, res.Mail, res.Rcpt, res.Data)
	}
	n.kill()
	client.wait(t) // QUIT fails or not; the script ignores that
	return res
}

// mustSend sends and fails the test unless the message is accepted with
// 250 after DATA.
func mustSend(t *testing.T, n *node, req smtpRequest) smtpResult {
	t.Helper()
	res, err := sendSMTP(t, n, req)
	if err != nil {
		t.Fatalf("send via %s: %v", n.name, err)
	}
	if res.Data == nil || res.Data.Code != 250 {
		t.Fatalf("send via %s: not accepted: MAIL %+v, RCPT %+v, DATA %+v", n.name, res.Mail, res.Rcpt, res.Data)
	}
	return res
}

// ---- IMAP ----

// imapListScript selects a mailbox read-only (EXAMINE) and fetches UID,
// FLAGS and RFC822 of every message UID SEARCH finds.
const imapListScript = `
def fetch(m, uid):
    typ, data = m.uid('FETCH', uid, '(UID FLAGS RFC822)')
    assert typ == 'OK', (typ, data)
    resps = []  # [metadata, literal]; unsolicited FETCHes may be among them
    for item in data:
        if isinstance(item, tuple):
            resps.append([item[0], item[1]])
        elif item is None:
            continue
        elif resps and (item.startswith(b')') or item.startswith(b' ')):
            resps[-1][0] += item
        else:
            resps.append([item, None])
    for meta, raw in resps:
        if raw is not None and re.search(rb'UID ' + uid + rb'\b', meta):
            flags = re.search(rb'FLAGS \(([^)]*)\)', meta)
            assert flags, ('no FLAGS', meta)
            return {'uid': int(uid), 'flags': text(flags.group(1)).split(), 'raw': text(raw)}
    raise Exception('no RFC822 for UID %s in %r' % (uid, data))

m = imap_login(A['addr'], A['user'], A['password'])
typ, data = m.select(A['mailbox'], readonly=True)
assert typ == 'OK', (typ, data)
r = {'exists': int(data[0]), 'uidvalidity': int(m.response('UIDVALIDITY')[1][0])}
typ, data = m.uid('SEARCH', *A['search'])
assert typ == 'OK', (typ, data)
r['messages'] = [fetch(m, uid) for uid in data[0].split()]
m.logout()
out(r)
`

type imapMessage struct {
	UID   uint32   `json:"uid"`
	Flags []string `json:"flags"`
	Raw   string   `json:"raw"`
}

type imapMailbox struct {
	Exists      int           `json:"exists"`
	UIDValidity uint32        `json:"uidvalidity"`
	Messages    []imapMessage `json:"messages"`
}

func (mb imapMailbox) subjects() []string {
	var s []string
	for _, m := range mb.Messages {
		s = append(s, subjectOf(m.Raw))
	}
	return s
}

// view is what every node must agree on: UIDVALIDITY, EXISTS and each
// message's UID, subject and flags.
func (mb imapMailbox) view() string {
	var parts []string
	for _, m := range mb.Messages {
		flags := slices.Clone(m.Flags)
		slices.Sort(flags)
		parts = append(parts, fmt.Sprintf("%d %q %v", m.UID, subjectOf(m.Raw), flags))
	}
	return fmt.Sprintf("uidvalidity=%d exists=%d [%s]", mb.UIDValidity, mb.Exists, strings.Join(parts, "; "))
}

// imapList logs in to n's IMAPS as u and lists mailbox, or the messages
// UID SEARCH finds with search (default ALL).
func imapList(t *testing.T, n *node, u mailUser, mailbox string, search ...string) (imapMailbox, error) {
	t.Helper()
	if len(search) == 0 {
		search = []string{"ALL"}
	}
	var mb imapMailbox
	err := runPy(t, imapListScript, map[string]any{
		"addr": n.imapsAddr, "user": u.addr, "password": u.password, "mailbox": mailbox, "search": search,
	}, &mb)
	if err != nil {
		return mb, fmt.Errorf("IMAPS via %s: %w", n.name, err)
	}
	return mb, nil
}

func imapQuote(s string) string { return `"` + s + `"` }

// imapFind finds the one message with subject in mailbox through n.
func imapFind(t *testing.T, n *node, u mailUser, mailbox, subject string) (imapMessage, error) {
	t.Helper()
	mb, err := imapList(t, n, u, mailbox, "SUBJECT", imapQuote(subject))
	if err != nil {
		return imapMessage{}, err
	}
	if len(mb.Messages) != 1 {
		return imapMessage{}, fmt.Errorf("IMAPS via %s: SEARCH SUBJECT %q in %s found %d messages", n.name, subject, mailbox, len(mb.Messages))
	}
	return mb.Messages[0], nil
}

// waitIMAPMessage polls n until the message with subject is in mailbox
// and returns it and how long that took.
func waitIMAPMessage(t *testing.T, n *node, u mailUser, mailbox, subject string) (imapMessage, time.Duration) {
	t.Helper()
	var m imapMessage
	d := waitFor(t, mailTimeout, fmt.Sprintf("%q in %s's %s through %s", subject, u.addr, mailbox, n.name), func() (bool, string) {
		var err error
		m, err = imapFind(t, n, u, mailbox, subject)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return m, d
}

// imapDoScript selects a mailbox read-write and runs imaplib calls:
// ["uid", CMD, args...] is m.uid(CMD, args...), [name, args...] is
// m.name(args...).
const imapDoScript = `
m = imap_login(A['addr'], A['user'], A['password'])
typ, data = m.select(A['mailbox'])
assert typ == 'OK', (typ, data)
res = []
for op in A['ops']:
    if op[0] == 'uid':
        typ, data = m.uid(*op[1:])
    else:
        typ, data = getattr(m, op[0])(*op[1:])
    cu = m.response('COPYUID')[1]
    res.append({'typ': typ,
                'data': [text(d[0] if isinstance(d, tuple) else d) for d in data if d is not None],
                'copyuid': [text(c) for c in cu if c is not None]})
m.logout()
out(res)
`

type imapOpResult struct {
	Typ     string   `json:"typ"`
	Data    []string `json:"data"`
	CopyUID []string `json:"copyuid"` // "UIDVALIDITY SRC DST" of a COPY or MOVE
}

// mustIMAPDo runs ops in mailbox through n and fails the test unless every
// one is answered OK.
func mustIMAPDo(t *testing.T, n *node, u mailUser, mailbox string, ops ...[]string) []imapOpResult {
	t.Helper()
	var res []imapOpResult
	if err := runPy(t, imapDoScript, map[string]any{
		"addr": n.imapsAddr, "user": u.addr, "password": u.password, "mailbox": mailbox, "ops": ops,
	}, &res); err != nil {
		t.Fatalf("IMAPS via %s: %v", n.name, err)
	}
	for i, r := range res {
		if r.Typ != "OK" {
			t.Fatalf("IMAPS via %s: %v: %s %v", n.name, ops[i], r.Typ, r.Data)
		}
	}
	return res
}

// idleScript examines INBOX, starts IDLE by hand (imaplib has no IDLE),
// prints {"ready"} once the server says "+ idling", then waits for an
// EXISTS above the count at SELECT and prints when it came.
const idleScript = `
m = imap_login(A['addr'], A['user'], A['password'])
typ, data = m.select('INBOX', readonly=True)
assert typ == 'OK', (typ, data)
start = int(data[0])
m.send(b'a IDLE\r\n')
line = m.readline()
assert line.startswith(b'+'), line
out({'ready': True, 'exists': start})
while True:
    line = m.readline()
    if not line:
        raise Exception('connection closed while idling')
    mt = re.match(rb'\* (\d+) EXISTS', line)
    if mt and int(mt.group(1)) > start:
        seen_at, exists = time.time(), int(mt.group(1))
        break
m.send(b'DONE\r\n')
while True:
    line = m.readline()
    if not line or line.startswith(b'a '):
        break
m.logout()
out({'exists': exists, 'seen_at': seen_at, 'done': text(line).strip()})
`

// ---- POP3 ----

const popListScript = `
p = poplib.POP3_SSL(*hostport(A['addr']), context=CTX, timeout=TIMEOUT)
p.user(A['user'])
p.pass_(A['password'])
count, size = p.stat()
resp, lines, _ = p.uidl()
uidls = dict(text(l).split(' ', 1) for l in lines)
msgs = []
for n in range(1, count + 1):
    resp, lines, _ = p.retr(n)
    msgs.append({'n': n, 'uidl': uidls.get(str(n), ''), 'raw': text(b'\r\n'.join(lines))})
p.quit()
out({'count': count, 'size': size, 'messages': msgs})
`

type popMessage struct {
	N    int    `json:"n"`
	UIDL string `json:"uidl"`
	Raw  string `json:"raw"`
}

type popMaildrop struct {
	Count    int          `json:"count"`
	Size     int          `json:"size"`
	Messages []popMessage `json:"messages"`
}

// popList logs in to n's POP3S as u and retrieves every message (STAT,
// UIDL, RETR; QUIT without DELE).
func popList(t *testing.T, n *node, u mailUser) (popMaildrop, error) {
	t.Helper()
	var drop popMaildrop
	err := runPy(t, popListScript, map[string]any{"addr": n.pop3sAddr, "user": u.addr, "password": u.password}, &drop)
	if err != nil {
		return drop, fmt.Errorf("POP3S via %s: %w", n.name, err)
	}
	return drop, nil
}

// waitPOPMessage polls n's POP3S until the message with subject is in u's
// maildrop.
func waitPOPMessage(t *testing.T, n *node, u mailUser, subject string) popMessage {
	t.Helper()
	var found popMessage
	waitFor(t, mailTimeout, fmt.Sprintf("%q in %s's maildrop through %s", subject, u.addr, n.name), func() (bool, string) {
		drop, err := popList(t, n, u)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range drop.Messages {
			if subjectOf(m.Raw) == subject {
				found = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages, none with that subject", drop.Count)
	})
	return found
}

// ---- Authentication failures ----

const plainLoopbackScript = `
r = {}
m = imaplib.IMAP4(*hostport(A['imap']), timeout=TIMEOUT)
r['caps'] = ' '.join(m.capabilities)
typ, _ = m.login(A['user'], A['password'])
r['imap'] = typ
m.logout()
p = poplib.POP3(*hostport(A['pop3']), timeout=TIMEOUT)
p.user(A['user'])
r['pop3'] = text(p.pass_(A['password']))
p.quit()
out(r)
`

const authFailScript = `
r = {}
try:
    m = imaplib.IMAP4_SSL(*hostport(A['imaps']), ssl_context=CTX, timeout=TIMEOUT)
    m.login(A['user'], A['password'])
    r['imap'] = 'logged in'
except imaplib.IMAP4.error as e:
    r['imap'] = str(e)
try:
    p = poplib.POP3_SSL(*hostport(A['pop3s']), context=CTX, timeout=TIMEOUT)
    p.user(A['user'])
    p.pass_(A['password'])
    r['pop3'] = 'logged in'
except poplib.error_proto as e:
    r['pop3'] = text(e.args[0])
out(r)
`
