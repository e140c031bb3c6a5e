package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// InvLiveness names the liveness invariant.
const InvLiveness = "liveness"

// LivenessBounds are the limits of the liveness invariant.
type LivenessBounds struct {
	// Fault: while a fault lasts, a node on the majority side (every node
	// the fault did not hit) answers 250 to a send started at any moment
	// within this long; 0 = DefaultLiveness.Fault.
	Fault time.Duration `json:"fault,omitempty"`
	// Heal: after the heal, and before the first fault, every node does;
	// 0 = DefaultLiveness.Heal.
	Heal time.Duration `json:"heal,omitempty"`
}

// DefaultLiveness: 3 s for the majority side of a fault (an election
// takes one to two election timeouts of 500 ms, and forwarded writes are
// retried at the new leader at once), 5 s for everyone after the heal (a
// restarted node starts, replays its log and catches up).
var DefaultLiveness = LivenessBounds{Fault: 3 * time.Second, Heal: 5 * time.Second}

func (b LivenessBounds) withDefaults() LivenessBounds {
	if b.Fault <= 0 {
		b.Fault = DefaultLiveness.Fault
	}
	if b.Heal <= 0 {
		b.Heal = DefaultLiveness.Heal
	}
	return b
}

// Window is how long one node could not take mail around one fault: the
// longest wait, over every moment of a phase, from that moment until a
// send started at or after it was answered 250 on that node. A send that
// was never answered does not end a wait, so a node whose every client
// hangs is unavailable however few clients it has; the probes start a
// send on every node several times a second (TrafficConfig.Probe), so the
// wait is measured to within a probe interval.
type Window struct {
	Node  string `json:"node"`
	Fault string `json:"fault"`
	// Phase: "fault" (from the fault's effect to its heal), "heal" (from
	// the heal to the next fault or the end of the traffic) or "before"
	// (from the start of the traffic to the first fault).
	Phase string `json:"phase"`
	// Side: "majority" (the fault did not hit the node), "hit" (it did),
	// or "" outside a fault.
	Side string `json:"side,omitempty"`
	// FirstMillis: from the start of the phase to the first 250 of a send
	// started at or after it; -1 if none came before the end of the run.
	FirstMillis int64 `json:"first_ms"`
	// WorstMillis: the longest such wait from any moment of the phase (a
	// wait no 250 ended runs to the end of the run); only moments at least
	// one bound before the phase ends are judged.
	WorstMillis int64 `json:"worst_ms"`
	// BoundMillis is the limit the phase is held to; 0 if none (a node the
	// fault hit, while it lasts).
	BoundMillis int64 `json:"bound_ms"`
	// Hung counts the sends to the node, in flight during the phase, that
	// were not answered (250 or a refusal) within the bound of the later
	// of their start and the phase's start: a client left hanging (the
	// waits above can look fine while newer sends are served).
	// HungExample describes the first.
	Hung        int    `json:"hung,omitempty"`
	HungExample string `json:"hung_example,omitempty"`
	// Slow: from some moment of the phase, the node took longer than the
	// bound to answer 250 to any send started then.
	Slow bool `json:"slow,omitempty"`
	Pass bool `json:"pass"`
}

// sendTimes is one node's sends, sorted by start, with the earliest end of
// an OK send among those starting at or after each index.
type sendTimes struct {
	start  []time.Time
	minEnd []time.Time // zero: no OK send from here on
}

func newSendTimes(ops []Op) sendTimes {
	ops = slices.Clone(ops)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Start.Before(ops[j].Start) })
	st := sendTimes{start: make([]time.Time, len(ops)), minEnd: make([]time.Time, len(ops))}
	var best time.Time
	for i := len(ops) - 1; i >= 0; i-- {
		st.start[i] = ops[i].Start
		if ops[i].Outcome == OK && (best.IsZero() || ops[i].End.Before(best)) {
			best = ops[i].End
		}
		st.minEnd[i] = best
	}
	return st
}

// wait is how long from t until an OK send started at or after t ended;
// ok is false if none did.
func (st sendTimes) wait(t time.Time) (time.Duration, bool) {
	i := sort.Search(len(st.start), func(i int) bool { return !st.start[i].Before(t) })
	if i == len(st.start) || st.minEnd[i].IsZero() {
		return 0, false
	}
	return st.minEnd[i].Sub(t), true
}

