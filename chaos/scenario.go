package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/ops"
)

// Need is a capability a scenario needs from the backend.
type Need int

const (
	// NeedPartition: Partition and Heal (the Docker backend, the process
	// backend in network namespaces).
	NeedPartition Need = 1 << iota
	// NeedDisk: FillDisk and FreeDisk on a size-limited file system.
	NeedDisk
	// NeedLinkCut: Cut and CutOneWay (the process backend in network
	// namespaces).
	NeedLinkCut
	// NeedNetem: Degrade (the process backend in network namespaces, on
	// a kernel with sch_netem).
	NeedNetem
	// NeedClock: SkewClock (the process backend, with a binary built
	// with -tags chaos_clock).
	NeedClock
	// NeedFaultFS: a Cluster that is a DiskFaulter, its data directories
	// on faultfs mounts (the process backend as root, with /dev/fuse).
	NeedFaultFS
)

// Scenario is one fault with its cluster settings. RunScenarios gives
// every scenario a fresh cluster, accounts, a warm-up under traffic, the
// fault (Fault injects it and heals it while traffic goes on), more
// traffic, a canary send to the faulted node right after healing,
// convergence, a read-back of every node, and the checks.
type Scenario struct {
	Name string
	// Doc is one line for --help.
	Doc string
	// Needs lists what the backend must support; a backend that does
	// not has the scenario reported as skipped.
	Needs Need
	// Launch adjusts the cluster's launch options (snapshot threshold,
	// disk limit).
	Launch func(*LaunchOptions)
	// Fault injects the fault and heals it, and returns what it did. An
	// error wrapping ErrNotSupported makes the scenario skipped.
	Fault func(ctx context.Context, c Cluster, env *Env) (Fault, error)
}

// Env is what a Fault works with.
type Env struct {
	Cluster Cluster
	Nodes   []NodeInfo
	Traffic *Traffic
	// Hold is how long a fault lasts before it is healed.
	Hold time.Duration
	// ElectionTimeout is the nodes' Raft election timeout.
	ElectionTimeout time.Duration
	Logf            func(format string, args ...any)
	rng             *rand.Rand

	extraMu sync.Mutex
	extra   []Fault // a pair's second fault (combine.go)
}

// Node returns the node named name.
func (e *Env) Node(name string) NodeInfo {
	for _, n := range e.Nodes {
		if n.Name == name {
			return n
		}
	}
	return NodeInfo{Name: name}
}

// Leader returns the current leader, waiting up to 30s for one.
func (e *Env) Leader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return Leader(ctx, e.Nodes)
}

// Follower returns a node other than the current leader, chosen with the
// scenario's seed.
func (e *Env) Follower(ctx context.Context) (string, error) {
	_, f, err := e.leaderAndFollower(ctx)
	return f, err
}

// wait sleeps d unless ctx ends first.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KillOn kills a node from inside a client at the first event of kind on
// node ("" = any node): the client waits while the kill happens, so the
// node dies at exactly that point of the transaction. It returns the node
// killed and when, or an error if no such event came within limit.
func (e *Env) KillOn(ctx context.Context, kind EventKind, node string, limit time.Duration) (string, time.Time, error) {
	type killed struct {
		node string
		at   time.Time
		err  error
	}
	ch := make(chan killed, 1)
	var once sync.Once
	e.Traffic.SetObserver(func(ev Event) {
		if ev.Kind != kind || (node != "" && ev.Node != node) {
			return
		}
		once.Do(func() {
			at := time.Now()
			err := e.Cluster.Kill(ev.Node)
			e.Logf("chaos: killed %s at %s of op %d (%s)", ev.Node, kind, ev.OpID, ev.ChaosID)
			ch <- killed{ev.Node, at, err}
		})
	})
	defer e.Traffic.SetObserver(nil)
	select {
	case k := <-ch:
		return k.node, k.at, k.err
	case <-time.After(limit):
		return "", time.Time{}, fmt.Errorf("chaos: no %s event on %q within %s", kind, node, limit)
	case <-ctx.Done():
		return "", time.Time{}, ctx.Err()
	}
}

