package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// ReportConfig says where scripts/bench-peers.sh left its results and
// where the side-by-side report goes.
//
// Results holds workloads.tsv (one workload a line: id, title, command
// for A, command for B, tab-separated) and, per workload, <id>/a-<n>.json
// and <id>/b-<n>.json: one `raftmail bench ... --json` output (or any JSON
// object with a "metrics" array of Metric) per round n. More figures of
// the same round may come in <id>/a-<n>.<what>.json (e.g. a-1.procs.json
// from `raftmail bench procs`); their rows follow those of a-<n>.json.
type ReportConfig struct {
	Results string
	// Doc is the markdown file whose section between DocBegin and DocEnd
	// is replaced (appended if missing); "" = none.
	Doc string
	// SVG is where the chart goes; SVGLink is how Doc links it.
	SVG, SVGLink string
	// NameA and NameB name the two servers.
	NameA, NameB string
	// Notes is a markdown file put under the table; "" = none.
	Notes string
}

// Markers around the generated section of the doc.
const (
	DocBegin = "<!-- bench-peers:begin (written by `make bench-peers`; edits here are overwritten) -->"
	DocEnd   = "<!-- bench-peers:end -->"
)

// Report is the side-by-side figures of two servers.
type Report struct {
	cfg       ReportConfig
	workloads []workload
	when      time.Time
}

type workload struct {
	id, title, cmdA, cmdB string
	rows                  []row
}

// row is one figure: its values over the rounds for A and for B.
type row struct {
	metric Metric // Name, Unit, Higher
	a, b   []float64
}

// LoadReport reads the results directory.
func LoadReport(cfg ReportConfig) (*Report, error) {
	if cfg.NameA == "" {
		cfg.NameA = "A"
	}
	if cfg.NameB == "" {
		cfg.NameB = "B"
	}
	f, err := os.Open(filepath.Join(cfg.Results, "workloads.tsv"))
	if err != nil {
		return nil, fmt.Errorf("bench: report: %w", err)
	}
	defer f.Close()
	rep := &Report{cfg: cfg, when: time.Now()}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 2 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		for len(fs) < 4 {
			fs = append(fs, "")
		}
		w := workload{id: fs[0], title: fs[1], cmdA: fs[2], cmdB: fs[3]}
		if err := w.load(filepath.Join(cfg.Results, w.id)); err != nil {
			return nil, err
		}
		rep.workloads = append(rep.workloads, w)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: report: %w", err)
	}
	return rep, nil
}

func (w *workload) load(dir string) error {
	index := map[string]int{}
	for _, side := range []string{"a", "b"} {
		files, _ := filepath.Glob(filepath.Join(dir, side+"-*.json"))
		// a-<n>.json first, then a-<n>.<what>.json, so that the
		// workload's own figures lead the table.
		extra := func(fn string) bool { return strings.Count(filepath.Base(fn), ".") > 1 }
		slices.SortFunc(files, func(x, y string) int {
			if ex, ey := extra(x), extra(y); ex != ey {
				if ex {
					return 1
				}
				return -1
			}
			return strings.Compare(x, y)
		})
		for _, fn := range files {
			data, err := os.ReadFile(fn)
			if err != nil {
				return fmt.Errorf("bench: report: %w", err)
			}
			var res struct{ Metrics []Metric }
			if err := json.Unmarshal(data, &res); err != nil {
				return fmt.Errorf("bench: report: %s: %w", fn, err)
			}
			for _, m := range res.Metrics {
				if strings.HasSuffix(m.Name, "p90") {
					continue // p50, p99 and max say enough in a table
				}
				key := m.Name + "\x00" + m.Unit
				i, ok := index[key]
				if !ok {
					i = len(w.rows)
					index[key] = i
					w.rows = append(w.rows, row{metric: m})
				}
				if side == "a" {
					w.rows[i].a = append(w.rows[i].a, m.Value)
				} else {
					w.rows[i].b = append(w.rows[i].b, m.Value)
				}
			}
		}
	}
	return nil
}

