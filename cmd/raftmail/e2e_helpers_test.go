package main

// Helpers for the end-to-end tests in e2e_test.go: they build the real
// raftmail binary once, run nodes as separate processes on loopback, each
// with its own data directory, and drive them with the CLI.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

// Fast timings for test clusters (see config.go).
var fastTimings = []string{"--raft-timeout", "300ms", "--gossip-interval", "100ms"}

const (
	// cliTimeout guards every CLI run against hangs; it is not an assertion.
	cliTimeout = 60 * time.Second
	// clusterTimeout bounds waits for the cluster to converge.
	clusterTimeout = 60 * time.Second
	// stopTimeout is how long a node gets to stop after SIGTERM.
	stopTimeout = 15 * time.Second
)

var e2e struct {
	dir string // holds the binary and XDG_DATA_HOME for the CLI runs

	buildOnce sync.Once
	bin       string
	buildErr  error

	portsMu sync.Mutex
	ports   map[int]bool // handed out already in this process
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "raftmail-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	e2e.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary builds the raftmail binary once per test process and returns its
// path. It skips the calling test under -short.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	e2e.buildOnce.Do(func() {
		start := time.Now()
		bin := filepath.Join(e2e.dir, "raftmail")
		args := []string{"build", "-o", bin}
		if raceEnabled() {
			args = append(args, "-race") // find races in the real nodes too
		}
		cmd := exec.Command(goTool(), append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			e2e.buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		e2e.bin = bin
		t.Logf("built %s (race detector %v) in %s", bin, raceEnabled(), time.Since(start).Round(time.Millisecond))
	})
	if e2e.buildErr != nil {
		t.Fatal(e2e.buildErr)
	}
	return e2e.bin
}

// goTool is the go command: on PATH, else where the toolchain is
// installed on our machines.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// cliEnv is the environment of every process the tests start: no RAFTMAIL_*
// settings from the caller's shell, a private XDG_DATA_HOME so that a
// command without --data-dir never touches the real default data directory,
// and, unless GORACE is set already, no race-detector pause of 1s at exit
// (every CLI run would pay it).
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, envPrefix) || strings.HasPrefix(kv, "XDG_DATA_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return append(env, "XDG_DATA_HOME="+filepath.Join(e2e.dir, "xdg"))
}

// freePort returns a loopback port that is free for TCP and UDP (gossip
// uses both) and was not handed out before in this test process.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
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
	t.Fatal("free port: found none free for both TCP and UDP")
	return 0
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// cliResult is the outcome of one CLI run.
type cliResult struct {
	args     []string
	stdout   string
	stderr   string
	exitCode int // -1 when the process did not exit normally
	err      error
}

func (r cliResult) String() string {
	return fmt.Sprintf("raftmail %s: exit %d (%v)\nstdout:\n%s\nstderr:\n%s",
		strings.Join(r.args, " "), r.exitCode, r.err, r.stdout, r.stderr)
}

// runCLI runs the binary with args and stdin to completion (bounded by
// cliTimeout) and returns what happened; it does not judge the result.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = cliEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.exitCode = ee.ExitCode()
	default:
		res.exitCode = -1
	}
	if ctx.Err() != nil {
		t.Fatalf("hang guard: still running after %s: %s", cliTimeout, res)
	}
	return res
}

// mustCLI runs the CLI and fails the test unless it exits 0; it returns
// standard output.
func mustCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	res := runCLI(t, stdin, args...)
	if res.exitCode != 0 || res.err != nil {
		t.Fatalf("unexpected failure: %s", res)
	}
	return res.stdout
}

