package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftmail/raftmail/bench"
)

// newBenchCmd is `raftmail bench`: the load generator of package bench,
// usable against any SMTP, IMAP or POP3 server.
func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load-test any SMTP, IMAP or POP3 server (Raftmail or not)",
		Long: `Load generators for mail servers, like redis-benchmark or pgbench:

  raftmail bench smtp --addr 127.0.0.1:25 --to user@example.test --messages 2000 --size 10KiB --concurrency 16
  raftmail bench imap --addr 127.0.0.1:993 --tls --tls-insecure --user U --pass P
  raftmail bench visibility --send 127.0.0.1:25 --idle 127.0.0.1:143 --user U --pass P --messages 200
  raftmail bench pop3 --addr 127.0.0.1:110 --user U --pass P
  raftmail bench procs --group node1=pid:4242 --group postfix=exe:/usr/lib/postfix/ --ready F   (until SIGTERM)

Progress goes to stderr (a bar on a terminal, a line a second otherwise);
figures to stdout, as text or with --json. scripts/bench-peers.sh (make
bench-peers) runs them against Postfix + Dovecot and a Raftmail cluster.`,
	}
	c.AddCommand(newBenchSMTPCmd(), newBenchIMAPCmd(), newBenchVisibilityCmd(), newBenchPOP3Cmd(), newBenchProcsCmd(), newBenchReportCmd())
	return c
}

// benchCommon are the flags every workload has.
type benchCommon struct {
	json     bool
	quiet    bool
	insecure bool
	timeout  time.Duration
}

func (b *benchCommon) add(c *cobra.Command) {
	c.Flags().BoolVar(&b.json, "json", false, "print the result as JSON")
	c.Flags().BoolVar(&b.quiet, "quiet", false, "no progress on stderr")
	c.Flags().BoolVar(&b.insecure, "tls-insecure", false, "do not verify the server's certificate (self-signed servers)")
	c.Flags().DurationVar(&b.timeout, "timeout", bench.DefaultTimeout, "bound on each wait for a reply")
}

func (b *benchCommon) progress() *bench.Progress {
	if b.quiet {
		return nil
	}
	return &bench.Progress{W: os.Stderr, TTY: bench.IsTerminal(os.Stderr)}
}

// benchContext is cancelled by SIGINT and SIGTERM.
func benchContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func requireFlags(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !cmd.Flags().Changed(n) {
			return usagef(cmd, "--%s is required", n)
		}
	}
	return nil
}