// median of vs, or NaN-free false for none.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// cell is "median (min–max)" over the rounds, or "—".
func cell(vs []float64) string {
	m, ok := median(vs)
	if !ok {
		return "—"
	}
	if len(vs) == 1 || slices.Min(vs) == slices.Max(vs) {
		return fmtNum(m)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(m), fmtNum(slices.Min(vs)), fmtNum(slices.Max(vs)))
}

func (r row) ratio() string {
	a, okA := median(r.a)
	b, okB := median(r.b)
	if !okA || !okB || a == 0 {
		return "—"
	}
	q := b / a
	better := (q > 1) == r.metric.Higher
	if q == 1 {
		return "1.00"
	}
	mark := " (worse)"
	if better {
		mark = " (better)"
	}
	return fmt.Sprintf("%.2f%s", q, mark)
}

func (r row) unit() string {
	if r.metric.Higher {
		return r.metric.Unit + " ↑"
	}
	return r.metric.Unit + " ↓"
}

// Table is the markdown table: one row per figure, medians over the
// rounds with their range, and the B ÷ A ratio.
func (rep *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| workload | figure | unit | %s | %s | %s ÷ %s |\n| --- | --- | --- | --- | --- | --- |\n",
		rep.cfg.NameA, rep.cfg.NameB, shortName(rep.cfg.NameB), shortName(rep.cfg.NameA))
	for _, w := range rep.workloads {
		for i, r := range w.rows {
			title := ""
			if i == 0 {
				title = w.title
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", title, r.metric.Name, r.unit(), cell(r.a), cell(r.b), r.ratio())
		}
	}
	return b.String()
}

func shortName(s string) string {
	if i := strings.Index(s, " ("); i > 0 {
		return s[:i]
	}
	return s
}

// machine describes this host: cores, CPU model, memory, kernel.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.1f GiB memory", float64(kb)/(1<<20))
		}
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			load = fmt.Sprintf(", load average %s %s %s at the end of the run", f[0], f[1], f[2])
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), %s%s, %s/%s, %s%s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version(), load)
}

// Section is the generated markdown, markers included.
func (rep *Report) Section() string {
	var b strings.Builder
	b.WriteString(DocBegin + "\n")
	fmt.Fprintf(&b, "## Side by side: %s and %s (`make bench-peers`)\n\n", rep.cfg.NameA, rep.cfg.NameB)
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", rep.when.UTC().Format("2006-01-02 15:04 MST"), machine())
	b.WriteString("Each cell is the median over the rounds, with the range in parentheses; " +
		"↑ means higher is better, ↓ lower. The ratio is " + shortName(rep.cfg.NameB) + " ÷ " + shortName(rep.cfg.NameA) + " of the medians.\n\n")
	b.WriteString(rep.Table())
	if rep.cfg.SVGLink != "" {
		fmt.Fprintf(&b, "\n![throughput and p99 latency side by side](%s)\n", rep.cfg.SVGLink)
	}
	if rep.cfg.Notes != "" {
		notes, err := os.ReadFile(rep.cfg.Notes)
		if err == nil {
			b.WriteString("\n" + strings.TrimSpace(string(notes)) + "\n")
		}
	}
	b.WriteString("\nThe commands, per round (A then B):\n\n")
	for _, w := range rep.workloads {
		if w.cmdA == "" && w.cmdB == "" {
			continue
		}
		fmt.Fprintf(&b, "- %s\n", w.title)
		for _, c := range []string{w.cmdA, w.cmdB} {
			if c != "" {
				fmt.Fprintf(&b, "  - `%s`\n", c)
			}
		}
	}
	b.WriteString(DocEnd + "\n")
	return b.String()
}

