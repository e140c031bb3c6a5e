package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
)

// launchTestTimeout bounds every wait for the cluster in these tests; it
// is not an assertion.
const launchTestTimeout = 90 * time.Second

// launchTestBuild holds raftmail binaries built once per test process,
// by build flavour.
var launchTestBuild struct {
	sync.Mutex
	bins map[string]string
	dir  string
}

// launchTestBinary builds the raftmail binary (once per flavour) and
// returns its path: static (CGO_ENABLED=0, for the image FROM scratch), or
// with the race detector when this test binary has it, so that races in
// the real nodes are found too. It skips under -short.
func launchTestBinary(t *testing.T, static bool) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real raftmail nodes: skipped with -short")
	}
	launchTestBuild.Lock()
	defer launchTestBuild.Unlock()
	flavour := "plain"
	args := []string{"build", "-trimpath"}
	env := os.Environ()
	switch {
	case static:
		flavour = "static"
		env = append(env, "CGO_ENABLED=0")
	case launchTestRace():
		flavour = "race"
		args = append(args, "-race")
	}
	if bin, ok := launchTestBuild.bins[flavour]; ok {
		return bin
	}
	if launchTestBuild.dir == "" {
		// Not t.TempDir: the binary outlives this test.
		dir, err := os.MkdirTemp("", "raftmail-chaos-bin-")
		if err != nil {
			t.Fatal(err)
		}
		launchTestBuild.dir = dir
		launchTestBuild.bins = map[string]string{}
	}
	bin := filepath.Join(launchTestBuild.dir, "raftmail-"+flavour)
	start := time.Now()
	cmd := exec.Command(launchTestGo(), append(args, "-o", bin, "github.com/raftmail/raftmail/cmd/raftmail")...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %s", bin, time.Since(start).Round(time.Millisecond))
	launchTestBuild.bins[flavour] = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if launchTestBuild.dir != "" {
		os.RemoveAll(launchTestBuild.dir)
	}
	os.Exit(code)
}

