package chaos

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/protocol/mailauth"
)

// remoteSend is a submission send from alice to chaos-<cid>@domain.
func remoteSend(id int64, cid, domain string, out Outcome, code, start int) Op {
	op := send(id, cid, out, code, start, start+10)
	op.Rcpt, op.Remote, op.Via, op.From = "chaos-"+cid+"@"+domain, true, "submission", alice
	return op
}

func took(cid, domain, node string, ms int) SinkMsg {
	return SinkMsg{Time: at(ms), Node: node, Remote: "10.0.0.2:4000", From: alice, Rcpts: []string{"chaos-" + cid + "@" + domain},
		ChaosID: cid, BodyHash: hashOf(cid), Reply: "250 2.0.0 taken"}
}

// outboundHistory is cleanHistory with a sink: r1 (remote.test) taken
// twice (a duplicate), d1 (defer.test) taken after a 451, b1
// (bounce.test) refused and bounced to alice (a DSN in her INBOX), r2
// refused by the cluster and never taken.
func outboundHistory() History {
	h := cleanHistory()
	// cleanHistory's remote send c6 stays queued: without a sink.
	h.Ops = slices.DeleteFunc(h.Ops, func(op Op) bool { return op.ChaosID == "c6" })
	for i := range h.Final {
		h.Final[i].Queue = nil
	}
	h.Ops = append(h.Ops,
		remoteSend(20, "r1", RemoteDomain, OK, 250, 1000),
		remoteSend(21, "d1", DeferDomain, OK, 250, 1100),
		remoteSend(22, "b1", BounceDomain, OK, 250, 1200),
		remoteSend(23, "r2", RemoteDomain, Fail, 451, 1300),
	)
	for _, n := range []string{"n1", "n2", "n3"} {
		mb := mailbox(&h, n, "INBOX")
		mb.Messages = append(mb.Messages, Msg{UID: 7, BodyHash: "hash-dsn", DSNFor: []string{"b1"}})
		mb.UIDNext = 8
	}
	h.Outbound = &OutboundRecord{
		Received: []SinkMsg{took("r1", RemoteDomain, "n1", 1500), took("d1", DeferDomain, "n2", 3600), took("r1", RemoteDomain, "n3", 3700)},
		Refused: []SinkMsg{
			{Time: at(1400), ChaosID: "d1", Rcpts: []string{"chaos-d1@" + DeferDomain}, Reply: "451 4.3.2 try again later"},
			{Time: at(1500), ChaosID: "b1", Rcpts: []string{"chaos-b1@" + BounceDomain}, Reply: "550 5.1.1 no such user here"},
		},
		WaitMillis: 1200, Drained: true, Healthy: true,
	}
	return h
}

func TestOutboundCleanPasses(t *testing.T) {
	h := outboundHistory()
	rs := Check(h)
	for _, r := range rs {
		if !r.Pass {
			t.Errorf("%s: %+v, want a pass", r.Invariant, r)
		}
	}
	r := resultOf(rs, InvOutboundDelivered)
	if len(r.Examples) != 1 || !strings.Contains(r.Examples[0], "outbound=3 delivered=2 dup=1 bounced=1 queued=0") {
		t.Errorf("outbound examples %q, want the figures with one duplicate", r.Examples)
	}
	s := Summarize(h, rs)
	if s.Outbound == nil || *s.Outbound != (OutboundFigures{Sent: 3, Delivered: 2, Duplicates: 1, Bounced: 1}) {
		t.Errorf("figures %+v", s.Outbound)
	}
	if !strings.HasSuffix(s.Line(), " outbound=3 delivered=2 dup=1 bounced=1 queued=0") {
		t.Errorf("line %q lacks the outbound figures", s.Line())
	}
	// Without a sink there is no outbound result and no figures, and
	// remote sends are checked in the queue as before.
	h.Outbound = nil
	rs = Check(h)
	if r := resultOf(rs, InvOutboundDelivered); r.Invariant == InvOutboundDelivered {
		t.Errorf("an outbound result without a sink: %+v", r)
	}
	if r := resultOf(rs, InvNoLostAck); r.Pass {
		t.Errorf("no-lost-ack passed without a sink and without r1 in any queue")
	}
}

