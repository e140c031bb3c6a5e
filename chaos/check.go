package chaos

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The invariants, by name, in the order Check runs them.
const (
	InvNoLostAck    = "no-lost-ack"
	InvNoPhantom    = "no-phantom"
	InvNoDuplicates = "no-duplicates"
	InvUIDStability = "uid-stability"
	InvConvergence  = "convergence"
)

// CanaryDeadline is how soon after the last heal the cluster must have
// accepted the canary message.
const CanaryDeadline = 30 * time.Second

// maxExamples bounds CheckResult.Examples.
const maxExamples = 10

// CheckResult is the verdict of one invariant over one history.
type CheckResult struct {
	Invariant  string   `json:"invariant"`
	Pass       bool     `json:"pass"`
	Violations int      `json:"violations"`
	Examples   []string `json:"examples,omitempty"` // at most 10, human-readable, naming op IDs, nodes, chaos IDs, UIDs
}

// Check runs every invariant over h, in the order of the Inv* constants.
// It is a pure function: no I/O, and the same history always gives the
// same results, examples included.
//
// What each invariant means, precisely:
//
//   - no-lost-ack: every send answered OK (and every APPEND answered OK) is, on every reachable node, in
//     some mailbox of its recipient (or, when no sink ran, in the outbound
//     queue for a remote recipient), unless an OK or unknown EXPUNGE or MOVE could explain its
//     absence (the UIDs it operated on were seen naming that message, or
//     it was moved to a mailbox from which something it could be was later
//     expunged or moved; or it was moved or copied into a mailbox that an
//     OK or unknown DELETE removed, or RENAMEd to one that could lose it).
//     The canary, if answered OK, is checked too.
//   - no-phantom: every message stored on any node, seen by any read, or
//     queued has a chaos ID that a send addressed to that account carried,
//     with the same body hash (the exact bytes after the header block); a
//     message whose every send to that account failed appears nowhere; a
//     message's BODY[HEADER] is the header block of its BODY[], byte for
//     byte.
//   - no-duplicates: a message appears in one account of one node (all its
//     mailboxes together) and in one node's queue at most as many times as
//     it was sent with an OK or unknown outcome, plus one per UID an OK or
//     unknown COPY copied that was seen naming it (or never seen). Extra copies that retries
//     explain are counted in an example line, not as violations.
//   - uid-stability: a (account, mailbox, UIDVALIDITY, UID) names one
//     message in every read and every final state, a mailbox renamed by an
//     OK or unknown RENAME being the same mailbox under its new name (it
//     keeps its UIDVALIDITY); a mailbox name keeps its UIDVALIDITY unless
//     an OK or unknown DELETE or RENAME took the mailbox away (one created
//     again under that name has a new one); UIDs strictly ascend within one read; UIDNEXT never goes
//     down for one client on one node, and no node ends below a UIDNEXT a
//     client saw; a UID removed by an OK EXPUNGE or MOVE is not seen again
//     by a later read on the node that removed it, nor in any final state.
//     (Reads on other nodes may lag by a heartbeat, and a node that a
//     fault hit may serve older state until it catches up: a stale read is
//     not a reused UID, and a reused UID shows up as a UID naming two
//     messages. So "later on one node" compares reads between the node's
//     fault windows only; see index.epoch.) An expunge that raced a STORE
//     that may have removed \Deleted from the same UID is not counted:
//     storage re-checks \Deleted when it applies UID EXPUNGE.
//   - liveness: see checkLiveness and LivenessBounds: the majority side of
//     a fault takes mail within 3 s from any moment of the fault, every
//     node within 5 s from any moment before the first fault and after a
//     heal (by default).
//   - outbound-delivered (only when a sink ran, History.Outbound): see
//     checkOutbound. no-lost-ack then leaves remote sends to it.
//   - convergence: every node reachable and read back without error, with
//     the same applied index and state hash, no missing blobs, a voter,
//     gossip "alive"; at most one leader per term in the samples; a
//     canary answered OK within CanaryDeadline of the last heal.
//   - durable-at-ack, blobs-on-every-node: see durability.go.
func Check(h History) []CheckResult {
	ix := newIndex(h)
	rs := []CheckResult{
		checkNoLostAck(h, ix),
		checkNoPhantom(h, ix),
		checkNoDuplicates(h, ix),
		checkUIDStability(h, ix),
		checkConvergence(h, ix),
		checkLiveness(h),
		checkDurableAtAck(h, ix),
		checkBlobsEveryNode(h, ix),
	}
	if h.Outbound != nil {
		rs = append(rs, checkOutbound(h))
	}
	return rs
}

// collector gathers one invariant's violations.
type collector struct {
	name string
	n    int
	ex   []string
	info string // an informational line, shown even when the invariant passes
}

func (c *collector) add(format string, args ...any) {
	c.n++
	if len(c.ex) < maxExamples {
		c.ex = append(c.ex, fmt.Sprintf(format, args...))
	}
}

func (c *collector) result() CheckResult {
	ex := c.ex
	if c.info != "" {
		if len(ex) >= maxExamples {
			ex = ex[:maxExamples-1]
		}
		ex = append(ex, c.info)
	}
	return CheckResult{Invariant: c.name, Pass: c.n == 0, Violations: c.n, Examples: ex}
}

// acctKey and mboxKey normalise names for comparison: accounts are case
// insensitive addresses, INBOX is case insensitive (RFC 9051 §5.1), other
// mailbox names are not.
func acctKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func mboxKey(s string) string {
	if strings.EqualFold(s, "INBOX") {
		return "INBOX"
	}
	return s
}

type mbKey struct{ acct, mbox string }

