package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportExtraFiles: a round's a-<n>.<what>.json figures (bench procs)
// join its a-<n>.json ones, after them, whatever the round numbers; CPU
// per message gets its own chart panel.
func TestReportExtraFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		fn := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(fn), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fn, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := func(rate string) string {
		return `{"metrics":[{"name":"accepted","unit":"msgs/s","value":` + rate + `,"higher_is_better":true},{"name":"accept p99","unit":"ms","value":5}]}`
	}
	procs := func(cpu string) string {
		return `{"kind":"procs","metrics":[{"name":"CPU per message, whole machine","unit":"ms/msg","value":` + cpu + `},{"name":"peak RSS, server processes","unit":"MiB","value":100}]}`
	}
	write("workloads.tsv", "smtp-c1\tSMTP c1\tcmd a\tcmd b\n")
	for _, r := range []string{"1", "2", "10"} {
		write("smtp-c1/a-"+r+".procs.json", procs("2"))
		write("smtp-c1/a-"+r+".json", main("100"))
		write("smtp-c1/b-"+r+".procs.json", procs("5"))
		write("smtp-c1/b-"+r+".json", main("50"))
	}
	rep, err := LoadReport(ReportConfig{Results: dir, NameA: "A", NameB: "B"})
	if err != nil {
		t.Fatal(err)
	}
	want := "| workload | figure | unit | A | B | B ÷ A |\n| --- | --- | --- | --- | --- | --- |\n" +
		"| SMTP c1 | accepted | msgs/s ↑ | 100 | 50.0 | 0.50 (worse) |\n" +
		"|  | accept p99 | ms ↓ | 5.00 | 5.00 | 1.00 |\n" +
		"|  | CPU per message, whole machine | ms/msg ↓ | 2.00 | 5.00 | 2.50 (worse) |\n" +
		"|  | peak RSS, server processes | MiB ↓ | 100 | 100 | 1.00 |\n"
	if got := rep.Table(); got != want {
		t.Errorf("table:\n%s\nwant\n%s", got, want)
	}
	if svg := string(rep.SVG()); !strings.Contains(svg, "CPU per message, whole machine (ms, lower is better)") {
		t.Errorf("no CPU panel in the chart:\n%s", svg)
	}
	// Without CPU figures, no CPU panel.
	for _, r := range []string{"1", "2", "10"} {
		for _, side := range []string{"a", "b"} {
			if err := os.Remove(filepath.Join(dir, "smtp-c1", side+"-"+r+".procs.json")); err != nil {
				t.Fatal(err)
			}
		}
	}
	rep, err = LoadReport(ReportConfig{Results: dir})
	if err != nil {
		t.Fatal(err)
	}
	if svg := string(rep.SVG()); strings.Contains(svg, "CPU per message") {
		t.Error("a CPU panel without CPU figures")
	}
}
