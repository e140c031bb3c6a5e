package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// workload applies a mixed, deterministic sequence of commands to h and
// returns h.log.
func workload(h *harness) []Entry {
	h.setup()
	h.ok(CmdSettingSet, SettingSet{Key: "cluster-id", Value: []byte("c")})
	h.ok(CmdTokenAdd, JoinToken{ID: "t1", Expires: t0.Add(time.Hour)})
	h.ok(CmdAliasAdd, AliasAdd{Address: "all@example.test", Targets: []string{"a@example.test", "b@example.test"}})
	h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "Work"})
	for i := range 20 {
		h.deliver("a@example.test", "", fmt.Sprintf("body %d", i%7))
	}
	in := h.mailbox("a@example.test", "INBOX").ID
	work := h.mailbox("a@example.test", "Work").ID
	h.ok(CmdFlags, Flags{MailboxID: in, UIDs: []uint32{1, 2, 3, 4}, Op: FlagsAdd, Flags: []string{`\Deleted`, "x"}})
	h.ok(CmdCopy, Copy{From: in, To: work, UIDs: []uint32{1, 5, 6}})
	h.ok(CmdMove, Move{From: in, To: h.mailbox("b@example.test", "INBOX").ID, UIDs: []uint32{7, 8}})
	h.ok(CmdExpunge, Expunge{MailboxID: in})
	h.apply(CmdExpunge, Expunge{MailboxID: 999}) // a failure is recorded too
	h.ok(CmdMailboxRename, MailboxRename{Account: "a@example.test", From: "INBOX", To: "Old"})
	h.ok(CmdQueueAdd, QueueEntry{ID: "q1", Blob: Hash{1}, Size: 3})
	h.ok(CmdMailboxDelete, MailboxDelete{Account: "a@example.test", Name: "Work"})
	return h.log
}

func TestDeterminism(t *testing.T) {
	h := newHarness(t)
	log := workload(h)
	want := h.hash()

	one := openStore(t, Config{})
	for _, e := range log {
		one.Apply(e)
	}
	batched := openStore(t, Config{})
	for i := 0; i < len(log); i += 5 {
		batched.ApplyBatch(log[i:min(i+5, len(log))])
	}
	for name, s := range map[string]*Store{"one by one": one, "batched": batched} {
		got, idx, err := s.StateHash()
		if err != nil {
			t.Fatal(err)
		}
		if got != want || idx != uint64(len(log)) {
			t.Errorf("%s: hash %v at %d, want %v at %d", name, got, idx, want, len(log))
		}
	}
}

func TestApplyBatchResults(t *testing.T) {
	h := newHarness(t)
	c1 := h.cmd(CmdDomainAdd, DomainAdd{Name: "example.test"})
	c2 := h.cmd(CmdAccountAdd, AccountAdd{Address: "a@example.test"}) // sees c1
	c3 := h.cmd(CmdDomainAdd, DomainAdd{Name: "example.test"})
	rs := h.s.ApplyBatch([]Entry{{1, c1.Encode()}, {2, c2.Encode()}, {3, c3.Encode()}})
	wantErr(t, rs[0], nil)
	wantErr(t, rs[1], nil)
	wantErr(t, rs[2], ErrExists)
	if h.s.AppliedIndex() != 3 {
		t.Fatalf("applied %d", h.s.AppliedIndex())
	}
}

func TestDedup(t *testing.T) {
	h := newHarness(t)
	h.setup()
	bh, _ := blobOf("x")
	c := h.cmd(CmdDeliver, Deliver{Blob: bh, Size: 1, Targets: []DeliverTarget{{Account: "a@example.test"}}})
	first := h.applyCmd(c)
	wantErr(t, first, nil)
	before := dumpState(t, h.s)
	again := h.applyCmd(c) // a retry committed at a later index
	if string(again.Data) != string(first.Data) || again.Code != first.Code {
		t.Fatalf("retry result %+v, want %+v", again, first)
	}
	if after := dumpState(t, h.s); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatal("retry changed state")
	}
	if mb := h.mailbox("a@example.test", "INBOX"); mb.Messages != 1 {
		t.Fatalf("%d messages", mb.Messages)
	}

	// A failed command is remembered too.
	bad := h.cmd(CmdDomainAdd, DomainAdd{Name: "new.test"})
	bad.Payload = []byte("{")
	r1 := h.applyCmd(bad)
	wantErr(t, r1, ErrInvalid)
	r2 := h.applyCmd(bad)
	if r1.Msg != r2.Msg {
		t.Fatalf("retry of failure: %+v vs %+v", r2, r1)
	}
}

