package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Run is one scenario's outcome: its history, the results of Check, and
// its summary.
type Run struct {
	History History
	Results []CheckResult
	Summary Summary
}

// WriteReport writes the report of runs into dir (created if needed):
//
//	report.json                the summaries, indented
//	summary.txt                one Summary.Line per run
//	<scenario>.history.jsonl   each run's history (WriteJSONL), to check again later
//	report.html                one self-contained page: verdicts, examples, counts and a timeline per run
//
// A scenario name is made safe for a file name (anything but letters,
// digits, '.', '-' and '_' becomes '_'); a name used twice gets the seed,
// then a number, appended.
func WriteReport(dir string, runs []Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("chaos: report: %w", err)
	}
	sums := make([]Summary, len(runs))
	var lines strings.Builder
	for i, r := range runs {
		sums[i] = r.Summary
		lines.WriteString(r.Summary.Line())
		lines.WriteByte('\n')
	}
	js, err := json.MarshalIndent(sums, "", "  ")
	if err != nil {
		return fmt.Errorf("chaos: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("chaos: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(lines.String()), 0o644); err != nil {
		return fmt.Errorf("chaos: report: %w", err)
	}
	files := historyFiles(runs)
	for i, r := range runs {
		if err := WriteFile(filepath.Join(dir, files[i]), r.History); err != nil {
			return fmt.Errorf("chaos: report: history of %q: %w", r.History.Scenario, err)
		}
	}
	var page bytes.Buffer
	if err := renderHTML(&page, runs, files); err != nil {
		return fmt.Errorf("chaos: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.html"), page.Bytes(), 0o644); err != nil {
		return fmt.Errorf("chaos: report: %w", err)
	}
	return nil
}

// historyFiles names each run's history file, unique within the report.
func historyFiles(runs []Run) []string {
	used := make(map[string]bool)
	names := make([]string, len(runs))
	for i, r := range runs {
		base := safeName(r.History.Scenario)
		name := base + ".history.jsonl"
		if used[name] {
			name = fmt.Sprintf("%s-seed%d.history.jsonl", base, r.History.Seed)
		}
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s-seed%d-%d.history.jsonl", base, r.History.Seed, n)
		}
		used[name] = true
		names[i] = name
	}
	return names
}

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "scenario" + string(b)
	}
	return string(b)
}

// ---- HTML ----

type pageView struct {
	Scenarios []scenarioView
}

type scenarioView struct {
	Anchor      string
	Name        string
	Seed        int64
	Pass        bool
	Line        string
	HistoryFile string
	Counts      []kv
	Results     []CheckResult
	Faults      []faultView
	Windows     []windowView
	Charts      []chartView
}

// windowView is one node's unavailability in one phase (see Window).
type windowView struct{ Node, Phase, Fault, Side, First, Worst, Bound, Verdict string }

type kv struct{ K, V string }

type faultView struct{ Name, Target, Start, Heal, Length string }

// chartView is an SVG chart with everything pre-computed as text, so the
// template only places and escapes it.
type chartView struct {
	Title, XLabel, YLabel string
	W, H                  int
	Left, Right           string // plot area edges
	Top, Bottom, TickEnd  string
	TitleY                string
	YLabelX, YLabelY      string
	XLabelX, XLabelY      string
	Bands                 []rectView
	Marks                 []markView
	XTicks, YTicks        []tickView
	Series                []seriesView
	Note                  string
}

type rectView struct{ X, Y, W, H, Title string }

type markView struct{ X, Y1, Y2, LabelY, Class, Label string }

type tickView struct{ Pos, Label string }

type seriesView struct {
	Name, Class, D string
	LegendX, LineX string
	LegendY        string
}

const (
	chartW, chartH                            = 880, 230
	padLeft, padRight, padTop, padBottom      = 64, 16, 46, 42
	maxBuckets                                = 600
	seriesOK, seriesFail, seriesUnknown       = "s-ok", "s-fail", "s-unknown"
	seriesP50, seriesP99                      = "s-p50", "s-p99"
	markFault, markHeal, markCanary, bandFill = "m-fault", "m-heal", "m-canary", "band"
)

