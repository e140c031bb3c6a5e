package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

type logRecord map[string]any

// captureLogger returns a JSON slog logger that keeps everything from
// hclog's TRACE up, and a function returning the records written so far.
func captureLogger(t *testing.T, level slog.Level) (*slog.Logger, func() []logRecord) {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level, AddSource: true}))
	return l, func() []logRecord {
		var out []logRecord
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var r logRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("bad log line %q: %v", line, err)
			}
			out = append(out, r)
		}
		buf.Reset()
		return out
	}
}

func onlyRecord(t *testing.T, recs []logRecord) logRecord {
	t.Helper()
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %v", len(recs), recs)
	}
	return recs[0]
}

func checkSource(t *testing.T, r logRecord) {
	t.Helper()
	src, _ := r["source"].(map[string]any)
	if file, _ := src["file"].(string); !strings.HasSuffix(file, "logging_test.go") {
		t.Errorf("source %v, want this test file", r["source"])
	}
}

func TestLogHCLogger(t *testing.T) {
	sl, records := captureLogger(t, slogLevelTrace)
	var hl hclog.Logger = NewHCLogger(sl, "raft", hclog.Info)

	hl.Debug("dropped")
	hl.Trace("dropped")
	if recs := records(); len(recs) != 0 {
		t.Fatalf("below level: %v", recs)
	}
	if hl.IsDebug() || !hl.IsInfo() || !hl.IsError() || hl.GetLevel() != hclog.Info {
		t.Fatal("Is*/GetLevel wrong at Info")
	}

	hl.Info("entering follower state", "follower", "node1", "error", errors.New("boom"), 7, "seven")
	r := onlyRecord(t, records())
	if r["level"] != "INFO" || r["msg"] != "entering follower state" || r["logger"] != "raft" ||
		r["follower"] != "node1" || r["err"] != "boom" || r["7"] != "seven" {
		t.Fatalf("record %v", r)
	}
	checkSource(t, r)

	hl.Warn("odd", "key", "v", "lonely")
	r = onlyRecord(t, records())
	if r["level"] != "WARN" || r[hclog.MissingKey] != "lonely" {
		t.Fatalf("record %v", r)
	}

	hl.Log(hclog.Error, "formatted", "f", hclog.Fmt("%d-%s", 3, "x"), "h", hclog.Hex(255), "q", hclog.Quote("a b"))
	r = onlyRecord(t, records())
	if r["level"] != "ERROR" || r["f"] != "3-x" || r["h"] != "0xff" || r["q"] != `"a b"` {
		t.Fatalf("record %v", r)
	}
	checkSource(t, r)

	// With, Named, ResetNamed.
	child := hl.With("peer", "n2", "term", 3).Named("net")
	if child.Name() != "raft.net" || hl.Name() != "raft" {
		t.Fatalf("names %q %q", child.Name(), hl.Name())
	}
	child = child.With("term", 4)
	if got := child.ImpliedArgs(); len(got) != 4 || got[0] != "peer" || got[3] != 4 {
		t.Fatalf("ImpliedArgs %v", got)
	}
	child.Info("hello", "x", 1)
	r = onlyRecord(t, records())
	if r["logger"] != "raft.net" || r["peer"] != "n2" || r["term"] != float64(4) || r["x"] != float64(1) {
		t.Fatalf("record %v", r)
	}
	if len(hl.ImpliedArgs()) != 0 {
		t.Fatal("With changed the parent")
	}
	if n := child.ResetNamed("snapshots").Name(); n != "snapshots" {
		t.Fatalf("ResetNamed: %q", n)
	}
	if n := NewHCLogger(sl, "", hclog.Info).Named("x").Name(); n != "x" {
		t.Fatalf("Named on unnamed: %q", n)
	}

	// SetLevel reaches every related logger.
	child.SetLevel(hclog.Trace)
	if hl.GetLevel() != hclog.Trace || !hl.IsTrace() {
		t.Fatal("SetLevel on a child did not reach the parent")
	}
	hl.Trace("fine detail")
	if r := onlyRecord(t, records()); r["level"] != "DEBUG-4" {
		t.Fatalf("trace level %v", r["level"])
	}
	hl.SetLevel(hclog.Off)
	hl.Error("silenced")
	child.Error("silenced")
	if recs := records(); len(recs) != 0 || hl.IsError() {
		t.Fatalf("Off: %v", recs)
	}
	hl.SetLevel(hclog.NoLevel)
	if hl.GetLevel() != hclog.Info {
		t.Fatalf("NoLevel became %v", hl.GetLevel())
	}

	// The slog handler's own level also counts.
	quiet, qrecords := captureLogger(t, slog.LevelWarn)
	ql := NewHCLogger(quiet, "raft", hclog.Debug)
	if ql.IsInfo() || !ql.IsWarn() {
		t.Fatal("Is* ignores the slog handler's level")
	}
	ql.Info("dropped")
	if recs := qrecords(); len(recs) != 0 {
		t.Fatalf("handler level ignored: %v", recs)
	}

	// Nil slog logger: discard, no panic.
	NewHCLogger(nil, "x", hclog.Info).Error("nowhere")
}