func launchTestGo() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func launchTestRace() bool {
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

// launchTestWait polls cond until it reports true, failing the test with
// cond's last detail after launchTestTimeout.
func launchTestWait(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(launchTestTimeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", launchTestTimeout, what, detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// launchTestConverged waits until status through via shows every node a
// reachable voter that agrees on one leader, with the same applied index
// and state hash and no missing blobs.
func launchTestConverged(t *testing.T, c Cluster, via string) {
	t.Helper()
	info := launchTestNode(t, c, via)
	want := len(c.Nodes())
	launchTestWait(t, fmt.Sprintf("%d converged voters (status via %s)", want, via), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		st, err := launchStatus(ctx, info)
		if err != nil {
			return false, err.Error()
		}
		return launchTestSame(st, want)
	})
}

// launchTestSame is launchFormed plus one applied index and state hash.
func launchTestSame(st []cluster.NodeStatus, want int) (bool, string) {
	ok, sum := launchFormed(st, want)
	if !ok {
		return false, sum
	}
	for _, s := range st {
		if s.AppliedIndex != st[0].AppliedIndex || s.StateHash != st[0].StateHash || s.HashIndex != st[0].HashIndex || s.MissingBlobs != 0 {
			return false, sum
		}
	}
	return true, sum
}

func launchTestNode(t *testing.T, c Cluster, name string) NodeInfo {
	t.Helper()
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %q in %v", name, c.Nodes())
	return NodeInfo{}
}

// launchTestRoles returns the leader's name and the others', as status
// through via shows them once there is a leader.
func launchTestRoles(t *testing.T, c Cluster, via string) (leader string, followers []string) {
	t.Helper()
	info := launchTestNode(t, c, via)
	launchTestWait(t, "a leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		st, err := launchStatus(ctx, info)
		if err != nil {
			return false, err.Error()
		}
		ok, sum := launchFormed(st, len(c.Nodes()))
		if !ok {
			return false, sum
		}
		leader, followers = "", nil
		for _, s := range st {
			if s.Role == "Leader" {
				leader = s.Name
			} else {
				followers = append(followers, s.Name)
			}
		}
		return true, sum
	})
	return leader, followers
}

// launchTestAdmin is an admin API client for node.
func launchTestAdmin(t *testing.T, c Cluster, node string) *ops.Client {
	t.Helper()
	n := launchTestNode(t, c, node)
	return &ops.Client{Addr: n.Admin, Token: n.AdminToken, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// launchTestAddDomain adds domain through node's admin API.
func launchTestAddDomain(ctx context.Context, a *ops.Client, domain string) error {
	return a.Do(ctx, http.MethodPost, "/v1/domains", ops.DomainRequest{Name: domain}, nil)
}

// launchTestHasDomain reports whether node lists domain.
func launchTestHasDomain(t *testing.T, c Cluster, node, domain string) (bool, string) {
	t.Helper()
	var ds []struct{ Name string }
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := launchTestAdmin(t, c, node).Do(ctx, http.MethodGet, "/v1/domains", nil, &ds); err != nil {
		return false, err.Error()
	}
	for _, d := range ds {
		if d.Name == domain {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s lists %v", node, ds)
}

// launchTestWrite adds a domain through node and waits until every node
// lists it.
func launchTestWrite(t *testing.T, c Cluster, node, domain string) {
	t.Helper()
	launchTestWrite2(t, c, node, "", domain)
}

// launchTestStep runs one step as a subtest and stops the test when it
// fails: the later steps need the cluster the earlier ones left.
func launchTestStep(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// TestProcessLauncher runs the process backend's faults on 127.0.0.1 and,
// as root where `ip netns` works, in a network namespace per node, where
// the link faults are tested too (TestNetnsLinks).
func TestProcessLauncher(t *testing.T) {
	bin := launchTestBinary(t, false)
	t.Run("loopback", func(t *testing.T) { launchTestProcess(t, bin, NetnsOff) })
	t.Run("netns", func(t *testing.T) {
		if why := netnsAvailable(); why != nil {
			t.Skipf("no network namespaces: %v", why)
		}
		launchTestProcess(t, bin, NetnsOn)
	})
}

func launchTestProcess(t *testing.T, bin string, mode NetnsMode) {
	dir := t.TempDir()
	opts := LaunchOptions{Binary: bin, Dir: dir, RaftTimeout: 300 * time.Millisecond}
	root := os.Geteuid() == 0
	if root {
		opts.DiskLimitBytes = 256 << 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := ProcessLauncher{Logf: t.Logf, Netns: mode}.Launch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			for _, n := range []string{"node1", "node2", "node3"} {
				t.Log(launchTail(filepath.Join(dir, n+".log"), 30))
			}
		}
	})
	nodes := c.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("Nodes() = %v, want 3", nodes)
	}
	for i, n := range nodes {
		if want := fmt.Sprintf("node%d", i+1); n.Name != want {
			t.Errorf("node %d is %q, want %q", i, n.Name, want)
		}
		if n.AdminToken == "" || n.SMTP == "" || n.Submission == "" || n.IMAPS == "" || n.POP3S == "" || n.Admin == "" || n.ClusterAddress == "" {
			t.Errorf("incomplete NodeInfo: %+v", n)
		}
	}
	launchTestConverged(t, c, "node1")

	if mode == NetnsOff {
		for what, err := range map[string]error{
			"Partition": c.Partition("node1"), "Heal": c.Heal(), "Cut": c.Cut("node1", "node2"),
			"CutOneWay": c.CutOneWay("node1", "node2"), "Degrade": c.Degrade("node1", LinkFault{Delay: time.Millisecond}),
			"Supports": c.Supports(NeedPartition),
		} {
			if !errors.Is(err, ErrNotSupported) {
				t.Errorf("%s on 127.0.0.1 = %v, want ErrNotSupported", what, err)
			}
		}
	} else {
		launchTestStep(t, "Namespaces", func(t *testing.T) { netnsTestProcesses(t, c.(*procCluster), bin) })
		launchTestStep(t, "PartitionLeader", func(t *testing.T) { launchTestPartitionLeader(t, c) })
		launchTestStep(t, "Links", func(t *testing.T) { netnsTestLinks(t, c.(*procCluster)) })
	}

	launchTestStep(t, "KillLeader", func(t *testing.T) {
		leader, followers := launchTestRoles(t, c, "node1")
		if err := c.Kill(leader); err != nil {
			t.Fatal(err)
		}
		// The two others elect a leader and take writes.
		launchTestWrite2(t, c, followers[0], leader, "after-kill.test")
		if err := c.Start(leader); err != nil {
			t.Fatal(err)
		}
		launchTestConverged(t, c, leader)
	})

	launchTestStep(t, "PauseFollower", func(t *testing.T) {
		_, followers := launchTestRoles(t, c, "node1")
		f := followers[0]
		if err := c.Pause(f); err != nil {
			t.Fatal(err)
		}
		var other string
		for _, n := range c.Nodes() {
			if n.Name != f {
				other = n.Name
				break
			}
		}
		launchTestWrite2(t, c, other, f, "during-pause.test")
		if err := c.Resume(f); err != nil {
			t.Fatal(err)
		}
		launchTestConverged(t, c, f)
		if ok, detail := launchTestHasDomain(t, c, f, "during-pause.test"); !ok {
			t.Error(detail)
		}
	})

	launchTestStep(t, "WipeFollower", func(t *testing.T) {
		_, followers := launchTestRoles(t, c, "node1")
		f := followers[0]
		before := launchTestNode(t, c, f)
		if err := c.Wipe(f); err != nil {
			t.Fatal(err)
		}
		if after := launchTestNode(t, c, f); after != before {
			t.Errorf("Wipe changed the NodeInfo: %+v, was %+v", after, before)
		}
		launchTestConverged(t, c, f)
		// The new member has every earlier write, and takes new ones.
		for _, d := range []string{"after-kill.test", "during-pause.test"} {
			if ok, detail := launchTestHasDomain(t, c, f, d); !ok {
				t.Error(detail)
			}
		}
		launchTestWrite(t, c, f, "after-wipe.test")
		launchTestConverged(t, c, "node1")
	})

	launchTestStep(t, "FillDisk", func(t *testing.T) {
		_, followers := launchTestRoles(t, c, "node1")
		f := followers[0]
		err := c.FillDisk(f)
		if !root {
			if !errors.Is(err, ErrNotSupported) {
				t.Fatalf("FillDisk without root = %v, want ErrNotSupported", err)
			}
			t.Skip("FillDisk needs root (a tmpfs per node)")
		}
		if err != nil {
			t.Fatal(err)
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(filepath.Join(dir, f), &fs); err != nil {
			t.Fatal(err)
		}
		if free := fs.Bavail * uint64(fs.Bsize); free > 1<<20 {
			t.Errorf("after FillDisk, %d bytes free on %s's file system", free, f)
		}
		if err := c.FreeDisk(f); err != nil {
			t.Fatal(err)
		}
		launchTestWrite(t, c, "node1", "after-disk.test")
		launchTestConverged(t, c, f)
	})

	var net *netnsNet
	if pc, ok := c.(*procCluster); ok {
		net = pc.net
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	if net != nil {
		netnsTestGone(t, net.id)
	}
	if out, err := exec.Command("findmnt", "-rn", "-o", "TARGET").Output(); err == nil && strings.Contains(string(out), dir) {
		t.Errorf("Close left mounts under %s:\n%s", dir, out)
	}
	for _, n := range []string{"node1.log", "node2.log", "node3.log"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("Close with LaunchOptions.Dir should keep the logs: %v", err)
		}
	}
}

// launchTestWrite2 adds domain through node and waits until every node
// but skip (unavailable, or "") lists it.
func launchTestWrite2(t *testing.T, c Cluster, node, skip, domain string) {
	t.Helper()
	launchTestWait(t, "a write through "+node, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := launchTestAddDomain(ctx, launchTestAdmin(t, c, node), domain)
		var ae *ops.APIError
		if err == nil || errors.As(err, &ae) && ae.Status == http.StatusConflict {
			return true, ""
		}
		return false, err.Error()
	})
	for _, n := range c.Nodes() {
		if n.Name == skip {
			continue
		}
		launchTestWait(t, n.Name+" listing "+domain, func() (bool, string) { return launchTestHasDomain(t, c, n.Name, domain) })
	}
}

// TestDockerfileInSync: the Docker backend builds from its own copy of
// the repository's Dockerfile.
func TestDockerfileInSync(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != dockerfile {
		t.Errorf("chaos/launcher_docker.go's dockerfile differs from ../Dockerfile: copy the file into the constant")
	}
}

// TestComposeConfig: deploy/docker-compose.yml is a valid compose file.
func TestComposeConfig(t *testing.T) {
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose not installed")
	}
	out, err := exec.Command(compose, "-f", filepath.Join("..", "deploy", "docker-compose.yml"), "config", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}

// dockerTestAvailable reports whether `docker info` answers.
func dockerTestAvailable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info").Run() == nil
}

// TestDockerLauncher runs only with RAFTMAIL_TEST_DOCKER=1 and a working
// Docker: CI does not depend on Docker.
func TestDockerLauncher(t *testing.T) {
	if os.Getenv("RAFTMAIL_TEST_DOCKER") != "1" {
		t.Skip("set RAFTMAIL_TEST_DOCKER=1 to run the Docker backend's test")
	}
	if !dockerTestAvailable() {
		t.Skip("docker info does not answer")
	}
	bin := launchTestBinary(t, true)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cl, err := DockerLauncher{Logf: t.Logf}.Launch(ctx, LaunchOptions{Binary: bin, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := cl.(*dockerCluster)
	closed := false
	t.Cleanup(func() {
		if !closed {
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			for _, n := range []string{"node1", "node2", "node3"} {
				t.Log(launchTail(filepath.Join(dir, n+".log"), 30))
			}
		}
	})
	launchTestConverged(t, c, "node1")
	if err := c.FillDisk("node1"); !errors.Is(err, ErrNotSupported) {
		t.Errorf("FillDisk = %v, want ErrNotSupported", err)
	}

	launchTestStep(t, "PartitionLeader", func(t *testing.T) { launchTestPartitionLeader(t, c) })

	launchTestStep(t, "KillPauseWipe", func(t *testing.T) {
		_, followers := launchTestRoles(t, c, "node1")
		f, other := followers[0], followers[1]
		if err := c.Kill(f); err != nil {
			t.Fatal(err)
		}
		launchTestWrite2(t, c, other, f, "during-kill.test")
		if err := c.Start(f); err != nil {
			t.Fatal(err)
		}
		launchTestConverged(t, c, f)
		if err := c.Pause(f); err != nil {
			t.Fatal(err)
		}
		launchTestWrite2(t, c, other, f, "during-pause.test")
		if err := c.Resume(f); err != nil {
			t.Fatal(err)
		}
		launchTestConverged(t, c, f)
		before := launchTestNode(t, c, f)
		if err := c.Wipe(f); err != nil {
			t.Fatal(err)
		}
		if after := launchTestNode(t, c, f); after != before {
			t.Errorf("Wipe changed the NodeInfo: %+v, was %+v", after, before)
		}
		launchTestConverged(t, c, f)
		for _, d := range []string{"majority.test", "during-kill.test", "during-pause.test"} {
			if ok, detail := launchTestHasDomain(t, c, f, d); !ok {
				t.Error(detail)
			}
		}
	})

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	for _, kind := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
		args := append(kind, "--filter", "label="+dockerLabel+"="+c.id)
		out, err := exec.Command("docker", args...).Output()
		if err != nil {
			t.Fatalf("docker %v: %v", args, err)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("Close left Docker objects (docker %s): %s", strings.Join(args, " "), s)
		}
	}
	for _, n := range []string{"node1.log", "node2.log", "node3.log"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("Close with LaunchOptions.Dir should keep the logs: %v", err)
		}
	}
}

// launchTestPartitionLeader partitions the leader: it answers writes 503,
// the majority takes them, and after Heal everyone converges on the
// majority's writes only.
func launchTestPartitionLeader(t *testing.T, c Cluster) {
	leader, followers := launchTestRoles(t, c, "node1")
	if err := c.Partition(leader); err != nil {
		t.Fatal(err)
	}
	// Cut off from the others, the old leader cannot commit: the
	// admin API answers 503 (no quorum).
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := launchTestAddDomain(ctx, launchTestAdmin(t, c, leader), "partitioned.test")
		cancel()
		var ae *ops.APIError
		if err == nil {
			t.Fatalf("a write through the partitioned %s succeeded", leader)
		}
		if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
			t.Logf("the partitioned %s answered %d after %s: %s", leader, ae.Status, time.Since(start).Round(time.Millisecond), ae.Msg)
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no 503 from the partitioned %s within 30s; last: %v", leader, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The majority elects a leader and takes writes.
	launchTestWrite2(t, c, followers[0], leader, "majority.test")
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	launchTestConverged(t, c, leader)
	if ok, detail := launchTestHasDomain(t, c, leader, "majority.test"); !ok {
		t.Error(detail)
	}
	if ok, _ := launchTestHasDomain(t, c, leader, "partitioned.test"); ok {
		t.Error("a write refused with 503 during the partition was applied after all")
	}
}
