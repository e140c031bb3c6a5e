package chaos

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

const alice = "alice@example.test"

func hashOf(cid string) string { return "hash-" + cid }

func msg(uid uint32, cid string) Msg { return Msg{UID: uid, ChaosID: cid, BodyHash: hashOf(cid)} }

func send(id int64, cid string, out Outcome, code, start, end int) Op {
	return Op{ID: id, Kind: OpSend, Node: "n1", Client: 9, Start: at(start), End: at(end), Outcome: out, Code: code,
		ChaosID: cid, BodyHash: hashOf(cid), Rcpt: alice, Via: "mx"}
}

func fetch(id int64, node string, client int, mbox string, uv, next uint32, start, end int, seen ...Msg) Op {
	return Op{ID: id, Kind: OpFetch, Node: node, Client: client, Start: at(start), End: at(end), Outcome: OK,
		Account: alice, Mailbox: mbox, UIDValidity: uv, UIDNext: next, Seen: seen}
}

func imapOp(id int64, kind, node string, client int, out Outcome, mbox, target string, uv uint32, start, end int, uids ...uint32) Op {
	return Op{ID: id, Kind: kind, Node: node, Client: client, Start: at(start), End: at(end), Outcome: out,
		Account: alice, Mailbox: mbox, Target: target, UIDValidity: uv, UIDs: uids}
}

// cleanHistory is a small run that keeps every promise: acked, failed,
// unknown and remote sends, reads, an expunge and a move, one healed
// fault, a leader change and a canary.
//
// INBOX (UIDVALIDITY 7): c1=1, c2=2 (expunged by op 8), c3=3 (moved to
// Archive by op 9), c8=4, c5=5, canary=6. Archive (UIDVALIDITY 9): c3=1.
func cleanHistory() History {
	finalNode := func(name string) NodeState {
		return NodeState{
			Node: name, Reachable: true, AppliedIndex: 120, StateHash: "feedface00112233", Leader: "n2",
			Voter: true, Gossip: "alive",
			Mailboxes: []MailboxState{
				{Account: alice, Name: "INBOX", UIDValidity: 7, UIDNext: 7,
					Messages: []Msg{msg(1, "c1"), msg(4, "c8"), msg(5, "c5"), msg(6, "canary")}},
				{Account: alice, Name: "Archive", UIDValidity: 9, UIDNext: 2, Messages: []Msg{msg(1, "c3")}},
			},
			Queue: []string{"c6"},
		}
	}
	remote := send(6, "c6", OK, 250, 3000, 3010)
	remote.Rcpt, remote.Remote, remote.Via = "bob@remote.test", true, "submission"
	canary := send(100, "canary", OK, 250, 3600, 3700)
	return History{
		Scenario: "clean", Seed: 7, Start: t0, End: at(4000),
		Ops: []Op{
			send(1, "c1", OK, 250, 1000, 1010),
			send(2, "c2", OK, 250, 1100, 1120),
			send(3, "c3", OK, 250, 1200, 1250),
			send(4, "c4", Fail, 451, 2000, 2100),
			send(5, "c5", Unknown, 0, 2050, 3000),
			remote,
			fetch(7, "n1", 1, "INBOX", 7, 4, 1300, 1310, msg(1, "c1"), msg(2, "c2"), msg(3, "c3")),
			imapOp(8, OpExpunge, "n1", 1, OK, "INBOX", "", 7, 1400, 1410, 2),
			imapOp(9, OpMove, "n2", 2, OK, "INBOX", "Archive", 7, 1500, 1520, 3),
			fetch(10, "n1", 1, "INBOX", 7, 6, 3500, 3510, msg(1, "c1"), msg(4, "c8"), msg(5, "c5")),
			send(11, "c8", OK, 250, 2200, 2300),
		},
		Faults: []Fault{{Name: "kill-leader", Target: "n1", Start: at(2000), Heal: at(2500)}},
		Samples: []Sample{
			{Time: at(500), Node: "n1", Role: "leader", Term: 2, Leader: "n1"},
			{Time: at(500), Node: "n2", Role: "follower", Term: 2, Leader: "n1"},
			{Time: at(2300), Node: "n2", Role: "leader", Term: 3, Leader: "n2"},
			{Time: at(2300), Node: "n3", Role: "follower", Term: 3, Leader: "n2"},
			{Time: at(3000), Node: "n2", Role: "leader", Term: 3, Leader: "n2"},
		},
		Final:  []NodeState{finalNode("n1"), finalNode("n2"), finalNode("n3")},
		Canary: &canary,
	}
}

