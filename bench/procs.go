package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc (USER_HZ, sysconf's
// _SC_CLK_TCK): 100 on every Linux architecture Go supports.
const userHZ = 100

// ProcGroup is a set of processes watched together: the processes PIDs,
// and every process whose executable's path starts with one of
// ExePrefixes (found anew at each sample, so processes that start later
// are counted from then on).
type ProcGroup struct {
	Name        string
	PIDs        []int
	ExePrefixes []string
}

// ParseProcGroup reads NAME=SPEC[,SPEC...], where SPEC is pid:N or
// exe:PATH-PREFIX: "node1=pid:4242", "Postfix=exe:/usr/lib/postfix/".
func ParseProcGroup(s string) (ProcGroup, error) {
	name, specs, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || specs == "" {
		return ProcGroup{}, fmt.Errorf("bench: bad process group %q: want NAME=pid:N or NAME=exe:PREFIX", s)
	}
	g := ProcGroup{Name: name}
	for _, sp := range strings.Split(specs, ",") {
		kind, v, _ := strings.Cut(strings.TrimSpace(sp), ":")
		switch kind {
		case "pid":
			pid, err := strconv.Atoi(v)
			if err != nil || pid <= 0 {
				return ProcGroup{}, fmt.Errorf("bench: bad process group %q: %q is not a process id", s, v)
			}
			g.PIDs = append(g.PIDs, pid)
		case "exe":
			if !strings.HasPrefix(v, "/") {
				return ProcGroup{}, fmt.Errorf("bench: bad process group %q: exe:%s is not an absolute path", s, v)
			}
			g.ExePrefixes = append(g.ExePrefixes, v)
		default:
			return ProcGroup{}, fmt.Errorf("bench: bad process group %q: %q is neither pid:N nor exe:PREFIX", s, sp)
		}
	}
	return g, nil
}

// ProcsConfig is a watch of processes' memory and CPU time while a
// workload runs (Linux: it reads /proc).
type ProcsConfig struct {
	// Groups are the process sets; at least one.
	Groups []ProcGroup
	// Interval between samples; 0 = 100 ms.
	Interval time.Duration
	// Messages, when positive, adds CPU time per message to the metrics
	// (the watch spans a workload of that many messages).
	Messages int
	// PeakHWM makes the "peak RSS" metrics the largest sampled sum of the
	// processes' own peaks (VmHWM), which misses no short spike but adds
	// up peaks of different moments; otherwise they are the largest
	// sampled sum of VmRSS.
	PeakHWM bool
	// PSS also sums each process's proportional set size (Pss in
	// smaps_rollup: its private pages plus its share of the pages it
	// shares with others), which counts the memory of a server of many
	// processes once instead of once per process, and adds "peak PSS"
	// metrics. Reading it costs the kernel a walk of each process's page
	// tables.
	PSS bool
	// Samples, if not nil, receives every sample as a line of
	// tab-separated values: seconds since the start, then each group's
	// VmRSS in MiB; a header line first.
	Samples io.Writer
	// Proc is the proc file system's mount point; "" = /proc.
	Proc string
}

// ProcsResult is what a watch measured. Memory is in MiB, CPU in
// seconds.
type ProcsResult struct {
	Kind     string  `json:"kind"` // "procs"
	Interval float64 `json:"interval_ms"`
	Samples  int     `json:"samples"`
	Elapsed  float64 `json:"elapsed_s"`
	Messages int     `json:"messages,omitempty"`
	// MachineCPU is the busy CPU time of the whole machine over the
	// watch (user, nice, system, irq and softirq in /proc/stat: not idle,
	// iowait or steal), less the watcher's own.
	MachineCPU float64 `json:"machine_cpu_s"`
	// PeakRSS, PeakHWM and PeakPSS (with PSS) are the largest sampled
	// sums over all groups.
	PeakRSS float64            `json:"peak_rss_mib"`
	PeakHWM float64            `json:"peak_hwm_mib"`
	PeakPSS float64            `json:"peak_pss_mib,omitempty"`
	Groups  []ProcsGroupResult `json:"groups"`
	Metrics []Metric           `json:"metrics"`
}

// ProcsGroupResult is one group's figures.
type ProcsGroupResult struct {
	Name string `json:"name"`
	// Procs is the most processes of the group alive at one sample.
	Procs int `json:"procs"`
	// PeakRSS is the largest sampled sum of VmRSS, at PeakRSSAt seconds
	// from the start.
	PeakRSS   float64 `json:"peak_rss_mib"`
	PeakRSSAt float64 `json:"peak_rss_at_s"`
	// PeakHWM is the largest sampled sum of VmHWM; HWM the sum at the
	// last sample.
	PeakHWM float64 `json:"peak_hwm_mib"`
	HWM     float64 `json:"hwm_mib"`
	// PeakPSS is the largest sampled sum of Pss (with PSS).
	PeakPSS float64 `json:"peak_pss_mib,omitempty"`
	// CPU is the group's user and system time over the watch, including
	// that of processes reaped meanwhile by a process of the group (a
	// process reaped by one outside the group takes its time along).
	CPU float64 `json:"cpu_s"`
}

// procSample is one group at one moment.
type procSample struct {
	procs         int
	rss, hwm, pss int64 // KiB
	ticks         int64 // utime+stime+cutime+cstime
}

// WatchProcs samples the groups every Interval until ctx is done, then
// once more, and returns the figures. It calls ready, if not nil, after
// the first sample. It fails only when the first sample cannot be taken
// (no /proc).
func WatchProcs(ctx context.Context, cfg ProcsConfig, ready func()) (*ProcsResult, error) {
	if len(cfg.Groups) == 0 {
		return nil, errors.New("bench: no process group to watch")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	w := &procWatch{cfg: cfg, res: &ProcsResult{Kind: "procs", Interval: ms(cfg.Interval), Messages: cfg.Messages}}
	w.res.Groups = make([]ProcsGroupResult, len(cfg.Groups))
	for i, g := range cfg.Groups {
		w.res.Groups[i].Name = g.Name
	}
	machine0, err := w.machineTicks()
	if err != nil {
		return nil, err
	}
	self0, _ := readTicks(filepath.Join(cfg.Proc, "self"))
	w.start = time.Now()
	first := w.sample()
	if cfg.Samples != nil {
		fmt.Fprint(cfg.Samples, "t_s")
		for _, g := range cfg.Groups {
			fmt.Fprintf(cfg.Samples, "\t%s_rss_mib", strings.ReplaceAll(g.Name, " ", "_"))
		}
		fmt.Fprintln(cfg.Samples)
		w.writeSample(0, first)
	}
	if ready != nil {
		ready()
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	last := first
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		last = w.sample()
		if cfg.Samples != nil {
			w.writeSample(time.Since(w.start).Seconds(), last)
		}
	}
	r := w.res
	r.Elapsed = time.Since(w.start).Seconds()
	machine1, _ := w.machineTicks()
	self1, _ := readTicks(filepath.Join(cfg.Proc, "self"))
	r.MachineCPU = max(float64((machine1-machine0)-(self1-self0)), 0) / userHZ
	for i := range r.Groups {
		r.Groups[i].CPU = max(float64(last[i].ticks-first[i].ticks), 0) / userHZ
		r.Groups[i].HWM = mib(last[i].hwm)
	}
	r.Metrics = w.metrics()
	return r, nil
}

type procWatch struct {
	cfg   ProcsConfig
	res   *ProcsResult
	start time.Time
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// sample reads every group once and folds it into the peaks.
func (w *procWatch) sample() []procSample {
	at := time.Since(w.start).Seconds()
	w.res.Samples++
	pids := make([][]int, len(w.cfg.Groups))
	scan := false
	for i, g := range w.cfg.Groups {
		pids[i] = append(pids[i], g.PIDs...)
		scan = scan || len(g.ExePrefixes) > 0
	}
	if scan {
		ents, _ := os.ReadDir(w.cfg.Proc)
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			exe, err := os.Readlink(filepath.Join(w.cfg.Proc, e.Name(), "exe"))
			if err != nil {
				continue // gone, or a kernel thread
			}
			for i, g := range w.cfg.Groups {
				for _, p := range g.ExePrefixes {
					if strings.HasPrefix(exe, p) {
						pids[i] = append(pids[i], pid)
						break
					}
				}
			}
		}
	}
	out := make([]procSample, len(w.cfg.Groups))
	var rssAll, hwmAll, pssAll int64
	for i := range w.cfg.Groups {
		s := &out[i]
		for _, pid := range pids[i] {
			dir := filepath.Join(w.cfg.Proc, strconv.Itoa(pid))
			rss, hwm, err := readMem(dir)
			if err != nil {
				continue // gone
			}
			ticks, _ := readTicks(dir)
			if w.cfg.PSS {
				pss, _ := readPSS(dir)
				s.pss += pss
			}
			s.procs++
			s.rss += rss
			s.hwm += hwm
			s.ticks += ticks
		}
		g := &w.res.Groups[i]
		g.Procs = max(g.Procs, s.procs)
		if v := mib(s.rss); v > g.PeakRSS {
			g.PeakRSS, g.PeakRSSAt = v, at
		}
		g.PeakHWM = max(g.PeakHWM, mib(s.hwm))
		g.PeakPSS = max(g.PeakPSS, mib(s.pss))
		rssAll += s.rss
		hwmAll += s.hwm
		pssAll += s.pss
	}
	w.res.PeakRSS = max(w.res.PeakRSS, mib(rssAll))
	w.res.PeakHWM = max(w.res.PeakHWM, mib(hwmAll))
	w.res.PeakPSS = max(w.res.PeakPSS, mib(pssAll))
	return out
}

func (w *procWatch) writeSample(at float64, s []procSample) {
	fmt.Fprintf(w.cfg.Samples, "%.3f", at)
	for _, g := range s {
		fmt.Fprintf(w.cfg.Samples, "\t%.1f", mib(g.rss))
	}
	fmt.Fprintln(w.cfg.Samples)
}

// machineTicks is the busy time of every CPU from /proc/stat.
func (w *procWatch) machineTicks() (int64, error) {
	f, err := os.Open(filepath.Join(w.cfg.Proc, "stat"))
	if err != nil {
		return 0, fmt.Errorf("bench: watch processes: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq [steal guest guest_nice];
		// guest time is already inside user.
		var busy int64
		for _, i := range []int{1, 2, 3, 6, 7} {
			v, _ := strconv.ParseInt(fs[i], 10, 64)
			busy += v
		}
		return busy, nil
	}
	return 0, fmt.Errorf("bench: watch processes: no cpu line in %s/stat", w.cfg.Proc)
}

// readMem reads VmRSS and VmHWM (KiB) from dir/status.
func readMem(dir string) (rss, hwm int64, err error) {
	data, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(k) {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		f := bytes.Fields(v)
		if len(f) > 0 {
			*dst, _ = strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	return rss, hwm, nil
}

// readPSS reads Pss (KiB) from dir/smaps_rollup.
func readPSS(dir string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, "smaps_rollup"))
	if err != nil {
		return 0, err
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("Pss:")); ok {
			if f := bytes.Fields(v); len(f) > 0 {
				return strconv.ParseInt(string(f[0]), 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("bench: %s/smaps_rollup: no Pss", dir)
}

// readTicks reads utime+stime+cutime+cstime from dir/stat.
func readTicks(dir string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// from the last ')'. After it come state (field 3) ... utime (14),
	// stime (15), cutime (16), cstime (17).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: %s/stat: no command name", dir)
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 15 {
		return 0, fmt.Errorf("bench: %s/stat: %d fields", dir, len(f))
	}
	var t int64
	for _, s := range f[11:15] {
		v, _ := strconv.ParseInt(string(s), 10, 64)
		t += v
	}
	return t, nil
}

// metrics are the figures the side-by-side report reads: CPU time per
// message (whole machine, then each group) when Messages is set, then
// the peak memory (RSS, and PSS when measured) of all groups together
// (with more than one) and of each.
func (w *procWatch) metrics() []Metric {
	r := w.res
	var ms []Metric
	if n := float64(r.Messages); n > 0 {
		ms = append(ms, Metric{Name: "CPU per message, whole machine", Unit: "ms/msg", Value: r.MachineCPU * 1000 / n})
		for _, g := range r.Groups {
			ms = append(ms, Metric{Name: "CPU per message, " + g.Name, Unit: "ms/msg", Value: g.CPU * 1000 / n})
		}
	}
	peak := func(rss, hwm float64) float64 {
		if w.cfg.PeakHWM {
			return hwm
		}
		return rss
	}
	mem := func(name string, rss, hwm, pss float64) {
		ms = append(ms, Metric{Name: "peak RSS, " + name, Unit: "MiB", Value: peak(rss, hwm)})
		if w.cfg.PSS {
			ms = append(ms, Metric{Name: "peak PSS, " + name, Unit: "MiB", Value: pss})
		}
	}
	if len(r.Groups) > 1 {
		mem("all processes", r.PeakRSS, r.PeakHWM, r.PeakPSS)
	}
	for _, g := range r.Groups {
		mem(g.Name, g.PeakRSS, g.PeakHWM, g.PeakPSS)
	}
	return ms
}