// window measures a phase that starts at from, judging against bound
// (0: measured, not judged) the moments up to judgeUntil: a wait from a
// later moment runs into the next phase, whose own start is judged, or
// past what the run observed. end is the run's end, for waits that never
// ended.
func (st sendTimes) window(from, to, judgeUntil, end time.Time, bound time.Duration) (first, worst int64, pass bool) {
	first, worst, pass = -1, 0, true
	if d, ok := st.wait(from); ok {
		first = d.Milliseconds()
	}
	// The wait is longest just after a send starts (the next one must
	// do), or at the start of the phase: those are the moments to try.
	try := []time.Time{from}
	for _, s := range st.start {
		if s.After(from) && s.Before(to) {
			try = append(try, s.Add(time.Nanosecond))
		}
	}
	for _, t := range try {
		d, ok := st.wait(t)
		if !ok {
			d = end.Sub(t) // nothing answered from t to the end of the run
		}
		worst = max(worst, d.Milliseconds())
		if bound > 0 && d > bound && !t.After(judgeUntil) {
			pass = false
		}
	}
	return first, worst, pass
}

// hung counts the sends in flight during [from, to) that were not
// answered within bound of the later of their start and from, for those
// whose deadline falls in the phase (that later moment no later than
// judgeUntil).
func hung(ops []Op, from, to, judgeUntil time.Time, bound time.Duration) (int, string) {
	n, example := 0, ""
	for _, op := range ops {
		if !op.Start.Before(to) || (!op.End.IsZero() && !op.End.After(from)) {
			continue
		}
		t0 := op.Start
		if t0.Before(from) {
			t0 = from
		}
		if t0.After(judgeUntil) {
			continue
		}
		// Answered (or, unknown, given up by the client) within the
		// bound: not hung. A client that gave up sooner cannot tell.
		if !op.End.IsZero() && op.End.Sub(t0) <= bound {
			continue
		}
		n++
		if example == "" {
			answer := "no answer (" + string(op.Outcome) + ")"
			if op.Outcome != Unknown {
				answer = fmt.Sprintf("%s after %s", op.Outcome, op.End.Sub(t0).Round(time.Millisecond))
			}
			when := fmt.Sprintf("started %s into the phase", op.Start.Sub(from).Round(time.Millisecond))
			if op.Start.Before(from) {
				when = fmt.Sprintf("in flight since %s before the phase", from.Sub(op.Start).Round(time.Millisecond))
			}
			example = fmt.Sprintf("op %d (%s, %s) got %s", op.ID, op.Via, when, answer)
		}
	}
	return n, example
}

// livenessWindows measures every node around every fault.
func livenessWindows(h History) []Window {
	b := h.Liveness.withDefaults()
	byNode := map[string][]Op{}
	var names []string
	seen := map[string]bool{}
	addName := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, op := range h.Ops {
		if op.Kind != OpSend {
			continue
		}
		addName(op.Node)
		byNode[op.Node] = append(byNode[op.Node], op)
	}
	// A node with no send at all was not measured (the probes make
	// sends on every node in a real run).
	slices.Sort(names)
	faults := slices.Clone(h.Faults)
	sort.SliceStable(faults, func(i, j int) bool { return faults[i].effect().Before(faults[j].effect()) })
	end := h.End
	observed := end // the last answer any client got
	for _, op := range h.Ops {
		if op.End.After(observed) {
			observed = op.End
		}
	}
	segs := livenessSegments(h.Start, end, faults)
	var out []Window
	for _, node := range names {
		st := newSendTimes(byNode[node])
		phase := func(fault, name, side string, from, to time.Time, bound time.Duration) {
			if !to.After(from) {
				return
			}
			judgeUntil := to.Add(-bound)
			if !to.Before(end) {
				judgeUntil = observed.Add(-bound)
			}
			first, worst, pass := st.window(from, to, judgeUntil, end, bound)
			w := Window{Node: node, Fault: fault, Phase: name, Side: side,
				FirstMillis: first, WorstMillis: worst, BoundMillis: bound.Milliseconds()}
			if bound > 0 {
				w.Hung, w.HungExample = hung(byNode[node], from, to, judgeUntil, bound)
			}
			w.Slow = !pass
			w.Pass = pass && w.Hung == 0
			out = append(out, w)
		}
		wasHit := false
		for _, sg := range segs {
			if len(sg.active) == 0 {
				name := "heal"
				if sg.before {
					name = "before"
				}
				phase(sg.name, name, "", sg.from, sg.to, b.Heal)
				wasHit = false
				continue
			}
			hit := false
			for _, f := range sg.active {
				hit = hit || hits(f, node)
			}
			// The nodes no active fault hit: the majority side, if
			// they are a majority. Two faults at once can leave none
			// (two of three nodes killed): then no node is held.
			spared := 0
			for _, n := range names {
				hitN := false
				for _, f := range sg.active {
					hitN = hitN || hits(f, n)
				}
				if !hitN {
					spared++
				}
			}
			noMajority := spared*2 <= len(names)
			switch {
			case hit:
				phase(sg.name, "fault", "hit", sg.from, sg.to, 0)
			case noMajority:
				phase(sg.name, "fault", "no majority", sg.from, sg.to, 0)
			case wasHit:
				// Just freed from the other fault of a pair: it
				// recovers as after a heal.
				phase(sg.name, "fault", "majority", sg.from, sg.to, b.Heal)
			default:
				phase(sg.name, "fault", "majority", sg.from, sg.to, b.Fault)
			}
			// After a stretch with no majority every node recovers,
			// as after a heal; so does one a fault hit.
			wasHit = hit || noMajority
		}
	}
	return out
}

