package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftmail/raftmail/chaos"
)

func newChaosCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "chaos",
		Short: "Run the chaos suite: faults under mail traffic, then a check of what every node holds",
		Args:  exactArgs(0, "a subcommand (run, check)"),
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	c.AddCommand(newChaosRunCmd(), newChaosCheckCmd())
	return c
}

// newChaosCheckCmd checks recorded histories again, with this binary's
// checkers: after a checker changed, or to look at an old run.
func newChaosCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check HISTORY.jsonl...",
		Short: "Check recorded scenario histories again (the <scenario>.history.jsonl files of a report)",
		Long: `Check recorded scenario histories again with this binary's invariant
checkers, without running anything: one summary line per history, and the
first examples of each invariant that fails. It exits 1 if any fails.`,
		Example: `  raftmail chaos check chaos-report/round-1/*.history.jsonl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef(cmd, "name at least one history file (<report>/<scenario>.history.jsonl)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			failed := 0
			for _, path := range args {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				h, err := chaos.ReadJSONL(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				results := chaos.Check(h)
				run := chaos.Run{History: h, Results: results, Summary: chaos.Summarize(h, results)}
				fmt.Fprintln(w, chaos.SummaryLine(run))
				if run.Summary.Pass {
					continue
				}
				failed++
				for _, r := range results {
					if !r.Pass {
						for _, ex := range r.Examples[:min(3, len(r.Examples))] {
							fmt.Fprintf(w, "  %s: %s\n", r.Invariant, ex)
						}
					}
				}
			}
			if failed > 0 {
				return fmt.Errorf("chaos: %d of %d histories failed", failed, len(args))
			}
			return nil
		},
	}
}

// chaosScenarioList is the scenarios, one per line, for --help.
func chaosScenarioList() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, s := range chaos.Scenarios() {
		note := ""
		switch {
		case s.Needs&chaos.NeedNetem != 0:
			note = " [root: namespaces; a kernel with sch_netem]"
		case s.Needs&chaos.NeedLinkCut != 0:
			note = " [root: namespaces]"
		case s.Needs&chaos.NeedPartition != 0:
			note = " [root: namespaces; or docker]"
		case s.Needs&chaos.NeedDisk != 0:
			note = " [root]"
		case s.Needs&chaos.NeedFaultFS != 0:
			note = " [root: /dev/fuse]"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", s.Name, s.Doc, note)
	}
	tw.Flush()
	return b.String()
}

func newChaosRunCmd() *cobra.Command {
	var (
		backend, scenarios, report, binary string
		netns                              string
		seed                               int64
		duration, raftTimeout              time.Duration
		liveFault, liveHeal                time.Duration
		nodes, pairs                       int
		quiet                              bool
	)
	c := &cobra.Command{
		Use:   "run",
		Short: "Run chaos scenarios against a fresh local or Docker cluster each",
		Long: `Run chaos scenarios. Each scenario starts a fresh cluster (local processes,
each in a network namespace of its own when run as root, else on 127.0.0.1;
or Docker containers), creates test accounts, runs SMTP senders (MX and
submission) and IMAP sessions against every node, injects one fault, heals it,
sends a canary message, reads back every mailbox and the outbound queue of
every node, and checks DESIGN.md's promise: no acknowledged message lost, no
phantom, duplicates counted, stable UIDs, convergence.

