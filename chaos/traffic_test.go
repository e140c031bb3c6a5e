package chaos

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestBodyHash pins the body hash definition: the exact bytes after the
// first CRLF CRLF, so headers a server adds do not matter and anything a
// server changes in the body does.
func TestBodyHash(t *testing.T) {
	base := BodyHash([]byte("Subject: x\r\n\r\nline one\r\nline two\r\n"))
	same := []struct{ name, raw string }{
		{"a Received header prepended", "Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\nSubject: x\r\n\r\nline one\r\nline two\r\n"},
		{"other headers", "X-Chaos-Id: other\r\n\r\nline one\r\nline two\r\n"},
	}
	for _, tc := range same {
		if got := BodyHash([]byte(tc.raw)); got != base {
			t.Errorf("%s: hash %s, want %s (same body)", tc.name, got, base)
		}
	}
	differ := []struct{ name, raw string }{
		{"a changed line", "Subject: x\r\n\r\nline one\r\nline 2\r\n"},
		{"a leading empty line in the body", "Subject: x\r\n\r\n\r\nline one\r\nline two\r\n"},
		{"no body", "Subject: x\r\nline one\r\nline two\r\n"},
		{"LF endings", "Subject: x\r\n\r\nline one\nline two\n"},
		{"no final newline", "Subject: x\r\n\r\nline one\r\nline two"},
		{"a trailing empty line", "Subject: x\r\n\r\nline one\r\nline two\r\n\r\n"},
		{"a dot left stuffed", "Subject: x\r\n\r\nline one\r\n..line two\r\n"},
	}
	for _, tc := range differ {
		if got := BodyHash([]byte(tc.raw)); got == base {
			t.Errorf("%s: same hash as the original body", tc.name)
		}
	}
	if a, b := BodyHash([]byte("Subject: x\r\n")), BodyHash([]byte("\r\n")); a != b {
		t.Errorf("empty bodies hash differently: %s, %s", a, b)
	}
}

func TestChaosIDOf(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"X-Chaos-Id: abc-1-2\r\n\r\nbody", "abc-1-2"},
		{"Received: x\r\nx-chaos-id:   abc \r\nSubject: y\r\n\r\n", "abc"},
		{"X-Chaos-Id:\r\n abc\r\n\r\n", "abc"},
		{"Subject: y\r\n\r\nX-Chaos-Id: in the body\r\n", ""},
		{"", ""},
	} {
		if got := ChaosIDOf([]byte(tc.raw)); got != tc.want {
			t.Errorf("ChaosIDOf(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestQueueIDOf(t *testing.T) {
	for detail, want := range map[string]string{
		"250 2.0.0 Ok: queued as ABCDEF234567":   "ABCDEF234567",
		"250 2.0.0 Ok: queued as ABC extra":      "ABC",
		"451 4.3.0 try again later":              "",
		"before DATA: connect: refused":          "",
		"250 2.0.0 Ok: queued as ":               "",
		"250 2.0.0 Ok: queued as Q1\n more text": "Q1",
	} {
		if got := QueueIDOf(detail); got != want {
			t.Errorf("QueueIDOf(%q) = %q, want %q", detail, got, want)
		}
	}
}

// TestBuildMessage: what a sender records is what a read computes from the
// message, whatever a server prepends; the bodies carry dot lines, a
// 998-character line and 8-bit text on some messages.
func TestBuildMessage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	raw, hash := buildMessage(rng, "c1-2-3", "a@x.test", "b@y.test", 2000)
	if len(raw) < 2000 {
		t.Fatalf("message of %d bytes, want at least 2000", len(raw))
	}
	stored := append([]byte("Received: from chaos by node1 with ESMTP id Q\r\n"), raw...)
	hdr := stored[:bytes.Index(stored, []byte("\r\n\r\n"))+4]
	if m := readMsg(7, stored, hdr); m.ChaosID != "c1-2-3" || m.BodyHash != hash || m.UID != 7 || m.HeaderMismatch {
		t.Fatalf("read back %+v, want chaos ID c1-2-3 and hash %s", m, hash)
	}
	if m := readMsg(7, stored, raw[:bytes.Index(raw, []byte("\r\n\r\n"))+4]); !m.HeaderMismatch {
		t.Fatal("a header block without the Received field matched")
	}
	// One more CRLF at the end is another body.
	if BodyHash(append(stored, "\r\n"...)) == hash {
		t.Fatal("the body hash ignores a trailing empty line")
	}
	var dots, long, eight bool
	for i := range 30 {
		raw, _ := buildMessage(rand.New(rand.NewPCG(uint64(i), 9)), "c", "a@x.test", "b@y.test", 500)
		for _, line := range strings.Split(string(raw), "\r\n") {
			dots = dots || line == "." || line == ".."
			long = long || len(line) == 998
			eight = eight || strings.ContainsFunc(line, func(r rune) bool { return r > 127 })
		}
	}
	if !dots || !long || !eight {
		t.Fatalf("30 messages: dot lines %v, a 998-character line %v, 8-bit text %v", dots, long, eight)
	}
	_, hash2 := buildMessage(rand.New(rand.NewPCG(1, 2)), "c1-2-3", "a@x.test", "b@y.test", 2000)
	if hash2 != hash {
		t.Fatal("the same seed built a different body")
	}
}

// chaosTestCluster launches a process cluster with fast timings and the
// test accounts, closed at the end of the test.
func chaosTestCluster(t *testing.T, opts LaunchOptions) (Cluster, []NodeInfo) {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = launchTestBinary(t, false)
	}
	if opts.RaftTimeout == 0 {
		opts.RaftTimeout = 300 * time.Millisecond
	}
	opts.Dir = t.TempDir()
	opts.DNSResolver = DeadResolver()
	ctx, cancel := context.WithTimeout(context.Background(), launchTestTimeout)
	defer cancel()
	c, err := ProcessLauncher{Logf: t.Logf}.Launch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	nodes := c.Nodes()
	if err := setupAccounts(ctx, nodes, TestAccounts()); err != nil {
		t.Fatal(err)
	}
	return c, nodes
}