// restartAfter holds the fault, starts node again, and stamps the heal.
func (e *Env) restartAfter(ctx context.Context, f Fault, node string) (Fault, error) {
	if err := wait(ctx, e.Hold); err != nil {
		return f, err
	}
	if err := e.Cluster.Start(node); err != nil {
		return f, err
	}
	f.Heal = time.Now()
	return f, nil
}

// killFor kills node, holds, and starts it again.
func (e *Env) killFor(ctx context.Context, name, node string) (Fault, error) {
	f := Fault{Name: name, Target: node, Start: time.Now()}
	if err := e.Cluster.Kill(node); err != nil {
		return f, err
	}
	return e.restartAfter(ctx, f, node)
}

// netFor injects a network fault (inject), holds it, and heals it. The
// fault takes effect once inject returned: the cut is in place then.
func (e *Env) netFor(ctx context.Context, f Fault, inject func() error) (Fault, error) {
	f.Start = time.Now()
	if err := inject(); err != nil {
		_ = e.Cluster.Heal()
		return f, err
	}
	f.Effect = time.Now()
	if err := wait(ctx, e.Hold); err != nil {
		_ = e.Cluster.Heal()
		return f, err
	}
	if err := e.Cluster.Heal(); err != nil {
		return f, err
	}
	f.Heal = time.Now()
	return f, nil
}

// leaderAndFollower returns the current leader and a follower chosen with
// the scenario's seed.
func (e *Env) leaderAndFollower(ctx context.Context) (string, string, error) {
	leader, err := e.Leader(ctx)
	if err != nil {
		return "", "", err
	}
	var fs []string
	for _, n := range e.Nodes {
		if n.Name != leader {
			fs = append(fs, n.Name)
		}
	}
	if len(fs) == 0 {
		return "", "", errors.New("chaos: no follower in a one-node cluster")
	}
	return leader, fs[e.rng.IntN(len(fs))], nil
}

// flapPeriod is how long each cut and each heal of partition-flapping
// lasts.
const flapPeriod = time.Second

