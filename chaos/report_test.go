package chaos

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func runOf(h History) Run {
	rs := Check(h)
	return Run{History: h, Results: rs, Summary: Summarize(h, rs)}
}

func TestWriteReport(t *testing.T) {
	clean := cleanHistory()

	evil := cleanHistory()
	evil.Scenario = `evil <script>alert("x")</script> & co`
	evil.Seed = 3
	evil.Faults[0].Name = "<b>partition</b>"
	evil.Ops = append(evil.Ops, fetch(12, "n1", 1, "INBOX", 7, 7, 3600, 3610, msg(1, "<img src=x>")))

	again := cleanHistory() // the same scenario with another seed
	again.Seed = 8

	idle := History{Scenario: "idle", Start: t0, End: t0.Add(time.Second)}

	runs := []Run{runOf(clean), runOf(evil), runOf(again), runOf(idle)}
	if runs[1].Summary.Pass {
		t.Fatal("the evil run should fail")
	}
	dir := filepath.Join(t.TempDir(), "report")
	if err := WriteReport(dir, runs); err != nil {
		t.Fatal(err)
	}

	// report.json: the summaries.
	var sums []Summary
	readJSON(t, filepath.Join(dir, "report.json"), &sums)
	if len(sums) != len(runs) {
		t.Fatalf("report.json has %d summaries, want %d", len(sums), len(runs))
	}
	for i, s := range sums {
		if !reflect.DeepEqual(s, runs[i].Summary) {
			t.Errorf("report.json summary %d:\n%+v\nwant\n%+v", i, s, runs[i].Summary)
		}
	}

	// summary.txt: one line per run.
	txt, err := os.ReadFile(filepath.Join(dir, "summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(txt), "\n"), "\n")
	if len(lines) != len(runs) {
		t.Fatalf("summary.txt has %d lines, want %d:\n%s", len(lines), len(runs), txt)
	}
	for i, l := range lines {
		if l != runs[i].Summary.Line() {
			t.Errorf("summary.txt line %d = %q, want %q", i, l, runs[i].Summary.Line())
		}
	}

	// The histories, under safe and distinct names, check the same again.
	files := []string{
		"clean.history.jsonl",
		"evil__script_alert__x____script____co.history.jsonl",
		"clean-seed8.history.jsonl",
		"idle.history.jsonl",
	}
	for i, name := range files {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		h, err := ReadJSONL(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := Check(h); !reflect.DeepEqual(got, runs[i].Results) {
			t.Errorf("%s checks differently after reading back:\n%+v\nwant\n%+v", name, got, runs[i].Results)
		}
	}

	// report.html: self-contained, escaped, well-formed.
	b, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, r := range runs {
		if !strings.Contains(page, template.HTMLEscapeString(r.Summary.Scenario)) {
			t.Errorf("report.html lacks scenario %q", r.Summary.Scenario)
		}
	}
	for _, raw := range []string{"<script", "<b>", "<img", "<link", "https://", ` src="`} {
		if strings.Contains(page, raw) {
			t.Errorf("report.html contains %q raw", raw)
		}
	}
	for _, want := range []string{"FAIL", "PASS", "no-phantom", "phantom message &lt;img src=x&gt;",
		"fault: &lt;b&gt;partition&lt;/b&gt;", "seconds since the start of the run", "sends / s", "latency (ms)", "no data"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	svgs := parseXHTML(t, page)
	if svgs != 2*len(runs) {
		t.Errorf("report.html has %d SVG charts, want %d", svgs, 2*len(runs))
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// parseXHTML parses the page as strict XML (the report is written to be
// both) and returns how many svg elements it holds; every svg must carry
// paths, axis labels and a title.
func parseXHTML(t *testing.T, page string) int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = true
	svgs, depth := 0, 0
	var inSVG struct{ paths, texts, titles int }
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, col := d.InputPos()
			t.Fatalf("report.html is not well-formed at %d:%d: %v", line, col, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			depth++
			switch el.Name.Local {
			case "svg":
				svgs++
				inSVG.paths, inSVG.texts, inSVG.titles = 0, 0, 0
			case "path":
				inSVG.paths++
			case "text":
				inSVG.texts++
			case "title":
				inSVG.titles++
			}
		case xml.EndElement:
			depth--
			if el.Name.Local == "svg" && (inSVG.paths < 2 || inSVG.texts < 4 || inSVG.titles < 1) {
				t.Errorf("svg %d has %d paths, %d texts, %d titles", svgs, inSVG.paths, inSVG.texts, inSVG.titles)
			}
		}
	}
	if depth != 0 {
		t.Errorf("unbalanced elements: depth %d at the end", depth)
	}
	return svgs
}

func TestWriteReportError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteReport(filepath.Join(file, "sub"), nil); err == nil {
		t.Error("WriteReport under a file: no error")
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ raw, want float64 }{{0.3, 0.5}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {45, 50}, {0, 1}} {
		if got := niceStep(tt.raw); got != tt.want {
			t.Errorf("niceStep(%v) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}