func (k mbKey) String() string { return k.acct + "/" + k.mbox }

type uidObs struct {
	uv    uint32
	chaos string
}

// read is one look at a mailbox: a client operation or a node's final
// state.
type read struct {
	label   string // "op 12 on n1" or "final state of n2"
	node    string
	client  int
	final   bool
	opID    int64
	start   time.Time
	end     time.Time
	k       mbKey
	uv      uint32
	uidnext uint32
	msgs    []Msg
}

// index is what several invariants need, computed once.
type index struct {
	base      time.Time
	sends     map[string][]*Op // by chaos ID, the canary included
	uids      map[mbKey]map[uint32][]uidObs
	removals  map[string][]*Op // by account: OK/unknown expunges and moves
	stores    map[mbKey][]*Op  // OK/unknown flag changes
	reads     []read
	reachable []*NodeState
	faults    []Fault
	spans     map[string][]span // by node, merged fault windows that hit it
	mboxes    mboxIndex         // renames, deletes and copies (mboxops.go)
}

type span struct{ start, end time.Time } // end zero: never healed

func newIndex(h History) *index {
	ix := &index{
		base:     historyBase(h),
		sends:    make(map[string][]*Op),
		uids:     make(map[mbKey]map[uint32][]uidObs),
		removals: make(map[string][]*Op),
		stores:   make(map[mbKey][]*Op),
		faults:   h.Faults,
		spans:    make(map[string][]span),
		mboxes:   newMboxIndex(h),
	}
	observe := func(k mbKey, uv uint32, m Msg) {
		byUID := ix.uids[k]
		if byUID == nil {
			byUID = make(map[uint32][]uidObs)
			ix.uids[k] = byUID
		}
		o := uidObs{uv, m.ChaosID}
		if !slices.Contains(byUID[m.UID], o) {
			byUID[m.UID] = append(byUID[m.UID], o)
		}
	}
	for i := range h.Ops {
		op := &h.Ops[i]
		switch op.Kind {
		case OpSend, OpAppend:
			if op.ChaosID != "" {
				ix.sends[op.ChaosID] = append(ix.sends[op.ChaosID], op)
			}
			continue
		case OpStore:
			if op.Outcome != Fail {
				k := ix.canon(mbKey{acctKey(op.Account), mboxKey(op.Mailbox)}, op.UIDValidity)
				ix.stores[k] = append(ix.stores[k], op)
			}
		case OpExpunge, OpMove, OpDelete, OpRename:
			if op.Outcome != Fail && !(op.Kind == OpMove && mboxKey(op.Target) == mboxKey(op.Mailbox)) {
				a := acctKey(op.Account)
				ix.removals[a] = append(ix.removals[a], op)
			}
		}
		if op.Account == "" {
			continue
		}
		r := read{
			label:   fmt.Sprintf("op %d on %s", op.ID, op.Node),
			node:    op.Node,
			client:  op.Client,
			opID:    op.ID,
			start:   op.Start,
			end:     op.End,
			k:       ix.canon(mbKey{acctKey(op.Account), mboxKey(op.Mailbox)}, op.UIDValidity),
			uv:      op.UIDValidity,
			uidnext: op.UIDNext,
		}
		if op.Kind == OpFetch {
			r.msgs = op.Seen
		}
		ix.reads = append(ix.reads, r)
	}
	if c := h.Canary; c != nil && c.ChaosID != "" {
		ix.sends[c.ChaosID] = append(ix.sends[c.ChaosID], c)
	}
	for i := range h.Final {
		n := &h.Final[i]
		if !n.Reachable {
			continue
		}
		ix.reachable = append(ix.reachable, n)
		for _, mb := range n.Mailboxes {
			ix.reads = append(ix.reads, read{
				label:   "final state of " + n.Node,
				node:    n.Node,
				client:  -1,
				final:   true,
				k:       ix.canon(mbKey{acctKey(mb.Account), mboxKey(mb.Name)}, mb.UIDValidity),
				uv:      mb.UIDValidity,
				uidnext: mb.UIDNext,
				msgs:    mb.Messages,
			})
		}
	}
	for _, r := range ix.reads {
		for _, m := range r.msgs {
			observe(r.k, r.uv, m)
		}
	}
	return ix
}

// hits reports whether fault f hit node: its Target names it, or names
// no node (a fault on all of them, like a rolling restart).
func hits(f Fault, node string) bool {
	targets := strings.FieldsFunc(f.Target, func(r rune) bool { return r == ',' || r == ' ' || r == ';' })
	return len(targets) == 0 || slices.Contains(targets, node)
}

// epoch places t in a node's life as cut by the faults that hit it: 0
// before the first fault window, 1 after the first one healed, and so
// on. It reports false for a time inside a fault window. A node killed,
// wiped or restarted may come back serving older state than it served
// before until it catches up: a lagging read, not a reused UID. So reads
// of one node are compared over time only within one epoch; UIDs that
// name two messages are caught across epochs and nodes regardless.
func (ix *index) epoch(node string, t time.Time) (int, bool) {
	spans, ok := ix.spans[node]
	if !ok {
		for _, f := range ix.faults {
			if hits(f, node) {
				spans = append(spans, span{f.Start, f.Heal})
			}
		}
		sort.Slice(spans, func(a, b int) bool { return spans[a].start.Before(spans[b].start) })
		var merged []span
		for _, sp := range spans {
			if n := len(merged); n > 0 && (merged[n-1].end.IsZero() || !sp.start.After(merged[n-1].end)) {
				if !merged[n-1].end.IsZero() && (sp.end.IsZero() || sp.end.After(merged[n-1].end)) {
					merged[n-1].end = sp.end
				}
				continue
			}
			merged = append(merged, sp)
		}
		spans = merged
		ix.spans[node] = spans
	}
	for k, sp := range spans {
		if t.Before(sp.start) {
			return k, true
		}
		if sp.end.IsZero() || !t.After(sp.end) {
			return k, false
		}
	}
	return len(spans), true
}