// alive reports whether node's admin API answers.
func (e *Env) alive(ctx context.Context, node string) bool {
	n := e.Node(node)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Admin+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// expectNoSpace sends to node, whose disk is full, until it answers 452
// (insufficient system storage) at MAIL or stops (a failed write makes a
// node exit): DESIGN.md, "A node protects itself: disk". A message left
// without an answer, or no 452 while the node lives, is an error. The
// probes are recorded with the rest of the traffic.
func (e *Env) expectNoSpace(ctx context.Context, node string) error {
	n := e.Node(node)
	deadline := time.Now().Add(max(e.Hold, 10*time.Second))
	for {
		op := e.Traffic.Send(ctx, n, "mx")
		switch {
		case op.Outcome == Fail && strings.Contains(op.Detail, "mail: SMTP error 452"):
			e.Logf("chaos: %s, its disk full, answered MAIL after %s: %s", node, op.End.Sub(op.Start).Round(time.Millisecond), op.Detail)
			return nil
		case !e.alive(ctx, node):
			// A client inside DATA when the store failed is left
			// without an answer: the node has stopped.
			e.Logf("chaos: %s stopped on its full disk (%s %s)", node, op.Outcome, op.Detail)
			return nil
		case op.Outcome == Unknown:
			return fmt.Errorf("%s, its disk full and still running, left a message without an answer: %s", node, op.Detail)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s, its disk full, did not answer 452 at MAIL (last: %s %s)", node, op.Outcome, op.Detail)
		}
		if err := wait(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// Scenarios returns every scenario, in the order they run.
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name: "kill-leader-in-data",
			Doc:  "kill -9 of the leader while a client is inside DATA on it",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				node, at, err := e.KillOn(ctx, EventData, leader, 30*time.Second)
				f := Fault{Name: "kill -9 leader in DATA", Target: node, Start: at}
				if err != nil {
					return f, err
				}
				return e.restartAfter(ctx, f, node)
			},
		},
		{
			Name: "kill-follower",
			Doc:  "kill -9 of a follower, restarted after a while",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.killFor(ctx, "kill -9 follower", node)
			},
		},
		{
			Name: "kill-after-250",
			Doc:  "kill -9 of a node right after it answered 250 to a message",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, at, err := e.KillOn(ctx, EventAck, "", 30*time.Second)
				f := Fault{Name: "kill -9 right after 250", Target: node, Start: at}
				if err != nil {
					return f, err
				}
				return e.restartAfter(ctx, f, node)
			},
		},
		{
			Name: "wipe-after-250",
			Doc:  "kill -9 of a node right after it answered 250, its data deleted, and joined again: the body must already be on a majority",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, at, err := e.KillOn(ctx, EventAck, "", 30*time.Second)
				f := Fault{Name: "kill -9 and wipe right after 250", Target: node, Start: at}
				if err != nil {
					return f, err
				}
				if err := c.Wipe(node); err != nil {
					return f, err
				}
				f.Heal = time.Now()
				return f, nil
			},
		},
		{
			Name:   "kill-during-snapshot",
			Doc:    "kill -9 of a follower while snapshots are taken every 64 entries; it catches up from a snapshot",
			Launch: func(o *LaunchOptions) { o.SnapshotThreshold = 64 },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.killFor(ctx, "kill -9 during snapshots", node)
			},
		},
		{
			Name: "pause-leader",
			Doc:  "SIGSTOP of the leader for three election timeouts, SIGCONT, and a write to it at once",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				f := Fault{Name: "SIGSTOP leader", Target: leader, Start: time.Now()}
				if err := c.Pause(leader); err != nil {
					return f, err
				}
				if err := wait(ctx, 3*e.ElectionTimeout); err != nil {
					_ = c.Resume(leader)
					return f, err
				}
				if err := c.Resume(leader); err != nil {
					return f, err
				}
				f.Heal = time.Now()
				op := e.Traffic.Send(ctx, e.Node(leader), "mx")
				e.Logf("chaos: write to %s at once after SIGCONT: %s %s", leader, op.Outcome, op.Detail)
				return f, nil
			},
		},
		{
			Name:  "partition-leader",
			Doc:   "the leader cut off into a minority while clients keep using every node",
			Needs: NeedPartition,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.netFor(ctx, Fault{Name: "partition leader", Target: leader}, func() error { return c.Partition(leader) })
			},
		},
		{
			Name:  "partition-follower",
			Doc:   "a follower cut off into a minority while clients keep using every node",
			Needs: NeedPartition,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.netFor(ctx, Fault{Name: "partition follower", Target: node}, func() error { return c.Partition(node) })
			},
		},
		{
			// The follower cut off from the leader is the one hit: it
			// loses its leader, while the leader keeps a majority with
			// the other follower, which sees both.
			Name:  "partition-bridge",
			Doc:   "the leader loses its link to one follower only; the other follower still sees both",
			Needs: NeedLinkCut,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, node, err := e.leaderAndFollower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.netFor(ctx, Fault{Name: "cut leader-follower link", Target: node}, func() error { return c.Cut(leader, node) })
			},
		},
		{
			// The follower no longer hears the leader; the leader
			// still hears it (and its votes).
			Name:  "partition-asymmetric",
			Doc:   "what the leader sends to one follower is dropped; what the follower sends to the leader passes",
			Needs: NeedLinkCut,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, node, err := e.leaderAndFollower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.netFor(ctx, Fault{Name: "drop leader->follower", Target: node}, func() error { return c.CutOneWay(leader, node) })
			},
		},
		{
			Name:  "partition-flapping",
			Doc:   "the leader partitioned and healed again every second for the hold (it leads no more after the first cut)",
			Needs: NeedPartition,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				f := Fault{Name: "flapping partition", Target: leader, Start: time.Now()}
				end := f.Start.Add(e.Hold)
				for cuts := 0; ; cuts++ {
					if err := c.Partition(leader); err != nil {
						_ = c.Heal()
						return f, err
					}
					if cuts == 0 {
						f.Effect = time.Now()
					}
					err := wait(ctx, flapPeriod)
					if herr := c.Heal(); err == nil {
						err = herr
					}
					if err != nil {
						return f, err
					}
					if time.Now().Add(flapPeriod).After(end) {
						e.Logf("chaos: %s partitioned and healed %d times", leader, cuts+1)
						break
					}
					if err := wait(ctx, flapPeriod); err != nil {
						return f, err
					}
				}
				f.Heal = time.Now()
				return f, nil
			},
		},
		{
			Name:  "link-latency",
			Doc:   "100 ms (±20 ms) added to everything the leader sends on its cluster link",
			Needs: NeedNetem,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.netFor(ctx, Fault{Name: "latency on the leader's link", Target: leader}, func() error {
					return c.Degrade(leader, LinkFault{Delay: 100 * time.Millisecond, Jitter: 20 * time.Millisecond})
				})
			},
		},
		{
			Name:  "link-loss",
			Doc:   "30% of what a follower sends on its cluster link lost",
			Needs: NeedNetem,
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.netFor(ctx, Fault{Name: "loss on a follower's link", Target: node}, func() error {
					return c.Degrade(node, LinkFault{LossPercent: 30})
				})
			},
		},
		{
			Name: "rolling-restart",
			Doc:  "every node killed and restarted in turn under load, each once the cluster has a leader again",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				f := Fault{Name: "rolling restart", Start: time.Now()}
				var names []string
				for _, n := range e.Nodes {
					names = append(names, n.Name)
					if err := c.Kill(n.Name); err != nil {
						return f, err
					}
					if err := wait(ctx, e.Hold/time.Duration(len(e.Nodes))); err != nil {
						return f, err
					}
					if err := c.Start(n.Name); err != nil {
						return f, err
					}
					if _, err := e.Leader(ctx); err != nil {
						return f, err
					}
				}
				f.Target = strings.Join(names, ",")
				f.Heal = time.Now()
				return f, nil
			},
		},
		{
			Name:   "disk-full",
			Doc:    "the data file system of a follower filled up (it must answer 452 at MAIL or stop, never leave a client without an answer), then freed (the node restarted if it stopped)",
			Needs:  NeedDisk,
			Launch: func(o *LaunchOptions) { o.DiskLimitBytes = 256 << 20 },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				f := Fault{Name: "disk full", Target: node, Start: time.Now()}
				if err := c.FillDisk(node); err != nil {
					return f, err
				}
				if err := e.expectNoSpace(ctx, node); err != nil {
					_ = c.FreeDisk(node)
					return f, err
				}
				if err := wait(ctx, e.Hold); err != nil {
					_ = c.FreeDisk(node)
					return f, err
				}
				if err := c.FreeDisk(node); err != nil {
					return f, err
				}
				if !e.alive(ctx, node) {
					e.Logf("chaos: %s stopped on the full disk: starting it again", node)
					if err := c.Start(node); err != nil {
						return f, err
					}
				}
				f.Heal = time.Now()
				return f, nil
			},
		},
		clockScenario(),
		{
			Name:   "disk-full-leader",
			Doc:    "the leader's disk full (faultfs: every write fails with ENOSPC, Pebble's and the Raft log's too, and statfs says full): it must answer 452 at MAIL or stop, never leave a client without an answer; then freed (restarted if it stopped)",
			Needs:  NeedFaultFS,
			Launch: func(o *LaunchOptions) { o.FaultFS = true },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.diskFull(ctx, c, "disk full on the leader", leader)
			},
		},
		{
			Name:   "disk-stall-follower",
			Doc:    "every write and fsync of a follower's data directory blocked for the hold (a hung disk), then let go",
			Needs:  NeedFaultFS,
			Launch: func(o *LaunchOptions) { o.FaultFS = true },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.diskStall(ctx, c, "disk stall on a follower", node)
			},
		},
		{
			Name:   "disk-stall-leader",
			Doc:    "every write and fsync of the leader's data directory blocked for the hold (a hung disk), then let go",
			Needs:  NeedFaultFS,
			Launch: func(o *LaunchOptions) { o.FaultFS = true },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.diskStall(ctx, c, "disk stall on the leader", leader)
			},
		},
		{
			Name:   "fsync-error",
			Doc:    "every fsync of a follower's data directory fails with EIO for the hold; a node that stops on it loses its unsynced writes and is started again",
			Needs:  NeedFaultFS,
			Launch: func(o *LaunchOptions) { o.FaultFS = true },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.fsyncError(ctx, c, node)
			},
		},
		{
			Name:   "power-loss-follower",
			Doc:    "a follower killed and every write it had not fsynced dropped (its Pebble applies are not synced), then booted: it rebuilds them from the Raft log",
			Needs:  NeedFaultFS,
			Launch: func(o *LaunchOptions) { o.FaultFS = true },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.powerLoss(ctx, c, "power loss of a follower", node)
			},
		},
		{
			Name:   "power-loss-leader",
			Doc:    "the leader killed and every write it had not fsynced dropped, then booted under traffic",
			Needs:  NeedFaultFS,
			Launch: func(o *LaunchOptions) { o.FaultFS = true },
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				leader, err := e.Leader(ctx)
				if err != nil {
					return Fault{}, err
				}
				return e.powerLoss(ctx, c, "power loss of the leader", leader)
			},
		},
		{
			Name: "wipe-rejoin",
			Doc:  "a follower killed, its data deleted, and joined again as a new member under load",
			Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
				node, err := e.Follower(ctx)
				if err != nil {
					return Fault{}, err
				}
				f := Fault{Name: "wipe and rejoin", Target: node, Start: time.Now()}
				if err := c.Wipe(node); err != nil {
					return f, err
				}
				f.Heal = time.Now()
				return f, nil
			},
		},
	}
}