func TestDedupPrune(t *testing.T) {
	h := &harness{tb: t, s: openStore(t, Config{DedupWindow: time.Hour})}
	c := h.cmd(CmdDomainAdd, DomainAdd{Name: "example.test"})
	wantErr(t, h.applyCmd(c), nil)
	// Within the window: remembered.
	later := h.cmd(CmdNoop, nil)
	later.Time = c.Time.Add(30 * time.Minute)
	h.applyCmd(later)
	wantErr(t, h.applyCmd(c), nil)
	// A command stamped after the window prunes it; the same ID then runs
	// again (and fails, as the domain exists).
	much := h.cmd(CmdNoop, nil)
	much.Time = c.Time.Add(2 * time.Hour)
	h.applyCmd(much)
	if _, ok := getRaw(t, h.s, dedupKey(c.ID)); ok {
		t.Fatal("dedup record not pruned")
	}
	wantErr(t, h.applyCmd(c), ErrExists)
}

func getRaw(tb testing.TB, s *Store, key []byte) ([]byte, bool) {
	v, c, err := s.db.Get(key)
	if err != nil {
		return nil, false
	}
	defer c.Close()
	return append([]byte(nil), v...), true
}

func TestReplay(t *testing.T) {
	h := newHarness(t)
	log := workload(h)
	hash := h.hash()
	// Raft replays entries after a restart: nothing changes.
	for _, r := range h.s.ApplyBatch(log[3:10]) {
		if r.Code != "" || r.Data != nil {
			t.Fatalf("replay result %+v", r)
		}
	}
	h.s.Apply(log[len(log)-1])
	if got := h.hash(); got != hash {
		t.Fatal("replay changed state")
	}

	// Across a restart too: the applied index is durable.
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	s.ApplyBatch(log)
	s.Close()
	s = openStore(t, Config{Dir: dir})
	if s.AppliedIndex() != uint64(len(log)) {
		t.Fatalf("applied %d after reopen", s.AppliedIndex())
	}
	s.ApplyBatch(log)
	if got, _, _ := s.StateHash(); got != hash {
		t.Fatal("reopen+replay hash differs")
	}
}

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), want) {
			t.Fatalf("panic %v, want one containing %q", r, want)
		}
	}()
	f()
}

func TestUnknownCommandType(t *testing.T) {
	h := newHarness(t)
	c := h.cmd(CmdNoop, nil)
	c.Type = 0x7e
	mustPanic(t, "entry 1: unknown command type 0x7e", func() { h.s.Apply(Entry{Index: 1, Data: c.Encode()}) })
	if h.s.AppliedIndex() != 0 {
		t.Fatal("index advanced after panic")
	}
	c.Type = Ignorable | 0x7e
	r := h.s.Apply(Entry{Index: 1, Data: c.Encode()})
	if r.Err() != nil || h.s.AppliedIndex() != 1 {
		t.Fatalf("ignorable: %+v, applied %d", r, h.s.AppliedIndex())
	}
	mustPanic(t, "entry 2: decode command: truncated", func() { h.s.Apply(Entry{Index: 2, Data: []byte{1, 2, 3}}) })
}

func TestWaitApplied(t *testing.T) {
	h := newHarness(t)
	done := make(chan error, 1)
	go func() { done <- h.s.WaitApplied(context.Background(), 2) }()
	h.ok(CmdNoop, nil)
	h.ok(CmdNoop, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.s.WaitApplied(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied = %v", err)
	}
	go func() { done <- h.s.WaitApplied(context.Background(), 10) }()
	h.s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitApplied after Close = %v", err)
	}
}

func TestSubscribe(t *testing.T) {
	h := newHarness(t)
	sub := h.s.Subscribe(100)
	slow := h.s.Subscribe(1)
	h.setup()
	p := h.deliver("a@example.test", "", "x")
	h.ok(CmdFlags, Flags{MailboxID: p.MailboxID, UIDs: []uint32{p.UID}, Op: FlagsAdd, Flags: []string{`\Seen`}})
	h.ok(CmdExpunge, Expunge{MailboxID: p.MailboxID, UIDs: []uint32{p.UID}})
	h.apply(CmdExpunge, Expunge{MailboxID: 1}) // fails: publishes nothing
	sub.Close()
	var kinds []string
	var last uint64
	for c := range sub.C {
		if c.Index < last {
			t.Fatalf("out of order: %d after %d", c.Index, last)
		}
		last = c.Index
		if c.MailboxID == p.MailboxID {
			kinds = append(kinds, c.Kind.String())
		}
	}
	want := "mailbox-created message-added flags-changed message-expunged"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
	if sub.Err() != nil {
		t.Fatal(sub.Err())
	}
	for range slow.C {
	}
	if !errors.Is(slow.Err(), ErrOverflow) {
		t.Fatalf("slow subscriber: %v", slow.Err())
	}
	sub.Close() // twice is fine
}