// segment is a stretch of the run with one set of active faults.
type segment struct {
	from, to time.Time
	active   []Fault
	name     string // the active faults' names, or the last healed one's
	before   bool   // before the first fault
}

// livenessSegments cuts [start, end) at every fault's effect and heal:
// one segment per stretch with the same faults in effect. Faults one
// after the other give the phases "before", then per fault "fault" and
// "heal"; overlapping ones (a pair) a segment for each combination, named
// "A + B" while both are in effect.
func livenessSegments(start, end time.Time, faults []Fault) []segment {
	cuts := []time.Time{start, end}
	for _, f := range faults {
		cuts = append(cuts, f.effect())
		if !f.Heal.IsZero() {
			cuts = append(cuts, f.Heal)
		}
	}
	slices.SortFunc(cuts, func(a, b time.Time) int { return a.Compare(b) })
	var out []segment
	for i := 0; i+1 < len(cuts); i++ {
		lastHealed, healedAt := "", time.Time{}
		from, to := cuts[i], cuts[i+1]
		if !to.After(from) || from.Before(start) || !from.Before(end) {
			continue
		}
		var active []Fault
		var names []string
		before := true
		for _, f := range faults {
			if !f.effect().After(from) {
				before = false
			}
			if !f.effect().After(from) && (f.Heal.IsZero() || f.Heal.After(from)) {
				active = append(active, f)
				names = append(names, f.Name)
			}
			if !f.Heal.IsZero() && !f.Heal.After(from) && !f.Heal.Before(healedAt) {
				lastHealed, healedAt = f.Name, f.Heal
			}
		}
		name := strings.Join(names, " + ")
		if len(active) == 0 {
			name = lastHealed
		}
		if n := len(out); n > 0 && out[n-1].name == name && len(out[n-1].active) == len(active) && out[n-1].before == before {
			out[n-1].to = to
			continue
		}
		out = append(out, segment{from: from, to: to, active: active, name: name, before: before && len(active) == 0})
	}
	return out
}

// checkLiveness: every node on the majority side of a fault takes mail
// within LivenessBounds.Fault from any moment of the fault, and every node
// within LivenessBounds.Heal from any moment after the heal or before the
// first fault. Each phase's windows are in the info line.
func checkLiveness(h History) CheckResult {
	c := collector{name: InvLiveness}
	ws := livenessWindows(h)
	var worstMajority int64 = -1
	for _, w := range ws {
		if !w.Pass && w.Hung > 0 {
			c.add("%s: %s %s%s: %d send(s) in flight left without an answer for more than %s, e.g. %s",
				w.Node, w.Phase, w.Fault, sideNote(w.Side), w.Hung, fmtMillis(w.BoundMillis), w.HungExample)
		}
		if w.Slow {
			c.add("%s: %s %s%s: a send started then waited %s for a 250 (limit %s; first 250 after %s)",
				w.Node, w.Phase, w.Fault, sideNote(w.Side), fmtMillis(w.WorstMillis), fmtMillis(w.BoundMillis), fmtMillis(w.FirstMillis))
		}
		if w.Phase == "fault" && w.Side == "majority" {
			worstMajority = max(worstMajority, w.WorstMillis)
		}
	}
	if worstMajority >= 0 {
		c.info = fmt.Sprintf("longest wait for a 250 on the majority side during the fault: %s", fmtMillis(worstMajority))
	}
	return c.result()
}

func sideNote(side string) string {
	if side == "" {
		return ""
	}
	return " (" + side + " side)"
}

// failoverOf is the time from the first fault's effect until every node on
// its majority side had answered 250 to a send started after it (the
// slowest node's first 250), or -1 if none could be measured.
func failoverOf(ws []Window, first string) int64 {
	var out int64 = -1
	for _, w := range ws {
		if w.Phase != "fault" || w.Side != "majority" || w.Fault != first {
			continue
		}
		if w.FirstMillis < 0 {
			return -1 // never: the liveness invariant says so
		}
		out = max(out, w.FirstMillis)
	}
	return out
}

// firstFaultName names the fault that took effect first, "" if none.
func firstFaultName(h History) string {
	var first *Fault
	for i := range h.Faults {
		if first == nil || h.Faults[i].effect().Before(first.effect()) {
			first = &h.Faults[i]
		}
	}
	if first == nil {
		return ""
	}
	return first.Name
}