func renderHTML(buf *bytes.Buffer, runs []Run, files []string) error {
	var pv pageView
	for i, r := range runs {
		pv.Scenarios = append(pv.Scenarios, scenarioOf(i, r, files[i]))
	}
	return pageTmpl.Execute(buf, pv)
}

func scenarioOf(i int, r Run, file string) scenarioView {
	h, s := r.History, r.Summary
	name := s.Scenario
	if name == "" {
		name = h.Scenario
	}
	results := r.Results
	if results == nil {
		results = s.Results
	}
	share := "n/a"
	if s.AckShareDuringFault >= 0 {
		share = fmt.Sprintf("%.1f%%", 100*s.AckShareDuringFault)
	}
	lat := func(v float64) string {
		if s.Acked == 0 {
			return "n/a"
		}
		return fmtLatency(v)
	}
	sv := scenarioView{
		Anchor:      "scenario-" + strconv.Itoa(i),
		Name:        name,
		Seed:        s.Seed,
		Pass:        s.Pass,
		Line:        s.Line(),
		HistoryFile: file,
		Counts: []kv{
			{"SMTP attempts", strconv.Itoa(s.Attempts)},
			{"250 OK", strconv.Itoa(s.Acked)},
			{"4xx / refused", strconv.Itoa(s.Temp4xx)},
			{"5xx", strconv.Itoa(s.Perm5xx)},
			{"unknown", strconv.Itoa(s.Unknown)},
			{"250 share during fault", share},
			{"failover", fmtMillis(s.FailoverMillis)},
			{"convergence", fmtMillis(s.ConvergeMillis)},
			{"latency p50", lat(s.P50Millis)},
			{"latency p99", lat(s.P99Millis)},
			{"mailbox operations", strconv.Itoa(s.MailboxOps)},
			{"250/APPEND checked on every node", strconv.Itoa(s.BlobChecks)},
		},
		Results: results,
	}
	if o := s.Outbound; o != nil {
		sv.Counts = append(sv.Counts,
			kv{"outbound sent (250)", strconv.Itoa(o.Sent)},
			kv{"outbound delivered to the sink", strconv.Itoa(o.Delivered)},
			kv{"outbound duplicates (at-least-once)", strconv.Itoa(o.Duplicates)},
			kv{"outbound bounced (DSN to the sender)", strconv.Itoa(o.Bounced)},
			kv{"outbound still queued", strconv.Itoa(o.Queued)})
	}
	base := historyBase(h)
	for _, f := range h.Faults {
		fv := faultView{Name: f.Name, Target: f.Target, Start: relSec(base, f.Start), Heal: "never", Length: "-"}
		if !f.Heal.IsZero() {
			fv.Heal = relSec(base, f.Heal)
			fv.Length = f.Heal.Sub(f.Start).Round(time.Millisecond).String()
		}
		sv.Faults = append(sv.Faults, fv)
	}
	for _, w := range s.Windows {
		wv := windowView{Node: w.Node, Phase: w.Phase, Fault: w.Fault, Side: w.Side,
			First: fmtMillis(w.FirstMillis), Worst: fmtMillis(w.WorstMillis), Bound: "-", Verdict: "ok"}
		if w.BoundMillis > 0 {
			wv.Bound = fmtMillis(w.BoundMillis)
		}
		if !w.Pass {
			wv.Verdict = "FAIL"
		}
		sv.Windows = append(sv.Windows, wv)
	}
	sv.Charts = timelineCharts(h, base)
	return sv
}

