package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Two faults at once. Combine makes one scenario of two: the first fault
// starts as usual, the second halfway through the first's hold, each
// picking its nodes when it starts (so the second sees the cluster the
// first left: a new leader, a node down), each healing on its own; both
// are recorded, and every invariant is checked against both windows.
// `--scenarios a+b` names a pair; `--pairs N` (make chaos) adds N random
// pairs of the chosen scenarios.

// pairSep joins the names of a pair.
const pairSep = "+"

// Combine returns the scenario of a and b at once.
func Combine(a, b Scenario) Scenario {
	return Scenario{
		Name:  a.Name + pairSep + b.Name,
		Doc:   fmt.Sprintf("%s, and halfway through its hold %s", a.Name, b.Name),
		Needs: a.Needs | b.Needs,
		Launch: func(o *LaunchOptions) {
			if a.Launch != nil {
				a.Launch(o)
			}
			if b.Launch != nil {
				b.Launch(o)
			}
		},
		Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
			var fb Fault
			var errB error
			done := make(chan struct{})
			pc := pairCluster{c}
			// The Env's own helpers (killFor, restartAfter, netFor) use
			// e.Cluster: the same tolerance there, for as long as the
			// pair runs.
			orig := e.Cluster
			e.Cluster = pairCluster{orig}
			defer func() { e.Cluster = orig }()
			go func() {
				defer close(done)
				if wait(ctx, e.Hold/2) != nil {
					return
				}
				fb, errB = b.Fault(ctx, pc, e)
			}()
			fa, errA := a.Fault(ctx, pc, e)
			<-done
			if !fb.Start.IsZero() {
				e.addFault(fb)
			}
			if errA == nil && errB == nil {
				// The pair is healed when both are.
				if fb.Heal.After(fa.Heal) {
					e.Logf("chaos: second fault %q on %s from %s healed after %s", fb.Name, fb.Target,
						fb.Start.Format("15:04:05.000"), fb.Heal.Sub(fb.Start).Round(time.Millisecond))
				}
			}
			return fa, errors.Join(errA, errB)
		},
	}
}

// errNodeDown and errNodeUp: a node is not running (Kill, Pause,
// Resume), or running already (Start).
var (
	errNodeDown = errors.New("not running")
	errNodeUp   = errors.New("already running")
)

// pairCluster is the Cluster the two faults of a pair share: either may
// kill a node the other killed already (kill-follower while
// rolling-restart has that follower down), or start one the other started:
// those are no-ops here, where in one scenario they are the harness's
// mistakes.
type pairCluster struct{ Cluster }

func (p pairCluster) Kill(node string) error   { return tolerate(p.Cluster.Kill(node), errNodeDown) }
func (p pairCluster) Start(node string) error  { return tolerate(p.Cluster.Start(node), errNodeUp) }
func (p pairCluster) Pause(node string) error  { return tolerate(p.Cluster.Pause(node), errNodeDown) }
func (p pairCluster) Resume(node string) error { return tolerate(p.Cluster.Resume(node), errNodeDown) }

func tolerate(err, ok error) error {
	if errors.Is(err, ok) {
		return nil
	}
	return err
}

// addFault records a fault besides the one the scenario's Fault returns.
func (e *Env) addFault(f Fault) {
	e.extraMu.Lock()
	defer e.extraMu.Unlock()
	e.extra = append(e.extra, f)
}

// extraFaults returns the faults recorded with addFault.
func (e *Env) extraFaults() []Fault {
	e.extraMu.Lock()
	defer e.extraMu.Unlock()
	return append([]Fault(nil), e.extra...)
}

// lookupScenario finds a scenario by name, a pair "a+b" included.
func lookupScenario(all []Scenario, name string) (Scenario, bool) {
	parts := strings.Split(name, pairSep)
	if len(parts) > 2 {
		return Scenario{}, false
	}
	var found []Scenario
	for _, p := range parts {
		ok := false
		for _, s := range all {
			if s.Name == p {
				found, ok = append(found, s), true
				break
			}
		}
		if !ok {
			return Scenario{}, false
		}
	}
	if len(found) == 2 {
		if found[0].Name == found[1].Name {
			return Scenario{}, false
		}
		return Combine(found[0], found[1]), true
	}
	return found[0], true
}

// randomPairs returns n pairs of distinct scenarios from list, chosen
// with seed; none if list has fewer than two single scenarios.
func randomPairs(list []Scenario, n int, seed int64) []Scenario {
	var singles []Scenario
	for _, s := range list {
		if !strings.Contains(s.Name, pairSep) {
			singles = append(singles, s)
		}
	}
	if len(singles) < 2 || n <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9a125))
	var out []Scenario
	for range n {
		i := rng.IntN(len(singles))
		j := rng.IntN(len(singles) - 1)
		if j >= i {
			j++
		}
		out = append(out, Combine(singles[i], singles[j]))
	}
	return out
}

// CheckScenarioNames reports the first name that is neither a scenario
// nor a pair of two distinct scenarios.
func CheckScenarioNames(names []string) error {
	_, err := selectScenarios(names)
	return err
}
