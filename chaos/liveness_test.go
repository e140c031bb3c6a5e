package chaos

import (
	"strings"
	"testing"
)

// probeOps makes one send to node every 200 ms from `from` to `to` (ms
// after t0); each takes 20 ms, except those that start inside a stall:
// they hang until the stall ends (answered then).
func probeOps(node string, from, to int, stalls ...[2]int) []Op {
	var ops []Op
	for ms := from; ms < to; ms += 200 {
		end := ms + 20
		for _, st := range stalls {
			if ms >= st[0] && ms < st[1] {
				end = st[1] + 10
			}
		}
		op := send(int64(len(ops)+1), "p", OK, 250, ms, end)
		op.Node = node
		ops = append(ops, op)
	}
	return ops
}

func livenessHistory(stalls map[string][][2]int) History {
	h := History{Scenario: "live", Start: at(0), End: at(10000),
		Faults: []Fault{{Name: "partition", Target: "n1", Start: at(2000), Effect: at(2100), Heal: at(6000)}}}
	for _, n := range []string{"n1", "n2", "n3"} {
		h.Ops = append(h.Ops, probeOps(n, 0, 10000, stalls[n]...)...)
	}
	return h
}

// TestLivenessInvariant: a majority node that stalls longer than the bound
// during the fault fails; the node the fault hit may stall until the heal
// but must answer within the heal bound after it; a short stall passes.
func TestLivenessInvariant(t *testing.T) {
	cases := []struct {
		name   string
		stalls map[string][][2]int
		fail   []string // substrings of the violations
	}{
		{"clean", nil, nil},
		{"hit node down for the whole fault", map[string][][2]int{"n1": {{2100, 6000}}}, nil},
		{"majority blip within the bound", map[string][][2]int{"n2": {{2100, 4000}}, "n3": {{2100, 3500}}}, nil},
		{"majority stalled until the heal", map[string][][2]int{"n2": {{2100, 6500}}, "n3": {{2100, 6500}}},
			[]string{"n2: fault partition (majority side)", "n3: fault partition (majority side)"}},
		{"hit node slow after the heal", map[string][][2]int{"n1": {{2100, 12000}}}, []string{"n1: heal"}},
		{"stall before any fault", map[string][][2]int{"n3": {{200, 1900}}}, nil},
		// Moments before the fault whose wait runs into it are judged
		// by the fault's start.
		{"long stall from before the fault", map[string][][2]int{"n3": {{0, 7000}}}, []string{"n3: fault partition (majority side)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := livenessHistory(tc.stalls)
			r := checkLiveness(h)
			if r.Pass != (len(tc.fail) == 0) {
				t.Fatalf("pass=%v, examples %q", r.Pass, r.Examples)
			}
			for _, want := range tc.fail {
				found := false
				for _, ex := range r.Examples {
					found = found || strings.Contains(ex, want)
				}
				if !found {
					t.Errorf("no violation %q in %q", want, r.Examples)
				}
			}
		})
	}
}

// TestLivenessFailover: failover is the slowest majority node's first
// 250 after the fault's effect, not the first 250 anywhere.
func TestLivenessFailover(t *testing.T) {
	h := livenessHistory(map[string][][2]int{"n2": {{2100, 3300}}, "n3": {{2100, 2700}}})
	ws := livenessWindows(h)
	// n2: sends from 2200 on hang until 3310; the one at 2200 ends at 3310.
	if got := failoverOf(ws, "partition"); got != 1210 {
		t.Fatalf("failover %d ms, want 1210 (windows %+v)", got, ws)
	}
	for _, w := range ws {
		if w.Node == "n1" && w.Phase == "fault" && (w.Side != "hit" || w.BoundMillis != 0) {
			t.Errorf("n1 during its own fault: %+v", w)
		}
	}
}