func final(h *History, node string) *NodeState {
	for i := range h.Final {
		if h.Final[i].Node == node {
			return &h.Final[i]
		}
	}
	panic("no node " + node)
}

func mailbox(h *History, node, name string) *MailboxState {
	n := final(h, node)
	for i := range n.Mailboxes {
		if n.Mailboxes[i].Name == name {
			return &n.Mailboxes[i]
		}
	}
	panic("no mailbox " + name)
}

func dropMsg(mb *MailboxState, cid string) {
	mb.Messages = slices.DeleteFunc(mb.Messages, func(m Msg) bool { return m.ChaosID == cid })
}

func resultOf(rs []CheckResult, inv string) CheckResult {
	for _, r := range rs {
		if r.Invariant == inv {
			return r
		}
	}
	return CheckResult{Invariant: inv + " (missing)"}
}

func TestCheckCleanRunPasses(t *testing.T) {
	rs := Check(cleanHistory())
	want := []string{InvNoLostAck, InvNoPhantom, InvNoDuplicates, InvUIDStability, InvConvergence, InvLiveness, InvDurableAtAck, InvBlobsEveryNode}
	if len(rs) != len(want) {
		t.Fatalf("got %d results, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r.Invariant != want[i] {
			t.Errorf("result %d is %q, want %q", i, r.Invariant, want[i])
		}
		if !r.Pass || r.Violations != 0 || len(r.Examples) != 0 {
			t.Errorf("%s: %+v, want a clean pass", r.Invariant, r)
		}
	}
}