// sameEpoch reports whether a and b fall in one epoch of node.
func (ix *index) sameEpoch(node string, a, b time.Time) bool {
	ea, oka := ix.epoch(node, a)
	eb, okb := ix.epoch(node, b)
	return oka && okb && ea == eb
}

// historyBase is the time examples and charts count from.
func historyBase(h History) time.Time {
	if !h.Start.IsZero() {
		return h.Start
	}
	var b time.Time
	for _, op := range h.Ops {
		if !op.Start.IsZero() && (b.IsZero() || op.Start.Before(b)) {
			b = op.Start
		}
	}
	return b
}

// rel formats t relative to the start of the run.
func (ix *index) rel(t time.Time) string {
	if ix.base.IsZero() || t.IsZero() {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("t+%.3fs", t.Sub(ix.base).Seconds())
}

// lookup returns the chaos IDs seen under a UID, UIDVALIDITY 0 matching
// any.
func (ix *index) lookup(k mbKey, uv, uid uint32) []string {
	k = ix.canon(k, uv)
	var ids []string
	for _, o := range ix.uids[k][uid] {
		if uv == 0 || o.uv == 0 || o.uv == uv {
			ids = append(ids, o.chaos)
		}
	}
	return ids
}

// addressedTo reports whether a send was meant for acct (an empty
// recipient matches any account).
func addressedTo(op *Op, acct string) bool {
	return op.Rcpt == "" || acctKey(op.Rcpt) == acct
}

func opIDs(ops []*Op) string {
	s := make([]string, len(ops))
	for i, op := range ops {
		s[i] = strconv.FormatInt(op.ID, 10)
	}
	return strings.Join(s, ",")
}

// ---- no-lost-ack ----

func checkNoLostAck(h History, ix *index) CheckResult {
	c := collector{name: InvNoLostAck}
	type key struct {
		chaos, rcpt string
		remote      bool
	}
	var acked []*Op
	done := make(map[key]bool)
	for i := range h.Ops {
		op := &h.Ops[i]
		if (op.Kind != OpSend && op.Kind != OpAppend) || op.Outcome != OK || op.ChaosID == "" {
			continue
		}
		k := key{op.ChaosID, acctKey(op.Rcpt), op.Remote}
		if !done[k] {
			done[k] = true
			acked = append(acked, op)
		}
	}
	if cn := h.Canary; cn != nil && cn.Outcome == OK && cn.ChaosID != "" && !done[key{cn.ChaosID, acctKey(cn.Rcpt), cn.Remote}] {
		acked = append(acked, cn)
	}
	if len(acked) == 0 {
		return c.result()
	}
	if len(ix.reachable) == 0 {
		c.add("no node reachable at the end: %d acknowledged messages cannot be found (first: op %d, %s)", len(acked), acked[0].ID, acked[0].ChaosID)
		return c.result()
	}
	// What each reachable node holds: account -> chaos IDs, and the queue.
	type holdings struct {
		byAcct map[string]map[string]bool
		any    map[string]bool
		queue  map[string]bool
	}
	held := make([]holdings, len(ix.reachable))
	for i, n := range ix.reachable {
		hd := holdings{byAcct: make(map[string]map[string]bool), any: make(map[string]bool), queue: make(map[string]bool)}
		for _, mb := range n.Mailboxes {
			a := acctKey(mb.Account)
			if hd.byAcct[a] == nil {
				hd.byAcct[a] = make(map[string]bool)
			}
			for _, m := range mb.Messages {
				hd.byAcct[a][m.ChaosID] = true
				hd.any[m.ChaosID] = true
			}
		}
		for _, q := range n.Queue {
			hd.queue[q] = true
		}
		held[i] = hd
	}
	for _, op := range acked {
		rcpt := acctKey(op.Rcpt)
		var missing []string
		for i, n := range ix.reachable {
			var ok bool
			switch {
			case op.Remote && h.Outbound != nil:
				ok = true // left the queue for the sink: outbound-delivered judges it
			case op.Remote:
				ok = held[i].queue[op.ChaosID]
			case rcpt == "":
				ok = held[i].any[op.ChaosID]
			default:
				ok = held[i].byAcct[rcpt][op.ChaosID]
			}
			if !ok && n.Error != "" {
				missing = append(missing, n.Node+" (read back with errors)")
			} else if !ok {
				missing = append(missing, n.Node)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if op.Remote {
			c.add("%s: remote message %s for %s missing from the outbound queue on %s",
				ix.describeSend(op), op.ChaosID, op.Rcpt, strings.Join(missing, ", "))
			continue
		}
		if ix.explained(op.ChaosID, rcpt) {
			continue
		}
		c.add("%s: message %s for %s missing on %s, and no expunge or move explains it",
			ix.describeSend(op), op.ChaosID, op.Rcpt, strings.Join(missing, ", "))
	}
	return c.result()
}

// describeSend names a send for an example: "op 17 (mx on n1, 250 at t+3.200s)".
func (ix *index) describeSend(op *Op) string {
	via := ""
	if op.Via != "" {
		via = op.Via + " "
	}
	code := string(op.Outcome)
	if op.Code != 0 {
		code = strconv.Itoa(op.Code)
	}
	return fmt.Sprintf("op %d (%son %s, %s at %s)", op.ID, via, op.Node, code, ix.rel(op.End))
}

// explained reports whether an OK or unknown EXPUNGE or MOVE in acct could
// have removed message cid from the account.
func (ix *index) explained(cid, acct string) bool {
	memo := make(map[leaveKey]bool)
	for _, op := range ix.removals[acct] {
		k := mbKey{acct, mboxKey(op.Mailbox)}
		for _, uid := range op.UIDs {
			if !slices.Contains(ix.lookup(k, op.UIDValidity, uid), cid) {
				continue
			}
			if op.Kind == OpExpunge {
				return true
			}
			if ix.couldLeave(cid, acct, mboxKey(op.Target), op.Start, memo, map[string]bool{k.mbox: true}) {
				return true
			}
		}
	}
	return false
}

// couldLeave reports whether message cid, moved into mbox under a UID
// nobody may have read, could have been expunged or moved on from there:
// some removal in mbox touched a UID that was never seen naming anything,
// or was seen naming cid; or mbox was deleted (an OK or unknown DELETE),
// or renamed to a mailbox it could leave.
// Only what could have happened after the message got there counts: a
// removal that was acknowledged before since (when the move into mbox
// started) cannot have touched it; one whose outcome is unknown may have
// happened at any time after it was sent.
func (ix *index) couldLeave(cid, acct, mbox string, since time.Time, memo map[leaveKey]bool, path map[string]bool) bool {
	mk := leaveKey{mbox, since}
	if v, ok := memo[mk]; ok {
		return v
	}
	if path[mbox] {
		return false
	}
	path[mbox] = true
	defer delete(path, mbox)
	k := mbKey{acct, mbox}
	res := false
search:
	for _, op := range ix.removals[acct] {
		if mboxKey(op.Mailbox) != mbox {
			continue
		}
		if op.Outcome == OK && !op.End.After(since) {
			continue // done before the message arrived
		}
		next := since
		if op.Start.After(next) {
			next = op.Start
		}
		switch op.Kind {
		case OpDelete:
			res = true // everything in it left the account
			break search
		case OpRename:
			if ix.couldLeave(cid, acct, mboxKey(op.Target), next, memo, path) {
				res = true
				break search
			}
			continue
		}
		for _, uid := range op.UIDs {
			ids := ix.lookup(k, op.UIDValidity, uid)
			if len(ids) > 0 && !slices.Contains(ids, cid) {
				continue
			}
			if op.Kind == OpExpunge || ix.couldLeave(cid, acct, mboxKey(op.Target), next, memo, path) {
				res = true
				break search
			}
		}
	}
	memo[mk] = res
	return res
}

// leaveKey memoizes couldLeave: a mailbox, and since when the message
// may have been in it.
type leaveKey struct {
	mbox  string
	since time.Time
}

// ---- no-phantom ----

func checkNoPhantom(h History, ix *index) CheckResult {
	c := collector{name: InvNoPhantom}
	// One violation per (problem, message, account), with the first place
	// it was found and how many places in all.
	type key struct{ problem, chaos, acct string }
	type finding struct {
		text   string
		places int
	}
	var order []key
	found := make(map[key]*finding)
	note := func(k key, text func() string) {
		if f := found[k]; f != nil {
			f.places++
			return
		}
		found[k] = &finding{text: text(), places: 1}
		order = append(order, k)
	}
	// check judges one message stored for acct; where names the place,
	// built only for a violation (reads hold millions of messages).
	type verdict struct{ chaos, hash, acct string }
	good := make(map[verdict]bool) // messages already judged fine
	check := func(where func() string, acct string, m Msg) {
		if m.HeaderMismatch {
			note(key{"header", m.ChaosID, acct}, func() string {
				return fmt.Sprintf("%s: message %s: its BODY[HEADER] is not the header of its BODY[] byte for byte (the header block the node keeps and the stored message disagree)", where(), m.ChaosID)
			})
		}
		v := verdict{m.ChaosID, m.BodyHash, acct}
		if good[v] {
			return
		}
		sends := ix.sends[m.ChaosID]
		if m.ChaosID == "" && len(m.DSNFor) > 0 {
			return // a bounce: outbound-delivered judges it
		}
		if m.ChaosID == "" {
			note(key{"no-id", m.BodyHash, acct}, func() string {
				return fmt.Sprintf("%s: a message without X-Chaos-Id (body hash %s)", where(), short(m.BodyHash))
			})
			return
		}
		if len(sends) == 0 {
			note(key{"phantom", m.ChaosID, acct}, func() string {
				return fmt.Sprintf("%s: phantom message %s: no send carried it", where(), m.ChaosID)
			})
			return
		}
		var rel []*Op
		for _, op := range sends {
			if addressedTo(op, acct) {
				rel = append(rel, op)
			}
		}
		switch {
		case len(rel) == 0:
			note(key{"misdelivered", m.ChaosID, acct}, func() string {
				return fmt.Sprintf("%s: message %s stored for %s but sent to %s (ops %s)", where(), m.ChaosID, acct, sends[0].Rcpt, opIDs(sends))
			})
		case !slices.ContainsFunc(rel, func(op *Op) bool { return op.Outcome != Fail }):
			note(key{"failed", m.ChaosID, acct}, func() string {
				return fmt.Sprintf("%s: message %s appears but every send of it failed (ops %s, code %d)", where(), m.ChaosID, opIDs(rel), rel[0].Code)
			})
		case !slices.ContainsFunc(rel, func(op *Op) bool { return op.BodyHash == m.BodyHash }):
			note(key{"hash", m.ChaosID, acct}, func() string {
				return fmt.Sprintf("%s: message %s has body hash %s but was sent with %s (op %d)", where(), m.ChaosID, short(m.BodyHash), short(rel[0].BodyHash), rel[0].ID)
			})
		default:
			good[v] = true
		}
	}
	for _, n := range h.Final {
		for _, mb := range n.Mailboxes {
			a := acctKey(mb.Account)
			for _, m := range mb.Messages {
				check(func() string { return fmt.Sprintf("%s %s/%s uid %d", n.Node, mb.Account, mb.Name, m.UID) }, a, m)
			}
		}
		for _, q := range n.Queue {
			where := n.Node + " outbound queue"
			sends := ix.sends[q]
			switch {
			case q == "":
				note(key{"no-id", "", "(queue)"}, func() string { return where + ": an entry without a chaos ID" })
			case len(sends) == 0 && strings.HasPrefix(q, "queue:"):
				note(key{"phantom", q, "(queue)"}, func() string {
					return fmt.Sprintf("%s: entry %s has no chaos recipient and no OK send was told its queue ID", where, q)
				})
			case len(sends) == 0:
				note(key{"phantom", q, "(queue)"}, func() string { return fmt.Sprintf("%s: phantom entry %s: no send carried it", where, q) })
			case !slices.ContainsFunc(sends, func(op *Op) bool { return op.Outcome != Fail }):
				note(key{"failed", q, "(queue)"}, func() string {
					return fmt.Sprintf("%s: entry %s but every send of it failed (ops %s, code %d)", where, q, opIDs(sends), sends[0].Code)
				})
			}
		}
	}
	for _, r := range ix.reads {
		if r.final {
			continue
		}
		for _, m := range r.msgs {
			check(func() string { return fmt.Sprintf("%s read %s uid %d", r.label, r.k, m.UID) }, r.k.acct, m)
		}
	}
	for _, k := range order {
		f := found[k]
		if f.places > 1 {
			c.add("%s (and %d more places)", f.text, f.places-1)
		} else {
			c.add("%s", f.text)
		}
	}
	return c.result()
}

func short(hash string) string {
	if hash == "" {
		return `""`
	}
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// ---- no-duplicates ----

func checkNoDuplicates(h History, ix *index) CheckResult {
	c := collector{name: InvNoDuplicates}
	extraCopies, extraMsgs := 0, 0
	// allowed counts the sends of cid matching pred that may have
	// delivered: OK or unknown.
	allowed := func(cid string, pred func(*Op) bool) (ok, unknown int, ops []*Op) {
		for _, op := range ix.sends[cid] {
			if !pred(op) || op.Outcome == Fail {
				continue
			}
			ops = append(ops, op)
			if op.Outcome == OK {
				ok++
			} else {
				unknown++
			}
		}
		return ok, unknown, ops
	}
	judge := func(cid, where string, places []string, pred func(*Op) bool, copies int) {
		if len(places) < 2 {
			return
		}
		ok, unknown, ops := allowed(cid, pred)
		if ok+unknown == 0 {
			return // no-phantom reports it
		}
		if len(places) > ok+unknown+copies {
			c.add("message %s answered OK %d time(s), unknown %d time(s) (ops %s), copied up to %d time(s), appears %d times in %s: %s",
				cid, ok, unknown, opIDs(ops), copies, len(places), where, strings.Join(places, ", "))
			return
		}
		extraCopies += len(places) - 1
		extraMsgs++
	}
	for _, n := range ix.reachable {
		type key struct{ acct, chaos string }
		var order []key
		places := make(map[key][]string)
		for _, mb := range n.Mailboxes {
			a := acctKey(mb.Account)
			for _, m := range mb.Messages {
				if m.ChaosID == "" {
					continue
				}
				k := key{a, m.ChaosID}
				if places[k] == nil {
					order = append(order, k)
				}
				places[k] = append(places[k], fmt.Sprintf("%s uid %d", mb.Name, m.UID))
			}
		}
		for _, k := range order {
			judge(k.chaos, fmt.Sprintf("%s on %s", k.acct, n.Node), places[k], func(op *Op) bool { return !op.Remote && addressedTo(op, k.acct) }, ix.copies(k.chaos, k.acct))
		}
		var qorder []string
		qcount := make(map[string]int)
		for _, q := range n.Queue {
			if q == "" {
				continue
			}
			if qcount[q] == 0 {
				qorder = append(qorder, q)
			}
			qcount[q]++
		}
		for _, q := range qorder {
			places := make([]string, qcount[q])
			for i := range places {
				places[i] = "entry " + strconv.Itoa(i+1)
			}
			judge(q, n.Node+" outbound queue", places, func(*Op) bool { return true }, 0)
		}
	}
	if extraCopies > 0 {
		c.info = fmt.Sprintf("not violations: %d extra copies of %d messages explained by retried or unknown sends", extraCopies, extraMsgs)
	}
	return c.result()
}

// ---- uid-stability ----

func checkUIDStability(h History, ix *index) CheckResult {
	c := collector{name: InvUIDStability}

	// A UID names one message.
	type uidKey struct {
		k       mbKey
		uv, uid uint32
	}
	type ident struct{ chaos, hash string }
	type named struct {
		ident
		label string
	}
	names := make(map[uidKey]named)
	conflict := make(map[uidKey]map[ident]bool)
	// A mailbox keeps its UIDVALIDITY.
	type uvSeen struct {
		uv    uint32
		label string
	}
	validity := make(map[mbKey]uvSeen)
	uvReported := make(map[mbKey]map[uint32]bool)

	for _, r := range ix.reads {
		if r.uv != 0 {
			if first, ok := validity[r.k]; !ok {
				validity[r.k] = uvSeen{r.uv, r.label}
			} else if first.uv != r.uv && !ix.mboxes.replaced[r.k] {
				if uvReported[r.k] == nil {
					uvReported[r.k] = make(map[uint32]bool)
				}
				if !uvReported[r.k][r.uv] {
					uvReported[r.k][r.uv] = true
					c.add("%s: UIDVALIDITY %d in %s, but %d in %s", r.k, first.uv, first.label, r.uv, r.label)
				}
			}
		}
		for j, m := range r.msgs {
			if j > 0 && m.UID <= r.msgs[j-1].UID {
				c.add("%s read %s: uid %d after uid %d (UIDs must strictly ascend)", r.label, r.k, m.UID, r.msgs[j-1].UID)
				break
			}
		}
		for _, m := range r.msgs {
			uk := uidKey{r.k, r.uv, m.UID}
			id := ident{m.ChaosID, m.BodyHash}
			first, ok := names[uk]
			if !ok {
				names[uk] = named{id, r.label}
				continue
			}
			if first.ident == id {
				continue
			}
			if conflict[uk] == nil {
				conflict[uk] = make(map[ident]bool)
			}
			if conflict[uk][id] {
				continue
			}
			conflict[uk][id] = true
			c.add("%s UIDVALIDITY %d uid %d names %s (body %s) in %s but %s (body %s) in %s",
				r.k, r.uv, m.UID, first.chaos, short(first.hash), first.label, m.ChaosID, short(m.BodyHash), r.label)
		}
	}

	// UIDNEXT never goes down for one client on one node (within one
	// epoch of that node: see index.epoch), and no node ends below what a
	// client saw.
	type nextKey struct {
		client int
		node   string
		k      mbKey
		uv     uint32
	}
	groups := make(map[nextKey][]int)
	var gorder []nextKey
	type maxNext struct {
		next  uint32
		label string
	}
	highest := make(map[uidKey]maxNext) // uid field unused (0)
	for i, r := range ix.reads {
		if r.uidnext == 0 || r.final {
			continue
		}
		nk := nextKey{r.client, r.node, r.k, r.uv}
		if groups[nk] == nil {
			gorder = append(gorder, nk)
		}
		groups[nk] = append(groups[nk], i)
		hk := uidKey{k: r.k, uv: r.uv}
		if r.uidnext > highest[hk].next {
			highest[hk] = maxNext{r.uidnext, r.label}
		}
	}
	for _, nk := range gorder {
		byStart := groups[nk]
		sort.SliceStable(byStart, func(a, b int) bool { return ix.reads[byStart[a]].start.Before(ix.reads[byStart[b]].start) })
		byEnd := slices.Clone(byStart)
		sort.SliceStable(byEnd, func(a, b int) bool { return ix.reads[byEnd[a]].end.Before(ix.reads[byEnd[b]].end) })
		// best[e]: the read with the highest UIDNEXT that ended in epoch
		// e of the node, before the current read started.
		p, best := 0, make(map[int]int)
		for _, i := range byStart {
			r := ix.reads[i]
			for p < len(byEnd) && ix.reads[byEnd[p]].end.Before(r.start) {
				q := byEnd[p]
				if e, ok := ix.epoch(nk.node, ix.reads[q].end); ok {
					if b, seen := best[e]; !seen || ix.reads[q].uidnext > ix.reads[b].uidnext {
						best[e] = q
					}
				}
				p++
			}
			e, ok := ix.epoch(nk.node, r.start)
			if b, seen := best[e]; ok && seen && r.uidnext < ix.reads[b].uidnext {
				b := ix.reads[b]
				c.add("client %d on %s, %s UIDVALIDITY %d: UIDNEXT %d in op %d (started %s) after %d in op %d (ended %s)",
					nk.client, nk.node, nk.k, nk.uv, r.uidnext, r.opID, ix.rel(r.start), b.uidnext, b.opID, ix.rel(b.end))
			}
		}
	}
	for _, r := range ix.reads {
		if !r.final || r.uidnext == 0 {
			continue
		}
		if mx := highest[uidKey{k: r.k, uv: r.uv}]; mx.next > r.uidnext {
			c.add("%s: %s UIDVALIDITY %d ends with UIDNEXT %d, below %d seen by %s", r.label, r.k, r.uv, r.uidnext, mx.next, mx.label)
		}
	}

	// An expunged UID does not come back.
	type removed struct {
		op *Op
		uv uint32
	}
	gone := make(map[mbKey]map[uint32][]removed)
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Outcome != OK || (op.Kind != OpExpunge && op.Kind != OpMove) {
			continue
		}
		if op.Kind == OpMove && mboxKey(op.Target) == mboxKey(op.Mailbox) {
			continue
		}
		k := ix.canon(mbKey{acctKey(op.Account), mboxKey(op.Mailbox)}, op.UIDValidity)
		for _, uid := range op.UIDs {
			if op.Kind == OpExpunge && ix.racedStore(op, k, uid) {
				continue
			}
			if gone[k] == nil {
				gone[k] = make(map[uint32][]removed)
			}
			gone[k][uid] = append(gone[k][uid], removed{op, op.UIDValidity})
		}
	}
	for _, r := range ix.reads {
		for _, m := range r.msgs {
			for _, g := range gone[r.k][m.UID] {
				if g.uv != 0 && r.uv != 0 && g.uv != r.uv {
					continue
				}
				if !r.final && (r.node != g.op.Node || !r.start.After(g.op.End) || !ix.sameEpoch(r.node, g.op.End, r.start)) {
					continue
				}
				verb := "expunged"
				if g.op.Kind == OpMove {
					verb = "moved away"
				}
				c.add("%s uid %d (%s) %s by op %d on %s (ended %s) seen again in %s",
					r.k, m.UID, m.ChaosID, verb, g.op.ID, g.op.Node, ix.rel(g.op.End), readWhen(ix, r))
				break
			}
		}
	}
	return c.result()
}

func readWhen(ix *index, r read) string {
	if r.final {
		return r.label
	}
	return fmt.Sprintf("%s (started %s)", r.label, ix.rel(r.start))
}

// racedStore reports whether a STORE on uid that may have removed
// \Deleted (-FLAGS \Deleted, or a store whose flags were not recorded or
// whose outcome is unknown) overlapped the expunge: it may have landed
// between the expunge's STORE +FLAGS \Deleted and its UID EXPUNGE, and
// storage then keeps the message.
func (ix *index) racedStore(ex *Op, k mbKey, uid uint32) bool {
	for _, op := range ix.stores[k] {
		if op.ID == ex.ID || !slices.Contains(op.UIDs, uid) {
			continue
		}
		if op.Outcome == OK && op.Detail != "" && (strings.HasPrefix(op.Detail, "+") || !strings.Contains(op.Detail, `\Deleted`)) {
			continue // a flag change that cannot undo \Deleted
		}
		if !op.Start.After(ex.End) && !op.End.Before(ex.Start) {
			return true
		}
	}
	return false
}

// ---- convergence ----

func checkConvergence(h History, ix *index) CheckResult {
	c := collector{name: InvConvergence}
	if len(h.Final) == 0 {
		c.add("no final state was read back from any node")
	}
	for _, n := range h.Final {
		if !n.Reachable {
			c.add("%s unreachable after healing: %s", n.Node, n.Error)
			continue
		}
		if n.Error != "" {
			c.add("%s read back with errors (what it holds is not fully known): %s", n.Node, n.Error)
		}
		if n.MissingBlobs != 0 {
			c.add("%s misses %d blobs", n.Node, n.MissingBlobs)
		}
		if !n.Voter {
			c.add("%s is not a voter", n.Node)
		}
		if !strings.EqualFold(n.Gossip, "alive") {
			c.add("%s gossip state %q, want alive", n.Node, n.Gossip)
		}
	}
	if len(ix.reachable) > 1 {
		differ := func(what string, val func(*NodeState) string) {
			var parts []string
			same := true
			for _, n := range ix.reachable {
				v := val(n)
				if v != val(ix.reachable[0]) {
					same = false
				}
				parts = append(parts, n.Node+"="+v)
			}
			if !same {
				c.add("%s differs: %s", what, strings.Join(parts, " "))
			}
		}
		differ("applied index", func(n *NodeState) string { return strconv.FormatUint(n.AppliedIndex, 10) })
		differ("state hash", func(n *NodeState) string { return short(n.StateHash) })
	}

	leaders := make(map[uint64][]Sample)
	for _, s := range h.Samples {
		if !strings.EqualFold(s.Role, "leader") {
			continue
		}
		if !slices.ContainsFunc(leaders[s.Term], func(o Sample) bool { return o.Node == s.Node }) {
			leaders[s.Term] = append(leaders[s.Term], s)
		}
	}
	terms := make([]uint64, 0, len(leaders))
	for t := range leaders {
		terms = append(terms, t)
	}
	slices.Sort(terms)
	for _, t := range terms {
		if ls := leaders[t]; len(ls) > 1 {
			parts := make([]string, len(ls))
			for i, s := range ls {
				parts[i] = fmt.Sprintf("%s (at %s)", s.Node, ix.rel(s.Time))
			}
			c.add("term %d has %d leaders: %s", t, len(ls), strings.Join(parts, ", "))
		}
	}

	heal := lastHeal(h)
	switch cn := h.Canary; {
	case cn == nil:
		c.add("no canary message was sent after healing")
	case cn.Outcome != OK:
		c.add("canary op %d on %s: outcome %s (code %d %s)", cn.ID, cn.Node, cn.Outcome, cn.Code, cn.Detail)
	case !heal.IsZero() && cn.End.Sub(heal) > CanaryDeadline:
		c.add("canary op %d on %s accepted %s after the last heal (limit %s)", cn.ID, cn.Node, cn.End.Sub(heal).Round(time.Millisecond), CanaryDeadline)
	}
	return c.result()
}

// lastHeal is the latest heal time of the faults, zero if none healed.
func lastHeal(h History) time.Time {
	var t time.Time
	for _, f := range h.Faults {
		if f.Heal.After(t) {
			t = f.Heal
		}
	}
	return t
}

// ---- summary ----

// Summary is one scenario's figures and verdict.
type Summary struct {
	Scenario string `json:"scenario"`
	Seed     int64  `json:"seed"`
	Pass     bool   `json:"pass"`
	// SMTP sends (the canary excluded). A failed send with a 5xx code is
	// Perm5xx; any other failure (4xx, or refused without a reply) is
	// Temp4xx.
	Attempts int `json:"attempts"`
	Acked    int `json:"acked"`
	Temp4xx  int `json:"temp_4xx"`
	Perm5xx  int `json:"perm_5xx"`
	Unknown  int `json:"unknown"`
	// AckShareDuringFault is the share of sends that started during a
	// fault window (start to heal, or to the end of the run if never
	// healed) answered OK; -1 if no send started during a fault.
	AckShareDuringFault float64 `json:"ack_share_during_fault"`
	// FailoverMillis: from the first fault's effect until every node on
	// its majority side had answered 250 to a send started after it; -1
	// if there is no majority side or one of its nodes never did.
	FailoverMillis int64 `json:"failover_ms"`
	// Windows: every node's unavailability around every fault (see
	// Window and the liveness invariant).
	Windows []Window `json:"windows,omitempty"`
	// ConvergeMillis: from the last heal to the end of the canary, if it
	// was answered OK; -1 otherwise.
	ConvergeMillis int64 `json:"converge_ms"`
	// Latency of OK sends, start to end, nearest rank; 0 if none.
	P50Millis float64 `json:"p50_ms"`
	P99Millis float64 `json:"p99_ms"`
	// Outbound: remote mail through the sink; nil without one.
	Outbound *OutboundFigures `json:"outbound,omitempty"`
	// MailboxOps: COPY, CREATE, RENAME and DELETE attempts.
	MailboxOps int `json:"mailbox_ops,omitempty"`
	// BlobChecks: acknowledgements whose blob every node was asked for
	// right after (durable-at-ack).
	BlobChecks int           `json:"blob_checks,omitempty"`
	Results    []CheckResult `json:"results"`
}

// Summarize computes a scenario's figures from its history and the
// results of Check.
func Summarize(h History, results []CheckResult) Summary {
	s := Summary{
		Scenario:            h.Scenario,
		Seed:                h.Seed,
		Pass:                true,
		AckShareDuringFault: -1,
		FailoverMillis:      -1,
		ConvergeMillis:      -1,
		Results:             results,
	}
	for _, r := range results {
		if !r.Pass {
			s.Pass = false
		}
	}
	inFault := func(t time.Time) bool {
		for _, f := range h.Faults {
			if !t.Before(f.Start) && (f.Heal.IsZero() || !t.After(f.Heal)) {
				return true
			}
		}
		return false
	}
	var lat []float64
	var faultSends, faultOK int
	for _, bc := range h.Blobs {
		if !bc.Final && bc.Blob != "" {
			s.BlobChecks++
		}
	}
	for _, op := range h.Ops {
		if isMailboxOp(op.Kind) {
			s.MailboxOps++
		}
		if op.Kind != OpSend {
			continue
		}
		s.Attempts++
		switch {
		case op.Outcome == OK:
			s.Acked++
			lat = append(lat, millis(op.End.Sub(op.Start)))
		case op.Outcome == Unknown:
			s.Unknown++
		case op.Code >= 500:
			s.Perm5xx++
		default:
			s.Temp4xx++
		}
		if inFault(op.Start) {
			faultSends++
			if op.Outcome == OK {
				faultOK++
			}
		}
	}
	if faultSends > 0 {
		s.AckShareDuringFault = float64(faultOK) / float64(faultSends)
	}
	s.Windows = livenessWindows(h)
	if first := firstFaultName(h); first != "" {
		s.FailoverMillis = failoverOf(s.Windows, first)
	}
	if heal := lastHeal(h); !heal.IsZero() && h.Canary != nil && h.Canary.Outcome == OK {
		s.ConvergeMillis = h.Canary.End.Sub(heal).Milliseconds()
	}
	slices.Sort(lat)
	s.P50Millis = percentile(lat, 50)
	s.P99Millis = percentile(lat, 99)
	s.Outbound = outboundFigures(h)
	return s
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile of sorted values; 0 if none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Line is the scenario on one line, for logs and summary.txt:
//
//	PASS kill-leader-in-data seed=1 sends=812 ok=790 4xx=20 5xx=0 unknown=2 during-fault=0.82 failover=740ms converge=1.2s p50=12ms p99=180ms outbound=40 delivered=34 dup=1 bounced=4 queued=0
//
// The outbound figures (OutboundFigures) appear when a sink ran. A failing scenario ends with failed= and the failed invariants.
func (s Summary) Line() string {
	var b strings.Builder
	verdict := "PASS"
	if !s.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s %s seed=%d sends=%d ok=%d 4xx=%d 5xx=%d unknown=%d",
		verdict, s.Scenario, s.Seed, s.Attempts, s.Acked, s.Temp4xx, s.Perm5xx, s.Unknown)
	if s.AckShareDuringFault < 0 {
		b.WriteString(" during-fault=n/a")
	} else {
		fmt.Fprintf(&b, " during-fault=%.2f", s.AckShareDuringFault)
	}
	fmt.Fprintf(&b, " failover=%s converge=%s", fmtMillis(s.FailoverMillis), fmtMillis(s.ConvergeMillis))
	if s.Acked == 0 {
		b.WriteString(" p50=n/a p99=n/a")
	} else {
		fmt.Fprintf(&b, " p50=%s p99=%s", fmtLatency(s.P50Millis), fmtLatency(s.P99Millis))
	}
	if s.Outbound != nil {
		b.WriteString(" " + s.Outbound.String())
	}
	if s.MailboxOps > 0 {
		fmt.Fprintf(&b, " mboxops=%d", s.MailboxOps)
	}
	if s.BlobChecks > 0 {
		fmt.Fprintf(&b, " blob-checks=%d", s.BlobChecks)
	}
	var failed []string
	for _, r := range s.Results {
		if !r.Pass {
			failed = append(failed, r.Invariant)
		}
	}
	if len(failed) > 0 {
		b.WriteString(" failed=" + strings.Join(failed, ","))
	}
	return b.String()
}

// fmtMillis formats a duration in milliseconds: "740ms", "1.2s", "n/a"
// for a negative value.
func fmtMillis(ms int64) string {
	switch {
	case ms < 0:
		return "n/a"
	case ms < 1000:
		return strconv.FormatInt(ms, 10) + "ms"
	default:
		return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + "s"
	}
}

// fmtLatency formats a latency in milliseconds: "0.8ms", "12ms".
func fmtLatency(ms float64) string {
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}