func TestLogHCStandardLogger(t *testing.T) {
	sl, records := captureLogger(t, slogLevelTrace)
	hl := NewHCLogger(sl, "raft", hclog.Debug)

	hl.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Printf("[WARN] disk slow: %d ms", 30)
	r := onlyRecord(t, records())
	if r["level"] != "WARN" || r["msg"] != "disk slow: 30 ms" || r["logger"] != "raft" {
		t.Fatalf("record %v", r)
	}
	checkSource(t, r)

	hl.StandardLogger(nil).Print("[ERR] stays in the message")
	if r := onlyRecord(t, records()); r["level"] != "INFO" || r["msg"] != "[ERR] stays in the message" {
		t.Fatalf("record %v", r)
	}

	hl.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("[DEBUG] forced")
	if r := onlyRecord(t, records()); r["level"] != "ERROR" || r["msg"] != "forced" {
		t.Fatalf("record %v", r)
	}

	w := hl.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true})
	if _, err := w.Write([]byte("2024/01/02 03:04:05 [DEBUG] stamped\n")); err != nil {
		t.Fatal(err)
	}
	if r := onlyRecord(t, records()); r["level"] != "DEBUG" || r["msg"] != "stamped" {
		t.Fatalf("record %v", r)
	}

	// Below the hclog level: dropped.
	hl.SetLevel(hclog.Warn)
	hl.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[INFO] dropped")
	if recs := records(); len(recs) != 0 {
		t.Fatalf("below level: %v", recs)
	}
}

func TestLogStdLogger(t *testing.T) {
	sl, records := captureLogger(t, slogLevelTrace)
	ml := NewStdLogger(sl, "memberlist")
	for _, tc := range []struct{ line, level, msg string }{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234", "DEBUG", "Stream connection from=127.0.0.1:1234"},
		{"[INFO] memberlist: Marking node2 as failed", "INFO", "Marking node2 as failed"},
		{"[WARN] memberlist: Was able to connect to node2 over TCP but UDP probes failed", "WARN", "Was able to connect to node2 over TCP but UDP probes failed"},
		{"[ERR] memberlist: Failed to send ping: timeout", "ERROR", "Failed to send ping: timeout"},
		{"[ERR] Failed to shutdown transport: x", "ERROR", "Failed to shutdown transport: x"},
		{"no prefix at all", "INFO", "no prefix at all"},
		{"[BOGUS] thing", "INFO", "[BOGUS] thing"},
		{"[DEBUG]", "DEBUG", ""},
	} {
		ml.Print(tc.line)
		r := onlyRecord(t, records())
		if r["level"] != tc.level || r["msg"] != tc.msg || r["logger"] != "memberlist" {
			t.Errorf("%q: record %v", tc.line, r)
		}
		checkSource(t, r)
	}

	// DEBUG stays debug: a handler at INFO drops it.
	info, irecords := captureLogger(t, slog.LevelInfo)
	ml = NewStdLogger(info, "memberlist")
	ml.Printf("[DEBUG] memberlist: chatter %d", 1)
	ml.Printf("[WARN] memberlist: trouble")
	if r := onlyRecord(t, irecords()); r["level"] != "WARN" {
		t.Fatalf("record %v", r)
	}
}