// ScenarioNames lists every scenario's name, in order.
func ScenarioNames() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// RunOptions configure RunScenarios.
type RunOptions struct {
	// Scenarios to run by name, in the order of Scenarios(); nil = all.
	Scenarios []string
	// Seed makes the traffic's choices reproducible; 0 = from the clock
	// (the seed used is in each History and summary line).
	Seed int64
	// Duration is the traffic time of each scenario (warm-up, fault,
	// after healing); 0 = 20s.
	Duration time.Duration
	// ReportDir, if not "", receives the report (WriteReport) and each
	// cluster's data and logs (<ReportDir>/<scenario>/cluster).
	ReportDir string
	// Binary is the raftmail binary the launcher runs; "" = this one.
	Binary string
	// ConvergeTimeout bounds the wait for convergence after the
	// traffic; 0 = a minute.
	ConvergeTimeout time.Duration
	// Pairs adds that many random pairs of the chosen scenarios, two
	// faults at once (combine.go), chosen with Seed.
	Pairs int
	// Nodes is the cluster size; 0 = 3.
	Nodes int
	// RaftTimeout overrides the nodes' Raft timeout; 0 = their default
	// (500ms).
	RaftTimeout time.Duration
	// Traffic adjusts the traffic of every scenario (Nodes, Accounts and
	// Seed are set by RunScenarios).
	Traffic TrafficConfig
	// Liveness sets the bounds of the liveness invariant; zero fields are
	// DefaultLiveness.
	Liveness LivenessBounds
	// NoSink runs no outbound sink: remote mail stays queued and is
	// checked there (as on a backend that cannot reach one).
	NoSink bool
	// Sink configures the outbound sink (negative controls).
	Sink OutsideOptions
	// Logf receives progress lines; nil = none.
	Logf func(format string, args ...any)
}

