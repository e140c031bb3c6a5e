package main

// Benchmarks of the mail path through real processes: the raftmail binary
// (built without the race detector), three nodes on loopback formed through
// the CLI with the production Raft and gossip timings, driven over SMTP MX
// and IMAPS by go-smtp's and go-imap's clients. Each benchmark forms its own
// cluster, with one domain and one user; forming it is not timed.
//
// Run them with:
//
//	go test -run '^$' -bench BenchmarkMail -benchtime 1x ./cmd/raftmail/
//
// One iteration is a whole workload (thousands of messages), so -benchtime
// 1x is the useful setting. The figures are b.ReportMetric values; nothing
// here asserts a speed (STYLE.md, "Tests").
//
// The process helpers in e2e_helpers_test.go take a *testing.T and start
// nodes with the fast test timings, so this file has its own small
// equivalents (bench*) for a testing.TB and reuses only the harness's node
// addresses and flags.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
)

const (
	benchDomain   = "bench.test"
	benchUser     = "user@" + benchDomain
	benchPassword = "bench-password-1"
	benchSender   = "sender@sender.example"

	// benchReplyTimeout bounds every wait on a server reply or event; it
	// guards against hangs and is not an assertion.
	benchReplyTimeout = 60 * time.Second
)

// benchClientTLS accepts the nodes' self-signed certificates.
var benchClientTLS = &tls.Config{InsecureSkipVerify: true}

// BenchmarkMailSMTPAccept: 2000 messages of a 10 KiB body over MX, C
// connections each sending in a loop (RSET between), connection i on node
// i%3. The latency is from the end of DATA (the last write of ".") to the
// 250 reply.
func BenchmarkMailSMTPAccept(b *testing.B) {
	const count = 2000
	body := benchBody(10 << 10)
	msg := func(k int) []byte { return benchMessage(k, body) }
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			c := benchFormCluster(b)
			b.ResetTimer()
			var res deliverResult // of the last iteration
			for range b.N {
				res = benchDeliver(b, c.mxAddrs(), count, conc, msg)
			}
			b.StopTimer()
			b.ReportMetric(float64(len(res.latencies))/res.elapsed.Seconds(), "msgs/s")
			reportLatencies(b, "", res.latencies)
			res.reportErrors(b, "")
			c.reportMemory(b)
		})
	}
}

// BenchmarkMailVisibility: a client IDLEs on node 3's INBOX while 200
// messages go one at a time through node 1's MX; each latency is from the
// 250 to the EXISTS that announces the message on node 3. A negative value
// would mean node 3 announced the message before node 1's 250 arrived.
func BenchmarkMailVisibility(b *testing.B) {
	const count = 200
	c := benchFormCluster(b)
	body := benchBody(4 << 10)

	type exists struct {
		n  uint32
		at time.Time
	}
	events := make(chan exists, count+16)
	idler := c.imapLogin(b, 2, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				events <- exists{*d.NumMessages, time.Now()}
			}
		},
	})
	sel, err := idler.Select("INBOX", nil).Wait()
	if err != nil {
		b.Fatalf("select: %v", err)
	}
	idle, err := idler.Idle()
	if err != nil {
		b.Fatalf("idle: %v", err)
	}
	mx := dialMX(b, c.nodes[0].spec.smtpAddr)
	defer mx.close()

	b.ResetTimer()
	var lat []time.Duration
	seen := sel.NumMessages
	for range b.N {
		for k := range count {
			if _, err := mx.send(benchUser, benchMessage(k, body)); err != nil {
				b.Fatalf("message %d through %s: %v", k, c.nodes[0].spec.name, err)
			}
			accepted := time.Now()
			want := seen + 1
			for seen < want {
				select {
				case ev := <-events:
					seen = ev.n
					if seen >= want {
						lat = append(lat, ev.at.Sub(accepted))
					}
				case <-time.After(benchReplyTimeout):
					b.Fatalf("message %d: no EXISTS %d on %s within %s (last %d)", k, want, c.nodes[2].spec.name, benchReplyTimeout, seen)
				}
			}
			if err := mx.c.Reset(); err != nil {
				b.Fatalf("RSET: %v", err)
			}
		}
	}
	b.StopTimer()
	reportLatencies(b, "", lat)
	if err := idle.Close(); err != nil {
		b.Errorf("close IDLE: %v", err)
	}
}