func TestCheckViolations(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(h *History)
		inv    string
		n      int      // violations of inv
		want   []string // substrings of one example
		others []string // other invariants allowed to fail too
	}{
		{
			name: "acked message missing on one node",
			edit: func(h *History) { dropMsg(mailbox(h, "n2", "INBOX"), "c8") },
			inv:  InvNoLostAck, n: 1, want: []string{"op 11", "c8", "missing on n2,"},
			others: []string{InvConvergence},
		},
		{
			name: "acked remote message missing from one queue",
			edit: func(h *History) { final(h, "n3").Queue = nil },
			inv:  InvNoLostAck, n: 1, want: []string{"op 6", "c6", "outbound queue on n3"},
		},
		{
			name: "the canary missing on one node",
			edit: func(h *History) { dropMsg(mailbox(h, "n1", "INBOX"), "canary") },
			inv:  InvNoLostAck, n: 1, want: []string{"op 100", "canary", "missing on n1"},
		},
		{
			name: "expunge of another message does not explain a loss",
			edit: func(h *History) {
				h.Ops = append(h.Ops, imapOp(12, OpExpunge, "n1", 1, OK, "INBOX", "", 7, 3600, 3610, 4))
				for i := range h.Final {
					dropMsg(&h.Final[i].Mailboxes[0], "c1")
					dropMsg(&h.Final[i].Mailboxes[0], "c8")
				}
			},
			inv: InvNoLostAck, n: 1, want: []string{"op 1 ", "c1", "missing on n1, n2, n3"},
		},
		{
			name: "failed expunge does not explain a loss",
			edit: func(h *History) {
				h.Ops = append(h.Ops, imapOp(12, OpExpunge, "n1", 1, Fail, "INBOX", "", 7, 3600, 3610, 1))
				for i := range h.Final {
					dropMsg(&h.Final[i].Mailboxes[0], "c1")
				}
			},
			inv: InvNoLostAck, n: 1, want: []string{"op 1 ", "c1"},
		},
		{
			name: "no node reachable",
			edit: func(h *History) {
				for i := range h.Final {
					h.Final[i] = NodeState{Node: h.Final[i].Node, Error: "connection refused"}
				}
			},
			inv: InvNoLostAck, n: 1, want: []string{"no node reachable"},
			others: []string{InvConvergence},
		},
		{
			name: "phantom message",
			edit: func(h *History) {
				for i := range h.Final {
					mb := &h.Final[i].Mailboxes[1]
					mb.Messages = append(mb.Messages, msg(2, "ghost"))
				}
			},
			inv: InvNoPhantom, n: 1, want: []string{"phantom", "ghost", "n1 alice@example.test/Archive uid 2", "2 more places"},
		},
		{
			name: "phantom queue entry",
			edit: func(h *History) { final(h, "n1").Queue = append(final(h, "n1").Queue, "ghost") },
			inv:  InvNoPhantom, n: 1, want: []string{"phantom", "ghost", "n1 outbound queue"},
			others: []string{},
		},
		{
			name: "message without a chaos ID",
			edit: func(h *History) {
				mb := mailbox(h, "n3", "Archive")
				mb.Messages = append(mb.Messages, Msg{UID: 2, BodyHash: "abc"})
			},
			inv: InvNoPhantom, n: 1, want: []string{"n3", "without X-Chaos-Id"},
		},
		{
			name: "a send that got 451 appears",
			edit: func(h *History) {
				mb := mailbox(h, "n3", "Archive")
				mb.Messages = append(mb.Messages, msg(2, "c4"))
			},
			inv: InvNoPhantom, n: 1, want: []string{"c4", "every send of it failed", "ops 4", "451"},
		},
		{
			name: "a failed send seen by a read",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n2", 3, "INBOX", 7, 7, 3600, 3610, msg(1, "c1"), msg(3, "c4")))
			},
			inv: InvNoPhantom, n: 1, want: []string{"op 12 on n2", "c4", "failed"},
			others: []string{InvUIDStability},
		},
		{
			name: "body hash differs",
			edit: func(h *History) { mailbox(h, "n2", "INBOX").Messages[0].BodyHash = "tampered" },
			inv:  InvNoPhantom, n: 1, want: []string{"n2", "c1", "tampered", "op 1"},
			others: []string{InvUIDStability},
		},
		{
			name: "message delivered to the wrong account",
			edit: func(h *History) {
				n := final(h, "n1")
				n.Mailboxes = append(n.Mailboxes, MailboxState{Account: "carol@example.test", Name: "INBOX", UIDValidity: 3, UIDNext: 2, Messages: []Msg{msg(1, "c1")}})
			},
			inv: InvNoPhantom, n: 1, want: []string{"c1", "stored for carol@example.test"},
			others: []string{InvConvergence},
		},
		{
			name: "message acked once appears twice",
			edit: func(h *History) {
				mb := mailbox(h, "n2", "Archive")
				mb.Messages = append(mb.Messages, msg(2, "c1"))
			},
			inv: InvNoDuplicates, n: 1, want: []string{"c1", "answered OK 1 time", "appears 2 times", "alice@example.test on n2", "INBOX uid 1", "Archive uid 2"},
		},
		{
			name: "queue entry twice",
			edit: func(h *History) { final(h, "n1").Queue = []string{"c6", "c6"} },
			inv:  InvNoDuplicates, n: 1, want: []string{"c6", "n1 outbound queue"},
		},
		{
			name: "an unknown send delivered twice",
			edit: func(h *History) {
				for i := range h.Final {
					mb := &h.Final[i].Mailboxes[1]
					mb.Messages = append(mb.Messages, msg(2, "c5"))
				}
			},
			inv: InvNoDuplicates, n: 3, want: []string{"c5", "unknown 1 time", "op"},
		},
		{
			name: "a UID names two messages",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n3", 3, "INBOX", 7, 7, 3600, 3610, msg(1, "c2")))
			},
			inv: InvUIDStability, n: 1, want: []string{"INBOX UIDVALIDITY 7 uid 1", "names c1", "op 7 on n1", "c2", "op 12 on n3"},
		},
		{
			name: "UIDVALIDITY changes",
			edit: func(h *History) { mailbox(h, "n2", "INBOX").UIDValidity = 8 },
			inv:  InvUIDStability, n: 1, want: []string{"alice@example.test/INBOX", "UIDVALIDITY 7 in op 7 on n1", "8 in final state of n2"},
		},
		{
			name: "UIDs not ascending in one read",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n3", 3, "INBOX", 7, 7, 3600, 3610, msg(4, "c8"), msg(1, "c1")))
			},
			inv: InvUIDStability, n: 1, want: []string{"op 12 on n3", "uid 1 after uid 4"},
		},
		{
			name: "UIDNEXT goes down for one client",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n1", 1, "INBOX", 7, 5, 3600, 3610))
			},
			inv: InvUIDStability, n: 1, want: []string{"client 1 on n1", "UIDNEXT 5 in op 12", "after 6 in op 10"},
		},
		{
			name: "a node ends below a UIDNEXT a client saw",
			edit: func(h *History) { mailbox(h, "n3", "INBOX").UIDNext = 5 },
			inv:  InvUIDStability, n: 1, want: []string{"final state of n3", "UIDNEXT 5", "below 6 seen by op 10 on n1"},
		},
		{
			name: "an expunged UID seen again on the same node",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n1", 3, "INBOX", 7, 4, 1600, 1610, msg(1, "c1"), msg(2, "c2")))
			},
			inv: InvUIDStability, n: 1, want: []string{"INBOX uid 2 (c2) expunged by op 8 on n1", "op 12 on n1"},
		},
		{
			name: "an expunged UID back although only \\Flagged changed meanwhile",
			edit: func(h *History) {
				store := imapOp(12, OpStore, "n2", 2, OK, "INBOX", "", 7, 3550, 3620, 4)
				store.Detail = `+FLAGS \Flagged`
				h.Ops = append(h.Ops, store, imapOp(13, OpExpunge, "n1", 1, OK, "INBOX", "", 7, 3600, 3610, 4))
			},
			inv: InvUIDStability, n: 3, want: []string{"INBOX uid 4 (c8) expunged by op 13 on n1", "final state of n"},
		},
		{
			name: "a moved UID back in a final state",
			edit: func(h *History) {
				mb := mailbox(h, "n3", "INBOX")
				mb.Messages = slices.Insert(mb.Messages, 1, msg(3, "c3"))
			},
			inv: InvUIDStability, n: 1, want: []string{"INBOX uid 3 (c3) moved away by op 9 on n2", "final state of n3"},
			others: []string{InvNoDuplicates},
		},
		{
			name: "diverged state hash",
			edit: func(h *History) { final(h, "n3").StateHash = "deadbeef99" },
			inv:  InvConvergence, n: 1, want: []string{"state hash differs", "n3=deadbeef99"},
		},
		{
			name: "diverged applied index",
			edit: func(h *History) { final(h, "n1").AppliedIndex = 119 },
			inv:  InvConvergence, n: 1, want: []string{"applied index differs", "n1=119", "n2=120"},
		},
		{
			name: "missing blobs",
			edit: func(h *History) { final(h, "n2").MissingBlobs = 3 },
			inv:  InvConvergence, n: 1, want: []string{"n2 misses 3 blobs"},
		},
		{
			name: "not a voter, gossip suspect",
			edit: func(h *History) { final(h, "n2").Voter = false; final(h, "n2").Gossip = "suspect" },
			inv:  InvConvergence, n: 2, want: []string{"n2 is not a voter"},
		},
		{
			name: "a node unreachable",
			edit: func(h *History) { *final(h, "n3") = NodeState{Node: "n3", Error: "dial tcp: refused"} },
			inv:  InvConvergence, n: 1, want: []string{"n3 unreachable", "refused"},
		},
		{
			name: "a read-back error",
			edit: func(h *History) {
				n := final(h, "n2")
				n.Error = "imap alice@example.test: i/o timeout"
				n.Mailboxes = nil
			},
			inv: InvConvergence, n: 1, want: []string{"n2 read back with errors", "i/o timeout"},
			others: []string{InvNoLostAck},
		},
		{
			name: "two leaders in one term",
			edit: func(h *History) {
				h.Samples = append(h.Samples, Sample{Time: at(2400), Node: "n3", Role: "Leader", Term: 3, Leader: "n3"})
			},
			inv: InvConvergence, n: 1, want: []string{"term 3 has 2 leaders", "n2", "n3"},
		},
		{
			name: "no canary",
			edit: func(h *History) {
				h.Canary = nil
				for i := range h.Final {
					dropMsg(&h.Final[i].Mailboxes[0], "canary")
				}
			},
			inv: InvConvergence, n: 1, want: []string{"no canary"},
		},
		{
			name: "canary refused",
			edit: func(h *History) { h.Canary.Outcome, h.Canary.Code = Fail, 451 },
			inv:  InvConvergence, n: 1, want: []string{"canary op 100", "fail", "451"},
			others: []string{InvNoPhantom},
		},
		{
			name: "canary too late",
			edit: func(h *History) { h.Canary.End = at(2500 + 31000) },
			inv:  InvConvergence, n: 1, want: []string{"canary op 100", "31s after the last heal"},
		},
		{
			name: "no final state",
			edit: func(h *History) { h.Final = nil },
			inv:  InvConvergence, n: 1, want: []string{"no final state"},
			others: []string{InvNoLostAck},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := cleanHistory()
			tt.edit(&h)
			rs := Check(h)
			r := resultOf(rs, tt.inv)
			if r.Pass || r.Violations != tt.n {
				t.Fatalf("%s: pass=%v violations=%d, want %d; examples:\n%s", tt.inv, r.Pass, r.Violations, tt.n, strings.Join(r.Examples, "\n"))
			}
			found := false
			for _, ex := range r.Examples {
				ok := true
				for _, w := range tt.want {
					if !strings.Contains(ex, w) {
						ok = false
					}
				}
				found = found || ok
			}
			if !found {
				t.Errorf("%s: no example contains all of %q:\n%s", tt.inv, tt.want, strings.Join(r.Examples, "\n"))
			}
			for _, o := range rs {
				if o.Invariant != tt.inv && !o.Pass && !slices.Contains(tt.others, o.Invariant) {
					t.Errorf("%s also failed: %q", o.Invariant, o.Examples)
				}
			}
		})
	}
}