// TestLivenessHungSend: a send in flight on the majority side when the
// fault takes effect that is answered only at the heal fails liveness,
// although newer sends to that node were served at once (the partition
// stall: forwards to a leader that was cut off hung until the heal).
func TestLivenessHungSend(t *testing.T) {
	h := livenessHistory(nil)
	stuck := send(999, "stuck", OK, 250, 2000, 6500)
	stuck.Node = "n2"
	h.Ops = append(h.Ops, stuck)
	r := checkLiveness(h)
	if r.Pass || !strings.Contains(strings.Join(r.Examples, "\n"), "n2: fault partition (majority side): 1 send(s) in flight") {
		t.Fatalf("a send hung until the heal: pass=%v %q", r.Pass, r.Examples)
	}
	// The same send answered 2 s after the fault's effect is fine, and so
	// is a hang on the node the fault hit.
	h = livenessHistory(nil)
	stuck.End = at(4100)
	h.Ops = append(h.Ops, stuck)
	hit := send(1000, "hit", Unknown, 0, 2500, 9000) // the client gave up 3 s after the heal
	hit.Node = "n1"
	h.Ops = append(h.Ops, hit)
	if r := checkLiveness(h); !r.Pass {
		t.Fatalf("%q", r.Examples)
	}
	// A client on the node the fault hit still waiting 5 s after the heal
	// is left hanging.
	hit.End = at(12500)
	h.Ops[len(h.Ops)-1] = hit
	if r := checkLiveness(h); r.Pass || !strings.Contains(strings.Join(r.Examples, "\n"), "n1: heal partition") {
		t.Fatalf("a send on the hit node unanswered 6.5 s after the heal: %q", r.Examples)
	}
}

// TestLivenessPair: two faults at once. While both are in effect the
// nodes neither hit are the majority side only if they are a majority (two
// of three nodes killed leave none: nobody is held); a node freed from the
// first fault while the second goes on is held to the heal bound.
func TestLivenessPair(t *testing.T) {
	pair := func(stalls map[string][][2]int) History {
		h := History{Scenario: "pair", Start: at(0), End: at(30000), Faults: []Fault{
			{Name: "kill n3", Target: "n3", Start: at(2000), Heal: at(12000)},
			{Name: "kill n2", Target: "n2", Start: at(6000), Heal: at(20000)},
		}}
		for _, n := range []string{"n1", "n2", "n3"} {
			h.Ops = append(h.Ops, probeOps(n, 0, 30000, stalls[n]...)...)
		}
		return h
	}
	cases := []struct {
		name   string
		stalls map[string][][2]int
		fail   []string
	}{
		{"clean", nil, nil},
		// n1 alone between 6 s and 12 s: no majority, not held.
		{"no majority while both last", map[string][][2]int{"n1": {{6000, 12000}}, "n2": {{6000, 20000}}, "n3": {{2000, 12000}}}, nil},
		// n3 freed at 12 s while n2 is still down: 4.5 s to recover is
		// within the heal bound (5 s), not the fault bound (3 s).
		{"freed node recovering", map[string][][2]int{"n3": {{2000, 16500}}}, nil},
		{"freed node too slow", map[string][][2]int{"n3": {{2000, 18000}}}, []string{"n3: fault kill n2 (majority side)"}},
		// n1 held while only one node is down.
		{"majority stalled with one fault", map[string][][2]int{"n1": {{2000, 5500}}}, []string{"n1: fault kill n3 (majority side)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := checkLiveness(pair(tc.stalls))
			if r.Pass != (len(tc.fail) == 0) {
				t.Fatalf("pass=%v, examples %q", r.Pass, r.Examples)
			}
			for _, want := range tc.fail {
				found := false
				for _, ex := range r.Examples {
					found = found || strings.Contains(ex, want)
				}
				if !found {
					t.Errorf("no violation %q in %q", want, r.Examples)
				}
			}
		})
	}
	var names []string
	for _, sg := range livenessSegments(at(0), at(30000), pair(nil).Faults) {
		names = append(names, sg.name)
	}
	if got := strings.Join(names, "|"); got != "|kill n3|kill n3 + kill n2|kill n2|kill n2" {
		t.Errorf("segments %q", got)
	}
}
