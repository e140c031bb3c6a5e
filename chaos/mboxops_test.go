package chaos

import (
	"strings"
	"testing"
)

// mboxHistory is cleanHistory plus mailbox operations that keep every
// promise: c1 copied to chaos-1 (UIDVALIDITY 50) as uid 1, c8 moved
// there as uid 2, chaos-1 read, renamed to chaos-1-r (UIDVALIDITY kept),
// read again, then deleted; chaos-1 created again (UIDVALIDITY 60) with
// a copy of c5 as uid 1, still there at the end with a second copy of c1
// (an unknown COPY).
func mboxHistory() History {
	h := cleanHistory()
	add := func(ops ...Op) { h.Ops = append(h.Ops, ops...) }
	add(
		imapOp(20, OpCreate, "n1", 3, OK, "chaos-1", "", 0, 2400, 2410),
		fetch(21, "n1", 3, "INBOX", 7, 6, 2420, 2430, msg(1, "c1"), msg(4, "c8"), msg(5, "c5")),
		imapOp(22, OpCopy, "n1", 3, OK, "INBOX", "chaos-1", 7, 2440, 2450, 1),
		imapOp(23, OpMove, "n1", 3, OK, "INBOX", "chaos-1", 7, 2460, 2470, 4),
		fetch(24, "n1", 3, "chaos-1", 50, 3, 2480, 2490, msg(1, "c1"), msg(2, "c8")),
		imapOp(25, OpRename, "n1", 3, OK, "chaos-1", "chaos-1-r", 50, 2500, 2510),
		fetch(26, "n2", 3, "chaos-1-r", 50, 3, 2520, 2530, msg(1, "c1"), msg(2, "c8")),
		imapOp(27, OpDelete, "n1", 3, OK, "chaos-1-r", "", 50, 2540, 2550),
		imapOp(28, OpCreate, "n1", 3, OK, "chaos-1", "", 0, 2560, 2570),
		imapOp(29, OpCopy, "n1", 3, OK, "INBOX", "chaos-1", 7, 2580, 2590, 5),
		imapOp(30, OpCopy, "n1", 3, Unknown, "INBOX", "chaos-1", 7, 2600, 2610, 1),
		fetch(31, "n1", 3, "chaos-1", 60, 3, 2620, 2630, msg(1, "c5")),
	)
	// The final read of INBOX (op 10) ran after the move of c8.
	for i := range h.Ops {
		if h.Ops[i].ID == 10 {
			h.Ops[i].Seen = []Msg{msg(1, "c1"), msg(5, "c5")}
		}
	}
	for i := range h.Final {
		n := &h.Final[i]
		for j := range n.Mailboxes {
			if n.Mailboxes[j].Name == "INBOX" {
				dropMsg(&n.Mailboxes[j], "c8")
			}
		}
		n.Mailboxes = append(n.Mailboxes, MailboxState{Account: alice, Name: "chaos-1", UIDValidity: 60, UIDNext: 3,
			Messages: []Msg{msg(1, "c5"), msg(2, "c1")}})
	}
	return h
}

func TestCheckMailboxOpsPass(t *testing.T) {
	h := mboxHistory()
	for _, r := range Check(h) {
		if !r.Pass {
			t.Errorf("%s: %d violations: %v", r.Invariant, r.Violations, r.Examples)
		}
	}
}