func newBenchSMTPCmd() *cobra.Command {
	var (
		b    benchCommon
		cfg  bench.SMTPConfig
		size string
	)
	c := &cobra.Command{
		Use:   "smtp",
		Short: "Send messages over SMTP and measure the accept rate and the latency of the final reply",
		Long: `Sends --messages messages of --size bytes (headers included) over --concurrency
connections, connection i to the i-th --addr (round robin), each sending in a
loop with RSET between messages. Latency runs from the last write of the
final "." to the server's reply. Every message's outcome is counted by the
code of the reply that ended it (250, 4xx, 5xx; "conn": the connection broke
or timed out), overall and per --addr; failures are never retried. Every
100th message contains the word "` + bench.SearchWord + `" (for bench imap's
SEARCH TEXT).

Bodies repeat one line of text unless --unique: then each body is base64 of
pseudo-random bytes (from --seed, default the clock, and the message number),
different in every message and every run, like an attachment that neither
de-duplication nor compression makes cheaper. Messages are generated while
they are sent, never held whole, so --size 45MiB at --concurrency 8 costs
the client little memory.

MX (default): no AUTH, envelope sender ` + bench.DefaultFrom + `.
--submission: STARTTLS (or --tls) then AUTH PLAIN as --user.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "addr"); err != nil {
				return err
			}
			n, err := bench.ParseSize(size)
			if err != nil {
				return usagef(cmd, "--size: %v", err)
			}
			cfg.Size, cfg.Timeout, cfg.TLSInsecure, cfg.Progress = n, b.timeout, b.insecure, b.progress()
			ctx, cancel := benchContext(cmd)
			defer cancel()
			r, err := bench.RunSMTP(ctx, cfg)
			if err != nil {
				return err
			}
			if b.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "SMTP %s: %d messages of %d bytes, concurrency %d\n", strings.Join(r.Addrs, ","), r.Messages, r.Size, r.Concurrency)
			fmt.Fprintf(w, "accepted  %d in %.2fs: %.1f msgs/s, %.1f MB/s\n", r.Accepted, r.Elapsed, r.Rate, r.MBps)
			printLatency(w, `"." → reply`, r.Latency)
			printErrors(w, r.Errors)
			fmt.Fprintf(w, "replies   %s\n", countList(r.Replies))
			if len(r.PerAddr) > 1 {
				for _, a := range r.PerAddr {
					fmt.Fprintf(w, "  %-21s %s, last at %.2fs\n", a.Addr, countList(a.Replies), a.Elapsed)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&cfg.Addrs, "addr", nil, "server host:port (repeat to spread connections over several servers)")
	f.BoolVar(&cfg.Submission, "submission", false, "authenticate (STARTTLS unless --tls, then AUTH PLAIN)")
	f.StringVar(&cfg.User, "user", "", "login for --submission (also the default --to)")
	f.StringVar(&cfg.Pass, "pass", "", "password for --submission")
	f.BoolVar(&cfg.TLS, "tls", false, "implicit TLS (port 465)")
	f.BoolVar(&cfg.StartTLS, "starttls", false, "upgrade with STARTTLS (implied by --submission)")
	f.IntVar(&cfg.Messages, "messages", 1000, "messages to send")
	f.StringVar(&size, "size", "10KiB", "size of each message (bytes, or e.g. 10KiB, 1MiB)")
	f.IntVar(&cfg.Concurrency, "concurrency", 1, "connections sending at once")
	f.BoolVar(&cfg.Unique, "unique", false, "a different body in every message (base64 of pseudo-random bytes)")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of the --unique bodies (default: from the clock)")
	f.StringVar(&cfg.To, "to", "", "recipient (default --user)")
	f.StringVar(&cfg.From, "from", "", "envelope sender (default "+bench.DefaultFrom+", or --user with --submission)")
	b.add(c)
	return c
}

func newBenchIMAPCmd() *cobra.Command {
	var (
		b   benchCommon
		cfg bench.IMAPConfig
	)
	c := &cobra.Command{
		Use:   "imap",
		Short: "Time LOGIN, SELECT, UID FETCH 1:* (bodies, headers, flags), SEARCH TEXT and STORE on a mailbox",
		Long: `Logs in, selects the mailbox, then times each on its own: UID FETCH 1:*
BODY.PEEK[], BODY.PEEK[HEADER] and FLAGS; SEARCH TEXT --search; UID STORE 1:*
+FLAGS.SILENT (\Seen). Every message of the mailbox ends up \Seen.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "addr", "user", "pass"); err != nil {
				return err
			}
			cfg.Timeout, cfg.TLSInsecure = b.timeout, b.insecure
			ctx, cancel := benchContext(cmd)
			defer cancel()
			r, err := bench.RunIMAP(ctx, cfg)
			if err != nil {
				return err
			}
			if b.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "IMAP %s: %d messages, SEARCH TEXT %d hits\n", r.Addr, r.Messages, r.SearchHits)
			printSteps(w, r.Steps)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Addr, "addr", "", "server host:port")
	f.BoolVar(&cfg.TLS, "tls", false, "implicit TLS (IMAPS)")
	f.BoolVar(&cfg.StartTLS, "starttls", false, "upgrade with STARTTLS")
	f.StringVar(&cfg.User, "user", "", "login")
	f.StringVar(&cfg.Pass, "pass", "", "password")
	f.StringVar(&cfg.Mailbox, "mailbox", "INBOX", "mailbox to select")
	f.StringVar(&cfg.Search, "search", bench.SearchWord, "word for SEARCH TEXT")
	b.add(c)
	return c
}

