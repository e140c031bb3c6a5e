package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseNetnsMode(t *testing.T) {
	for in, want := range map[string]NetnsMode{"": NetnsAuto, "auto": NetnsAuto, "on": NetnsOn, "off": NetnsOff} {
		if got, err := ParseNetnsMode(in); err != nil || got != want {
			t.Errorf("ParseNetnsMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseNetnsMode("yes"); err == nil {
		t.Error(`ParseNetnsMode("yes") did not fail`)
	}
}

// TestProcessLauncherSupports: what the process backend knows it cannot do
// before launching a cluster.
func TestProcessLauncherSupports(t *testing.T) {
	off := ProcessLauncher{Netns: NetnsOff}
	for _, need := range []Need{NeedPartition, NeedLinkCut, NeedNetem, NeedPartition | NeedDisk} {
		if err := off.Supports(need); !errors.Is(err, ErrNotSupported) {
			t.Errorf("Supports(%b) with network namespaces off = %v, want ErrNotSupported", need, err)
		}
	}
	if err := off.Supports(0); err != nil {
		t.Errorf("Supports(0) = %v", err)
	}
	if os.Geteuid() != 0 {
		if err := off.Supports(NeedDisk); !errors.Is(err, ErrNotSupported) {
			t.Errorf("Supports(NeedDisk) without root = %v, want ErrNotSupported", err)
		}
	}
	if netnsAvailable() == nil {
		if err := (ProcessLauncher{}).Supports(NeedPartition | NeedLinkCut); err != nil {
			t.Errorf("Supports(partitions) with network namespaces = %v", err)
		}
	}
}

// netnsTestNeed skips a test that needs network namespaces here.
func netnsTestNeed(t *testing.T) {
	t.Helper()
	if why := netnsAvailable(); why != nil {
		t.Skipf("no network namespaces: %v", why)
	}
}

// netnsTestIn runs f on a thread switched into namespace ns, so that the
// sockets f opens live there, and switches back. If switching back fails,
// the thread is never unlocked: the runtime ends it with the goroutine.
func netnsTestIn(t *testing.T, ns string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return // locked: the thread ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsTestCounter reads the packet counter of the test's counting table
// in ns (0 if it has counted nothing).
func netnsTestCounter(t *testing.T, nn *netnsNet, ns string) int {
	t.Helper()
	nft, _ := netnsTool("nft")
	out, err := netnsCmd(context.Background(), "", nn.ip, "netns", "exec", ns, nft, "list", "table", "inet", "rmchaostest")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "packets" && i+1 < len(f) {
			n, _ := strconv.Atoi(f[i+1])
			return n
		}
	}
	t.Fatalf("no counter in %s", out)
	return 0
}

// netnsTestDelivered sends UDP datagrams from node from's cluster address
// to node to's until one reaches to's input hook (a counting rule that
// runs before the cut rules), then reports whether it reached the socket.
// The hooks and the socket's queue are one synchronous path in the
// kernel, so once the counter shows the datagram its fate is settled: no
// timing is involved.
func netnsTestDelivered(t *testing.T, nn *netnsNet, from, to int) bool {
	t.Helper()
	var rx, tx *net.UDPConn
	if err := netnsTestIn(t, nn.nodes[to].ns, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(nn.nodes[to].clusterIP)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := netnsTestIn(t, nn.nodes[from].ns, func() (err error) {
		tx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(nn.nodes[from].clusterIP)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	port := rx.LocalAddr().(*net.UDPAddr).Port
	nft, _ := netnsTool("nft")
	script := fmt.Sprintf("table inet rmchaostest {}\ndelete table inet rmchaostest\n"+
		"table inet rmchaostest {\n\tchain input {\n\t\ttype filter hook input priority -10; policy accept;\n\t\tudp dport %d counter\n\t}\n}\n", port)
	if _, err := netnsCmd(context.Background(), script, nn.ip, "netns", "exec", nn.nodes[to].ns, nft, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = netnsCmd(context.Background(), "", nn.ip, "netns", "exec", nn.nodes[to].ns, nft, "delete", "table", "inet", "rmchaostest")
	}()
	deadline := time.Now().Add(launchTestTimeout)
	for netnsTestCounter(t, nn, nn.nodes[to].ns) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no datagram from node%d reached node%d's input hook", from+1, to+1)
		}
		if _, err := tx.WriteToUDP([]byte("x"), rx.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, err := rx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := false
	if err := raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), make([]byte, 16), syscall.MSG_DONTWAIT)
		got = err == nil && n > 0
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// netnsTestLinks: each fault drops exactly the directions it names, on the
// cluster links only, and Heal undoes them.
func netnsTestLinks(t *testing.T, c *procCluster) {
	nn := c.net
	expect := func(what string, dropped map[[2]int]bool) {
		t.Helper()
		for from := range c.nodes {
			for to := range c.nodes {
				if from == to {
					continue
				}
				want := !dropped[[2]int{from, to}]
				if got := netnsTestDelivered(t, nn, from, to); got != want {
					t.Errorf("%s: node%d -> node%d delivered = %v, want %v", what, from+1, to+1, got, want)
				}
			}
		}
		// The clients links are never cut.
		for _, n := range c.Nodes() {
			ctx, cancel := context.WithTimeout(context.Background(), launchTestTimeout)
			if err := launchWaitAdmin(ctx, n.Admin, nil); err != nil {
				t.Errorf("%s: %s's admin API: %v", what, n.Name, err)
			}
			cancel()
		}
	}
	step := func(what string, f func() error, dropped ...[2]int) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		m := map[[2]int]bool{}
		for _, d := range dropped {
			m[d] = true
		}
		expect(what, m)
	}
	step("no fault", func() error { return nil })
	step("CutOneWay(node1, node2)", func() error { return c.CutOneWay("node1", "node2") }, [2]int{0, 1})
	step("and Cut(node1, node3)", func() error { return c.Cut("node1", "node3") }, [2]int{0, 1}, [2]int{0, 2}, [2]int{2, 0})
	step("Heal", c.Heal)
	step("Partition(node2)", func() error { return c.Partition("node2") }, [2]int{1, 0}, [2]int{0, 1}, [2]int{1, 2}, [2]int{2, 1})
	step("Heal", c.Heal)
	step("Partition(node1, node3)", func() error { return c.Partition("node1", "node3") }, [2]int{1, 0}, [2]int{0, 1}, [2]int{1, 2}, [2]int{2, 1})
	step("Heal", c.Heal)
	if err := c.Degrade("node1", LinkFault{Delay: 10 * time.Millisecond}); nn.netem != nil {
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("Degrade without netem = %v, want ErrNotSupported", err)
		}
		t.Logf("Degrade: %v", err)
	} else if err != nil {
		t.Errorf("Degrade: %v", err)
	} else if err := c.Heal(); err != nil {
		t.Errorf("Heal after Degrade: %v", err)
	}
	launchTestConverged(t, c, "node1")
}

// netnsTestProcesses: the PID the backend signals is raftmail's, and it
// runs in the node's namespace, not the host's.
func netnsTestProcesses(t *testing.T, c *procCluster, bin string) {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		pid := n.cmd.Process.Pid
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || exe != bin {
			t.Errorf("%s: pid %d runs %q (%v), want %s", n.info.Name, pid, exe, err, bin)
		}
		got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.Stat(filepath.Join("/run/netns", c.net.nodes[n.idx].ns))
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(got, self) || !netnsTestSameInode(got, want) {
			t.Errorf("%s: pid %d is not in the namespace %s", n.info.Name, pid, c.net.nodes[n.idx].ns)
		}
	}
}

func netnsTestSameInode(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino == sb.Ino && sa.Dev == sb.Dev
}

// netnsTestGone fails if anything of run id is left.
func netnsTestGone(t *testing.T, id string) {
	t.Helper()
	for _, pattern := range []string{"/run/netns/" + netnsPrefix + id + "-*", "/sys/class/net/" + netnsLinkPfx + id + "n*", filepath.Join(netnsStateDir, id+".lock")} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			t.Errorf("left behind: %v", m)
		}
	}
}