// mustCLIJSON runs the CLI (which must succeed) and decodes its standard
// output into out.
func mustCLIJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	stdout := mustCLI(t, "", args...)
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("raftmail %s: decode JSON: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

// assertFailure checks that a CLI run failed cleanly: a non-zero exit, a
// "raftmail: " message on stderr containing every phrase (case-insensitive),
// and no Go panic or stack trace.
func assertFailure(t *testing.T, res cliResult, phrases ...string) {
	t.Helper()
	if res.exitCode == 0 {
		t.Errorf("want a non-zero exit: %s", res)
		return
	}
	if res.exitCode < 0 {
		t.Errorf("did not exit normally: %s", res)
	}
	if !strings.HasPrefix(res.stderr, "raftmail: ") {
		t.Errorf("want stderr to start with %q: %s", "raftmail: ", res)
	}
	for _, p := range phrases {
		if !strings.Contains(strings.ToLower(res.stderr), strings.ToLower(p)) {
			t.Errorf("want stderr to mention %q: %s", p, res)
		}
	}
	for _, bad := range []string{"panic:", "goroutine ", "runtime error", ".go:"} {
		if strings.Contains(res.stderr, bad) {
			t.Errorf("stderr looks like a Go panic or stack trace (%q): %s", bad, res)
		}
	}
}

// waitFor polls cond until it reports true or timeout passes, then fails
// the test with the last detail cond gave. It returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, detail string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// node is one raftmail node: its data directory, addresses and, while it
// runs, its serve process.
type node struct {
	t           *testing.T
	name        string
	dir         string
	clusterAddr string
	gossipAddr  string
	adminAddr   string
	logPath     string

	// Mail listeners: MX, submission (STARTTLS), IMAP, IMAPS, POP3 and
	// POP3S; submissions (465) is off.
	smtpAddr, submissionAddr, imapAddr, imapsAddr, pop3Addr, pop3sAddr string

	// serveFlags are added to the serve command line (after the
	// defaults), for settings a test gives one node only.
	serveFlags []string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// newNode allocates a data directory and ports for a node; it does not
// create or start anything. When the test fails, the tail of the node's
// log is printed.
func newNode(t *testing.T, name string) *node {
	t.Helper()
	root := t.TempDir()
	n := &node{
		t:           t,
		name:        name,
		dir:         filepath.Join(root, name),
		clusterAddr: loopback(freePort(t)),
		gossipAddr:  loopback(freePort(t)),
		adminAddr:   loopback(freePort(t)),
		logPath:     filepath.Join(root, name+".log"),

		smtpAddr:       loopback(freePort(t)),
		submissionAddr: loopback(freePort(t)),
		imapAddr:       loopback(freePort(t)),
		imapsAddr:      loopback(freePort(t)),
		pop3Addr:       loopback(freePort(t)),
		pop3sAddr:      loopback(freePort(t)),
	}
	// Registered before any process is started, so it runs after they
	// have all been stopped and the log is complete.
	t.Cleanup(func() {
		if b, err := os.ReadFile(n.logPath); err == nil {
			for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
				if bytes.Contains(b, []byte(bad)) {
					t.Errorf("%s's log (%s) contains %q", n.name, n.logPath, bad)
				}
			}
		}
		if t.Failed() {
			t.Logf("---- last lines of %s's log (%s) ----\n%s", n.name, n.logPath, tail(n.logPath, 40))
		}
	})
	return n
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// nodeFlags are the node-local settings, the same for init, join and serve.
func (n *node) nodeFlags() []string {
	return []string{
		"--data-dir", n.dir, "--name", n.name,
		"--cluster-addr", n.clusterAddr,
		"--gossip-addr", n.gossipAddr,
		"--admin-addr", n.adminAddr,
		"--hostname", "localhost",
		"--smtp-addr", n.smtpAddr,
		"--submission-addr", n.submissionAddr,
		"--submissions-addr", "off",
		"--imap-addr", n.imapAddr,
		"--imaps-addr", n.imapsAddr,
		"--pop3-addr", n.pop3Addr,
		"--pop3s-addr", n.pop3sAddr,
		// Tests stay on loopback: DNS goes to a port where nothing
		// answers, so SPF/DKIM/DMARC lookups end in temperror (mail is
		// still accepted) and remote mail stays queued.
		"--dns-resolver", noDNS,
	}
}

// noDNS is a loopback address where no DNS server listens.
const noDNS = "127.0.0.1:9"

// adminFlags point a client command at this node's admin API.
func (n *node) adminFlags() []string {
	return []string{"--data-dir", n.dir, "--admin-addr", n.adminAddr}
}

// cli runs a client command against this node; it must succeed.
func (n *node) cli(args ...string) string {
	n.t.Helper()
	return mustCLI(n.t, "", append(args, n.adminFlags()...)...)
}

// tryCLI runs a client command against this node and returns the result.
func (n *node) tryCLI(stdin string, args ...string) cliResult {
	n.t.Helper()
	return runCLI(n.t, stdin, append(args, n.adminFlags()...)...)
}

// status is `raftmail status --json` through this node; a degraded
// cluster (exit status 1) is an answer too.
func (n *node) status() ([]cluster.NodeStatus, error) {
	n.t.Helper()
	res := n.tryCLI("", "status", "--json")
	if res.exitCode != 0 && res.exitCode != 1 {
		return nil, fmt.Errorf("status via %s: exit %d: %s", n.name, res.exitCode, strings.TrimSpace(res.stderr))
	}
	var out []cluster.NodeStatus
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		return nil, fmt.Errorf("status via %s: %v", n.name, err)
	}
	return out, nil
}

// initCluster runs `raftmail init` for this node and returns the join token
// it printed.
func (n *node) initCluster() string {
	n.t.Helper()
	out := mustCLI(n.t, "", append([]string{"init"}, n.nodeFlags()...)...)
	tok := tokenIn(out)
	if tok == "" {
		n.t.Fatalf("init %s printed no join token:\n%s", n.name, out)
	}
	return tok
}

// tokenIn finds the first join token ("rmj1.…") in s.
func tokenIn(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "rmj1.") {
			return f
		}
	}
	return ""
}

