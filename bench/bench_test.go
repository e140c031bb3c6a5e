package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/protocol/imap"
	"github.com/raftmail/raftmail/protocol/pop3"
	"github.com/raftmail/raftmail/protocol/smtp"
)

const (
	testUser = "bench@example.test"
	testPass = "bench password 1"
)

// server is a one-node Raftmail cluster with SMTP MX, IMAP (plain, login
// allowed) and POP3 (plain, login allowed) on loopback.
type server struct {
	smtp, imap, pop3 string
}

func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, _ := clustertest.SelfSignedTLS(t)
	return cfg
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func startServer(t *testing.T) server {
	t.Helper()
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, testUser, testPass)
	tlsCfg := testTLS(t)
	checker := auth.New(auth.Config{Store: n.Store, BaseDelay: -1, MaxFailures: 1000})
	var s server
	stop := func(f func(context.Context) error) {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = f(ctx)
		})
	}

	ap, err := accept.New(accept.Config{Cluster: n.Node, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := smtp.New(smtp.Config{Mode: smtp.ModeMX, Hostname: "mx.example.test", NodeName: n.Name,
		TLS: tlsCfg, Accept: ap, Store: n.Store, Auth: checker, Logger: clustertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	s.smtp = ln.Addr().String()
	go ms.Serve(ln)
	stop(ms.Shutdown)

	is, err := imap.New(imap.Config{Cluster: n.Node, Accept: ap, Store: n.Store, Auth: checker, TLS: tlsCfg,
		Logger: clustertest.Logger(), NodeName: n.Name, InsecureAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	ln = listen(t)
	s.imap = ln.Addr().String()
	go is.Serve(ln)
	stop(is.Shutdown)

	ps, err := pop3.New(pop3.Config{Cluster: n.Node, Store: n.Store, Auth: checker, TLS: tlsCfg,
		AllowInsecureAuth: true, Logger: clustertest.Logger(), NodeName: n.Name, Hostname: "pop.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	ln = listen(t)
	s.pop3 = ln.Addr().String()
	go ps.Serve(ln) //nolint:errcheck
	stop(ps.Shutdown)
	return s
}

// TestWorkloads runs every workload, short, against one Raftmail node and
// checks the counts (never the speed), then writes a report of two
// "servers" from the results.
func TestWorkloads(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	const count = 50

	sr, err := RunSMTP(ctx, SMTPConfig{Addrs: []string{s.smtp}, To: testUser, Messages: count, Size: 4 << 10, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sr.Accepted != count || len(sr.Errors) != 0 || sr.Latency.Count != count || sr.Replies["250"] != count || len(sr.Replies) != 1 {
		t.Fatalf("smtp: accepted %d of %d, errors %v, replies %v", sr.Accepted, count, sr.Errors, sr.Replies)
	}

	vr, err := RunVisibility(ctx, VisibilityConfig{SendAddr: s.smtp, IdleAddr: s.imap, User: testUser, Pass: testPass, Messages: 5})
	if err != nil {
		t.Fatal(err)
	}
	if vr.Latency.Count != 5 {
		t.Fatalf("visibility: %d latencies, want 5", vr.Latency.Count)
	}
	total := count + 5

	ir, err := RunIMAP(ctx, IMAPConfig{Addr: s.imap, User: testUser, Pass: testPass})
	if err != nil {
		t.Fatal(err)
	}
	if ir.Messages != total {
		t.Fatalf("imap: %d messages at SELECT, want %d", ir.Messages, total)
	}
	if ir.SearchHits != 2 { // messages 0 of each run carry SearchWord
		t.Errorf("imap: SEARCH TEXT %s: %d hits, want 2", SearchWord, ir.SearchHits)
	}
	steps := map[string]Step{}
	for _, st := range ir.Steps {
		steps[st.Name] = st
	}
	if st := steps["fetch-body"]; st.Messages != total || st.Bytes < int64(count*(4<<10)) {
		t.Errorf("imap: fetch-body %+v", st)
	}
	if st := steps["fetch-flags"]; st.Messages != total {
		t.Errorf("imap: fetch-flags %+v", st)
	}

	pr, err := RunPOP3(ctx, POP3Config{Addr: s.pop3, User: testUser, Pass: testPass})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Messages != total || pr.Bytes < int64(count*(4<<10)) {
		t.Errorf("pop3: %d messages, %d bytes", pr.Messages, pr.Bytes)
	}

	// The report: the same results as A and B, one round each.
	dir := t.TempDir()
	write := func(id, side string, v any) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := jsonMarshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id, side+"-1.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, side := range []string{"a", "b"} {
		write("smtp", side, sr)
		write("imap", side, ir)
		write("visibility", side, vr)
		write("pop3", side, pr)
	}
	tsv := "smtp\tSMTP\tcmd a\tcmd b\nimap\tIMAP\t\t\nvisibility\tvisibility\t\t\npop3\tPOP3\t\t\n"
	if err := os.WriteFile(filepath.Join(dir, "workloads.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := LoadReport(ReportConfig{Results: dir, NameA: "A", NameB: "B"})
	if err != nil {
		t.Fatal(err)
	}
	table := rep.Table()
	if !strings.Contains(table, "| SMTP | accepted | msgs/s ↑ |") || !strings.Contains(table, "1.00") {
		t.Errorf("table:\n%s", table)
	}
	doc := filepath.Join(dir, "doc.md")
	if err := os.WriteFile(doc, []byte("# Benchmarks\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second write replaces the section
		if err := rep.WriteDoc(doc); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(doc)
	if !strings.HasPrefix(string(got), "# Benchmarks\n\nkept\n") || strings.Count(string(got), DocBegin) != 1 {
		t.Errorf("doc:\n%s", got)
	}
	if svg := string(rep.SVG()); !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "</svg>") {
		t.Errorf("svg: %.200s", svg)
	}
}

// TestErrors: a refused connection and a failed login say what happened,
// with the server's reply.
func TestErrors(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	ln := listen(t)
	dead := ln.Addr().String()
	ln.Close()

	if _, err := RunSMTP(ctx, SMTPConfig{Addrs: []string{"nohost"}, To: testUser, Messages: 1}); err == nil || !strings.Contains(err.Error(), "bad address") {
		t.Errorf("bad address: %v", err)
	}
	if _, err := RunSMTP(ctx, SMTPConfig{Addrs: []string{dead}, To: testUser, Messages: 1}); err == nil || !strings.Contains(err.Error(), "connect to SMTP") {
		t.Errorf("refused: %v", err)
	}
	// Submission on an MX port: AUTH is not offered.
	_, err := RunSMTP(ctx, SMTPConfig{Addrs: []string{s.smtp}, Submission: true, TLSInsecure: true, User: testUser, Pass: "wrong", Messages: 1})
	if err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("submission on MX: %v", err)
	}
	_, err = RunIMAP(ctx, IMAPConfig{Addr: s.imap, User: testUser, Pass: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "LOGIN as "+testUser) || !strings.Contains(strings.ToUpper(err.Error()), "NO") {
		t.Errorf("imap login: %v", err)
	}
	_, err = RunPOP3(ctx, POP3Config{Addr: s.pop3, User: testUser, Pass: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "-ERR") {
		t.Errorf("pop3 login: %v", err)
	}
	// A rejected recipient is counted by its code, not returned.
	r, err := RunSMTP(ctx, SMTPConfig{Addrs: []string{s.smtp}, To: "nobody@example.test", Messages: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accepted != 0 || r.Errors["550"] != 3 || r.Replies["550"] != 3 || r.PerAddr[0].Replies["550"] != 3 {
		t.Errorf("rejected recipient: accepted %d, errors %v, replies %v", r.Accepted, r.Errors, r.Replies)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"1234": 1234, "10KiB": 10 << 10, "10k": 10 << 10, "1MiB": 1 << 20, "1m": 1 << 20, " 2 MB ": 2 << 20, "1GiB": 1 << 30, "3g": 3 << 30, "2TiB": 2 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1.5k", "99999999999999TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
}

func TestMessageSize(t *testing.T) {
	for _, size := range []int{0, 100, 1000, 10 << 10, 1 << 20} {
		m := Message(1, DefaultFrom, testUser, size)
		if size >= 400 && len(m) != size {
			t.Errorf("Message(size %d) is %d bytes", size, len(m))
		}
		if !strings.HasSuffix(string(m), "\r\n") {
			t.Errorf("Message(size %d) does not end in CRLF", size)
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
