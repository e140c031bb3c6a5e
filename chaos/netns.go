package chaos

// Network namespaces for the process backend (ProcessLauncher.Netns): each
// node runs in a network namespace of its own, with two links like the
// Docker backend's two networks:
//
//	cluster  "cluster" 10.213.X.(10+i)/24 in rmchaos-<id>-node<i>, a veth
//	         to the bridge br0 in the namespace rmchaos-<id>-hub: Raft,
//	         RPC and gossip
//	clients  "clients" 10.214.X.(4i+2)/30 in the node's namespace, a veth
//	         to rmc<id>n<i> 10.214.X.(4i+1)/30 in the host's namespace:
//	         mail and admin listeners, reached from the host where the
//	         traffic and the checks run
//
// The nodes reach each other only over the bridge, so a fault on a cluster
// link never touches the clients: a cut is an nft rule in the receiving
// node's namespace that drops what comes from a peer's cluster address
// (silently, as a broken network does: the sender learns nothing), and
// latency or loss is a netem qdisc on the node's cluster link, where the
// kernel has sch_netem. The host's firewall and interfaces are never
// touched, but for the clients veths this code creates.
//
// Every namespace and host interface carries the run's id, and the run
// holds an exclusive flock on /run/raftmail-chaos/<id>.lock while it
// lives. Launch removes what a run left behind when its lock is free (the
// run crashed): its namespaces, their processes (started by that run and
// orphaned) and its host interfaces. Nothing without the rmchaos-/rmc
// prefix and a free lock is ever touched.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NetnsMode chooses how the process backend networks its nodes.
type NetnsMode int

const (
	// NetnsAuto: a network namespace per node when running as root and
	// `ip netns` works, else every node on 127.0.0.1 (partitions and
	// link faults are then skipped, with the reason).
	NetnsAuto NetnsMode = iota
	// NetnsOn: network namespaces, or Launch fails.
	NetnsOn
	// NetnsOff: every node on 127.0.0.1.
	NetnsOff
)

// ParseNetnsMode parses "auto", "on" or "off".
func ParseNetnsMode(s string) (NetnsMode, error) {
	switch s {
	case "auto", "":
		return NetnsAuto, nil
	case "on":
		return NetnsOn, nil
	case "off":
		return NetnsOff, nil
	}
	return NetnsAuto, fmt.Errorf("chaos: network namespaces %q: want auto, on or off", s)
}

const (
	netnsPrefix   = "rmchaos-"            // namespaces: rmchaos-<id>-hub, rmchaos-<id>-node<i>
	netnsLinkPfx  = "rmc"                 // host interfaces: rmc<id>n<i> (15 characters at most)
	netnsStateDir = "/run/raftmail-chaos" // <id>.lock, alloc.lock
	netnsTable    = "rmchaos"             // the nft table in each node's namespace
	netnsMaxNodes = 62                    // /30 per node in 10.214.X.0/24
	netnsTimeout  = 30 * time.Second      // one ip, nft or tc command
)

// The ports inside a node's namespace: the standard ones, each node having
// its own addresses.
const (
	netnsPortCluster    = 7947
	netnsPortGossip     = 7946
	netnsPortAdmin      = 7948
	netnsPortSMTP       = 25
	netnsPortSubmission = 587
	netnsPortIMAPS      = 993
	netnsPortPOP3S      = 995
)

var (
	netnsNameRE = regexp.MustCompile(`^rmchaos-([0-9a-f]{6})-(hub|node[0-9]+)$`)
	netnsLinkRE = regexp.MustCompile(`^rmc([0-9a-f]{6})n[0-9]+$`)
	netnsIDRE   = regexp.MustCompile(`^[0-9a-f]{6}$`)
)

// netnsNet is the network of one cluster in namespaces.
type netnsNet struct {
	logf  func(string, ...any)
	ip    string   // the ip command
	id    string   // 6 hex digits, in every name
	x     int      // 10.213.x.0/24 (cluster), 10.214.x.0/24 (clients)
	lock  *os.File // holds the flock on <id>.lock while the run lives
	hub   string
	nodes []netnsNode
	// netem is nil if netem qdiscs work here, else why not (wrapping
	// ErrNotSupported).
	netem error

	mu struct {
		sync.Mutex
		cuts     map[[2]int]bool // {from, to}: what from sends to to is dropped
		degraded map[int]bool    // nodes with a netem qdisc on their cluster link
	}
}