// BenchmarkMailIMAP: 10,000 messages of 2–10 KiB in one INBOX (delivered
// over MX at concurrency 32 through all nodes, not timed), then through
// node 2's IMAPS: LOGIN+SELECT, UID FETCH 1:* of whole bodies, of headers
// and of flags, SEARCH TEXT for a word in 1% of the messages, and UID STORE
// 1:* +FLAGS (\Seen), each timed on its own. Then each node's memory.
func BenchmarkMailIMAP(b *testing.B) {
	const (
		count   = 10000
		fillers = 32
		word    = "quokkafjord" // in every 100th message's body
	)
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = benchBody(2<<10 + i*128) // 2 KiB .. ~10 KiB
	}
	msg := func(k int) []byte {
		body := bodies[k%len(bodies)]
		if k%100 == 0 {
			body = append([]byte(word+"\r\n"), body...)
		}
		return benchMessage(k, body)
	}

	c := benchFormCluster(b)
	node2 := c.nodes[1]
	stored := 0 // messages in the INBOX
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		fill := benchDeliver(b, c.mxAddrs(), count, fillers, msg)
		b.ReportMetric(float64(len(fill.latencies))/fill.elapsed.Seconds(), "fill-msgs/s")
		fill.reportErrors(b, "fill-")
		stored += len(fill.latencies)
		c.waitMessages(b, 1, stored)
		b.StartTimer()

		var cl *imapclient.Client
		timed(b, "login-select", func() {
			cl = c.imapLogin(b, 1, nil)
			if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
				b.Fatalf("select on %s: %v", node2.spec.name, err)
			}
		})
		all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}} // 1:*

		var bodyBytes int64
		d := timed(b, "fetch-body", func() {
			bodyBytes = fetchAll(b, cl, all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		})
		b.ReportMetric(float64(bodyBytes)/1e6/d.Seconds(), "fetch-body-MB/s")
		timed(b, "fetch-header", func() {
			fetchAll(b, cl, all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}})
		})
		timed(b, "fetch-flags", func() {
			fetchAll(b, cl, all, &imap.FetchOptions{Flags: true})
		})
		timed(b, "search-text", func() {
			data, err := cl.Search(&imap.SearchCriteria{Text: []string{word}}, nil).Wait()
			if err != nil {
				b.Fatalf("search: %v", err)
			}
			b.ReportMetric(float64(len(data.AllSeqNums())), "search-hits")
		})
		timed(b, "store-seen", func() {
			err := cl.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
			if err != nil {
				b.Fatalf("store: %v", err)
			}
		})
		if err := cl.Logout().Wait(); err != nil {
			b.Errorf("logout: %v", err)
		}
	}
	b.StopTimer()
	c.reportMemory(b)
}

// timed runs f, reports its duration as name-ms and returns it.
func timed(b *testing.B, name string, f func()) time.Duration {
	start := time.Now()
	f()
	d := time.Since(start)
	b.ReportMetric(ms(d), name+"-ms")
	return d
}

// fetchAll runs UID FETCH set with opts, reads every literal and returns
// the number of literal bytes received.
func fetchAll(tb testing.TB, c *imapclient.Client, set imap.UIDSet, opts *imap.FetchOptions) int64 {
	tb.Helper()
	cmd := c.Fetch(set, opts)
	var n int64
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if sec, ok := item.(imapclient.FetchItemDataBodySection); ok && sec.Literal != nil {
				m, err := io.Copy(io.Discard, sec.Literal)
				if err != nil {
					tb.Fatalf("fetch: read literal: %v", err)
				}
				n += m
			}
		}
	}
	if err := cmd.Close(); err != nil {
		tb.Fatalf("fetch: %v", err)
	}
	return n
}