// join runs `raftmail join --token tok via` for this node.
func (n *node) join(tok, via string) cliResult {
	n.t.Helper()
	args := append([]string{"join", "--token", tok}, n.nodeFlags()...)
	return runCLI(n.t, "", append(args, via)...)
}

// start runs `raftmail serve` in the background with fast timings and
// waits until the node's admin API answers. The process is stopped when
// the test ends. Ports are picked free but another process can take one
// before the node binds it: when a mail or admin listener finds its port
// taken, the node is started again on new ones (the cluster and gossip
// ports cannot change once the node is in the cluster).
func (n *node) start() {
	n.t.Helper()
	if n.running() {
		n.t.Fatalf("start %s: already running", n.name)
	}
	for attempt := 1; ; attempt++ {
		if n.startOnce() {
			return
		}
		if attempt == 3 {
			n.t.Fatalf("%s: a port was taken at every start", n.name)
		}
		n.t.Logf("%s: a listener's port was taken by another process: starting again on new ports", n.name)
		n.adminAddr = loopback(freePort(n.t))
		n.smtpAddr, n.submissionAddr = loopback(freePort(n.t)), loopback(freePort(n.t))
		n.imapAddr, n.imapsAddr = loopback(freePort(n.t)), loopback(freePort(n.t))
		n.pop3Addr, n.pop3sAddr = loopback(freePort(n.t)), loopback(freePort(n.t))
	}
}

// startOnce is one start; false if the node exited because a mail or
// admin listener's port was taken.
func (n *node) startOnce() bool {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logf.Close() // the child has its own copy
	marker := fmt.Sprintf("==== %s: serve %s", time.Now().Format(time.RFC3339Nano), n.name)
	fmt.Fprintln(logf, marker)
	args := append(append(append([]string{"serve"}, n.nodeFlags()...), fastTimings...), n.serveFlags...)
	cmd := exec.Command(binary(n.t), args...)
	cmd.Env = cliEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.cmd, n.done = cmd, done
	n.t.Cleanup(func() { n.stopProcess(cmd, done) })

	exited := false
	d := waitFor(n.t, clusterTimeout, n.name+"'s admin API", func() (bool, string) {
		select {
		case <-done:
			exited = true
			return true, ""
		default:
		}
		res := n.tryCLI("", "status")
		// 1: the admin API answered, the cluster is degraded (this
		// node not a voter yet, another one down).
		return res.exitCode == 0 || res.exitCode == 1, strings.TrimSpace(res.stderr)
	})
	if exited {
		b, _ := os.ReadFile(n.logPath)
		_, this, _ := strings.Cut(string(b), marker)
		if strings.Contains(this, "address already in use") && !strings.Contains(this, n.clusterAddr) && !strings.Contains(this, n.gossipAddr) {
			return false
		}
		n.t.Fatalf("%s exited during start-up: %v\n%s", n.name, cmd.ProcessState, tail(n.logPath, 30))
	}
	n.t.Logf("%s (pid %d) answers on %s after %s", n.name, cmd.Process.Pid, n.adminAddr, d.Round(time.Millisecond))
	return true
}

func (n *node) running() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill stops the node with SIGKILL (kill -9) and waits until it is gone.
func (n *node) kill() {
	n.t.Helper()
	if !n.running() {
		n.t.Fatalf("kill %s: not running", n.name)
	}
	if err := n.cmd.Process.Kill(); err != nil {
		n.t.Fatalf("kill %s: %v", n.name, err)
	}
	<-n.done
	n.t.Logf("killed %s (pid %d) with SIGKILL", n.name, n.cmd.Process.Pid)
}

// stopProcess ends a serve process this test started: SIGTERM, a bounded
// wait, then SIGKILL. A no-op when it has exited already.
func (n *node) stopProcess(cmd *exec.Cmd, done chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			n.t.Errorf("%s (pid %d) exited with status %d after SIGTERM, want 0", n.name, cmd.Process.Pid, code)
		}
		return
	case <-time.After(stopTimeout):
	}
	n.t.Errorf("%s (pid %d) did not stop within %s of SIGTERM; killing it", n.name, cmd.Process.Pid, stopTimeout)
	_ = cmd.Process.Kill()
	<-done
}