// ChaosDomain is the domain of the test accounts.
const ChaosDomain = "chaos.test"

// TestAccounts are the accounts every scenario creates and uses.
func TestAccounts() []Account {
	var out []Account
	for i := 1; i <= 3; i++ {
		out = append(out, Account{Address: fmt.Sprintf("user%d@%s", i, ChaosDomain), Password: fmt.Sprintf("chaos-password-%d", i)})
	}
	return out
}

// selectScenarios resolves names, keeping the order of Scenarios(), then
// the pairs ("a+b", combine.go) in the order named.
func selectScenarios(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	var pairs []Scenario
	for _, n := range names {
		n = strings.TrimSpace(n)
		sc, ok := lookupScenario(all, n)
		if !ok {
			return nil, fmt.Errorf("chaos: unknown scenario %q (known: %s; two distinct ones joined by %q run at once)", n, strings.Join(ScenarioNames(), ", "), pairSep)
		}
		if strings.Contains(n, pairSep) {
			pairs = append(pairs, sc)
		}
		want[n] = true
	}
	var out []Scenario
	for _, s := range all {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return append(out, pairs...), nil
}

// RunScenarios runs the chosen scenarios one after the other, each on a
// fresh cluster from l, checks each, writes the report when asked, and
// returns one Run per scenario (a skipped one included: see Run). An error
// is returned only for bad options or a report that could not be written;
// a scenario that failed to run is a failing Run.
func RunScenarios(ctx context.Context, l Launcher, opts RunOptions) ([]Run, error) {
	list, err := selectScenarios(opts.Scenarios)
	if err != nil {
		return nil, err
	}
	if opts.Seed == 0 {
		opts.Seed = time.Now().UnixNano() % 1_000_000_000
	}
	list = append(list, randomPairs(list, opts.Pairs, opts.Seed)...)
	if opts.Duration <= 0 {
		opts.Duration = 20 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.ReportDir != "" {
		if err := os.MkdirAll(opts.ReportDir, 0o755); err != nil {
			return nil, fmt.Errorf("chaos: report directory: %w", err)
		}
	}
	var runs []Run
	for _, sc := range list {
		if ctx.Err() != nil {
			break
		}
		opts.Logf("chaos: %s: starting (seed %d, %s of traffic)", sc.Name, opts.Seed, opts.Duration)
		run := runScenario(ctx, l, sc, opts)
		opts.Logf("chaos: %s", SummaryLine(run))
		runs = append(runs, run)
	}
	if opts.ReportDir != "" {
		if err := writeReport(opts.ReportDir, runs); err != nil {
			return runs, fmt.Errorf("chaos: write report: %w", err)
		}
	}
	return runs, ctx.Err()
}

// scenarioError is a scenario that could not run to the end: it fails.
func scenarioError(h History, err error) Run {
	results := Check(h)
	results = append(results, CheckResult{Invariant: "scenario-ran", Pass: false, Violations: 1, Examples: []string{err.Error()}})
	return Run{History: h, Results: results, Summary: Summarize(h, results)}
}

// runScenario runs one scenario on a fresh cluster.
func runScenario(ctx context.Context, l Launcher, sc Scenario, opts RunOptions) Run {
	h := History{Scenario: sc.Name, Seed: opts.Seed, Start: time.Now(), Liveness: opts.Liveness}
	logf := func(format string, args ...any) { opts.Logf(sc.Name+": "+format, args...) }
	ctx, cancel := context.WithTimeout(ctx, 3*opts.Duration+10*time.Minute)
	defer cancel()

	lo := LaunchOptions{Nodes: opts.Nodes, Binary: opts.Binary, RaftTimeout: opts.RaftTimeout, DNSResolver: DeadResolver()}
	if opts.ReportDir != "" {
		lo.Dir = filepath.Join(opts.ReportDir, sc.Name, "cluster")
	}
	if sc.Launch != nil {
		sc.Launch(&lo)
	}
	outside, why := startOutside(l, opts)
	if outside != nil {
		defer outside.Close()
		lo.Outside = outside
	} else {
		logf("%s", why)
	}
	// A backend that knows already that it cannot inject the fault:
	// skipped without a cluster.
	if pre, ok := l.(interface{ Supports(Need) error }); ok && sc.Needs != 0 {
		if err := pre.Supports(sc.Needs); errors.Is(err, ErrNotSupported) {
			logf("skipped: %v", err)
			return skipped(sc.Name, opts.Seed, err)
		}
	}
	// A port picked as free can be taken by another program before the
	// node binds it: launch again (a few times) rather than fail.
	var c Cluster
	var err error
	for attempt := 1; ; attempt++ {
		if lo.Dir != "" {
			if err := os.RemoveAll(lo.Dir); err != nil {
				return scenarioError(h, err)
			}
		}
		c, err = l.Launch(ctx, lo)
		if err == nil || attempt == 3 || ctx.Err() != nil {
			break
		}
		logf("launch failed, trying again: %v", firstLine(err.Error()))
	}
	if err != nil {
		h.End = time.Now()
		return scenarioError(h, fmt.Errorf("launch: %w", err))
	}
	defer func() {
		if err := c.Close(); err != nil {
			logf("close the cluster: %v", err)
		}
	}()
	nodes := c.Nodes()

	// A backend that cannot inject the fault: skipped, before any traffic.
	if err := probe(c, sc.Needs); err != nil {
		logf("skipped: %v", err)
		return skipped(sc.Name, opts.Seed, err)
	}

	accounts := TestAccounts()
	if err := setupAccounts(ctx, nodes, accounts); err != nil {
		h.End = time.Now()
		return scenarioError(h, err)
	}

	rec := &Recorder{}
	sampler := StartSampler(ctx, nodes, 200*time.Millisecond)
	tc := opts.Traffic
	tc.Nodes, tc.Accounts, tc.Seed = nodes, accounts, opts.Seed
	if outside != nil && tc.OutsideShare == 0 {
		tc.OutsideShare = 0.15
	}
	durability := StartDurability(ctx, nodes)
	tc.OnAck = durability.Observe
	traffic, err := StartTraffic(ctx, tc, rec)
	if err != nil {
		sampler.Stop()
		durability.Stop()
		return scenarioError(h, err)
	}
	h.Start = time.Now()
	election := opts.RaftTimeout
	if election <= 0 {
		election = 500 * time.Millisecond
	}
	env := &Env{
		Cluster: c, Nodes: nodes, Traffic: traffic,
		Hold:            max(opts.Duration/4, 2*time.Second),
		ElectionTimeout: election,
		Logf:            logf,
		rng:             rand.New(rand.NewPCG(uint64(opts.Seed), 0xfa17)),
	}

	var runErr error
	_ = wait(ctx, max(opts.Duration/4, time.Second))
	logf("warm-up done: %d operations; injecting the fault", len(rec.Ops()))
	fault, err := sc.Fault(ctx, c, env)
	if !fault.Start.IsZero() {
		h.Faults = append(h.Faults, fault)
	}
	h.Faults = append(h.Faults, env.extraFaults()...)
	var canary *Op
	var canaryDone chan struct{}
	switch {
	case errors.Is(err, ErrNotSupported):
		traffic.Stop()
		sampler.Stop()
		durability.Stop()
		logf("skipped: %v", err)
		return skipped(sc.Name, opts.Seed, err)
	case err != nil:
		runErr = fmt.Errorf("fault: %w", err)
		logf("%v", runErr)
	default:
		logf("fault %q on %s from %s healed after %s", fault.Name, fault.Target,
			fault.Start.Format("15:04:05.000"), fault.Heal.Sub(fault.Start).Round(time.Millisecond))
		// The canary goes to the faulted node right after healing,
		// while the traffic goes on.
		target := nodes[0]
		if n := env.Node(fault.Target); n.SMTP != "" {
			target = n
		}
		canaryDone = make(chan struct{})
		go func() {
			defer close(canaryDone)
			canary = sendCanary(ctx, traffic, rec, target)
		}()
	}
	elapsed := time.Since(h.Start)
	_ = wait(ctx, max(opts.Duration-elapsed, opts.Duration/4))
	traffic.Stop()
	if canaryDone != nil {
		<-canaryDone
	}
	h.Canary = canary
	h.End = time.Now()
	logf("traffic stopped: %d operations", len(rec.Ops()))
	var outRec *OutboundRecord
	if outside != nil {
		outRec = waitOutboundLogged(ctx, nodes, logf)
	}

	cctx, ccancel := context.WithTimeout(ctx, cmp.Or(opts.ConvergeTimeout, 60*time.Second))
	took, err := WaitConverged(cctx, nodes)
	ccancel()
	if err != nil {
		logf("%v", err)
	} else {
		logf("converged %s after the traffic stopped", took.Round(time.Millisecond))
	}
	h.Ops = rec.Ops()
	h.Blobs = durability.Stop()
	h.Blobs = append(h.Blobs, FinalBlobChecks(ctx, nodes, h.Blobs)...)
	h.Final = ReadBack(ctx, nodes, accounts, h.Ops, 15*time.Second)
	if outRec != nil {
		outRec.Healthy = err == nil
		outRec.Received, outRec.Refused, outRec.Dropped = outside.Received()
		h.Outbound = outRec
	}
	h.Samples = sampler.Stop()

	if runErr != nil {
		return scenarioError(h, runErr)
	}
	results := Check(h)
	return Run{History: h, Results: results, Summary: Summarize(h, results)}
}

// sendCanary sends one message to node over MX, again until it is
// answered 250 or CanaryDeadline (and a margin) has passed. Attempts that
// failed are recorded as ordinary sends; the one returned is not.
func sendCanary(ctx context.Context, t *Traffic, rec *Recorder, node NodeInfo) *Op {
	deadline := time.Now().Add(CanaryDeadline + 5*time.Second)
	for {
		op := t.sendOnce(ctx, node, "mx")
		if op.Outcome == OK || time.Now().After(deadline) || ctx.Err() != nil {
			return &op
		}
		rec.Finish(op) // stamps End again, a moment later
		_ = wait(ctx, 200*time.Millisecond)
	}
}

// probe reports, wrapping ErrNotSupported, why the cluster lacks
// something the scenario needs.
func probe(c Cluster, needs Need) error {
	if needs == 0 {
		return nil
	}
	return c.Supports(needs)
}

// setupAccounts creates the chaos domain and accounts through the first
// node that takes them, then waits until every node has applied them.
func setupAccounts(ctx context.Context, nodes []NodeInfo, accounts []Account) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conflict := func(err error) bool {
		var ae *ops.APIError
		return errors.As(err, &ae) && ae.Status == http.StatusConflict
	}
	var last error
	try := func(f func(*ops.Client) error) error {
		for {
			for _, n := range nodes {
				err := f(adminClient(n, 10*time.Second))
				if err == nil || conflict(err) {
					return nil
				}
				last = err
			}
			if err := wait(ctx, 200*time.Millisecond); err != nil {
				return fmt.Errorf("chaos: set up accounts: %w (last: %v)", err, last)
			}
		}
	}
	if err := try(func(a *ops.Client) error {
		return a.Do(ctx, "POST", "/v1/domains", ops.DomainRequest{Name: ChaosDomain}, nil)
	}); err != nil {
		return err
	}
	for _, acct := range accounts {
		if err := try(func(a *ops.Client) error {
			return a.Do(ctx, "POST", "/v1/users", ops.UserRequest{Address: acct.Address, Password: acct.Password}, nil)
		}); err != nil {
			return err
		}
	}
	if _, err := WaitConverged(ctx, nodes); err != nil {
		return fmt.Errorf("chaos: after setting up accounts: %w", err)
	}
	return nil
}

// SkippedInvariant is the only result of a Run the backend could not run
// (it passes; its example says why).
const SkippedInvariant = "skipped"

func skipped(name string, seed int64, err error) Run {
	h := History{Scenario: name, Seed: seed}
	results := []CheckResult{{Invariant: SkippedInvariant, Pass: true, Examples: []string{err.Error()}}}
	return Run{History: h, Results: results, Summary: Summarize(h, results)}
}

// SkipReason returns why r was skipped, or "" if it ran.
func SkipReason(r Run) string {
	if len(r.Results) == 1 && r.Results[0].Invariant == SkippedInvariant {
		if len(r.Results[0].Examples) > 0 {
			return r.Results[0].Examples[0]
		}
		return "not supported by this backend"
	}
	return ""
}

// SummaryLine is Summary.Line, or "SKIP name: reason" for a skipped run.
func SummaryLine(r Run) string {
	if why := SkipReason(r); why != "" {
		return fmt.Sprintf("SKIP %s: %s", r.History.Scenario, why)
	}
	return r.Summary.Line()
}

// writeReport is WriteReport of the runs that ran, with a SKIP line per
// skipped scenario added to summary.txt.
func writeReport(dir string, runs []Run) error {
	var ran []Run
	var skips strings.Builder
	for _, r := range runs {
		if SkipReason(r) != "" {
			skips.WriteString(SummaryLine(r) + "\n")
			continue
		}
		ran = append(ran, r)
	}
	if err := WriteReport(dir, ran); err != nil {
		return err
	}
	if skips.Len() == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "summary.txt"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(skips.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// DeadResolver returns a loopback address where nothing listens, for
// LaunchOptions.DNSResolver: a DNS query to it is refused at once. It is
// the discard port, below the range free ports come from: a port found
// free and released can be taken next by a node's gossip listener, which
// swallows the queries, and every message then waits out two 5 s DNS
// timeouts.
func DeadResolver() string { return "127.0.0.1:9" }
