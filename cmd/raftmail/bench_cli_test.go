package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/bench"
)

// benchSinkServer is an SMTP server that accepts everything and keeps a hash
// of each body.
type benchSinkServer struct {
	mu     sync.Mutex
	bodies map[[32]byte]int // hash → message size
}

func (s *benchSinkServer) NewSession(*smtp.Conn) (smtp.Session, error) {
	return benchSinkSession{s}, nil
}

type benchSinkSession struct{ s *benchSinkServer }

func (benchSinkSession) Reset()                               {}
func (benchSinkSession) Logout() error                        { return nil }
func (benchSinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (benchSinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss benchSinkSession) Data(r io.Reader) error {
	m, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, body, _ := bytes.Cut(m, []byte("\r\n\r\n"))
	ss.s.mu.Lock()
	ss.s.bodies[sha256.Sum256(body)] = len(m)
	ss.s.mu.Unlock()
	return nil
}

func startBenchSink(t *testing.T, s *benchSinkServer) string {
	t.Helper()
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestBenchSMTPUniqueCLI: `bench smtp --unique` sends a different body of
// the size asked in every message, MX without AUTH, and reports the
// replies per code and per server.
func TestBenchSMTPUniqueCLI(t *testing.T) {
	sink := &benchSinkServer{bodies: map[[32]byte]int{}}
	a, b := startBenchSink(t, sink), startBenchSink(t, sink)
	var r bench.SMTPResult
	mustCLIJSON(t, &r, "bench", "smtp", "--quiet", "--json", "--addr", a, "--addr", b, "--to", "user@example.test",
		"--messages", "6", "--size", "200KiB", "--concurrency", "2", "--unique", "--seed", "99")
	if r.Replies["250"] != 6 || len(r.Replies) != 1 || !r.Unique || r.Seed != 99 || len(r.PerAddr) != 2 ||
		r.PerAddr[0].Replies["250"]+r.PerAddr[1].Replies["250"] != 6 {
		t.Errorf("result: %+v", r)
	}
	sink.mu.Lock()
	if len(sink.bodies) != 6 {
		t.Errorf("%d different bodies, want 6", len(sink.bodies))
	}
	for _, size := range sink.bodies {
		if size != 200<<10 {
			t.Errorf("a message of %d bytes", size)
		}
	}
	sink.mu.Unlock()

	out := mustCLI(t, "", "bench", "smtp", "--quiet", "--addr", a, "--addr", b, "--to", "user@example.test", "--messages", "2", "--concurrency", "2")
	if !strings.Contains(out, "replies   250 × 2") || !strings.Contains(out, a+" ") {
		t.Errorf("text output:\n%s", out)
	}
}

// TestBenchProcsCLI watches this test process for a moment.
func TestBenchProcsCLI(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	var r bench.ProcsResult
	mustCLIJSON(t, &r, "bench", "procs", "--json", "--group", "test="+"pid:"+strconv.Itoa(os.Getpid()),
		"--duration", "300ms", "--interval", "50ms", "--messages", "10", "--peak", "hwm")
	if len(r.Groups) != 1 || r.Groups[0].Name != "test" || r.Groups[0].Procs != 1 || r.Groups[0].HWM <= 0 || r.Samples < 3 {
		t.Errorf("result: %+v", r)
	}
	if len(r.Metrics) != 3 || r.Metrics[0].Name != "CPU per message, whole machine" || r.Metrics[2].Name != "peak RSS, test" ||
		r.Metrics[2].Value != r.Groups[0].PeakHWM {
		t.Errorf("metrics: %+v", r.Metrics)
	}
	assertFailure(t, runCLI(t, "", "bench", "procs", "--group", "node1"), "process group")
	assertFailure(t, runCLI(t, "", "bench", "procs", "--group", "x=pid:1", "--peak", "max"), "--peak")
}