// WriteDoc replaces the generated section of path, or appends it.
func (rep *Report) WriteDoc(path string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bench: report: %w", err)
	}
	s := string(old)
	sec := rep.Section()
	i, j := strings.Index(s, DocBegin), strings.Index(s, DocEnd)
	if i >= 0 && j > i {
		s = s[:i] + sec + strings.TrimPrefix(s[j+len(DocEnd):], "\n")
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + sec
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// SVG is a grouped bar chart, one panel per kind of figure (SMTP accept
// rate, p99 latency, read throughput, CPU per message when measured), two
// bars per workload. Each group is
// scaled to its larger bar and labelled with both values, so workloads of
// very different magnitudes stay readable.
func (rep *Report) SVG() []byte {
	type group struct {
		label string
		a, b  float64
		unit  string
	}
	type panel struct {
		title  string
		groups []group
	}
	pick := func(title string, match func(Metric) bool) panel {
		p := panel{title: title}
		for _, w := range rep.workloads {
			for _, r := range w.rows {
				if !match(r.metric) {
					continue
				}
				a, okA := median(r.a)
				b, okB := median(r.b)
				if !okA || !okB {
					continue
				}
				p.groups = append(p.groups, group{label: w.id, a: a, b: b, unit: r.metric.Unit})
			}
		}
		return p
	}
	panels := []panel{
		pick("SMTP accept rate (msgs/s, higher is better)", func(m Metric) bool { return m.Unit == "msgs/s" }),
		pick("p99 latency (ms, lower is better)", func(m Metric) bool { return strings.HasSuffix(m.Name, "p99") }),
		pick("read throughput (MB/s, higher is better)", func(m Metric) bool { return m.Unit == "MB/s" && !strings.Contains(m.Name, "header") }),
		pick("CPU per message, whole machine (ms, lower is better)", func(m Metric) bool { return m.Name == "CPU per message, whole machine" }),
	}
	const (
		groupW = 96
		barW   = 30
		plotH  = 170
		top    = 48
		left   = 20
	)
	panels = slices.DeleteFunc(panels, func(p panel) bool { return len(p.groups) == 0 && strings.HasPrefix(p.title, "CPU") })
	// A panel is as wide as its bars, or as its bold title (about 7 px a
	// character at 11 px), whichever is wider.
	panelW := func(p panel) int { return max(max(len(p.groups), 2)*groupW, len([]rune(p.title))*7) }
	width := left
	for _, p := range panels {
		width += panelW(p) + 30
	}
	height := top + plotH + 70
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<rect x="%d" y="8" width="12" height="12" fill="#9aa5b1"/><text x="%d" y="18">%s</text>`+"\n", left, left+16, html.EscapeString(rep.cfg.NameA))
	fmt.Fprintf(&b, `<rect x="%d" y="8" width="12" height="12" fill="#2f6fb3"/><text x="%d" y="18">%s</text>`+"\n", left+200, left+216, html.EscapeString(rep.cfg.NameB))
	fmt.Fprintf(&b, `<text x="%d" y="18" fill="#555">bars scaled per group; values are medians</text>`+"\n", left+400)
	x := left
	base := top + plotH
	for _, p := range panels {
		pw := panelW(p)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x, top-8, html.EscapeString(p.title))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x, base, x+pw, base)
		for i, g := range p.groups {
			gx := x + i*groupW + 12
			m := max(g.a, g.b)
			for j, v := range []float64{g.a, g.b} {
				h := 0
				if m > 0 {
					h = max(int(v/m*float64(plotH-20)), 1)
				}
				color := "#9aa5b1"
				if j == 1 {
					color = "#2f6fb3"
				}
				bx := gx + j*(barW+4)
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", bx, base-h, barW, h, color)
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", bx+barW/2, base-h-3, fmtNum(v))
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", gx+barW+2, base+16, html.EscapeString(g.label))
		}
		x += pw + 30
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">%s, %s</text>`+"\n", left, height-14, html.EscapeString(rep.when.UTC().Format("2006-01-02")), html.EscapeString(machine()))
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