// TestNetnsCleanStale: what a run left when it died without Close (its
// lock free) is removed, processes in its namespaces included, and so is
// a lock file left alone; a run whose lock is held is left alone.
func TestNetnsCleanStale(t *testing.T) {
	netnsTestNeed(t)
	if err := os.MkdirAll(netnsStateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ip, _ := netnsTool("ip")
	ctx := context.Background()
	newID := func() string {
		var b [3]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	run := func(args ...string) {
		t.Helper()
		if _, err := netnsCmd(ctx, "", ip, args...); err != nil {
			t.Fatal(err)
		}
	}
	// A crashed run: a namespace with a process in it, a veth from the
	// host into it, and a lone host veth; no lock holder.
	dead := newID()
	deadNS := netnsPrefix + dead + "-node1"
	run("netns", "add", deadNS)
	t.Cleanup(func() { _, _ = netnsCmd(ctx, "", ip, "netns", "del", deadNS) })
	run("link", "add", netnsLinkPfx+dead+"n1", "type", "veth", "peer", "name", "clients", "netns", deadNS)
	run("link", "add", netnsLinkPfx+dead+"n2", "type", "veth", "peer", "name", netnsLinkPfx+dead+"n3")
	t.Cleanup(func() { _, _ = netnsCmd(ctx, "", ip, "link", "del", netnsLinkPfx+dead+"n2") })
	sleeper := exec.Command(ip, "netns", "exec", deadNS, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })
	launchTestWait(t, "the process in "+deadNS, func() (bool, string) {
		out, err := netnsCmd(ctx, "", ip, "netns", "pids", deadNS)
		return err == nil && strings.TrimSpace(out) == strconv.Itoa(sleeper.Process.Pid), out
	})

	// A run whose Close left only its lock file.
	orphan := newID()
	if err := os.WriteFile(filepath.Join(netnsStateDir, orphan+".lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// A live run: its lock is held.
	live := newID()
	liveNS := netnsPrefix + live + "-hub"
	lock, err := netnsFlock(filepath.Join(netnsStateDir, live+".lock"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = netnsCmd(ctx, "", ip, "netns", "del", liveNS)
		_ = os.Remove(lock.Name())
		lock.Close()
	})
	run("netns", "add", liveNS)

	netnsCleanStale(ctx, ip, t.Logf)

	netnsTestGone(t, dead)
	netnsTestGone(t, orphan)
	select {
	case <-exited:
	case <-time.After(launchTestTimeout):
		t.Errorf("the process left in %s still runs", deadNS)
	}
	if _, err := os.Stat("/run/netns/" + liveNS); err != nil {
		t.Errorf("the live run's namespace was removed: %v", err)
	}
}