func TestOutboundViolations(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(h *History)
		want  string
		clean bool // passes, with want in the examples
	}{
		{"lost", func(h *History) {
			h.Outbound.Received = h.Outbound.Received[1:2] // only d1
		}, "r1 to chaos-r1@remote.test lost", false},
		{"dropped after the first attempt at the defer domain", func(h *History) {
			h.Outbound.Received = h.Outbound.Received[:1]
		}, "d1 to chaos-d1@defer.test lost", false},
		{"still queued, cluster healthy", func(h *History) {
			h.Outbound.Received = h.Outbound.Received[1:2]
			h.Outbound.Drained = false
			h.Outbound.Queue = []QueueItem{{ChaosID: "r1", Rcpt: "chaos-r1@remote.test", Status: "pending", Attempts: 2,
				LastReply: "451 4.4.1 mx.remote.test: connection refused", LeaseNode: "n2", LeaseUntil: at(9000)}}
		}, "still queued 1s after the traffic, the cluster healthy: chaos-r1@remote.test pending after 2 attempt(s), leased to n2", false},
		{"still queued, cluster not healthy", func(h *History) {
			h.Outbound.Received = h.Outbound.Received[1:2]
			h.Outbound.Drained, h.Outbound.Healthy = false, false
			h.Outbound.Queue = []QueueItem{{ChaosID: "r1", Rcpt: "chaos-r1@remote.test", Status: "pending"}}
		}, "1 still queued, not judged", true},
		{"still queued for a retry a skewed clock scheduled", func(h *History) {
			h.Outbound.Received = h.Outbound.Received[1:2]
			h.Outbound.Drained = false
			h.Faults = append(h.Faults, Fault{Name: "clock skew", Target: "n1,n2", Start: at(500), Heal: at(800), Skew: 10 * time.Minute})
			next := h.End.Add(5 * time.Minute)
			h.Outbound.Queue = []QueueItem{{ChaosID: "r1", Rcpt: "chaos-r1@remote.test", Status: "pending", Attempts: 1, NextAttempt: next}}
		}, "1 still queued for a retry or lease a node scheduled while its clock was up to 10m0s ahead", true},
		{"still queued past what the skew explains", func(h *History) {
			h.Outbound.Received = h.Outbound.Received[1:2]
			h.Outbound.Drained = false
			h.Faults = append(h.Faults, Fault{Name: "clock skew", Target: "n1,n2", Start: at(500), Heal: at(800), Skew: 10 * time.Minute})
			next := h.End.Add(15 * time.Minute)
			h.Outbound.Queue = []QueueItem{{ChaosID: "r1", Rcpt: "chaos-r1@remote.test", Status: "pending", Attempts: 1, NextAttempt: next}}
		}, "r1 to chaos-r1@remote.test still queued", false},
		{"phantom", func(h *History) {
			h.Outbound.Received = append(h.Outbound.Received, took("zz", RemoteDomain, "n1", 2000))
		}, `phantom message "zz"`, false},
		{"taken though refused", func(h *History) {
			h.Outbound.Received = append(h.Outbound.Received, took("r2", RemoteDomain, "n1", 2000))
		}, "the sink took message r2, but every send of it was refused", false},
		{"body changed", func(h *History) {
			h.Outbound.Received[0].BodyHash, h.Outbound.Received[2].BodyHash = "hash-other", "hash-other"
		}, "reached the sink with body hash hash-other", false},
		{"bounce taken by the sink", func(h *History) {
			h.Outbound.Received = append(h.Outbound.Received, took("b1", BounceDomain, "n1", 2000))
		}, "b1 to chaos-b1@bounce.test was taken by the sink", false},
		{"no DSN", func(h *History) {
			for _, n := range []string{"n1", "n2", "n3"} {
				mb := mailbox(h, n, "INBOX")
				mb.Messages = mb.Messages[:len(mb.Messages)-1]
			}
		}, "its sender alice@example.test holds no DSN naming it", false},
		{"DSN to another account", func(h *History) {
			for i := range h.Ops {
				if h.Ops[i].ChaosID == "b1" {
					h.Ops[i].From = "carol@example.test"
				}
			}
		}, "its sender carol@example.test holds no DSN naming it", false},
		{"DSN seen by a read, expunged since", func(h *History) {
			for _, n := range []string{"n1", "n2", "n3"} {
				mb := mailbox(h, n, "INBOX")
				mb.Messages = mb.Messages[:len(mb.Messages)-1]
			}
			h.Ops = append(h.Ops, fetch(30, "n1", 1, "INBOX", 7, 8, 3000, 3010, Msg{UID: 7, BodyHash: "hash-dsn", DSNFor: []string{"b1"}}))
		}, "bounced=1", true},
		{"DSN for a message never sent to the bounce domain", func(h *History) {
			mb := mailbox(h, "n1", "INBOX")
			mb.Messages = append(mb.Messages, Msg{UID: 8, BodyHash: "hash-dsn2", DSNFor: []string{"r1"}})
		}, "a DSN in alice@example.test names message r1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := outboundHistory()
			tc.edit(&h)
			r := resultOf(Check(h), InvOutboundDelivered)
			if r.Pass != tc.clean {
				t.Fatalf("pass = %v, want %v: %+v", r.Pass, tc.clean, r)
			}
			if !slicesContainsSub(r.Examples, tc.want) {
				t.Errorf("examples %q lack %q", r.Examples, tc.want)
			}
		})
	}
}