// ---- Load generation over SMTP MX ----

// deliverResult is the outcome of benchDeliver: one latency per accepted
// message, failures counted by reply code ("conn" when the connection
// broke without a reply), and the wall time of the whole run.
type deliverResult struct {
	latencies []time.Duration
	errs      map[string]int
	elapsed   time.Duration
}

func (r deliverResult) reportErrors(b *testing.B, prefix string) {
	for code, n := range r.errs {
		b.ReportMetric(float64(n), prefix+"err-"+code)
	}
}

// benchDeliver sends count messages, msg(k) for k in [0, count), to
// benchUser through conc connections, connection i to addrs[i%len(addrs)],
// each sending its share in a loop with RSET in between. Every message is
// sent once; a failure is counted, not retried. A connection that breaks
// is dialled again.
func benchDeliver(tb testing.TB, addrs []string, count, conc int, msg func(k int) []byte) deliverResult {
	tb.Helper()
	var (
		next atomic.Int64
		mu   sync.Mutex
		res  = deliverResult{errs: map[string]int{}}
		wg   sync.WaitGroup
	)
	conns := make([]*mxConn, conc)
	for i := range conns {
		conns[i] = dialMX(tb, addrs[i%len(addrs)])
	}
	start := time.Now()
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[i]
			var lat []time.Duration
			fail := func(code string) {
				mu.Lock()
				res.errs[code]++
				mu.Unlock()
			}
			defer func() {
				if c != nil {
					c.close()
				}
				mu.Lock()
				res.latencies = append(res.latencies, lat...)
				mu.Unlock()
			}()
			for k := int(next.Add(1) - 1); k < count; k = int(next.Add(1) - 1) {
				d, err := c.send(benchUser, msg(k))
				var se *smtp.SMTPError
				switch {
				case err == nil:
					lat = append(lat, d)
				case errors.As(err, &se):
					fail(strconv.Itoa(se.Code))
				default:
					fail("conn") // no reply: the connection broke
				}
				broken := err != nil && se == nil
				if !broken {
					if err := c.c.Reset(); err != nil {
						fail("rset")
						broken = true
					}
				}
				if !broken {
					continue
				}
				c.close()
				if c, err = tryDialMX(addrs[i%len(addrs)]); err != nil {
					tb.Errorf("redial %s: %v", addrs[i%len(addrs)], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// mxConn is an SMTP client connection that remembers when it last wrote,
// so that a DATA latency can start at the final ".".
type mxConn struct {
	c    *smtp.Client
	conn *writeTimer
}

// writeTimer is a net.Conn that records when its last Write returned. The
// SMTP client is used by one goroutine at a time, so it needs no lock.
type writeTimer struct {
	net.Conn
	lastWrite time.Time
}

func (w *writeTimer) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.lastWrite = time.Now()
	return n, err
}

func dialMX(tb testing.TB, addr string) *mxConn {
	tb.Helper()
	c, err := tryDialMX(addr)
	if err != nil {
		tb.Fatalf("dial MX %s: %v", addr, err)
	}
	return c
}

func tryDialMX(addr string) (*mxConn, error) {
	conn, err := net.DialTimeout("tcp", addr, benchReplyTimeout)
	if err != nil {
		return nil, err
	}
	wt := &writeTimer{Conn: conn}
	c := smtp.NewClient(wt)
	c.CommandTimeout = benchReplyTimeout
	c.SubmissionTimeout = benchReplyTimeout
	if err := c.Hello("bench.client.example"); err != nil {
		c.Close()
		return nil, err
	}
	return &mxConn{c: c, conn: wt}, nil
}

// send runs one transaction (MAIL, RCPT, DATA) for rcpt and returns the
// time from the end of the data to the 250 reply. It does not RSET.
func (m *mxConn) send(rcpt string, msg []byte) (time.Duration, error) {
	if err := m.c.Mail(benchSender, nil); err != nil {
		return 0, err
	}
	if err := m.c.Rcpt(rcpt, nil); err != nil {
		return 0, err
	}
	w, err := m.c.Data()
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(msg); err != nil {
		return 0, err
	}
	if _, err := w.CloseWithResponse(); err != nil {
		return 0, err
	}
	return time.Since(m.conn.lastWrite), nil
}

func (m *mxConn) close() {
	if m.c.Quit() != nil {
		m.c.Close()
	}
}

// benchBody is a fixed plain-text body of exactly size bytes in CRLF lines.
func benchBody(size int) []byte {
	const line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
	body := bytes.Repeat([]byte(line), size/len(line)+1)[:size]
	if size >= 2 {
		copy(body[size-2:], "\r\n")
	}
	return body
}

// benchMessage is message number k: headers unique to k, then body.
func benchMessage(k int, body []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(body) + 300)
	fmt.Fprintf(&buf, "From: <%s>\r\nTo: <%s>\r\nSubject: bench message %d\r\n", benchSender, benchUser, k)
	fmt.Fprintf(&buf, "Date: %s\r\nMessage-ID: <%d.%d@sender.example>\r\nX-Bench-Seq: %d\r\n\r\n",
		time.Now().Format(time.RFC1123Z), k, time.Now().UnixNano(), k)
	buf.Write(body)
	return buf.Bytes()
}

// ---- Figures ----

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of ds, or
// 0 for none. ds is not modified.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reportLatencies reports the p50, p99 and maximum of ds in milliseconds.
func reportLatencies(b *testing.B, prefix string, ds []time.Duration) {
	b.ReportMetric(ms(percentile(ds, 50)), prefix+"p50-ms")
	b.ReportMetric(ms(percentile(ds, 99)), prefix+"p99-ms")
	b.ReportMetric(ms(percentile(ds, 100)), prefix+"max-ms")
}

// reportMemory reports each node's resident set now (rss-nodeN-MiB) and at
// its peak (hwm-nodeN-MiB, VmHWM) from /proc/<pid>/status.
func (c *benchCluster) reportMemory(b *testing.B) {
	for i, n := range c.nodes {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
		if err != nil {
			b.Logf("memory of %s: %v", n.spec.name, err)
			continue
		}
		for _, f := range []struct{ field, metric string }{{"VmRSS:", "rss"}, {"VmHWM:", "hwm"}} {
			if kb, ok := procStatusKB(st, f.field); ok {
				b.ReportMetric(float64(kb)/1024, fmt.Sprintf("%s-node%d-MiB", f.metric, i+1))
			}
		}
	}
}

// procStatusKB finds "field   123 kB" in a /proc/<pid>/status text.
func procStatusKB(status []byte, field string) (int64, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			fs := strings.Fields(rest)
			if len(fs) == 2 && fs[1] == "kB" {
				v, err := strconv.ParseInt(fs[0], 10, 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// ---- Cluster of real processes ----

// benchCluster is three serve processes with benchDomain and benchUser.
type benchCluster struct {
	nodes []*benchNode
}

// benchNode is one serve process. spec holds the harness's addresses, data
// directory and flags; its t is nil, so only its nodeFlags and adminFlags
// may be used.
type benchNode struct {
	spec *node
	bin  string // the raftmail binary
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func (c *benchCluster) mxAddrs() []string {
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.spec.smtpAddr)
	}
	return addrs
}

// benchFormCluster forms a three-node cluster as an operator would (init
// and serve the first node; token, join and serve each other one) with the
// production timings, adds benchDomain and benchUser, and returns once
// every node knows the user. The processes stop when b ends.
func benchFormCluster(b *testing.B) *benchCluster {
	b.Helper()
	if testing.Short() {
		b.Skip("real-process benchmark: skipped with -short")
	}
	if raceEnabled() {
		b.Skip("real-process benchmark: figures under the race detector mean nothing")
	}
	start := time.Now()
	c := &benchCluster{}
	for i := range 3 {
		root := b.TempDir()
		name := fmt.Sprintf("node%d", i+1)
		spec := &node{
			name:        name,
			dir:         filepath.Join(root, name),
			clusterAddr: loopback(benchFreePort(b)),
			gossipAddr:  loopback(benchFreePort(b)),
			adminAddr:   loopback(benchFreePort(b)),
			logPath:     filepath.Join(root, name+".log"),

			smtpAddr:       loopback(benchFreePort(b)),
			submissionAddr: loopback(benchFreePort(b)),
			imapsAddr:      loopback(benchFreePort(b)),
			pop3sAddr:      loopback(benchFreePort(b)),
		}
		c.nodes = append(c.nodes, &benchNode{spec: spec, bin: benchBinary(b)})
	}
	first := c.nodes[0]
	benchCLI(b, append([]string{"init"}, first.spec.nodeFlags()...)...)
	first.start(b)
	for _, n := range c.nodes[1:] {
		var tok ops.TokenCreated
		first.cliJSON(b, &tok, "token", "create", "--ttl", "10m", "--json")
		benchCLI(b, append(append([]string{"join", "--token", tok.Token}, n.spec.nodeFlags()...), first.spec.clusterAddr)...)
		n.start(b)
	}
	benchWait(b, "3 reachable voters and a leader", func() (bool, string) {
		var st []cluster.NodeStatus
		if err := first.tryCLIJSON(&st, "status", "--json"); err != nil {
			return false, err.Error()
		}
		return healthy(st, 3)
	})
	first.cli(b, "", "domain", "add", benchDomain)
	first.cli(b, benchPassword+"\n", "user", "add", benchUser, "--password-stdin")
	for _, n := range c.nodes {
		benchWait(b, benchUser+" on "+n.spec.name, func() (bool, string) {
			var users []ops.UserInfo
			if err := n.tryCLIJSON(&users, "user", "list", "--json"); err != nil {
				return false, err.Error()
			}
			return slices.ContainsFunc(users, func(u ops.UserInfo) bool { return u.Address == benchUser }), fmt.Sprint(users)
		})
	}
	b.Logf("formed a 3-node cluster with production timings in %s", time.Since(start).Round(time.Millisecond))
	return c
}

// start runs `raftmail serve` for n with the default (production) timings
// and waits until its admin API answers; it is stopped with SIGTERM when b
// ends, and its log is checked for panics.
func (n *benchNode) start(b *testing.B) {
	b.Helper()
	logf, err := os.OpenFile(n.spec.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(n.bin, append([]string{"serve"}, n.spec.nodeFlags()...)...)
	cmd.Env = cliEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", n.spec.name, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()
	b.Cleanup(func() { n.stop(b) })
	benchWait(b, n.spec.name+"'s admin API", func() (bool, string) {
		select {
		case <-n.done:
			b.Fatalf("%s exited during start-up: %v\n%s", n.spec.name, cmd.ProcessState, tail(n.spec.logPath, 30))
		default:
		}
		_, err := n.tryCLI("", "status")
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// stop sends SIGTERM and waits (bounded), then checks the exit status and
// the log.
func (n *benchNode) stop(b *testing.B) {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if code := n.cmd.ProcessState.ExitCode(); code != 0 {
			b.Errorf("%s exited with status %d after SIGTERM\n%s", n.spec.name, code, tail(n.spec.logPath, 30))
		}
	case <-time.After(stopTimeout):
		b.Errorf("%s did not stop within %s of SIGTERM; killing it", n.spec.name, stopTimeout)
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	if log, err := os.ReadFile(n.spec.logPath); err == nil && bytes.Contains(log, []byte("panic:")) {
		b.Errorf("%s's log (%s) contains a panic:\n%s", n.spec.name, n.spec.logPath, tail(n.spec.logPath, 40))
	}
}

// tryCLI runs a client command against n and returns its standard output,
// or an error with its standard error.
func (n *benchNode) tryCLI(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append(args, n.spec.adminFlags()...)...)
	cmd.Env = cliEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("raftmail %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (n *benchNode) tryCLIJSON(out any, args ...string) error {
	stdout, err := n.tryCLI("", args...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(stdout), out)
}

// cli runs a client command against n; it must succeed.
func (n *benchNode) cli(tb testing.TB, stdin string, args ...string) string {
	tb.Helper()
	out, err := n.tryCLI(stdin, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func (n *benchNode) cliJSON(tb testing.TB, out any, args ...string) {
	tb.Helper()
	if err := n.tryCLIJSON(out, args...); err != nil {
		tb.Fatal(err)
	}
}

// benchCLI runs a command that needs no node (init, join); it must
// succeed.
func benchCLI(tb testing.TB, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, benchBinary(tb), args...)
	cmd.Env = cliEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("raftmail %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// imapLogin dials node i's IMAPS and logs in as benchUser.
func (c *benchCluster) imapLogin(tb testing.TB, i int, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	tb.Helper()
	cl, err := imapclient.DialTLS(c.nodes[i].spec.imapsAddr, &imapclient.Options{TLSConfig: benchClientTLS, UnilateralDataHandler: h})
	if err != nil {
		tb.Fatalf("dial IMAPS of %s: %v", c.nodes[i].spec.name, err)
	}
	tb.Cleanup(func() { cl.Close() })
	if err := cl.Login(benchUser, benchPassword).Wait(); err != nil {
		tb.Fatalf("login on %s: %v", c.nodes[i].spec.name, err)
	}
	return cl
}

// waitMessages waits until node i's INBOX holds want messages (STATUS, so
// that no mailbox is selected before the timed SELECT).
func (c *benchCluster) waitMessages(tb testing.TB, i, want int) {
	tb.Helper()
	cl := c.imapLogin(tb, i, nil)
	defer cl.Logout()
	benchWait(tb, fmt.Sprintf("%d messages on %s", want, c.nodes[i].spec.name), func() (bool, string) {
		st, err := cl.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return false, err.Error()
		}
		return int(*st.NumMessages) == want, fmt.Sprintf("%d messages", *st.NumMessages)
	})
}

// benchWait polls cond until it is true, or fails after benchReplyTimeout.
func benchWait(tb testing.TB, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(benchReplyTimeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s; last: %s", benchReplyTimeout, what, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchBinary builds the binary once per test process, without the race
// detector, sharing binary()'s build (benchFormCluster skips under -race).
func benchBinary(tb testing.TB) string {
	tb.Helper()
	e2e.buildOnce.Do(func() {
		bin := filepath.Join(e2e.dir, "raftmail")
		if out, err := exec.Command(goTool(), "build", "-o", bin, ".").CombinedOutput(); err != nil {
			e2e.buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		e2e.bin = bin
	})
	if e2e.buildErr != nil {
		tb.Fatal(e2e.buildErr)
	}
	return e2e.bin
}

// benchFreePort returns a loopback port free for TCP and UDP, not handed
// out before in this process (shared with freePort's bookkeeping).
func benchFreePort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", loopback(port))
		l.Close()
		if err != nil {
			continue
		}
		pc.Close()
		e2e.portsMu.Lock()
		taken := e2e.ports[port]
		if !taken {
			if e2e.ports == nil {
				e2e.ports = map[int]bool{}
			}
			e2e.ports[port] = true
		}
		e2e.portsMu.Unlock()
		if !taken {
			return port
		}
	}
	tb.Fatal("free port: found none free for both TCP and UDP")
	return 0
}