// Moves, expunges and retries that explain what is missing or doubled
// are not violations.
func TestCheckLegitimateChanges(t *testing.T) {
	tests := []struct {
		name string
		edit func(h *History)
		info string // expected in no-duplicates' examples
	}{
		{
			name: "moved, then expunged from the target under a UID nobody read",
			edit: func(h *History) {
				h.Ops = append(h.Ops, imapOp(12, OpExpunge, "n2", 2, OK, "Archive", "", 9, 3600, 3610, 1))
				for i := range h.Final {
					dropMsg(&h.Final[i].Mailboxes[1], "c3")
				}
			},
		},
		{
			name: "moved twice, then expunged",
			edit: func(h *History) {
				h.Ops = append(h.Ops,
					imapOp(12, OpMove, "n2", 2, OK, "Archive", "Trash", 9, 3600, 3610, 1),
					imapOp(13, OpExpunge, "n2", 2, Unknown, "Trash", "", 4, 3700, 3710, 1))
				for i := range h.Final {
					dropMsg(&h.Final[i].Mailboxes[1], "c3")
				}
			},
		},
		{
			name: "an unknown expunge of the message's UID",
			edit: func(h *History) {
				h.Ops = append(h.Ops, imapOp(12, OpExpunge, "n3", 3, Unknown, "INBOX", "", 7, 3600, 3610, 1))
				for i := range h.Final {
					dropMsg(&h.Final[i].Mailboxes[0], "c1")
				}
			},
		},
		{
			name: "an unknown send retried: two copies",
			edit: func(h *History) {
				h.Ops = append(h.Ops, send(12, "c5", OK, 250, 3100, 3200))
				for i := range h.Final {
					mb := &h.Final[i].Mailboxes[0]
					mb.Messages = slices.Insert(mb.Messages, 3, msg(7, "c5"))
					mb.Messages[3], mb.Messages[4] = mb.Messages[4], mb.Messages[3]
					mb.UIDNext = 8
				}
			},
			info: "not violations: 3 extra copies of 3 messages explained by retried or unknown sends",
		},
		{
			name: "a stale read on another node after an expunge",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n3", 3, "INBOX", 7, 4, 1420, 1430, msg(1, "c1"), msg(2, "c2")))
			},
		},
		{
			name: "a read that started before the expunge ended",
			edit: func(h *History) {
				h.Ops = append(h.Ops, fetch(12, "n1", 3, "INBOX", 7, 4, 1405, 1415, msg(1, "c1"), msg(2, "c2")))
			},
		},
		{
			name: "an expunge that raced a -FLAGS \\Deleted keeps the message",
			edit: func(h *History) {
				store := imapOp(12, OpStore, "n2", 2, OK, "INBOX", "", 7, 3550, 3620, 4)
				store.Detail = `-FLAGS \Deleted`
				h.Ops = append(h.Ops, store, imapOp(13, OpExpunge, "n1", 1, OK, "INBOX", "", 7, 3600, 3610, 4))
			},
		},
		{
			name: "UIDNEXT lower on another node, or in an overlapping op",
			edit: func(h *History) {
				h.Ops = append(h.Ops,
					fetch(12, "n2", 1, "INBOX", 7, 5, 3600, 3610),
					fetch(13, "n1", 1, "INBOX", 7, 5, 3505, 3600))
			},
		},
		{
			name: "a node that a fault hit serves older state after it",
			edit: func(h *History) {
				// n1 was killed at 2000 and restarted at 2500: before it
				// catches up it may show what it showed before.
				h.Ops = append(h.Ops, fetch(12, "n1", 1, "INBOX", 7, 3, 2600, 2610, msg(1, "c1"), msg(2, "c2")))
			},
		},
		{
			name: "no faults, no heal",
			edit: func(h *History) { h.Faults = nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := cleanHistory()
			tt.edit(&h)
			for _, r := range Check(h) {
				if !r.Pass {
					t.Errorf("%s failed: %q", r.Invariant, r.Examples)
				}
				if r.Invariant == InvNoDuplicates && tt.info != "" && !slices.Contains(r.Examples, tt.info) {
					t.Errorf("no-duplicates examples %q, want %q", r.Examples, tt.info)
				}
			}
		})
	}
}