func slicesContainsSub(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestOutboundJSONLRoundTrip(t *testing.T) {
	h := outboundHistory()
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Outbound == nil || len(got.Outbound.Received) != 3 || len(got.Outbound.Refused) != 2 || !got.Outbound.Healthy {
		t.Fatalf("outbound record read back as %+v", got.Outbound)
	}
	if a, b := Summarize(got, Check(got)).Line(), Summarize(h, Check(h)).Line(); a != b {
		t.Errorf("read back: %q, want %q", a, b)
	}
	// A history from before the sink: no outbound record, no result.
	old := `{"type":"history","v":{"scenario":"old","seed":1,"start":"2026-03-01T12:00:00Z","end":"2026-03-01T12:00:01Z","ops":null,"faults":null,"samples":null,"final":null}}` + "\n"
	got, err = ReadJSONL(strings.NewReader(old))
	if err != nil || got.Outbound != nil {
		t.Fatalf("old history: %v, outbound %+v", err, got.Outbound)
	}
}

func TestDSNChaosIDs(t *testing.T) {
	dsn := strings.Join([]string{
		"Return-Path: <>",
		"From: Mail Delivery System <MAILER-DAEMON@localhost>",
		`Content-Type: multipart/report; report-type=delivery-status; boundary="x/localhost"`,
		"",
		"--x/localhost",
		"Content-Type: text/plain; charset=utf-8",
		"",
		"<chaos-c1-2-3@bounce.test>: 550 5.1.1 no such user here",
		"",
		"--x/localhost",
		"Content-Type: message/delivery-status",
		"",
		"Reporting-MTA: dns; localhost",
		"",
		"Final-Recipient: rfc822; chaos-c1-2-3@bounce.test",
		"Action: failed",
		"",
		"Final-Recipient: rfc822; someone@else.test",
		"--x/localhost--",
		"",
	}, "\r\n")
	if got := dsnChaosIDs([]byte(dsn)); len(got) != 1 || got[0] != "c1-2-3" {
		t.Errorf("dsnChaosIDs = %q, want [c1-2-3]", got)
	}
	plain := "Subject: hi\r\nX-Chaos-Id: c1\r\n\r\nFinal-Recipient: rfc822; chaos-c9@bounce.test\r\n"
	if got := dsnChaosIDs([]byte(plain)); got != nil {
		t.Errorf("a plain message read as a DSN for %q", got)
	}
	for _, bad := range []string{"", "\r\n\r\n", "Content-Type: multipart/report; report-type=delivery-status\r\n\r\nFinal-Recipient:\r\nFinal-Recipient: rfc822;\r\n"} {
		if got := dsnChaosIDs([]byte(bad)); got != nil {
			t.Errorf("dsnChaosIDs(%q) = %q", bad, got)
		}
	}
}

// TestOutsideServes runs the DNS server and the sink on loopback and
// talks to them as a node does: MX and A through mailauth's resolver,
// then SMTP to each outside domain.
func TestOutsideServes(t *testing.T) {
	o, err := StartOutside(OutsideOptions{DropAfterAck: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := mailauth.NewResolver(o.Resolver("127.0.0.1"))
	for _, d := range []string{RemoteDomain, BounceDomain, DeferDomain} {
		mxs, err := r.LookupMX(ctx, d)
		if err != nil || len(mxs) != 1 || mxs[0].Host != "mx."+d+"." {
			t.Fatalf("MX %s: %v %v", d, mxs, err)
		}
		ips, err := r.LookupIPAddr(ctx, "mx."+d)
		if err != nil || len(ips) != 1 || !ips[0].IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("A mx.%s: %v %v", d, ips, err)
		}
	}
	if _, err := r.LookupMX(ctx, "elsewhere.test"); !mailauth.IsNotFound(err) {
		t.Errorf("MX elsewhere.test: %v, want not found", err)
	}

	deliver := func(rcpt, cid string) error {
		c, err := smtp.Dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(o.SMTPPort())))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.CommandTimeout, c.SubmissionTimeout = 5*time.Second, 5*time.Second
		if err := c.Hello("node.test"); err != nil {
			return err
		}
		if err := c.Mail(alice, nil); err != nil {
			return err
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte("X-Chaos-Id: " + cid + "\r\n\r\nbody\r\n")); err != nil {
			return err
		}
		return w.Close()
	}
	if err := deliver("chaos-drop@"+RemoteDomain, "drop"); err != nil {
		t.Fatalf("the dropped message: %v", err)
	}
	if err := deliver("chaos-r1@"+RemoteDomain, "r1"); err != nil {
		t.Fatalf("remote: %v", err)
	}
	if err := deliver("chaos-b1@"+BounceDomain, "b1"); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("bounce domain: %v, want 550", err)
	}
	if err := deliver("chaos-d1@"+DeferDomain, "d1"); err == nil || !strings.Contains(err.Error(), "451") {
		t.Fatalf("defer domain, first try: %v, want 451", err)
	}
	if err := deliver("chaos-d1@"+DeferDomain, "d1"); err != nil {
		t.Fatalf("defer domain, second try: %v", err)
	}
	received, refused, dropped := o.Received()
	if dropped != 1 || len(received) != 2 || received[0].ChaosID != "r1" || received[1].ChaosID != "d1" || received[0].Helo != "node.test" {
		t.Errorf("received %+v, dropped %d", received, dropped)
	}
	if received[0].BodyHash != BodyHash([]byte("X-Chaos-Id: r1\r\n\r\nbody\r\n")) {
		t.Errorf("body hash %s", received[0].BodyHash)
	}
	if len(refused) != 2 || refused[0].ChaosID != "b1" || refused[1].ChaosID != "d1" {
		t.Errorf("refused %+v", refused)
	}
}