// netnsNode is one node's namespace and addresses.
type netnsNode struct {
	ns        string
	hostLink  string // the clients veth's end in the host's namespace
	clusterIP string
	clientIP  string
	hostIP    string
}

// netnsAvailable reports why namespaces cannot be used here, or nil.
func netnsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	if _, err := netnsTool("ip"); err != nil {
		return err
	}
	if _, err := netnsTool("nft"); err != nil {
		return err
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("no network namespaces in this kernel: %w", err)
	}
	return nil
}

// netnsTool finds an iproute2 or nftables command on PATH or in the
// usual sbin directories (not on every user's PATH).
func netnsTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s command (iproute2/nftables)", name)
}

// netnsCmd runs a command and returns its standard output; errors carry
// the command line (no secrets pass here) and standard error.
func netnsCmd(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, netnsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// netnsSetup builds the network of a cluster of n nodes; on error it
// removes what it made.
func netnsSetup(ctx context.Context, n int, logf func(string, ...any)) (*netnsNet, error) {
	if n > netnsMaxNodes {
		return nil, fmt.Errorf("chaos: network namespaces: %d nodes, at most %d", n, netnsMaxNodes)
	}
	if err := netnsAvailable(); err != nil {
		return nil, fmt.Errorf("chaos: network namespaces: %w", err)
	}
	ip, _ := netnsTool("ip")
	if err := os.MkdirAll(netnsStateDir, 0o700); err != nil {
		return nil, fmt.Errorf("chaos: network namespaces: %w", err)
	}
	// One launch at a time on this machine picks subnets and makes
	// interfaces, and clears what crashed runs left.
	alloc, err := netnsFlock(filepath.Join(netnsStateDir, "alloc.lock"), true)
	if err != nil {
		return nil, fmt.Errorf("chaos: network namespaces: %w", err)
	}
	defer alloc.Close()
	netnsCleanStale(ctx, ip, logf)

	nn := &netnsNet{logf: logf, ip: ip}
	nn.mu.cuts = map[[2]int]bool{}
	nn.mu.degraded = map[int]bool{}
	for try := 0; nn.lock == nil; try++ {
		var idb [3]byte
		_, _ = rand.Read(idb[:])
		nn.id = hex.EncodeToString(idb[:])
		nn.lock, err = netnsFlock(filepath.Join(netnsStateDir, nn.id+".lock"), false)
		if err != nil && (try == 4 || !errors.Is(err, syscall.EWOULDBLOCK)) {
			return nil, fmt.Errorf("chaos: network namespaces: %w", err) // else: a live run's id, draw again
		}
	}
	if nn.x, err = netnsPickSubnet(ctx, ip); err != nil {
		_ = nn.close()
		return nil, err
	}
	if err := nn.build(ctx, n); err != nil {
		if cerr := nn.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	logf("chaos: network namespaces %s%s-*: cluster link 10.213.%d.0/24 on a bridge in %s, clients 10.214.%d.0/24 from the host; netem: %v",
		netnsPrefix, nn.id, nn.x, nn.hub, nn.x, netemNote(nn.netem))
	return nn, nil
}

func netemNote(err error) string {
	if err == nil {
		return "available"
	}
	return err.Error()
}

// netnsFlock opens (creating) path and takes an exclusive flock on it,
// waiting for it when wait, else failing at once if it is held.
func netnsFlock(path string, wait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// netnsLinkExists reports whether the host has an interface named name.
func netnsLinkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// netnsCleanStale removes the namespaces and host interfaces of runs whose
// lock is free (they crashed without Close), with the processes still in
// those namespaces (nodes that run started). Errors are logged: a stale
// leftover must not stop a new run.
func netnsCleanStale(ctx context.Context, ip string, logf func(string, ...any)) {
	byID := map[string][]string{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if m := netnsNameRE.FindStringSubmatch(e.Name()); m != nil {
			byID[m[1]] = append(byID[m[1]], e.Name())
		}
	}
	links := map[string][]string{}
	if out, err := netnsCmd(ctx, "", ip, "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if m := netnsLinkRE.FindStringSubmatch(name); m != nil {
				links[m[1]] = append(links[m[1]], name)
			}
		}
	}
	ids := map[string]bool{}
	for id := range byID {
		ids[id] = true
	}
	// Lock files alone: a run whose Close could not delete everything
	// keeps its lock file for the next run to finish the job.
	locks, _ := filepath.Glob(filepath.Join(netnsStateDir, "*.lock"))
	for _, l := range locks {
		id := strings.TrimSuffix(filepath.Base(l), ".lock")
		if netnsIDRE.MatchString(id) {
			ids[id] = true
		}
	}
	for id := range links {
		ids[id] = true
	}
	for id := range ids {
		lockPath := filepath.Join(netnsStateDir, id+".lock")
		if f, err := netnsFlock(lockPath, false); err != nil {
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				logf("chaos: network namespaces of run %s: %v: left alone", id, err)
			}
			continue // a live run holds it
		} else {
			defer f.Close()
		}
		for _, ns := range byID[id] {
			if out, err := netnsCmd(ctx, "", ip, "netns", "pids", ns); err == nil {
				for _, p := range strings.Fields(out) {
					if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
						logf("chaos: killing pid %d left in %s by a run that ended without Close", pid, ns)
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if _, err := netnsCmd(ctx, "", ip, "netns", "del", ns); err != nil {
				logf("chaos: remove a stale namespace: %v", err)
			}
		}
		for _, l := range links[id] {
			_, _ = netnsCmd(ctx, "", ip, "link", "del", l) // gone already with its namespace's end
		}
		_ = os.Remove(lockPath)
		if len(byID[id])+len(links[id]) > 0 {
			logf("chaos: removed network namespaces and interfaces of run %s, which ended without Close", id)
		}
	}
}

// netnsPickSubnet picks x so that the clients subnet 10.214.x.0/24
// overlaps no address or route of the host (another cluster's included;
// the caller holds alloc.lock). The cluster subnet exists only inside the
// namespaces.
func netnsPickSubnet(ctx context.Context, ip string) (int, error) {
	var used []*net.IPNet
	for _, args := range [][]string{{"-o", "-4", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := netnsCmd(ctx, "", ip, args...)
		if err != nil {
			return 0, fmt.Errorf("chaos: network namespaces: %w", err)
		}
		for _, f := range strings.Fields(out) {
			if _, n, err := net.ParseCIDR(f); err == nil {
				used = append(used, n)
			} else if a := net.ParseIP(f); a != nil && a.To4() != nil {
				used = append(used, &net.IPNet{IP: a.To4(), Mask: net.CIDRMask(32, 32)})
			}
		}
	}
	for _, x := range mrand.Perm(254) {
		x++
		_, cn, _ := net.ParseCIDR(fmt.Sprintf("10.214.%d.0/24", x))
		if !slices.ContainsFunc(used, func(u *net.IPNet) bool {
			return u.Contains(cn.IP) || cn.Contains(u.IP)
		}) {
			return x, nil
		}
	}
	return 0, errors.New("chaos: network namespaces: no free subnet 10.214.X.0/24 for the clients links")
}

// build makes the hub, the nodes' namespaces and links, and each node's
// (empty) nft table, and tries netem once.
func (nn *netnsNet) build(ctx context.Context, n int) error {
	ipc := func(args ...string) error {
		_, err := netnsCmd(ctx, "", nn.ip, args...)
		if err != nil {
			return fmt.Errorf("chaos: network namespaces: %w", err)
		}
		return nil
	}
	nn.hub = netnsPrefix + nn.id + "-hub"
	if err := ipc("netns", "add", nn.hub); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", nn.hub, "link", "set", "lo", "up"},
		{"-n", nn.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nn.hub, "link", "set", "br0", "up"},
	} {
		if err := ipc(args...); err != nil {
			return err
		}
	}
	for i := 1; i <= n; i++ {
		nd := netnsNode{
			ns:        fmt.Sprintf("%s%s-node%d", netnsPrefix, nn.id, i),
			hostLink:  fmt.Sprintf("%s%sn%d", netnsLinkPfx, nn.id, i),
			clusterIP: fmt.Sprintf("10.213.%d.%d", nn.x, 10+i),
			clientIP:  fmt.Sprintf("10.214.%d.%d", nn.x, 4*i+2),
			hostIP:    fmt.Sprintf("10.214.%d.%d", nn.x, 4*i+1),
		}
		if err := ipc("netns", "add", nd.ns); err != nil {
			return err
		}
		nn.nodes = append(nn.nodes, nd)
		hubEnd := fmt.Sprintf("n%d", i)
		for _, args := range [][]string{
			{"-n", nd.ns, "link", "set", "lo", "up"},
			// cluster: the node's end and the hub's, made in place.
			{"-n", nd.ns, "link", "add", "cluster", "type", "veth", "peer", "name", hubEnd, "netns", nn.hub},
			{"-n", nn.hub, "link", "set", hubEnd, "master", "br0"},
			{"-n", nn.hub, "link", "set", hubEnd, "up"},
			{"-n", nd.ns, "addr", "add", nd.clusterIP + "/24", "dev", "cluster"},
			{"-n", nd.ns, "link", "set", "cluster", "up"},
			// clients: the node's end and the host's.
			{"-n", nd.ns, "link", "add", "clients", "type", "veth", "peer", "name", nd.hostLink, "netns", strconv.Itoa(os.Getpid())},
			{"-n", nd.ns, "addr", "add", nd.clientIP + "/30", "dev", "clients"},
			{"-n", nd.ns, "link", "set", "clients", "up"},
			{"addr", "add", nd.hostIP + "/30", "dev", nd.hostLink},
			{"link", "set", nd.hostLink, "up"},
		} {
			if err := ipc(args...); err != nil {
				return err
			}
		}
		if err := nn.applyRules(ctx, i-1, nil); err != nil {
			return err
		}
	}
	nn.netem = nn.probeNetem(ctx)
	return nil
}

// netemSeen is what the last netem probe in this process found, so that
// ProcessLauncher.Supports can skip a scenario without launching a
// cluster first.
var netemSeen struct {
	sync.Mutex
	err error
}

// netemKnown returns the last probe's reason netem does not work, or nil
// if it did or none was made.
func netemKnown() error {
	netemSeen.Lock()
	defer netemSeen.Unlock()
	return netemSeen.err
}

// probeNetem adds and removes a netem qdisc on a hub port: nil if the
// kernel has sch_netem, else the reason.
func (nn *netnsNet) probeNetem(ctx context.Context) error {
	err := nn.tryNetem(ctx)
	netemSeen.Lock()
	netemSeen.err = err
	netemSeen.Unlock()
	return err
}

func (nn *netnsNet) tryNetem(ctx context.Context) error {
	tc, err := netnsTool("tc")
	if err != nil {
		return fmt.Errorf("latency and loss need tc: %v: %w", err, ErrNotSupported)
	}
	if _, err := netnsCmd(ctx, "", nn.ip, "netns", "exec", nn.hub, tc, "qdisc", "add", "dev", "n1", "root", "netem", "delay", "1ms"); err != nil {
		return fmt.Errorf("latency and loss need the kernel's netem qdisc (sch_netem), and %s: %w", netnsLastLine(err), ErrNotSupported)
	}
	_, _ = netnsCmd(ctx, "", nn.ip, "netns", "exec", nn.hub, tc, "qdisc", "del", "dev", "n1", "root")
	return nil
}

// netnsLastLine is the end of a command's error: what the tool said.
func netnsLastLine(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return fmt.Sprintf("tc says %q", s[i+2:])
	}
	return s
}

// exec wraps a command line so that it runs in node i's namespace. `ip
// netns exec` execs the command in place: the PID is the command's.
func (nn *netnsNet) exec(i int, bin string, args ...string) (string, []string) {
	return nn.ip, append([]string{"netns", "exec", nn.nodes[i].ns, bin}, args...)
}

// applyRules writes node i's nft table: drop what comes from the cluster
// addresses in from. The table is replaced in one transaction.
func (nn *netnsNet) applyRules(ctx context.Context, i int, from []string) error {
	nft, err := netnsTool("nft")
	if err != nil {
		return fmt.Errorf("chaos: network namespaces: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\n", netnsTable, netnsTable)
	fmt.Fprintf(&b, "table inet %s {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n", netnsTable)
	if len(from) > 0 {
		fmt.Fprintf(&b, "\t\tip saddr { %s } counter drop\n", strings.Join(from, ", "))
	}
	b.WriteString("\t}\n}\n")
	if _, err := netnsCmd(ctx, b.String(), nn.ip, "netns", "exec", nn.nodes[i].ns, nft, "-f", "-"); err != nil {
		return fmt.Errorf("chaos: network namespaces: rules of %s: %w", nn.nodes[i].ns, err)
	}
	return nil
}

// setCuts replaces the set of cut directions and rewrites the rules of
// every node whose dropped sources changed.
func (nn *netnsNet) setCuts(ctx context.Context, cuts map[[2]int]bool) error {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	sources := func(m map[[2]int]bool, to int) []string {
		var out []string
		for k, on := range m {
			if on && k[1] == to {
				out = append(out, nn.nodes[k[0]].clusterIP)
			}
		}
		slices.Sort(out)
		return out
	}
	var errs []error
	for i := range nn.nodes {
		now := sources(cuts, i)
		if slices.Equal(now, sources(nn.mu.cuts, i)) {
			continue
		}
		errs = append(errs, nn.applyRules(ctx, i, now))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	nn.mu.cuts = cuts
	return nil
}

// cuts returns a copy of the cut directions.
func (nn *netnsNet) cuts() map[[2]int]bool {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	out := make(map[[2]int]bool, len(nn.mu.cuts))
	for k, v := range nn.mu.cuts {
		out[k] = v
	}
	return out
}

// degrade puts a netem qdisc on node i's cluster link (its egress).
func (nn *netnsNet) degrade(ctx context.Context, i int, l LinkFault) error {
	if nn.netem != nil {
		return nn.netem
	}
	tc, err := netnsTool("tc")
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", nn.nodes[i].ns, tc, "qdisc", "replace", "dev", "cluster", "root", "netem"}
	if l.Delay > 0 {
		args = append(args, "delay", fmt.Sprintf("%dus", l.Delay.Microseconds()))
		if l.Jitter > 0 {
			args = append(args, fmt.Sprintf("%dus", l.Jitter.Microseconds()))
		}
	}
	if l.LossPercent > 0 {
		args = append(args, "loss", strconv.FormatFloat(l.LossPercent, 'f', -1, 64)+"%")
	}
	if _, err := netnsCmd(ctx, "", nn.ip, args...); err != nil {
		return fmt.Errorf("chaos: network namespaces: %w", err)
	}
	nn.mu.Lock()
	nn.mu.degraded[i] = true
	nn.mu.Unlock()
	return nil
}

// heal removes every cut and netem qdisc.
func (nn *netnsNet) heal(ctx context.Context) error {
	errs := []error{nn.setCuts(ctx, map[[2]int]bool{})}
	nn.mu.Lock()
	var deg []int
	for i := range nn.mu.degraded {
		deg = append(deg, i)
	}
	nn.mu.Unlock()
	if len(deg) > 0 {
		tc, err := netnsTool("tc")
		if err != nil {
			return err
		}
		for _, i := range deg {
			if _, err := netnsCmd(ctx, "", nn.ip, "netns", "exec", nn.nodes[i].ns, tc, "qdisc", "del", "dev", "cluster", "root"); err != nil {
				errs = append(errs, fmt.Errorf("chaos: network namespaces: %w", err))
				continue
			}
			nn.mu.Lock()
			delete(nn.mu.degraded, i)
			nn.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// close deletes the namespaces (their veths go with them, the host ends
// included) and the host interfaces left, and frees the run's lock. The
// nodes must have stopped.
func (nn *netnsNet) close() error {
	ctx := context.Background()
	var errs []error
	for _, nd := range nn.nodes {
		if _, err := netnsCmd(ctx, "", nn.ip, "netns", "del", nd.ns); err != nil {
			errs = append(errs, fmt.Errorf("chaos: network namespaces: %w", err))
		}
	}
	if nn.hub != "" {
		if _, err := netnsCmd(ctx, "", nn.ip, "netns", "del", nn.hub); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, fmt.Errorf("chaos: network namespaces: %w", err))
		}
	}
	// A host end whose namespace end was never made. The others go
	// with their namespace, but not at once: one still listed may be
	// gone by the time it is deleted.
	for i := 1; i <= len(nn.nodes)+1; i++ {
		l := fmt.Sprintf("%s%sn%d", netnsLinkPfx, nn.id, i)
		if _, err := os.Stat("/sys/class/net/" + l); err == nil {
			if _, err := netnsCmd(ctx, "", nn.ip, "link", "del", l); err != nil && netnsLinkExists(l) {
				errs = append(errs, fmt.Errorf("chaos: network namespaces: %w", err))
			}
		}
	}
	if nn.lock != nil {
		if len(errs) == 0 {
			_ = os.Remove(nn.lock.Name())
		}
		nn.lock.Close()
		nn.lock = nil
	}
	return errors.Join(errs...)
}