func relSec(base, t time.Time) string {
	if base.IsZero() {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%.3fs", t.Sub(base).Seconds())
}

// bucket is one slice of the timeline.
type bucket struct {
	ok, fail, unknown int
	lat               []float64
}

// timelineCharts draws throughput and latency per time bucket (by the end
// of each send), with faults shaded and heals and the canary marked.
func timelineCharts(h History, base time.Time) []chartView {
	end := base
	grow := func(t time.Time) {
		if t.After(end) {
			end = t
		}
	}
	grow(h.End)
	for _, op := range h.Ops {
		grow(op.End)
	}
	for _, f := range h.Faults {
		grow(f.Start)
		grow(f.Heal)
	}
	if h.Canary != nil {
		grow(h.Canary.End)
	}
	total := end.Sub(base)
	if base.IsZero() || total <= 0 {
		total = time.Second
	}
	width := time.Second
	if total > maxBuckets*time.Second {
		width = time.Duration(math.Ceil(float64(total)/float64(maxBuckets*time.Second))) * time.Second
	}
	n := int((total + width - 1) / width)
	buckets := make([]bucket, n)
	for _, op := range h.Ops {
		if op.Kind != OpSend || op.End.IsZero() || base.IsZero() {
			continue
		}
		i := int(op.End.Sub(base) / width)
		if i < 0 || i >= n {
			continue
		}
		b := &buckets[i]
		switch op.Outcome {
		case OK:
			b.ok++
			b.lat = append(b.lat, millis(op.End.Sub(op.Start)))
		case Fail:
			b.fail++
		default:
			b.unknown++
		}
	}
	per := width.Seconds()
	okRate, failRate, unkRate := make([]float64, n), make([]float64, n), make([]float64, n)
	p50, p99, has := make([]float64, n), make([]float64, n), make([]bool, n)
	all := make([]bool, n)
	for i, b := range buckets {
		okRate[i] = float64(b.ok) / per
		failRate[i] = float64(b.fail) / per
		unkRate[i] = float64(b.unknown) / per
		all[i] = true
		if len(b.lat) > 0 {
			slices.Sort(b.lat)
			p50[i], p99[i], has[i] = percentile(b.lat, 50), percentile(b.lat, 99), true
		}
	}
	unit := "per second"
	if width > time.Second {
		unit = fmt.Sprintf("per second, averaged over %s", width)
	}
	ax := axes{total: total.Seconds(), width: per, n: n, base: base, h: h}
	tp := ax.chart("Throughput: sends finished "+unit, "sends / s", false, []series{
		{"250 OK", seriesOK, okRate, all},
		{"failed (4xx, 5xx, refused)", seriesFail, failRate, all},
		{"unknown (no answer)", seriesUnknown, unkRate, all},
	})
	lt := ax.chart("Latency of 250 OK sends, by the second they finished (log scale)", "latency (ms)", true, []series{
		{"p50", seriesP50, p50, has},
		{"p99", seriesP99, p99, has},
	})
	return []chartView{tp, lt}
}

type series struct {
	name, class string
	vals        []float64
	valid       []bool
}

type axes struct {
	total, width float64 // seconds
	n            int
	base         time.Time
	h            History
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// chart draws ss against time; logY puts the y axis on a log scale (one
// tick per decade), which keeps p50 readable next to a failover's p99.
func (a axes) chart(title, ylabel string, logY bool, ss []series) chartView {
	x0, x1 := float64(padLeft), float64(chartW-padRight)
	y0, y1 := float64(chartH-padBottom), float64(padTop) // y0 is the bottom
	xOf := func(sec float64) float64 { return x0 + (x1-x0)*math.Max(0, math.Min(sec, a.total))/a.total }
	ymax := 0.0
	for _, s := range ss {
		for i, v := range s.vals {
			if s.valid[i] && v > ymax {
				ymax = v
			}
		}
	}
	var yOf func(float64) float64
	var yticks []float64
	if logY {
		ymin := math.Inf(1)
		for _, s := range ss {
			for i, v := range s.vals {
				if s.valid[i] && v > 0 && v < ymin {
					ymin = v
				}
			}
		}
		if math.IsInf(ymin, 1) {
			ymin, ymax = 1, 10
		}
		lo := math.Max(-1, math.Floor(math.Log10(ymin)))
		hi := math.Max(lo+1, math.Ceil(math.Log10(ymax)))
		yOf = func(v float64) float64 {
			l := lo
			if v > 0 {
				l = math.Max(lo, math.Log10(v))
			}
			return y0 - (y0-y1)*(l-lo)/(hi-lo)
		}
		for e := lo; e <= hi; e++ {
			yticks = append(yticks, math.Pow(10, e))
		}
	} else {
		ystep := niceStep(ymax / 4)
		ytop := math.Max(ystep, math.Ceil(ymax/ystep-1e-9)*ystep)
		yOf = func(v float64) float64 { return y0 - (y0-y1)*v/ytop }
		for i := 0.0; i*ystep <= ytop+ystep/2; i++ {
			yticks = append(yticks, i*ystep)
		}
	}

	cv := chartView{
		Title: title, XLabel: "seconds since the start of the run", YLabel: ylabel,
		W: chartW, H: chartH,
		Left: f1(x0), Right: f1(x1), Top: f1(y1), Bottom: f1(y0), TickEnd: f1(y0 + 4), TitleY: "16",
		YLabelX: "14", YLabelY: f1((y0 + y1) / 2),
		XLabelX: f1((x0 + x1) / 2), XLabelY: strconv.Itoa(chartH - 6),
	}
	for _, v := range yticks {
		cv.YTicks = append(cv.YTicks, tickView{Pos: f1(yOf(v)), Label: strconv.FormatFloat(v, 'g', 6, 64)})
	}
	xstep := niceStep(a.total / 8)
	for i := 0.0; i*xstep <= a.total+xstep/1e6; i++ {
		v := i * xstep
		cv.XTicks = append(cv.XTicks, tickView{Pos: f1(xOf(v)), Label: strconv.FormatFloat(v, 'g', 6, 64)})
	}
	if !a.base.IsZero() {
		for _, f := range a.h.Faults {
			start := f.Start.Sub(a.base).Seconds()
			heal := a.total
			if !f.Heal.IsZero() {
				heal = f.Heal.Sub(a.base).Seconds()
			}
			xs, xh := xOf(start), xOf(heal)
			label := "fault: " + f.Name
			if f.Target != "" {
				label += " (" + f.Target + ")"
			}
			cv.Bands = append(cv.Bands, rectView{X: f1(xs), Y: f1(y1), W: f1(math.Max(xh-xs, 1)), H: f1(y0 - y1), Title: label})
			cv.Marks = append(cv.Marks, markView{X: f1(xs), Y1: f1(y1), Y2: f1(y0), LabelY: f1(y1 + 12), Class: markFault, Label: label})
			if !f.Heal.IsZero() {
				cv.Marks = append(cv.Marks, markView{X: f1(xh), Y1: f1(y1), Y2: f1(y0), LabelY: f1(y1 + 24), Class: markHeal, Label: "heal"})
			}
		}
		if c := a.h.Canary; c != nil && !c.End.IsZero() {
			x := xOf(c.End.Sub(a.base).Seconds())
			cv.Marks = append(cv.Marks, markView{X: f1(x), Y1: f1(y1), Y2: f1(y0), LabelY: f1(y1 + 36), Class: markCanary, Label: "canary " + string(c.Outcome)})
		}
	}
	for i, s := range ss {
		var d strings.Builder
		pen := false
		for j, v := range s.vals {
			if !s.valid[j] {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			pen = true
			fmt.Fprintf(&d, "%s%s,%s ", cmd, f1(xOf((float64(j)+0.5)*a.width)), f1(yOf(v)))
		}
		lx := x0 + float64(i)*210
		cv.Series = append(cv.Series, seriesView{
			Name: s.name, Class: s.class, D: strings.TrimSpace(d.String()),
			LegendX: f1(lx + 22), LineX: f1(lx), LegendY: "32",
		})
	}
	if len(cv.Series) > 0 && cv.Series[0].D == "" && (len(cv.Series) < 2 || cv.Series[1].D == "") {
		cv.Note = "no data"
	}
	return cv
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / e; {
	case f <= 1:
		return e
	case f <= 2:
		return 2 * e
	case f <= 5:
		return 5 * e
	default:
		return 10 * e
	}
}

// The page is well-formed XML as well as HTML (self-closed empty
// elements, numeric character references only), so tests can parse it
// with encoding/xml. Everything dynamic goes through html/template.
var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>Raftmail chaos report</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 940px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.25em; border-top: 1px solid #ccc; padding-top: 1em; margin-top: 2em; }
h3 { font-size: 1em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.3em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; font-size: 0.92em; }
th { background: #f4f4f4; }
.PASS { color: #fff; background: #2e7d32; padding: 0 0.4em; border-radius: 3px; font-weight: bold; }
.FAIL { color: #fff; background: #c62828; padding: 0 0.4em; border-radius: 3px; font-weight: bold; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; font-size: 0.85em; }
ul.ex { margin: 0; padding-left: 1.2em; font-family: ui-monospace, monospace; font-size: 0.85em; }
figure { margin: 0.5em 0 1em; }
figcaption { font-size: 0.85em; color: #555; }
svg { background: #fff; border: 1px solid #e4e4e4; max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: #333; }
svg .title { font-size: 12px; font-weight: bold; }
svg .axis { stroke: #444; stroke-width: 1; }
svg .grid { stroke: #eee; stroke-width: 1; }
svg .band { fill: #e53935; fill-opacity: 0.10; }
svg path { fill: none; stroke-width: 1.6; }
svg .s-ok { stroke: #2e7d32; }
svg .s-fail { stroke: #ef6c00; }
svg .s-unknown { stroke: #6a1b9a; stroke-dasharray: 4 2; }
svg .s-p50 { stroke: #1565c0; }
svg .s-p99 { stroke: #c62828; }
svg .m-fault { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .m-heal { stroke: #2e7d32; stroke-width: 1.5; }
svg .m-canary { stroke: #1565c0; stroke-width: 1; stroke-dasharray: 2 2; }
svg line.legend { stroke-width: 3; }
</style>
</head>
<body>
<h1>Raftmail chaos report</h1>
<table>
<tr><th>scenario</th><th>seed</th><th>verdict</th><th>summary</th></tr>
{{- range .Scenarios}}
<tr><td><a href="#{{.Anchor}}">{{.Name}}</a></td><td>{{.Seed}}</td><td><span class="{{if .Pass}}PASS{{else}}FAIL{{end}}">{{if .Pass}}PASS{{else}}FAIL{{end}}</span></td><td><code>{{.Line}}</code></td></tr>
{{- end}}
</table>
{{range .Scenarios}}
<section id="{{.Anchor}}">
<h2>{{.Name}} <span class="{{if .Pass}}PASS{{else}}FAIL{{end}}">{{if .Pass}}PASS{{else}}FAIL{{end}}</span></h2>
<pre>{{.Line}}</pre>
<p>Seed {{.Seed}}. History: <a href="{{.HistoryFile}}">{{.HistoryFile}}</a></p>
<h3>Counts</h3>
<table>
<tr>{{range .Counts}}<th>{{.K}}</th>{{end}}</tr>
<tr>{{range .Counts}}<td>{{.V}}</td>{{end}}</tr>
</table>
<h3>Invariants</h3>
<table>
<tr><th>invariant</th><th>verdict</th><th>violations</th><th>examples</th></tr>
{{- range .Results}}
<tr><td>{{.Invariant}}</td><td><span class="{{if .Pass}}PASS{{else}}FAIL{{end}}">{{if .Pass}}PASS{{else}}FAIL{{end}}</span></td><td>{{.Violations}}</td><td>{{if .Examples}}<ul class="ex">{{range .Examples}}<li>{{.}}</li>{{end}}</ul>{{end}}</td></tr>
{{- end}}
</table>
<h3>Faults</h3>
{{if .Faults}}<table>
<tr><th>fault</th><th>target</th><th>start</th><th>heal</th><th>length</th></tr>
{{- range .Faults}}
<tr><td>{{.Name}}</td><td>{{.Target}}</td><td>{{.Start}}</td><td>{{.Heal}}</td><td>{{.Length}}</td></tr>
{{- end}}
</table>{{else}}<p>None.</p>{{end}}
<h3>Liveness</h3>
<p>Per node and phase: the first 250 of a send started after the phase began, and the longest wait for a 250 from any moment of the phase (the liveness invariant holds it to the bound).</p>
{{if .Windows}}<table>
<tr><th>node</th><th>phase</th><th>fault</th><th>side</th><th>first 250</th><th>longest wait</th><th>bound</th><th></th></tr>
{{- range .Windows}}
<tr><td>{{.Node}}</td><td>{{.Phase}}</td><td>{{.Fault}}</td><td>{{.Side}}</td><td>{{.First}}</td><td>{{.Worst}}</td><td>{{.Bound}}</td><td>{{.Verdict}}</td></tr>
{{- end}}
</table>{{else}}<p>No sends were measured.</p>{{end}}
<h3>Timeline</h3>
{{range .Charts}}{{template "chart" .}}{{end}}
</section>
{{end}}
</body>
</html>
{{define "chart"}}<figure>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">
<title>{{.Title}}</title>
<text class="title" x="{{.Left}}" y="{{.TitleY}}">{{.Title}}</text>
{{- range .Bands}}
<rect class="band" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{- end}}
{{- $c := .}}
{{- range .YTicks}}
<line class="grid" x1="{{$c.Left}}" x2="{{$c.Right}}" y1="{{.Pos}}" y2="{{.Pos}}"/>
<text x="{{$c.Left}}" y="{{.Pos}}" dx="-4" dy="4" text-anchor="end">{{.Label}}</text>
{{- end}}
{{- range .XTicks}}
<line class="axis" x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$c.Bottom}}" y2="{{$c.TickEnd}}"/>
<text x="{{.Pos}}" y="{{$c.Bottom}}" dy="14" text-anchor="middle">{{.Label}}</text>
{{- end}}
<line class="axis" x1="{{.Left}}" x2="{{.Right}}" y1="{{.Bottom}}" y2="{{.Bottom}}"/>
<line class="axis" x1="{{.Left}}" x2="{{.Left}}" y1="{{.Top}}" y2="{{.Bottom}}"/>
{{- range .Marks}}
<line class="{{.Class}}" x1="{{.X}}" x2="{{.X}}" y1="{{.Y1}}" y2="{{.Y2}}"/>
<text x="{{.X}}" y="{{.LabelY}}" dx="3">{{.Label}}</text>
{{- end}}
{{- range .Series}}
<path class="{{.Class}}" d="{{.D}}"><title>{{.Name}}</title></path>
<line class="legend {{.Class}}" x1="{{.LineX}}" x2="{{.LegendX}}" y1="{{.LegendY}}" y2="{{.LegendY}}"/>
<text x="{{.LegendX}}" y="{{.LegendY}}" dx="4" dy="4">{{.Name}}</text>
{{- end}}
{{- if .Note}}
<text x="{{.XLabelX}}" y="{{.YLabelY}}" text-anchor="middle">{{.Note}}</text>
{{- end}}
<text x="{{.XLabelX}}" y="{{.XLabelY}}" text-anchor="middle">{{.XLabel}}</text>
<text x="{{.YLabelX}}" y="{{.YLabelY}}" text-anchor="middle" transform="rotate(-90 {{.YLabelX}} {{.YLabelY}})">{{.YLabel}}</text>
</svg>
<figcaption>{{.Title}}. Shaded: fault windows; dashed red: fault start; green: heal; dotted blue: canary.</figcaption>
</figure>{{end}}`))