// TestNegativeControlSinkDrops: a sink that answers 250 to the first
// message and forgets it must make outbound-delivered fail: the cluster
// removed the entry, and the sink holds nothing.
func TestNegativeControlSinkDrops(t *testing.T) {
	t.Parallel()
	bin := launchTestBinary(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	runs, err := RunScenarios(ctx, ProcessLauncher{Logf: t.Logf}, RunOptions{
		Scenarios:   []string{"kill-follower"},
		Seed:        1,
		Duration:    6 * time.Second,
		Binary:      bin,
		RaftTimeout: 300 * time.Millisecond,
		Traffic:     TrafficConfig{RemoteShare: 0.3},
		Sink:        OutsideOptions{DropAfterAck: 1},
		Logf:        t.Logf,
	})
	if err != nil || len(runs) != 1 {
		t.Fatalf("%d runs: %v", len(runs), err)
	}
	r := resultOf(runs[0].Results, InvOutboundDelivered)
	if r.Pass || !slicesContainsSub(r.Examples, "lost: it left the queue, and the sink never took it") {
		t.Fatalf("outbound-delivered with a sink that drops a message after its 250: %+v (%s)", r, runs[0].Summary.Line())
	}
	t.Logf("outbound-delivered failed as it must: %v", r.Examples[:min(2, len(r.Examples))])
}

// TestOutsideCloseAtOnce: closing the DNS server and sink right after
// they start (a scenario skipped at once) returns, although their serving
// goroutines may not have started yet: a run once hung there.
func TestOutsideCloseAtOnce(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		for range 200 {
			o, err := StartOutside(OutsideOptions{})
			if err != nil {
				done <- err
				return
			}
			o.Close()
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Close of a just started Outside did not return in 60 s")
	}
}
