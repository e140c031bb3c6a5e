package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcGroup(t *testing.T) {
	g, err := ParseProcGroup("Postfix processes=exe:/usr/lib/postfix/, pid:42,exe:/usr/sbin/postfix")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "Postfix processes" || len(g.PIDs) != 1 || g.PIDs[0] != 42 ||
		strings.Join(g.ExePrefixes, " ") != "/usr/lib/postfix/ /usr/sbin/postfix" {
		t.Errorf("%+v", g)
	}
	for _, bad := range []string{"", "node1", "=pid:1", "n=", "n=pid:x", "n=pid:0", "n=exe:relative", "n=cmd:x"} {
		if _, err := ParseProcGroup(bad); err == nil {
			t.Errorf("ParseProcGroup(%q): no error", bad)
		}
	}
}

// fakeProc is a proc file system in a directory: /stat and, per process,
// status and stat (and exe, a symbolic link).
type fakeProc struct {
	t   *testing.T
	dir string
}

func (p fakeProc) write(name, content string) {
	p.t.Helper()
	fn := filepath.Join(p.dir, name)
	if err := os.MkdirAll(filepath.Dir(fn), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(fn, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// machine sets the busy and idle ticks of /stat.
func (p fakeProc) machine(user, system, idle int) {
	p.write("stat", fmt.Sprintf("cpu  %d 0 %d %d 5 0 0 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", user, system, idle))
}

// proc sets a process: its executable, memory (KiB) and CPU ticks.
func (p fakeProc) proc(pid int, exe string, rss, hwm, utime, stime, cutime int) {
	p.t.Helper()
	d := strconv.Itoa(pid)
	p.write(d+"/status", fmt.Sprintf("Name:\tx\nVmPeak:\t 9999 kB\nVmHWM:\t %d kB\nVmRSS:\t %d kB\nThreads:\t1\n", hwm, rss))
	// Pss is half of RSS, as if every page were shared with one other
	// process.
	p.write(d+"/smaps_rollup", fmt.Sprintf("00400000-7fff0000 ---p 00000000 00:00 0 [rollup]\nRss:  %d kB\nPss:  %d kB\nPss_Anon: 1 kB\n", rss, rss/2))
	// A command name with spaces and parentheses, as the kernel allows.
	p.write(d+"/stat", fmt.Sprintf("%d (a) b (c) S 1 1 1 0 -1 0 0 0 0 0 %d %d %d 0 20 0 1 0 1 1 1\n", pid, utime, stime, cutime))
	if exe != "" {
		link := filepath.Join(p.dir, d, "exe")
		_ = os.Remove(link)
		if err := os.Symlink(exe, link); err != nil {
			p.t.Fatal(err)
		}
	}
}

// TestWatchProcs: memory peaks, CPU time with processes that come and go,
// the machine's busy time, and the metrics, over two samples of a fake
// /proc.
func TestWatchProcs(t *testing.T) {
	p := fakeProc{t: t, dir: t.TempDir()}
	p.machine(1000, 500, 9000)
	p.proc(10, "/usr/lib/postfix/sbin/master", 4000, 5000, 10, 10, 0)
	p.proc(11, "/usr/lib/postfix/sbin/smtpd", 8000, 9000, 50, 50, 0)
	p.proc(20, "/usr/sbin/dovecot", 3000, 3000, 5, 5, 0)
	p.proc(30, "/usr/bin/other", 100000, 100000, 0, 0, 0)
	p.proc(40, "", 20000, 30000, 100, 0, 0) // a pid group's process
	ctx, cancel := context.WithCancel(context.Background())
	var samples bytes.Buffer
	cfg := ProcsConfig{
		Groups: []ProcGroup{
			{Name: "postfix", ExePrefixes: []string{"/usr/lib/postfix/"}},
			{Name: "dovecot", ExePrefixes: []string{"/usr/sbin/dovecot"}},
			{Name: "node1", PIDs: []int{40}},
		},
		Interval: time.Hour, // two samples: the first and the one at the end
		Messages: 100,
		Samples:  &samples,
		Proc:     p.dir,
	}
	r, err := WatchProcs(ctx, cfg, func() {
		// Between the samples: smtpd uses 20 more ticks, exits and is
		// reaped by master (its 120 ticks move to master's cutime); a
		// new smtpd starts and uses 30; dovecot's peak grows; node1
		// uses 200 ticks; the machine is busy for 600 ticks.
		_ = os.RemoveAll(filepath.Join(p.dir, "11"))
		p.proc(10, "/usr/lib/postfix/sbin/master", 4000, 5000, 10, 10, 120)
		p.proc(12, "/usr/lib/postfix/sbin/smtpd", 6000, 7000, 30, 0, 0)
		p.proc(20, "/usr/sbin/dovecot", 2000, 6000, 5, 5, 0)
		p.proc(40, "", 10000, 30000, 300, 0, 0)
		p.machine(1400, 700, 9900)
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Samples != 2 || len(r.Groups) != 3 {
		t.Fatalf("%d samples, %d groups", r.Samples, len(r.Groups))
	}
	type want struct {
		procs             int
		peakRSS, peakHWM  float64 // MiB
		hwm, cpu          float64
		peakAtFirstSample bool
	}
	for i, w := range []want{
		{procs: 2, peakRSS: 12000.0 / 1024, peakHWM: 14000.0 / 1024, hwm: 12000.0 / 1024, cpu: 0.50, peakAtFirstSample: true},
		{procs: 1, peakRSS: 3000.0 / 1024, peakHWM: 6000.0 / 1024, hwm: 6000.0 / 1024, cpu: 0, peakAtFirstSample: true},
		{procs: 1, peakRSS: 20000.0 / 1024, peakHWM: 30000.0 / 1024, hwm: 30000.0 / 1024, cpu: 2.00, peakAtFirstSample: true},
	} {
		g := r.Groups[i]
		if g.Procs != w.procs || g.PeakRSS != w.peakRSS || g.PeakHWM != w.peakHWM || g.HWM != w.hwm || fmt.Sprintf("%.2f", g.CPU) != fmt.Sprintf("%.2f", w.cpu) {
			t.Errorf("group %s: %+v, want %+v", g.Name, g, w)
		}
		if w.peakAtFirstSample && g.PeakRSSAt > 0.5 {
			t.Errorf("group %s: peak at %.3fs, want at the first sample", g.Name, g.PeakRSSAt)
		}
	}
	// The machine: 600 busy ticks less this process's own CPU time over
	// the watch (a few at most).
	if r.MachineCPU > 6.0 || r.MachineCPU < 5.5 {
		t.Errorf("machine CPU %.2fs, want about 6", r.MachineCPU)
	}
	if r.PeakRSS != (12000+3000+20000)/1024.0 || r.PeakHWM != (12000+6000+30000)/1024.0 {
		t.Errorf("all groups: peak RSS %.2f, peak HWM %.2f MiB", r.PeakRSS, r.PeakHWM)
	}
	var names []string
	for _, m := range r.Metrics {
		names = append(names, fmt.Sprintf("%s=%.2f %s", m.Name, m.Value, m.Unit))
	}
	wantMetrics := []string{
		fmt.Sprintf("CPU per message, whole machine=%.2f ms/msg", r.MachineCPU*10),
		"CPU per message, postfix=5.00 ms/msg", "CPU per message, dovecot=0.00 ms/msg", "CPU per message, node1=20.00 ms/msg",
		"peak RSS, all processes=34.18 MiB", "peak RSS, postfix=11.72 MiB", "peak RSS, dovecot=2.93 MiB", "peak RSS, node1=19.53 MiB",
	}
	if strings.Join(names, "; ") != strings.Join(wantMetrics, "; ") {
		t.Errorf("metrics:\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(wantMetrics, "\n"))
	}
	lines := strings.Split(strings.TrimSpace(samples.String()), "\n")
	if len(lines) != 3 || lines[0] != "t_s\tpostfix_rss_mib\tdovecot_rss_mib\tnode1_rss_mib" ||
		!strings.HasPrefix(lines[1], "0.000\t11.7\t2.9\t19.5") || !strings.HasSuffix(lines[2], "\t9.8\t2.0\t9.8") {
		t.Errorf("samples:\n%s", samples.String())
	}

	// With PeakHWM the peak metrics are the largest sums of VmHWM; with
	// PSS, the largest sums of Pss follow.
	cfg.PeakHWM, cfg.PSS, cfg.Messages, cfg.Samples = true, true, 0, nil
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	r, err = WatchProcs(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, m := range r.Metrics {
		names = append(names, fmt.Sprintf("%s=%.0f KiB", m.Name, m.Value*1024))
	}
	wantMetrics = []string{"peak RSS, all processes=48000 KiB", "peak PSS, all processes=11000 KiB",
		"peak RSS, postfix=12000 KiB", "peak PSS, postfix=5000 KiB", "peak RSS, dovecot=6000 KiB", "peak PSS, dovecot=1000 KiB",
		"peak RSS, node1=30000 KiB", "peak PSS, node1=5000 KiB"}
	if strings.Join(names, "; ") != strings.Join(wantMetrics, "; ") {
		t.Errorf("hwm and pss metrics:\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(wantMetrics, "\n"))
	}
}

// TestWatchProcsSelf watches this test process on the real /proc, found
// both by pid and by executable.
func TestWatchProcsSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r, err := WatchProcs(ctx, ProcsConfig{Groups: []ProcGroup{
		{Name: "by pid", PIDs: []int{os.Getpid()}},
		{Name: "by exe", ExePrefixes: []string{exe}},
	}, Interval: 20 * time.Millisecond, PSS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Samples < 3 {
		t.Errorf("%d samples in 300 ms at 20 ms", r.Samples)
	}
	for _, g := range r.Groups {
		if g.Procs < 1 || g.PeakRSS <= 0 || g.HWM < g.PeakRSS/2 || g.PeakPSS <= 0 || g.PeakPSS > g.PeakRSS {
			t.Errorf("%+v", g)
		}
	}
}

func TestWatchProcsNoProc(t *testing.T) {
	_, err := WatchProcs(context.Background(), ProcsConfig{Groups: []ProcGroup{{Name: "x", PIDs: []int{1}}}, Proc: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "stat") {
		t.Errorf("err = %v", err)
	}
}