// TestTraffic runs every kind of client against a healthy cluster for a
// few seconds: every operation is recorded, and what was acknowledged is
// what every node holds.
func TestTraffic(t *testing.T) {
	_, nodes := chaosTestCluster(t, LaunchOptions{})
	accounts := TestAccounts()
	rec := &Recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sampler := StartSampler(ctx, nodes, 200*time.Millisecond)
	trafficStart := time.Now()
	tr, err := StartTraffic(ctx, TrafficConfig{Nodes: nodes, Accounts: accounts, Seed: 7, RoundRobin: true, RemoteShare: 0.3}, rec)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	evc := make(chan Event, 1000)
	tr.SetObserver(func(ev Event) {
		select {
		case evc <- ev:
		default:
		}
	})
	// Wait for enough operations, not for a time.
	deadline := time.Now().Add(90 * time.Second)
	for {
		kinds := map[string]int{}
		remote := 0
		for _, op := range rec.Ops() {
			if op.Outcome == OK {
				kinds[op.Kind+"/"+op.Via]++
				if op.Remote {
					remote++
				}
			}
		}
		if kinds[OpSend+"/mx"] >= 10 && kinds[OpSend+"/submission"] >= 10 && remote >= 2 && kinds[OpFetch+"/"] >= 5 && kinds[OpStore+"/"] >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not enough operations after 90s: %v, %d remote", kinds, remote)
		}
		time.Sleep(200 * time.Millisecond)
	}
	tr.Stop()
	tr.SetObserver(nil)
	close(evc)
	for ev := range evc {
		events = append(events, ev)
	}
	canary := tr.sendOnce(ctx, nodes[1], "mx")
	if canary.Outcome != OK {
		t.Fatalf("canary: %+v", canary)
	}
	if _, err := WaitConverged(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	// Liveness is held to bounds no loaded test machine misses: this test
	// checks what the traffic records, not how fast the cluster answers.
	h := History{Scenario: "traffic-test", Seed: 7, Start: trafficStart, Ops: rec.Ops(), Canary: &canary,
		Liveness: LivenessBounds{Fault: time.Minute, Heal: time.Minute}}
	h.Final = ReadBack(ctx, nodes, accounts, h.Ops, 15*time.Second)
	h.Samples = sampler.Stop()
	h.End = time.Now()

	// Every op has its fields.
	for _, op := range h.Ops {
		if op.ID == 0 || op.Node == "" || op.Start.IsZero() || op.End.Before(op.Start) || op.Outcome == "" {
			t.Fatalf("incomplete op: %+v", op)
		}
		switch op.Kind {
		case OpSend:
			if op.ChaosID == "" || len(op.BodyHash) != 64 || op.Rcpt == "" || (op.Via != "mx" && op.Via != "submission") {
				t.Fatalf("incomplete send: %+v", op)
			}
			if op.Outcome == OK && (op.Code != 250 || QueueIDOf(op.Detail) == "") {
				t.Fatalf("OK send without 250 and queue ID: %+v", op)
			}
			if op.Remote && (op.Via != "submission" || !strings.HasSuffix(op.Rcpt, "@"+RemoteDomain)) {
				t.Fatalf("remote send: %+v", op)
			}
		case OpFetch:
			pop3 := op.Detail == "pop3" // POP3 has no UIDNEXT
			if op.Outcome == OK && (op.UIDValidity == 0 && len(op.Seen) > 0 || op.UIDNext == 0 && !pop3 || op.Account == "") {
				t.Fatalf("incomplete fetch: %+v", op)
			}
			for _, m := range op.Seen {
				if m.UID >= op.UIDNext && !pop3 || m.ChaosID == "" {
					t.Fatalf("fetch op %d saw %+v with UIDNEXT %d", op.ID, m, op.UIDNext)
				}
			}
		case OpStore, OpExpunge, OpMove:
			if len(op.UIDs) == 0 || op.UIDValidity == 0 || op.Mailbox == "" {
				t.Fatalf("incomplete %s: %+v", op.Kind, op)
			}
		}
	}
	acks := 0
	for _, ev := range events {
		if ev.Kind == EventAck {
			acks++
		}
	}
	if acks == 0 {
		t.Fatal("the observer saw no 250")
	}

	// The final state is complete, and the queue entries are named.
	for _, n := range h.Final {
		if !n.Reachable || n.Error != "" || n.AppliedIndex == 0 || n.StateHash == "" || !n.Voter || n.Gossip != "alive" {
			t.Fatalf("final state of %s: %+v", n.Node, n)
		}
		if len(n.Mailboxes) < 3*6 {
			t.Fatalf("%s: %d mailboxes read back, want the 6 default ones of 3 accounts", n.Node, len(n.Mailboxes))
		}
		for _, q := range n.Queue {
			if strings.HasPrefix(q, "queue:") {
				t.Fatalf("%s: queue entry %s not matched to a send", n.Node, q)
			}
		}
	}
	if len(h.Samples) == 0 {
		t.Fatal("no samples")
	}

	for _, r := range Check(h) {
		if !r.Pass {
			t.Errorf("%s: %d violations: %v", r.Invariant, r.Violations, r.Examples)
		}
	}
	t.Log(Summarize(h, Check(h)).Line())
}