func TestCheckExamplesCapped(t *testing.T) {
	h := cleanHistory()
	for i := range 25 {
		mb := &h.Final[0].Mailboxes[1]
		mb.Messages = append(mb.Messages, msg(uint32(2+i), "ghost-"+string(rune('a'+i))))
	}
	r := resultOf(Check(h), InvNoPhantom)
	if r.Violations != 25 || len(r.Examples) != maxExamples {
		t.Fatalf("violations=%d examples=%d, want 25 and %d", r.Violations, len(r.Examples), maxExamples)
	}
	if !strings.Contains(r.Examples[0], "ghost-a") {
		t.Errorf("first example %q, want the first phantom", r.Examples[0])
	}
}

func TestCheckDeterministicAndRoundTrip(t *testing.T) {
	bad := cleanHistory()
	dropMsg(mailbox(&bad, "n2", "INBOX"), "c8")
	bad.Samples = append(bad.Samples, Sample{Time: at(2400), Node: "n3", Role: "leader", Term: 3})
	bad.Ops = append(bad.Ops, fetch(12, "n1", 1, "INBOX", 7, 5, 3600, 3610, msg(1, "c9")))
	for _, h := range []History{cleanHistory(), bad} {
		want := Check(h)
		if again := Check(h); !reflect.DeepEqual(again, want) {
			t.Errorf("%s: Check is not deterministic:\n%+v\n%+v", h.Scenario, want, again)
		}
		var buf bytes.Buffer
		if err := WriteJSONL(&buf, h); err != nil {
			t.Fatal(err)
		}
		back, err := ReadJSONL(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := Check(back); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: after a JSONL round trip:\n%+v\nwant\n%+v", h.Scenario, got, want)
		}
		if got, want := Summarize(back, Check(back)), Summarize(h, want); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: summary after a round trip:\n%+v\nwant\n%+v", h.Scenario, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	h := cleanHistory()
	h.Ops = append(h.Ops, send(12, "c9", Fail, 554, 3800, 3805))
	rs := Check(h)
	s := Summarize(h, rs)
	want := Summary{
		Scenario: "clean", Seed: 7, Pass: true,
		Attempts: 8, Acked: 5, Temp4xx: 1, Perm5xx: 1, Unknown: 1,
		// Started in [2000ms, 2500ms]: ops 4 (451), 5 (unknown), 11 (OK).
		AckShareDuringFault: 1.0 / 3,
		// Every send went to n1, the node the fault hit: no majority
		// side was measured.
		FailoverMillis: -1,
		Windows:        livenessWindows(h),
		ConvergeMillis: 1200, // heal at 2500, canary ends at 3700
		// OK latencies 10, 20, 50, 10, 100 ms.
		P50Millis: 20, P99Millis: 100,
		Results: rs,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Summarize:\n%+v\nwant\n%+v", s, want)
	}
	const line = "PASS clean seed=7 sends=8 ok=5 4xx=1 5xx=1 unknown=1 during-fault=0.33 failover=n/a converge=1.2s p50=20ms p99=100ms"
	if got := s.Line(); got != line {
		t.Errorf("Line:\n%s\nwant\n%s", got, line)
	}

	dropMsg(mailbox(&h, "n2", "INBOX"), "c8")
	h.Canary = nil
	h.Faults = nil
	s = Summarize(h, Check(h))
	if s.Pass || s.FailoverMillis != -1 || s.ConvergeMillis != -1 || s.AckShareDuringFault != -1 {
		t.Errorf("failing run without faults or canary: %+v", s)
	}
	const failLine = "FAIL clean seed=7 sends=8 ok=5 4xx=1 5xx=1 unknown=1 during-fault=n/a failover=n/a converge=n/a p50=20ms p99=100ms failed=no-lost-ack,no-phantom,convergence"
	if got := s.Line(); got != failLine {
		t.Errorf("Line:\n%s\nwant\n%s", got, failLine)
	}

	empty := Summarize(History{Scenario: "idle"}, nil)
	if got, want := empty.Line(), "PASS idle seed=0 sends=0 ok=0 4xx=0 5xx=0 unknown=0 during-fault=n/a failover=n/a converge=n/a p50=n/a p99=n/a"; got != want {
		t.Errorf("Line:\n%s\nwant\n%s", got, want)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {10, 1}, {100, 10}, {0, 1}} {
		if got := percentile(v, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestEpoch(t *testing.T) {
	ix := newIndex(History{Faults: []Fault{
		{Name: "kill", Target: "n1", Start: at(1000), Heal: at(2000)},
		{Name: "pause", Target: "n2, n1", Start: at(1500), Heal: at(3000)},
		{Name: "rolling", Start: at(5000), Heal: at(6000)},
		{Name: "wipe", Target: "n3", Start: at(7000)},
	}})
	for _, tt := range []struct {
		node   string
		ms     int
		epoch  int
		stable bool
	}{
		{"n1", 999, 0, true}, {"n1", 1000, 0, false}, {"n1", 2500, 0, false}, {"n1", 3000, 0, false},
		{"n1", 3001, 1, true}, {"n1", 5500, 1, false}, {"n1", 6001, 2, true}, {"n1", 9000, 2, true},
		{"n2", 1200, 0, true}, {"n2", 1500, 0, false}, {"n2", 4000, 1, true},
		{"n3", 4000, 0, true}, {"n3", 6500, 1, true}, {"n3", 7000, 1, false}, {"n3", 99000, 1, false},
	} {
		e, ok := ix.epoch(tt.node, at(tt.ms))
		if e != tt.epoch || ok != tt.stable {
			t.Errorf("epoch(%s, %dms) = %d, %v; want %d, %v", tt.node, tt.ms, e, ok, tt.epoch, tt.stable)
		}
	}
}

// TestHeaderMismatchFails: a stored message whose header block (what
// ENVELOPE and HEADER are answered from) is not the header of its full
// text fails no-phantom.
func TestHeaderMismatchFails(t *testing.T) {
	h := cleanHistory()
	mailbox(&h, "n2", "INBOX").Messages[1].HeaderMismatch = true
	r := resultOf(Check(h), InvNoPhantom)
	if r.Pass || len(r.Examples) == 0 || !strings.Contains(r.Examples[0], "BODY[HEADER]") {
		t.Fatalf("no-phantom with a header mismatch: %+v", r)
	}
}