Scenarios:
` + chaosScenarioList() + `
Two scenarios joined by + (kill-follower+clock-skew) run at once: the second
fault from halfway through the first's hold.
A scenario the backend cannot run is reported as SKIP, not as a failure.
It prints one summary line per scenario and writes the report (report.html,
report.json, summary.txt, one history per scenario, each cluster's data and
logs) to the --report directory. It exits 1 if any scenario fails.`,
		Example: `  raftmail chaos run --scenarios kill-follower,kill-after-250 --duration 15s
  raftmail chaos run --backend docker --scenarios partition-leader --seed 42
  raftmail chaos run --scenarios kill-follower+partition-leader --pairs 3`,
		Args: exactArgs(0, "no arguments (choose scenarios with --scenarios)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			if scenarios != "" && scenarios != "all" {
				for _, n := range strings.Split(scenarios, ",") {
					if n = strings.TrimSpace(n); n != "" {
						names = append(names, n)
					}
				}
				if err := chaos.CheckScenarioNames(names); err != nil {
					return usagef(cmd, "%s", strings.TrimPrefix(err.Error(), "chaos: "))
				}
			}
			if duration < 2*time.Second {
				return usagef(cmd, "--duration %s is too short: give at least 2s of traffic per scenario", duration)
			}
			if pairs < 0 {
				return usagef(cmd, "--pairs %d: want 0 or more", pairs)
			}
			if nodes < 3 {
				return usagef(cmd, "--nodes %d: a fault needs at least 3 nodes", nodes)
			}
			stderr := cmd.ErrOrStderr()
			logf := func(format string, args ...any) {
				fmt.Fprintf(stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
			}
			if quiet {
				logf = func(string, ...any) {}
			}
			var l chaos.Launcher
			switch backend {
			case "process":
				mode, err := chaos.ParseNetnsMode(netns)
				if err != nil {
					return usagef(cmd, "--netns %q: want auto, on or off", netns)
				}
				l = chaos.ProcessLauncher{Logf: logf, Netns: mode}
			case "docker":
				if cmd.Flags().Changed("netns") {
					return usagef(cmd, "--netns is for --backend process: the Docker backend has networks of its own")
				}
				l = chaos.DockerLauncher{Logf: logf}
			default:
				return usagef(cmd, "--backend %q: want process or docker", backend)
			}
			if binary != "" {
				if _, err := os.Stat(binary); err != nil {
					return usagef(cmd, "--binary: %v", err)
				}
			}
			dir, err := filepath.Abs(report)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			runs, err := chaos.RunScenarios(ctx, l, chaos.RunOptions{
				Scenarios:   names,
				Seed:        seed,
				Duration:    duration,
				ReportDir:   dir,
				Binary:      binary,
				Pairs:       pairs,
				Nodes:       nodes,
				RaftTimeout: raftTimeout,
				Liveness:    chaos.LivenessBounds{Fault: liveFault, Heal: liveHeal},
				Logf:        logf,
			})
			return chaosResult(cmd.OutOrStdout(), runs, dir, err)
		},
	}
	fs := c.Flags()
	fs.StringVar(&backend, "backend", "process", "where the nodes run: process (local processes on 127.0.0.1) or docker")
	fs.StringVar(&netns, "netns", "auto", "process backend: a network namespace per node, so that partitions and link faults can run: auto (when root and ip netns works), on (or fail), off (every node on 127.0.0.1)")
	fs.StringVar(&scenarios, "scenarios", "all", "comma-separated scenarios to run (see the list above)")
	fs.Int64Var(&seed, "seed", 0, "seed of the traffic's choices, to reproduce a run (0 = from the clock; printed in each summary line)")
	fs.DurationVar(&duration, "duration", 20*time.Second, "traffic time per scenario: warm-up, fault, and after healing")
	fs.StringVar(&report, "report", "chaos-report", "directory for the report and each cluster's data and logs")
	fs.StringVar(&binary, "binary", "", "raftmail binary the nodes run (default: this one)")
	fs.IntVar(&nodes, "nodes", 3, "cluster size")
	fs.IntVar(&pairs, "pairs", 0, "also run this many random pairs of the chosen scenarios, two faults at once (the second from halfway through the first's hold); a pair can be named too: --scenarios kill-follower+clock-skew")
	fs.DurationVar(&raftTimeout, "raft-timeout", 0, "Raft heartbeat and election timeout of the nodes (default: theirs, 500ms)")
	fs.DurationVar(&liveFault, "liveness-fault", chaos.DefaultLiveness.Fault, "liveness: the longest a node on the majority side of a fault may take to answer 250")
	fs.DurationVar(&liveHeal, "liveness-heal", chaos.DefaultLiveness.Heal, "liveness: the longest any node may take to answer 250 after a heal (and before the first fault)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "print only the summary lines, not the progress")
	return c
}

// chaosResult prints one line per scenario and where the report is, and
// turns failures into the command's error (exit status 1).
func chaosResult(w io.Writer, runs []chaos.Run, dir string, err error) error {
	failed := 0
	for _, r := range runs {
		fmt.Fprintln(w, chaos.SummaryLine(r))
		if chaos.SkipReason(r) == "" && !r.Summary.Pass {
			failed++
		}
	}
	if len(runs) > 0 {
		fmt.Fprintf(w, "Report: %s (summary.txt, report.json, one history per scenario; cluster logs under <scenario>/cluster)\n", filepath.Join(dir, "report.html"))
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("chaos: interrupted after %d scenario(s)", len(runs))
	case err != nil:
		return err
	case failed > 0:
		return fmt.Errorf("chaos: %d of %d scenario(s) failed", failed, len(runs))
	}
	return nil
}
