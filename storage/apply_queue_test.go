package storage

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestQueueCommands(t *testing.T) {
	blob, _ := blobOf("queued")
	far := t0.Add(24 * time.Hour)
	entry := func(mod func(*QueueEntry)) QueueEntry {
		q := QueueEntry{ID: "q1", Blob: blob, Size: 6, From: "a@example.test", Recipients: []QueueRecipient{
			{Address: "x@remote.test"}, {Address: "y@remote.test"}, {Address: "z@other.test", Status: QueueDelivered},
		}}
		if mod != nil {
			mod(&q)
		}
		return q
	}
	add := func(mod func(*QueueEntry)) func(h *harness) {
		return func(h *harness) { h.ok(CmdQueueAdd, entry(mod)) }
	}
	get := func(t *testing.T, h *harness, id string) QueueEntry {
		t.Helper()
		q, err := h.s.QueueEntry(id)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	type tc struct {
		name    string
		prep    func(h *harness)
		typ     CommandType
		payload any
		want    error
		check   func(t *testing.T, h *harness, r Result)
	}
	cases := []tc{
		{name: "lease", prep: add(nil), typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far},
			check: func(t *testing.T, h *harness, r Result) {
				var q QueueEntry
				if err := r.Decode(&q); err != nil || q.LeaseNode != "n2" || !q.LeaseUntil.Equal(far) {
					t.Fatalf("result %+v %v", q, err)
				}
				if q := get(t, h, "q1"); q.LeaseNode != "n2" || !q.LeaseUntil.Equal(far) {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "lease missing", typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far}, want: ErrNotFound},
		{name: "lease without node", prep: add(nil), typ: CmdQueueLease, payload: QueueLease{ID: "q1", Until: far}, want: ErrInvalid},
		{name: "lease already over", prep: add(nil), typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: t0}, want: ErrInvalid},
		{name: "lease live lease of another node", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n1", far }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far}, want: ErrExists},
		{name: "lease live lease of the same node", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n2", far }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far.Add(time.Hour)}, want: ErrExists},
		{name: "lease expired lease", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n1", t0 }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far},
			check: func(t *testing.T, h *harness, r Result) {
				if q := get(t, h, "q1"); q.LeaseNode != "n2" {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "lease held", prep: add(func(q *QueueEntry) { q.Hold = true }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far}, want: ErrInvalid},
		{name: "lease not due", prep: add(func(q *QueueEntry) { q.NextAttempt = far }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far.Add(time.Hour)}, want: ErrInvalid},
		{name: "renew", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n2", far }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far.Add(time.Hour), Renew: true},
			check: func(t *testing.T, h *harness, r Result) {
				if q := get(t, h, "q1"); !q.LeaseUntil.Equal(far.Add(time.Hour)) {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "renew held keeps the delivery going", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil, q.Hold = "n2", far, true }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far.Add(time.Hour), Renew: true}},
		{name: "renew lease of another node", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n1", far }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far, Renew: true}, want: ErrInvalid},
		{name: "renew expired lease", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n2", t0 }),
			typ: CmdQueueLease, payload: QueueLease{ID: "q1", Node: "n2", Until: far, Renew: true}, want: ErrInvalid},
		{name: "result", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n2", far }),
			typ: CmdQueueResult, payload: QueueResult{ID: "q1", Node: "n2", NextAttempt: far, LastError: "mx said 451", Recipients: []QueueRecipient{
				{Address: "x@remote.test", Status: QueueDelivered, LastReply: "250 ok", Attempts: 1},
				{Address: "y@remote.test", Status: QueuePending, LastReply: "451 4.3.0 later", Attempts: 1},
				{Address: "z@other.test", Status: QueueFailed, LastReply: "550 no", Attempts: 1}, // not pending: ignored
				{Address: "nobody@remote.test", Status: QueueFailed},                             // unknown: ignored
			}},
			check: func(t *testing.T, h *harness, r Result) {
				q := get(t, h, "q1")
				if q.Attempts != 1 || !q.NextAttempt.Equal(far) || q.LastError != "mx said 451" || q.LeaseNode != "" || !q.LeaseUntil.IsZero() {
					t.Fatalf("entry %+v", q)
				}
				want := []QueueRecipient{
					{Address: "x@remote.test", Status: QueueDelivered, LastReply: "250 ok", Attempts: 1},
					{Address: "y@remote.test", Status: QueuePending, LastReply: "451 4.3.0 later", Attempts: 1},
					{Address: "z@other.test", Status: QueueDelivered},
				}
				if !slices.Equal(q.Recipients, want) {
					t.Fatalf("recipients %+v", q.Recipients)
				}
			}},
		{name: "result keeps another node's lease", prep: add(func(q *QueueEntry) { q.LeaseNode, q.LeaseUntil = "n3", far }),
			typ: CmdQueueResult, payload: QueueResult{ID: "q1", Node: "n2", Recipients: []QueueRecipient{{Address: "x@remote.test", Status: QueueDelivered}}},
			check: func(t *testing.T, h *harness, r Result) {
				if q := get(t, h, "q1"); q.LeaseNode != "n3" || q.Recipients[0].Status != QueueDelivered || q.NextAttempt.IsZero() {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "result bad status", prep: add(nil), typ: CmdQueueResult,
			payload: QueueResult{ID: "q1", Node: "n2", Recipients: []QueueRecipient{{Address: "x@remote.test", Status: "lost"}}}, want: ErrInvalid},
		{name: "result missing", typ: CmdQueueResult, payload: QueueResult{ID: "q1"}, want: ErrNotFound},
		{name: "hold", prep: add(nil), typ: CmdQueueAdmin, payload: QueueAdmin{ID: "q1", Op: QueueHold},
			check: func(t *testing.T, h *harness, r Result) {
				if q := get(t, h, "q1"); !q.Hold {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "release", prep: add(func(q *QueueEntry) { q.Hold, q.NextAttempt = true, far }),
			typ: CmdQueueAdmin, payload: QueueAdmin{ID: "q1", Op: QueueRelease},
			check: func(t *testing.T, h *harness, r Result) {
				if q := get(t, h, "q1"); q.Hold || !q.NextAttempt.Before(far) {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "retry", prep: add(func(q *QueueEntry) { q.NextAttempt = far }),
			typ: CmdQueueAdmin, payload: QueueAdmin{ID: "q1", Op: QueueRetry},
			check: func(t *testing.T, h *harness, r Result) {
				if q := get(t, h, "q1"); !q.NextAttempt.Before(far) {
					t.Fatalf("entry %+v", q)
				}
			}},
		{name: "retry missing", typ: CmdQueueAdmin, payload: QueueAdmin{ID: "q1", Op: QueueRetry}, want: ErrNotFound},
		{name: "unknown op", prep: add(nil), typ: CmdQueueAdmin, payload: QueueAdmin{ID: "q1", Op: "explode"}, want: ErrInvalid},
		{name: "flush", prep: func(h *harness) {
			add(func(q *QueueEntry) { q.NextAttempt = far })(h)
			add(func(q *QueueEntry) { q.ID, q.NextAttempt, q.Hold = "q2", far, true })(h)
			add(func(q *QueueEntry) { q.ID = "q3" })(h) // due already
		}, typ: CmdQueueAdmin, payload: QueueAdmin{Op: QueueFlush},
			check: func(t *testing.T, h *harness, r Result) {
				var ar QueueAdminResult
				if err := r.Decode(&ar); err != nil || ar.Changed != 1 {
					t.Fatalf("result %+v %v", ar, err)
				}
				if q := get(t, h, "q1"); !q.NextAttempt.Before(far) {
					t.Fatalf("q1 %+v", q)
				}
				if q := get(t, h, "q2"); !q.NextAttempt.Equal(far) {
					t.Fatalf("held q2 flushed: %+v", q)
				}
			}},
		{name: "flush with id", prep: add(nil), typ: CmdQueueAdmin, payload: QueueAdmin{ID: "q1", Op: QueueFlush}, want: ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.setup()
			if c.prep != nil {
				c.prep(h)
			}
			before := dumpState(t, h.s)
			r := h.apply(c.typ, c.payload)
			wantErr(t, r, c.want)
			if c.want != nil && !slices.Equal(before, dumpState(t, h.s)) {
				t.Fatalf("failed command changed state")
			}
			if c.check != nil {
				c.check(t, h, r)
			}
		})
	}
}

// TestQueueLeaseOnce: two leases proposed for the same due entry (two
// leaders after a leader change) — only the first is granted.
func TestQueueLeaseOnce(t *testing.T) {
	h := newHarness(t)
	blob, _ := blobOf("x")
	h.ok(CmdQueueAdd, QueueEntry{ID: "q1", Blob: blob, Recipients: []QueueRecipient{{Address: "x@remote.test"}}})
	until := t0.Add(time.Hour)
	h.ok(CmdQueueLease, QueueLease{ID: "q1", Node: "n1", Until: until})
	r := h.apply(CmdQueueLease, QueueLease{ID: "q1", Node: "n2", Until: until})
	if !errors.Is(r.Err(), ErrExists) {
		t.Fatalf("second lease: %v", r.Err())
	}
	if q, _ := h.s.QueueEntry("q1"); q.LeaseNode != "n1" {
		t.Fatalf("entry %+v", q)
	}
}