func newBenchVisibilityCmd() *cobra.Command {
	var (
		b    benchCommon
		cfg  bench.VisibilityConfig
		size string
	)
	c := &cobra.Command{
		Use:   "visibility",
		Short: "Send through one server, IDLE on another: latency from 250 to EXISTS",
		Long: `IDLEs on --idle's INBOX and sends --messages messages one at a time over SMTP
through --send, waiting for each to be announced (EXISTS) before the next; the
latency is from the 250 to the EXISTS. --send and --idle may be the same
server or two nodes of a cluster.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "send", "idle", "user", "pass"); err != nil {
				return err
			}
			n, err := bench.ParseSize(size)
			if err != nil {
				return usagef(cmd, "--size: %v", err)
			}
			cfg.Size, cfg.Timeout, cfg.TLSInsecure, cfg.Progress = n, b.timeout, b.insecure, b.progress()
			ctx, cancel := benchContext(cmd)
			defer cancel()
			r, err := bench.RunVisibility(ctx, cfg)
			if err != nil {
				return err
			}
			if b.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "visibility: SMTP %s → IMAP IDLE %s, %d messages\n", r.Send, r.Idle, r.Messages)
			printLatency(w, "250 → EXISTS", r.Latency)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.SendAddr, "send", "", "SMTP server host:port to send through")
	f.BoolVar(&cfg.Submission, "submission", false, "send with STARTTLS + AUTH as --user")
	f.BoolVar(&cfg.SendTLS, "send-tls", false, "implicit TLS for SMTP")
	f.StringVar(&cfg.IdleAddr, "idle", "", "IMAP server host:port to IDLE on")
	f.BoolVar(&cfg.IdleTLS, "tls", false, "implicit TLS for IMAP (IMAPS)")
	f.BoolVar(&cfg.IdleStartTLS, "starttls", false, "STARTTLS for IMAP")
	f.StringVar(&cfg.User, "user", "", "IMAP login (and the default --to)")
	f.StringVar(&cfg.Pass, "pass", "", "password")
	f.StringVar(&cfg.To, "to", "", "recipient (default --user)")
	f.StringVar(&cfg.From, "from", "", "envelope sender (default "+bench.DefaultFrom+")")
	f.IntVar(&cfg.Messages, "messages", 200, "messages to send, one at a time")
	f.StringVar(&size, "size", "4KiB", "size of each message")
	b.add(c)
	return c
}

func newBenchPOP3Cmd() *cobra.Command {
	var (
		b   benchCommon
		cfg bench.POP3Config
	)
	c := &cobra.Command{
		Use:   "pop3",
		Short: "Time POP3 login, STAT, UIDL and RETR of every message (nothing is deleted)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "addr", "user", "pass"); err != nil {
				return err
			}
			cfg.Timeout, cfg.TLSInsecure, cfg.Progress = b.timeout, b.insecure, b.progress()
			ctx, cancel := benchContext(cmd)
			defer cancel()
			r, err := bench.RunPOP3(ctx, cfg)
			if err != nil {
				return err
			}
			if b.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "POP3 %s: %d messages, %d bytes retrieved\n", r.Addr, r.Messages, r.Bytes)
			printSteps(w, r.Steps)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Addr, "addr", "", "server host:port")
	f.BoolVar(&cfg.TLS, "tls", false, "implicit TLS (POP3S)")
	f.BoolVar(&cfg.StartTLS, "starttls", false, "upgrade with STLS")
	f.StringVar(&cfg.User, "user", "", "login")
	f.StringVar(&cfg.Pass, "pass", "", "password")
	b.add(c)
	return c
}

func newBenchProcsCmd() *cobra.Command {
	var (
		asJSON bool
		cfg    bench.ProcsConfig
		groups []string
		peak   string
		ready  string
		sample string
		dur    time.Duration
	)
	c := &cobra.Command{
		Use:   "procs",
		Short: "Watch processes' memory (VmRSS, VmHWM) and CPU time while a workload runs (Linux)",
		Long: `Samples the processes of each --group every --interval from /proc until
SIGTERM or SIGINT (or --duration), then prints per group the most processes
alive at once, the largest sum of VmRSS (and when), the largest sum of VmHWM,
VmHWM at the end, with --pss the largest sum of Pss (which counts pages shared
between the processes once), and the CPU time (user+system, with that of
children the group reaped), plus the busy CPU time of the whole machine (/proc/stat, less
this watcher's own). A group is NAME=SPEC[,SPEC...], SPEC pid:N or
exe:PATH-PREFIX (every process whose executable starts so, found at each
sample). With --messages N the JSON metrics give CPU per message, for
scripts/bench-peers.sh's report; --peak picks what its "peak RSS" is.

  raftmail bench procs --group node1=pid:4242 --ready /tmp/w.ready --json > w.json &
  (wait for /tmp/w.ready) ... run the workload ... kill -TERM %1; wait`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "group"); err != nil {
				return err
			}
			for _, s := range groups {
				g, err := bench.ParseProcGroup(s)
				if err != nil {
					return usagef(cmd, "--group: %v", err)
				}
				cfg.Groups = append(cfg.Groups, g)
			}
			switch peak {
			case "rss":
			case "hwm":
				cfg.PeakHWM = true
			default:
				return usagef(cmd, "--peak is rss or hwm, not %q", peak)
			}
			if sample != "" {
				f, err := os.Create(sample)
				if err != nil {
					return fmt.Errorf("--samples: %w", err)
				}
				defer f.Close()
				cfg.Samples = f
			}
			ctx, cancel := benchContext(cmd)
			defer cancel()
			if dur > 0 {
				var c2 context.CancelFunc
				ctx, c2 = context.WithTimeout(ctx, dur)
				defer c2()
			}
			var readyErr error
			r, err := bench.WatchProcs(ctx, cfg, func() {
				if ready != "" {
					readyErr = os.WriteFile(ready, nil, 0o644)
				}
			})
			if err != nil {
				return err
			}
			if readyErr != nil {
				return fmt.Errorf("--ready: %w", readyErr)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%-20s %5s %12s %8s %12s %12s %12s %9s\n", "group", "procs", "peak RSS", "at", "peak HWM", "HWM at end", "peak PSS", "CPU")
			for _, g := range r.Groups {
				pss := "-"
				if cfg.PSS {
					pss = fmt.Sprintf("%.1f MiB", g.PeakPSS)
				}
				fmt.Fprintf(w, "%-20s %5d %8.1f MiB %7.1fs %8.1f MiB %8.1f MiB %12s %8.2fs\n", g.Name, g.Procs, g.PeakRSS, g.PeakRSSAt, g.PeakHWM, g.HWM, pss, g.CPU)
			}
			fmt.Fprintf(w, "whole machine: %.2fs of CPU; %d samples over %.1fs\n", r.MachineCPU, r.Samples, r.Elapsed)
			for _, m := range r.Metrics {
				if m.Unit == "ms/msg" {
					fmt.Fprintf(w, "%s: %.3f ms\n", m.Name, m.Value)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&groups, "group", nil, "NAME=pid:N or NAME=exe:PREFIX (comma-separate several; repeat for more groups)")
	f.DurationVar(&cfg.Interval, "interval", 100*time.Millisecond, "time between samples")
	f.IntVar(&cfg.Messages, "messages", 0, "messages of the workload watched (adds CPU per message)")
	f.StringVar(&peak, "peak", "rss", `what the "peak RSS" metrics are: rss (largest sum of VmRSS) or hwm (largest sum of VmHWM)`)
	f.BoolVar(&cfg.PSS, "pss", false, "also sum each process's Pss (smaps_rollup: shared pages divided among their sharers)")
	f.StringVar(&ready, "ready", "", "file to create once the first sample is taken")
	f.StringVar(&sample, "samples", "", "file for every sample (seconds, then each group's VmRSS in MiB; tab-separated)")
	f.DurationVar(&dur, "duration", 0, "stop after this long (default: at SIGTERM or SIGINT)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}

func newBenchReportCmd() *cobra.Command {
	var cfg bench.ReportConfig
	c := &cobra.Command{
		Use:   "report",
		Short: "Write the side-by-side section of docs/benchmarks.md and its SVG chart from bench-peers results",
		Long: `Reads the results directory written by scripts/bench-peers.sh
(workloads.tsv, and <workload>/<a|b>-<round>.json from bench --json), takes the
median of each figure over the rounds, and writes the side-by-side table with
the B ÷ A ratio into --doc (between the bench-peers markers, appended if they
are missing) and a grouped bar chart into --svg.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "results"); err != nil {
				return err
			}
			rep, err := bench.LoadReport(cfg)
			if err != nil {
				return err
			}
			if cfg.Doc != "" {
				if err := rep.WriteDoc(cfg.Doc); err != nil {
					return err
				}
			}
			if cfg.SVG != "" {
				if err := os.WriteFile(cfg.SVG, rep.SVG(), 0o644); err != nil {
					return fmt.Errorf("write chart: %w", err)
				}
			}
			_, err = io.WriteString(cmd.OutOrStdout(), rep.Table())
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Results, "results", "", "results directory of scripts/bench-peers.sh")
	f.StringVar(&cfg.Doc, "doc", "", "markdown file to write the section into (e.g. docs/benchmarks.md)")
	f.StringVar(&cfg.SVG, "svg", "", "SVG chart to write (e.g. docs/bench-peers.svg)")
	f.StringVar(&cfg.SVGLink, "svg-link", "bench-peers.svg", "how the doc links the chart")
	f.StringVar(&cfg.NameA, "name-a", "Postfix + Dovecot", "name of server A")
	f.StringVar(&cfg.NameB, "name-b", "Raftmail (3 nodes)", "name of server B")
	f.StringVar(&cfg.Notes, "notes", "", "file with markdown to put under the table")
	return c
}

func printLatency(w io.Writer, what string, l bench.Latency) {
	fmt.Fprintf(w, "latency   %s: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%d samples)\n", what, l.P50, l.P90, l.P99, l.Max, l.Count)
}

func printErrors(w io.Writer, errs map[string]int) {
	if len(errs) == 0 {
		fmt.Fprintln(w, "errors    none")
		return
	}
	fmt.Fprintf(w, "errors    %s\n", countList(errs))
}

// countList is "250 × 7, 451 × 1", by code; "none" when empty.
func countList(counts map[string]int) string {
	if len(counts) == 0 {
		return "none"
	}
	codes := make([]string, 0, len(counts))
	for c := range counts {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s × %d", c, counts[c]))
	}
	return strings.Join(parts, ", ")
}

func printSteps(w io.Writer, steps []bench.Step) {
	for _, s := range steps {
		line := fmt.Sprintf("%-14s %9.1f ms", s.Name, s.Ms)
		if s.Messages > 0 {
			line += fmt.Sprintf("  %d messages", s.Messages)
		}
		if s.Bytes > 0 {
			line += fmt.Sprintf("  %.1f MB, %.1f MB/s", float64(s.Bytes)/1e6, s.MBps)
		}
		fmt.Fprintln(w, line)
	}
}