// newCluster forms a cluster of size nodes the way an operator would:
// init and serve the first, then for each other node create a token on the
// first, join through the first's cluster port, and serve. It returns once
// every node is a reachable voter and there is a leader.
func newCluster(t *testing.T, size int) []*node {
	t.Helper()
	nodes := make([]*node, size)
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("node%d", i+1))
	}
	formCluster(t, nodes)
	return nodes
}

// formCluster is newCluster for nodes made by newNode (whose data
// directories a test may have prepared).
func formCluster(t *testing.T, nodes []*node) {
	t.Helper()
	start := time.Now()
	size := len(nodes)
	first := nodes[0]
	first.initCluster()
	first.start()
	for _, n := range nodes[1:] {
		var created struct {
			Token string `json:"token"`
		}
		mustCLIJSON(t, &created, append([]string{"token", "create", "--ttl", "10m", "--json"}, first.adminFlags()...)...)
		if res := n.join(created.Token, first.clusterAddr); res.exitCode != 0 {
			t.Fatalf("join %s: %s", n.name, res)
		}
		n.start()
	}
	d := waitHealthy(t, nodes[0], len(nodes))
	t.Logf("formed a %d-node cluster in %s (healthy %s after the last start)", size, time.Since(start).Round(time.Millisecond), d.Round(time.Millisecond))
}

// waitHealthy waits until status through via shows want nodes, all
// reachable voters, and exactly one of them Leader.
func waitHealthy(t *testing.T, via *node, want int) time.Duration {
	t.Helper()
	return waitFor(t, clusterTimeout, fmt.Sprintf("%d reachable voters and one leader (status via %s)", want, via.name), func() (bool, string) {
		st, err := via.status()
		if err != nil {
			return false, err.Error()
		}
		return healthy(st, want)
	})
}

// healthy reports whether st shows want reachable voters and one leader.
func healthy(st []cluster.NodeStatus, want int) (bool, string) {
	if len(st) != want {
		return false, fmt.Sprintf("%d nodes: %s", len(st), summary(st))
	}
	leaders := 0
	for _, s := range st {
		if !s.Reachable || !s.Voter {
			return false, summary(st)
		}
		if s.Role == "Leader" {
			leaders++
		}
	}
	return leaders == 1, summary(st)
}

// summary is a one-line view of a status listing for failure messages.
func summary(st []cluster.NodeStatus) string {
	var parts []string
	for _, s := range st {
		h := s.StateHash
		if len(h) > 8 {
			h = h[:8]
		}
		parts = append(parts, fmt.Sprintf("%s{role=%s voter=%v reachable=%v leader=%s applied=%d hash=%s missing=%d err=%q}",
			s.Name, s.Role, s.Voter, s.Reachable, s.Leader, s.AppliedIndex, h, s.MissingBlobs, s.Error))
	}
	return strings.Join(parts, " ")
}

// byName finds the node called name.
func byName(t *testing.T, nodes []*node, name string) *node {
	t.Helper()
	for _, n := range nodes {
		if n.name == name {
			return n
		}
	}
	t.Fatalf("no node named %q", name)
	return nil
}

// waitLeader waits until status through via shows exactly one leader
// that every reachable node agrees on, and returns it and the other nodes
// (reachable or not).
func waitLeader(t *testing.T, via *node, nodes []*node) (leader *node, others []*node) {
	t.Helper()
	waitFor(t, clusterTimeout, "an agreed leader (status via "+via.name+")", func() (bool, string) {
		st, err := via.status()
		if err != nil {
			return false, err.Error()
		}
		leader, others = nil, nil
		leaders := 0
		for _, s := range st {
			n := byName(t, nodes, s.Name)
			if s.Role == "Leader" {
				leader = n
				leaders++
			} else {
				others = append(others, n)
			}
		}
		if leaders != 1 {
			return false, summary(st)
		}
		for _, s := range st {
			if s.Reachable && s.Leader != leader.name {
				return false, summary(st)
			}
		}
		return true, ""
	})
	return leader, others
}

// domains is `domain list --json` through n.
func (n *node) domains() ([]string, error) {
	res := n.tryCLI("", "domain", "list", "--json")
	if res.exitCode != 0 {
		return nil, fmt.Errorf("domain list via %s: %s", n.name, strings.TrimSpace(res.stderr))
	}
	var ds []struct{ Name string }
	if err := json.Unmarshal([]byte(res.stdout), &ds); err != nil {
		return nil, err
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	return names, nil
}

// hasDomain reports whether n lists domain, with the listing as detail.
func (n *node) hasDomain(domain string) (bool, string) {
	ds, err := n.domains()
	if err != nil {
		return false, err.Error()
	}
	for _, d := range ds {
		if d == domain {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s lists %v", n.name, ds)
}