// TestCheckMailboxOpsViolations: each case breaks one promise through a
// mailbox operation and must fail the invariant named.
func TestCheckMailboxOpsViolations(t *testing.T) {
	cases := []struct {
		name, inv, want string
		mutate          func(h *History)
	}{
		{
			// c8 moved to chaos-1 by an OK MOVE, and chaos-1 never
			// deleted nor anything expunged there: it must be found.
			name: "a MOVE acknowledged, the message in neither mailbox", inv: InvNoLostAck, want: "c8",
			mutate: func(h *History) {
				var ops []Op
				for _, op := range h.Ops {
					if op.ID < 25 { // no rename, no delete, no new chaos-1
						ops = append(ops, op)
					}
				}
				h.Ops = ops
				for i := range h.Final {
					n := &h.Final[i]
					n.Mailboxes = n.Mailboxes[:len(n.Mailboxes)-1]
					n.Mailboxes = append(n.Mailboxes, MailboxState{Account: alice, Name: "chaos-1", UIDValidity: 50, UIDNext: 3, Messages: []Msg{msg(1, "c1")}})
				}
			},
		},
		{
			// As above, with an OK DELETE of chaos-1 that ended before
			// the MOVE began (and before chaos-1 was created again): it
			// cannot explain c8's loss.
			name: "a MOVE acknowledged, the folder deleted only before it", inv: InvNoLostAck, want: "c8",
			mutate: func(h *History) {
				ops := []Op{imapOp(19, OpDelete, "n1", 3, OK, "chaos-1", "", 40, 2300, 2310)}
				for _, op := range h.Ops {
					if op.ID < 25 {
						ops = append(ops, op)
					}
				}
				h.Ops = ops
				for i := range h.Final {
					n := &h.Final[i]
					n.Mailboxes = n.Mailboxes[:len(n.Mailboxes)-1]
					n.Mailboxes = append(n.Mailboxes, MailboxState{Account: alice, Name: "chaos-1", UIDValidity: 50, UIDNext: 3, Messages: []Msg{msg(1, "c1")}})
				}
			},
		},
		{
			// The copy of c5 made by an OK COPY counts as intended, but
			// a third copy is one too many.
			name: "more copies than sends and COPYs", inv: InvNoDuplicates, want: "c5",
			mutate: func(h *History) {
				mb := mailbox(h, "n2", "chaos-1")
				mb.Messages = append(mb.Messages, msg(3, "c5"))
				mb.UIDNext = 4
			},
		},
		{
			// chaos-1 (UIDVALIDITY 50) had uid 2 = c8; renamed, the same
			// UIDVALIDITY must not give uid 2 to another message.
			name: "a UID reused after RENAME", inv: InvUIDStability, want: "uid 2",
			mutate: func(h *History) {
				for i := range h.Ops {
					if h.Ops[i].ID == 26 {
						h.Ops[i].Seen = []Msg{msg(1, "c1"), msg(2, "c5")}
					}
				}
			},
		},
		{
			// A name that was never deleted nor renamed keeps its
			// UIDVALIDITY.
			name: "a new UIDVALIDITY without DELETE or RENAME", inv: InvUIDStability, want: "UIDVALIDITY",
			mutate: func(h *History) {
				mailbox(h, "n3", "Archive").UIDValidity = 99
			},
		},
		{
			// A COPY that failed makes no copy.
			name: "a copy after a failed COPY", inv: InvNoDuplicates, want: "c5",
			mutate: func(h *History) {
				for i := range h.Ops {
					if h.Ops[i].ID == 29 {
						h.Ops[i].Outcome = Fail
					}
				}
				mb := mailbox(h, "n1", "INBOX")
				_ = mb // c5 is in INBOX and in chaos-1: two places, one send
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := mboxHistory()
			tc.mutate(&h)
			r := resultOf(Check(h), tc.inv)
			if r.Pass {
				t.Fatalf("%s passed", tc.inv)
			}
			if !strings.Contains(strings.Join(r.Examples, "\n"), tc.want) {
				t.Fatalf("%s examples %q do not name %q", tc.inv, r.Examples, tc.want)
			}
			for _, o := range Check(h) {
				if o.Invariant != tc.inv && !o.Pass && o.Invariant != InvLiveness {
					t.Errorf("%s failed too: %v", o.Invariant, o.Examples)
				}
			}
		})
	}
}

// TestCheckMailboxOpsLegitimate: what a mailbox operation explains is no
// violation.
func TestCheckMailboxOpsLegitimate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(h *History)
	}{
		{
			// c1's copy was in chaos-1-r, deleted: the original in
			// INBOX is what counts; a copy in a deleted mailbox is fine.
			name:   "a COPY's copy in a deleted mailbox",
			mutate: func(h *History) {},
		},
		{
			// The MOVE of c8 had an unknown outcome: c8 may be in
			// INBOX still, or in chaos-1 (deleted).
			name: "an unknown MOVE, the message in neither mailbox",
			mutate: func(h *History) {
				for i := range h.Ops {
					if h.Ops[i].ID == 23 {
						h.Ops[i].Outcome = Unknown
					}
				}
			},
		},
		{
			// The DELETE had an unknown outcome and did happen.
			name: "an unknown DELETE that happened",
			mutate: func(h *History) {
				for i := range h.Ops {
					if h.Ops[i].ID == 27 {
						h.Ops[i].Outcome = Unknown
					}
				}
			},
		},
		{
			// The unknown COPY of c1 did not happen: one copy fewer.
			name: "an unknown COPY that did not happen",
			mutate: func(h *History) {
				for i := range h.Final {
					for j := range h.Final[i].Mailboxes {
						if h.Final[i].Mailboxes[j].Name == "chaos-1" {
							dropMsg(&h.Final[i].Mailboxes[j], "c1")
						}
					}
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := mboxHistory()
			tc.mutate(&h)
			for _, r := range Check(h) {
				if !r.Pass {
					t.Errorf("%s: %v", r.Invariant, r.Examples)
				}
			}
		})
	}
}
