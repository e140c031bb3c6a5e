package chaos

// The process backend: every node is a `raftmail serve` process, formed
// into a cluster through the CLI the way an operator would (init, token
// create, join, serve; see scripts/run-local.sh).
//
// As root, where `ip netns` works, each node runs in a network namespace
// of its own (netns.go): a cluster link on a bridge and a clients link to
// the host, so Partition, Cut, CutOneWay and Heal cut real links, and
// Degrade adds latency and loss where the kernel has netem. Otherwise
// (or with NetnsOff) every node listens on 127.0.0.1 and those faults
// answer ErrNotSupported: the nodes talk over the loopback interface,
// which nothing here can cut without touching the host's firewall.
// Disk-full needs root too: each data directory is then a size-limited
// tmpfs. The other disk faults need root and /dev/fuse: each data
// directory is then a faultfs mount served by this process (diskfault.go).
//
// Only processes this backend started are ever signalled, by PID: in a
// namespace too, `ip netns exec` execs raftmail in place.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/chaos/faultfs"
	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
)

// Timings of the launchers. None is an assertion: they bound waits.
const (
	launchCLITimeout   = 60 * time.Second  // one CLI run
	launchStartTimeout = 60 * time.Second  // a node's admin API answering after start
	launchFormTimeout  = 120 * time.Second // the cluster healthy after forming it
	launchStopTimeout  = 15 * time.Second  // SIGTERM to exit, before SIGKILL
	launchPollInterval = 100 * time.Millisecond
)

// fillerName is the file FillDisk writes in a node's data directory.
const fillerName = "chaos-filler"

// ProcessLauncher starts clusters of local `raftmail serve` processes,
// node1 to nodeN, each with its own data directory and log file
// (<Dir>/nodeN and <Dir>/nodeN.log), in a network namespace each or on
// 127.0.0.1 (Netns). Partition, Cut, CutOneWay, Degrade and Heal need the
// namespaces; FillDisk and FreeDisk need LaunchOptions.DiskLimitBytes and
// root.
type ProcessLauncher struct {
	// Logf, if not nil, receives one line per step (t.Logf fits).
	Logf func(format string, args ...any)
	// Netns: NetnsAuto (the zero value) uses a network namespace per
	// node when it can, NetnsOn requires them, NetnsOff never uses them.
	Netns NetnsMode
}

var _ Launcher = ProcessLauncher{}

// Supports returns an error wrapping ErrNotSupported if a cluster from l
// would certainly lack what need asks for, so that a scenario is skipped
// without launching one: network faults without network namespaces,
// latency and loss where an earlier cluster found no netem, a full disk
// without root. nil: launch, and ask the cluster.
func (l ProcessLauncher) Supports(need Need) error {
	if need&(NeedPartition|NeedLinkCut|NeedNetem) != 0 {
		if l.Netns == NetnsOff {
			return fmt.Errorf("network faults need a network namespace per node, and network namespaces are off: %w", ErrNotSupported)
		}
		if why := netnsAvailable(); why != nil {
			return fmt.Errorf("network faults need a network namespace per node, and no network namespaces (%v): %w", why, ErrNotSupported)
		}
	}
	if need&NeedNetem != 0 {
		if err := netemKnown(); err != nil {
			return err
		}
	}
	if need&NeedDisk != 0 && os.Geteuid() != 0 {
		return fmt.Errorf("a size-limited disk needs root: %w", ErrNotSupported)
	}
	if need&NeedFaultFS != 0 {
		return faultFSAvailable()
	}
	return nil
}

// Launch forms a new cluster of opts.Nodes processes and returns once every
// node is a reachable voter and there is one leader. On error, whatever it
// started is stopped again.
func (l ProcessLauncher) Launch(ctx context.Context, opts LaunchOptions) (Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("chaos: launch: %d nodes", opts.Nodes)
	}
	if opts.DNSResolver == "" {
		opts.DNSResolver = DeadResolver() // a chaos cluster never sends mail out
	}
	bin, err := launchBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	c := &procCluster{logf: l.Logf, bin: bin, opts: opts}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	switch why := netnsAvailable(); {
	case l.Netns == NetnsOff:
		c.netErr = errors.New("network namespaces are off")
	case why != nil && l.Netns == NetnsOn:
		return nil, fmt.Errorf("chaos: launch: network namespaces: %w", why)
	case why != nil:
		c.netErr = fmt.Errorf("no network namespaces (%w)", why)
	default:
		c.net, err = netnsSetup(ctx, opts.Nodes, c.logf)
		if err != nil && l.Netns == NetnsOn {
			return nil, err
		}
		if err != nil {
			c.logf("chaos: %v: the nodes run on 127.0.0.1", err)
			c.netErr = err
		}
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "raftmail-chaos-")
		if err != nil {
			return c.failLaunch(fmt.Errorf("chaos: launch: %w", err))
		}
		c.dir, c.ownDir = dir, true
	} else {
		dir, err := filepath.Abs(opts.Dir)
		if err != nil {
			return c.failLaunch(fmt.Errorf("chaos: launch: %w", err))
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return c.failLaunch(fmt.Errorf("chaos: launch: %w", err))
		}
		c.dir = dir
	}
	c.env = launchEnv(filepath.Join(c.dir, "xdg"))
	if err := c.launch(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// failLaunch frees the network namespaces of a launch that failed before
// its first node started.
func (c *procCluster) failLaunch(err error) (Cluster, error) {
	if c.net != nil {
		if cerr := c.net.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return nil, err
}

// procCluster is a cluster of local processes.
type procCluster struct {
	logf   func(string, ...any)
	bin    string
	opts   LaunchOptions
	dir    string
	ownDir bool     // dir was made by Launch: Close removes it
	env    []string // of every process started
	nodes  []*procNode
	// net is the nodes' network namespaces; nil: 127.0.0.1, and netErr
	// says why.
	net    *netnsNet
	netErr error

	// opMu serializes faults (and Close): one at a time.
	opMu sync.Mutex
	// mu guards the process state of every node (cmd, done, paused), read
	// by Nodes and written by the faults.
	mu struct {
		sync.Mutex
		closed bool
	}
}

// procNode is one node: fixed addresses and directories, and while it
// runs, its serve process.
type procNode struct {
	idx     int      // in procCluster.nodes (and netnsNet.nodes)
	info    NodeInfo // AdminToken stays the same across Wipe
	dataDir string
	logPath string
	gossip  string      // gossip address (TCP and UDP)
	mounted bool        // dataDir is a tmpfs this cluster mounted
	ffs     *faultfs.FS // dataDir is this faultfs mount (LaunchOptions.FaultFS)

	// Guarded by procCluster.mu.
	cmd    *exec.Cmd
	done   chan struct{} // closed once cmd has exited
	paused bool
}

func (n *procNode) runningLocked() bool {
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

// flags are the node-local settings, the same for init, join and serve
// (init and join save them in the data directory's raftmail.toml).
func (c *procCluster) flags(n *procNode) []string {
	f := []string{
		"--data-dir", n.dataDir, "--name", n.info.Name,
		"--cluster-addr", n.info.ClusterAddress,
		"--gossip-addr", n.gossip,
		"--admin-addr", n.info.Admin,
		"--hostname", "localhost",
		"--smtp-addr", n.info.SMTP,
		"--submission-addr", n.info.Submission,
		"--submissions-addr", "off",
		"--imap-addr", "off",
		"--imaps-addr", n.info.IMAPS,
		"--pop3-addr", "off",
		"--pop3s-addr", n.info.POP3S,
	}
	o := c.opts
	if o.Outside != nil {
		o.DNSResolver = o.Outside.Resolver(c.outsideIP(n))
	}
	f = append(f, outsideFlags(o)...)
	if c.net != nil {
		// Clients come from the host's end of the clients link, not
		// from loopback: exempt it from the per-address caps the way
		// loopback is on 127.0.0.1.
		f = append(f, "--conn-limit-exempt", fmt.Sprintf("127.0.0.0/8,::1,10.214.%d.0/24", c.net.x))
	}
	return append(f, launchTimingFlags(o)...)
}

// outsideIP is where n reaches the Outside: the host's end of its clients
// link in a namespace, else 127.0.0.1.
func (c *procCluster) outsideIP(n *procNode) string {
	if c.net != nil {
		return c.net.nodes[n.idx].hostIP
	}
	return "127.0.0.1"
}

// ReachesOutside: the nodes reach a sink on 127.0.0.1, or on the host's
// end of their clients links in namespaces.
func (ProcessLauncher) ReachesOutside() error { return nil }

// launchTimingFlags are the Raft, gossip and DNS settings LaunchOptions
// asks for. A RaftTimeout also shortens the gossip interval to 100ms, and a
// SnapshotThreshold checks it every second and keeps only that many log
// entries after a snapshot, so that snapshots (and installing them on a
// lagging node) really happen during a short run.
func launchTimingFlags(o LaunchOptions) []string {
	var f []string
	if o.RaftTimeout > 0 {
		f = append(f, "--raft-timeout", o.RaftTimeout.String(), "--gossip-interval", "100ms")
	}
	if o.SnapshotThreshold > 0 {
		t := strconv.FormatUint(o.SnapshotThreshold, 10)
		f = append(f, "--snapshot-threshold", t, "--snapshot-interval", "1s", "--trailing-logs", t)
	}
	if o.DNSResolver != "" {
		f = append(f, "--dns-resolver", o.DNSResolver)
	}
	return f
}

// adminFlags point a client command at n's admin API.
func (n *procNode) adminFlags() []string {
	return []string{"--data-dir", n.dataDir, "--admin-addr", n.info.Admin}
}

func (c *procCluster) launch(ctx context.Context) error {
	for i := range c.opts.Nodes {
		name := fmt.Sprintf("node%d", i+1)
		n := &procNode{
			idx:     i,
			dataDir: filepath.Join(c.dir, name),
			logPath: filepath.Join(c.dir, name+".log"),
		}
		if c.net != nil {
			nd := c.net.nodes[i]
			on := func(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
			n.info = NodeInfo{
				Name:           name,
				ClusterAddress: on(nd.clusterIP, netnsPortCluster),
				Admin:          on(nd.clientIP, netnsPortAdmin),
				SMTP:           on(nd.clientIP, netnsPortSMTP),
				Submission:     on(nd.clientIP, netnsPortSubmission),
				IMAPS:          on(nd.clientIP, netnsPortIMAPS),
				POP3S:          on(nd.clientIP, netnsPortPOP3S),
			}
			n.gossip = on(nd.clusterIP, netnsPortGossip)
			if c.opts.Outside != nil {
				if err := c.opts.Outside.Listen(nd.hostIP, name); err != nil {
					return err
				}
			}
		} else {
			ports, err := launchFreePorts(7)
			if err != nil {
				return err
			}
			n.info = NodeInfo{
				Name:           name,
				ClusterAddress: launchLoopback(ports[0]),
				Admin:          launchLoopback(ports[1]),
				SMTP:           launchLoopback(ports[2]),
				Submission:     launchLoopback(ports[3]),
				IMAPS:          launchLoopback(ports[4]),
				POP3S:          launchLoopback(ports[5]),
			}
			n.gossip = launchLoopback(ports[6])
		}
		if err := launchEmptyDir(n.dataDir); err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
		if err := c.mountDisk(n); err != nil {
			return err
		}
		if err := c.mountFaultFS(n); err != nil {
			return err
		}
	}

	first := c.nodes[0]
	if _, err := c.cli(ctx, "init "+first.info.Name, first, append([]string{"init", "--token-ttl", "10m"}, c.flags(first)...)...); err != nil {
		return err
	}
	if err := c.readToken(first); err != nil {
		return err
	}
	if err := c.start(first); err != nil {
		return err
	}
	for _, n := range c.nodes[1:] {
		if err := c.join(ctx, n, first); err != nil {
			return err
		}
		if err := c.readToken(n); err != nil {
			return err
		}
		if err := c.start(n); err != nil {
			return err
		}
	}
	fctx, cancel := context.WithTimeout(ctx, launchFormTimeout)
	defer cancel()
	if err := launchWaitFormed(fctx, first.info, len(c.nodes)); err != nil {
		return fmt.Errorf("chaos: launch: %w (logs in %s)", err, c.dir)
	}
	c.logf("chaos: %d raftmail processes formed a cluster (data and logs in %s)", len(c.nodes), c.dir)
	return nil
}

// mountDisk puts n's data directory on a tmpfs of DiskLimitBytes when
// asked and possible (root); otherwise FillDisk reports ErrNotSupported.
func (c *procCluster) mountDisk(n *procNode) error {
	if c.opts.DiskLimitBytes <= 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		c.logf("chaos: %s: not root, so no size-limited tmpfs for the data: FillDisk is not supported", n.info.Name)
		return nil
	}
	data := fmt.Sprintf("size=%d,mode=0700", c.opts.DiskLimitBytes)
	if err := syscall.Mount("tmpfs", n.dataDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, data); err != nil {
		c.logf("chaos: %s: mount a tmpfs on %s: %v: FillDisk is not supported", n.info.Name, n.dataDir, err)
		return nil
	}
	n.mounted = true
	return nil
}

// join makes n a member through via: a join token from via's admin API
// (`token create`), then `join` through via's cluster port.
func (c *procCluster) join(ctx context.Context, n, via *procNode) error {
	out, err := c.cli(ctx, "token create via "+via.info.Name, nil,
		append([]string{"token", "create", "--ttl", "10m", "--json", "--description", "chaos: " + n.info.Name}, via.adminFlags()...)...)
	if err != nil {
		return err
	}
	var tok ops.TokenCreated
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
		return fmt.Errorf("chaos: token create via %s: no token in its answer (%v)", via.info.Name, err)
	}
	args := append([]string{"join", "--token", tok.Token}, c.flags(n)...)
	if _, err := c.cli(ctx, "join "+n.info.Name, n, append(args, via.info.ClusterAddress)...); err != nil {
		return err
	}
	return nil
}

// readToken sets n's admin token from its data directory.
func (c *procCluster) readToken(n *procNode) error {
	b, err := os.ReadFile(filepath.Join(n.dataDir, "admin.token"))
	if err != nil {
		return fmt.Errorf("chaos: %s's admin token: %w", n.info.Name, err)
	}
	c.mu.Lock()
	n.info.AdminToken = strings.TrimSpace(string(b))
	c.mu.Unlock()
	return nil
}

// cli runs the raftmail CLI to completion and returns its standard output,
// in node's network namespace (init and join use the node's cluster
// address) or, with node nil, in the host's (admin commands). what names
// the step in errors: the arguments may hold a secret.
func (c *procCluster) cli(ctx context.Context, what string, node *procNode, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, launchCLITimeout)
	defer cancel()
	name, args := c.command(node, args...)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("chaos: raftmail %s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// start runs `raftmail serve` for n in the background, its output appended
// to n's log, and waits until its admin API answers.
func (c *procCluster) start(n *procNode) error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return errors.New("chaos: cluster closed")
	}
	if n.runningLocked() {
		c.mu.Unlock()
		return fmt.Errorf("chaos: start %s: %w", n.info.Name, errNodeUp)
	}
	c.mu.Unlock()

	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: start %s: %w", n.info.Name, err)
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "==== %s: chaos: serve %s\n", time.Now().Format(time.RFC3339Nano), n.info.Name)
	name, args := c.command(n, append([]string{"serve"}, c.flags(n)...)...)
	cmd := exec.Command(name, args...)
	cmd.Env = append(slices.Clone(c.env), c.clockEnv(n))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start %s: %w", n.info.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	n.cmd, n.done, n.paused = cmd, done, false
	c.mu.Unlock()
	c.logf("chaos: started %s (pid %d)", n.info.Name, cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), launchStartTimeout)
	defer cancel()
	err = launchWaitAdmin(ctx, n.info.Admin, done)
	if err != nil {
		return fmt.Errorf("chaos: start %s: %w\n%s", n.info.Name, err, launchTail(n.logPath, 20))
	}
	return nil
}

// command is the command line that runs raftmail with args in n's
// network namespace (or the host's, for n nil or on 127.0.0.1).
func (c *procCluster) command(n *procNode, args ...string) (string, []string) {
	if c.net == nil || n == nil {
		return c.bin, args
	}
	return c.net.exec(n.idx, c.bin, args...)
}

func (c *procCluster) node(name string) (*procNode, error) {
	for _, n := range c.nodes {
		if n.info.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("chaos: no node named %q", name)
}

// Nodes returns the nodes in order, node1 first.
func (c *procCluster) Nodes() []NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.info
	}
	return out
}

// Kill sends SIGKILL to the node's process and waits until it is gone.
func (c *procCluster) Kill(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.node(node)
	if err != nil {
		return err
	}
	return c.kill(n)
}

func (c *procCluster) kill(n *procNode) error {
	c.mu.Lock()
	if !n.runningLocked() {
		c.mu.Unlock()
		return fmt.Errorf("chaos: kill %s: %w", n.info.Name, errNodeDown)
	}
	cmd, done := n.cmd, n.done
	c.mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		return fmt.Errorf("chaos: kill %s (pid %d): %w", n.info.Name, cmd.Process.Pid, err)
	}
	<-done
	c.mu.Lock()
	n.paused = false
	c.mu.Unlock()
	c.logf("chaos: killed %s (pid %d) with SIGKILL", n.info.Name, cmd.Process.Pid)
	return nil
}

// Start starts a killed node again with the same flags and data, and
// waits until its admin API answers.
func (c *procCluster) Start(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.node(node)
	if err != nil {
		return err
	}
	return c.start(n)
}

// Pause sends SIGSTOP.
func (c *procCluster) Pause(node string) error {
	return c.signal(node, "SIGSTOP", syscall.SIGSTOP, true)
}

// Resume sends SIGCONT.
func (c *procCluster) Resume(node string) error {
	return c.signal(node, "SIGCONT", syscall.SIGCONT, false)
}

func (c *procCluster) signal(node, name string, sig syscall.Signal, paused bool) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.node(node)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !n.runningLocked() {
		return fmt.Errorf("chaos: %s %s: %w", name, node, errNodeDown)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("chaos: %s %s (pid %d): %w", name, node, n.cmd.Process.Pid, err)
	}
	n.paused = paused
	c.logf("chaos: sent %s to %s (pid %d)", name, node, n.cmd.Process.Pid)
	return nil
}

// Supports: partitions and cuts in network namespaces, latency and loss
// there too where the kernel has netem, disk-full with a tmpfs per node.
func (c *procCluster) Supports(need Need) error {
	if need&(NeedPartition|NeedLinkCut|NeedNetem) != 0 && c.net == nil {
		return fmt.Errorf("network faults need a network namespace per node, and %v: %w", c.netErr, ErrNotSupported)
	}
	if need&NeedNetem != 0 && c.net.netem != nil {
		return c.net.netem
	}
	if need&NeedClock != 0 {
		if err := clockSupport(c.bin); err != nil {
			return err
		}
	}
	if need&NeedDisk != 0 {
		for _, n := range c.nodes {
			if !n.mounted {
				return fmt.Errorf("a size-limited disk needs root and LaunchOptions.DiskLimitBytes: %w", ErrNotSupported)
			}
		}
	}
	if need&NeedFaultFS != 0 {
		for _, n := range c.nodes {
			if n.ffs == nil {
				return fmt.Errorf("disk faults need each data directory on faultfs (root, /dev/fuse, LaunchOptions.FaultFS): %w", ErrNotSupported)
			}
		}
	}
	return nil
}

// netOp runs f with faults serialized, the cluster open and in network
// namespaces, and the nodes named resolved.
func (c *procCluster) netOp(names []string, f func(ctx context.Context, idx []int) error) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.Supports(NeedLinkCut); err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.mu.closed
	c.mu.Unlock()
	if closed {
		return errors.New("chaos: cluster closed")
	}
	var idx []int
	for _, name := range names {
		n, err := c.node(name)
		if err != nil {
			return err
		}
		idx = append(idx, n.idx)
	}
	return f(context.Background(), idx)
}

// Partition cuts the cluster links between the given nodes and the
// others, both ways; the given nodes still reach each other, and every
// node its clients. It adds to the cuts in place.
func (c *procCluster) Partition(nodes ...string) error {
	return c.netOp(nodes, func(ctx context.Context, idx []int) error {
		cuts := c.net.cuts()
		for _, i := range idx {
			for j := range c.nodes {
				if !slices.Contains(idx, j) {
					cuts[[2]int{i, j}], cuts[[2]int{j, i}] = true, true
				}
			}
		}
		if err := c.net.setCuts(ctx, cuts); err != nil {
			return fmt.Errorf("chaos: partition %s: %w", strings.Join(nodes, ","), err)
		}
		c.logf("chaos: partitioned %s from the others", strings.Join(nodes, ","))
		return nil
	})
}

// Cut cuts the cluster link between a and b, both ways.
func (c *procCluster) Cut(a, b string) error {
	return c.cut(a, b, true)
}

// CutOneWay drops what from sends to to on the cluster link; to's packets
// to from still arrive.
func (c *procCluster) CutOneWay(from, to string) error {
	return c.cut(from, to, false)
}

func (c *procCluster) cut(a, b string, both bool) error {
	return c.netOp([]string{a, b}, func(ctx context.Context, idx []int) error {
		if idx[0] == idx[1] {
			return fmt.Errorf("chaos: cut %s from itself", a)
		}
		cuts := c.net.cuts()
		cuts[[2]int{idx[0], idx[1]}] = true
		if both {
			cuts[[2]int{idx[1], idx[0]}] = true
		}
		if err := c.net.setCuts(ctx, cuts); err != nil {
			return fmt.Errorf("chaos: cut %s-%s: %w", a, b, err)
		}
		if both {
			c.logf("chaos: cut the link %s<->%s", a, b)
		} else {
			c.logf("chaos: cut the link %s->%s (%s->%s passes)", a, b, b, a)
		}
		return nil
	})
}

// Degrade puts a netem qdisc on node's cluster link.
func (c *procCluster) Degrade(node string, l LinkFault) error {
	return c.netOp([]string{node}, func(ctx context.Context, idx []int) error {
		if err := c.net.degrade(ctx, idx[0], l); err != nil {
			return fmt.Errorf("chaos: degrade %s's link: %w", node, err)
		}
		c.logf("chaos: %s's cluster link: delay %s (jitter %s), loss %g%%", node, l.Delay, l.Jitter, l.LossPercent)
		return nil
	})
}

// Heal removes every cut and degraded link.
func (c *procCluster) Heal() error {
	return c.netOp(nil, func(ctx context.Context, _ []int) error {
		if err := c.net.heal(ctx); err != nil {
			return fmt.Errorf("chaos: heal: %w", err)
		}
		c.logf("chaos: healed every link")
		return nil
	})
}

// Wipe kills the node, deletes its data, removes the old member through a
// live node (`raftmail remove`), joins it again with a new token under the
// same name and addresses, and starts it. The node keeps its admin token
// (written back after the join), so NodeInfo stays valid.
func (c *procCluster) Wipe(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.node(node)
	if err != nil {
		return err
	}
	c.mu.Lock()
	running := n.runningLocked()
	c.mu.Unlock()
	if running {
		if err := c.kill(n); err != nil {
			return err
		}
	}
	if err := launchClearDir(n.dataDir); err != nil {
		return fmt.Errorf("chaos: wipe %s: %w", node, err)
	}
	c.logf("chaos: wiped %s's data directory %s", node, n.dataDir)

	ctx, cancel := context.WithTimeout(context.Background(), launchFormTimeout)
	defer cancel()
	err = launchRetry(ctx, func() error {
		via, err := c.liveNode(n)
		if err == nil {
			err = c.removeMember(ctx, n, via)
		}
		if err == nil {
			err = c.join(ctx, n, via)
		}
		if err != nil {
			// join wants an empty data directory: clear what it wrote.
			_ = launchClearDir(n.dataDir)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("chaos: wipe %s: rejoin: %w", node, err)
	}
	c.mu.Lock()
	token := n.info.AdminToken
	c.mu.Unlock()
	if err := os.WriteFile(filepath.Join(n.dataDir, "admin.token"), []byte(token), 0o600); err != nil {
		return fmt.Errorf("chaos: wipe %s: keep the admin token: %w", node, err)
	}
	return c.start(n)
}

// removeMember is `raftmail remove n` through via; a node the cluster
// already forgot is fine.
func (c *procCluster) removeMember(ctx context.Context, n, via *procNode) error {
	_, err := c.cli(ctx, "remove "+n.info.Name+" via "+via.info.Name, nil, append([]string{"remove", n.info.Name}, via.adminFlags()...)...)
	if err != nil && strings.Contains(err.Error(), "no node named") {
		return nil
	}
	return err
}

// liveNode is a running, not paused node other than not.
func (c *procCluster) liveNode(not *procNode) (*procNode, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n != not && n.runningLocked() && !n.paused {
			return n, nil
		}
	}
	return nil, errors.New("no other node is running")
}

// FillDisk writes a filler file into the node's data file system until it
// is full. ErrNotSupported unless the data is on a size-limited tmpfs.
func (c *procCluster) FillDisk(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.node(node)
	if err != nil {
		return err
	}
	if !n.mounted {
		return ErrNotSupported
	}
	if err := launchFill(filepath.Join(n.dataDir, fillerName)); err != nil {
		return fmt.Errorf("chaos: fill %s's disk: %w", node, err)
	}
	c.logf("chaos: filled %s's data file system", node)
	return nil
}

// FreeDisk deletes the filler file.
func (c *procCluster) FreeDisk(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n, err := c.node(node)
	if err != nil {
		return err
	}
	if !n.mounted {
		return ErrNotSupported
	}
	if err := os.Remove(filepath.Join(n.dataDir, fillerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("chaos: free %s's disk: %w", node, err)
	}
	return nil
}

// launchFill writes zeros to path until the file system reports ENOSPC.
func launchFill(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return nil
		}
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// Close stops every node (SIGCONT, then SIGTERM, then SIGKILL after 15s),
// deletes the network namespaces, unmounts the tmpfs file systems, and
// removes the directory Launch made (a LaunchOptions.Dir is kept, with
// data and logs).
func (c *procCluster) Close() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	type proc struct {
		n    *procNode
		cmd  *exec.Cmd
		done chan struct{}
	}
	var procs []proc
	for _, n := range c.nodes {
		if n.runningLocked() {
			procs = append(procs, proc{n, n.cmd, n.done})
		}
	}
	c.mu.Unlock()

	var errs []error
	c.healFaultFS() // a stalled disk would hold the shutdown up
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(launchStopTimeout)
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		case <-deadline:
		}
		select {
		case <-p.done:
		default:
			errs = append(errs, fmt.Errorf("chaos: %s (pid %d) did not stop within %s of SIGTERM: killed", p.n.info.Name, p.cmd.Process.Pid, launchStopTimeout))
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if c.net != nil {
		if err := c.net.close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.unmountFaultFS()...)
	for _, n := range c.nodes {
		if !n.mounted {
			continue
		}
		if err := syscall.Unmount(n.dataDir, 0); err != nil {
			if err2 := syscall.Unmount(n.dataDir, syscall.MNT_DETACH); err2 != nil {
				errs = append(errs, fmt.Errorf("chaos: unmount %s: %w", n.dataDir, err))
				continue
			}
		}
		n.mounted = false
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// launchRetry calls f until it succeeds or ctx ends, a second apart (a
// leader election may be in progress), and returns f's last error.
func launchRetry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// launchBinary is the raftmail binary to run: bin, else the running
// executable (which is raftmail itself under `raftmail chaos run`).
func launchBinary(bin string) (string, error) {
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("chaos: find the raftmail binary: %w", err)
		}
		bin = exe
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", fmt.Errorf("chaos: raftmail binary %s: %w", bin, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("chaos: raftmail binary: %w", err)
	}
	return abs, nil
}

// launchEnv is the environment of the processes the process backend
// starts: no RAFTMAIL_* settings from the caller's shell, a private
// XDG_DATA_HOME so that nothing touches the caller's default data
// directory, and no race-detector pause at exit unless GORACE is set.
func launchEnv(xdg string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RAFTMAIL_") || strings.HasPrefix(kv, "XDG_DATA_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return append(env, "XDG_DATA_HOME="+xdg)
}

// launchPorts are the ports handed out already in this process, so that
// two clusters launched at once never get the same one.
var launchPorts struct {
	sync.Mutex
	taken map[int]bool
}

// launchFreePorts returns n loopback ports that are free for TCP and UDP
// (gossip uses both) and were not handed out before in this process.
func launchFreePorts(n int) ([]int, error) {
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("chaos: found no port free for both TCP and UDP on 127.0.0.1")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("chaos: free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", launchLoopback(port))
		l.Close()
		if err != nil {
			continue
		}
		pc.Close()
		launchPorts.Lock()
		if !launchPorts.taken[port] {
			if launchPorts.taken == nil {
				launchPorts.taken = map[int]bool{}
			}
			launchPorts.taken[port] = true
			out = append(out, port)
		}
		launchPorts.Unlock()
	}
	return out, nil
}

func launchLoopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// launchEmptyDir makes dir, which must not hold anything yet: Launch makes
// a new cluster and never reuses a node's data.
func launchEmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("chaos: launch: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("chaos: launch: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("chaos: launch: %s holds data already; Launch makes a new cluster: give an empty LaunchOptions.Dir", dir)
	}
	return nil
}

// launchClearDir deletes everything in dir but dir itself (which may be a
// mount point).
func launchClearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// launchTail is the last lines of a log file, for error messages.
func launchTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return fmt.Sprintf("---- last lines of %s ----\n%s", path, strings.Join(all, "\n"))
}

// launchWaitAdmin waits until something answers HTTP at addr's /healthz
// (any status: a node without a leader answers 503). exited, if not nil,
// is closed when the process has died, which ends the wait at once.
func launchWaitAdmin(ctx context.Context, addr string, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		last = err
		select {
		case <-exited:
			return errors.New("the process exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("admin API at %s did not answer: %v", addr, last)
		case <-time.After(launchPollInterval):
		}
	}
}

// launchStatus is GET /v1/status through n's admin API: every node's view
// as that node gathers it (what `raftmail status --json` prints).
func launchStatus(ctx context.Context, n NodeInfo) ([]cluster.NodeStatus, error) {
	c := ops.Client{Addr: n.Admin, Token: n.AdminToken, HTTP: &http.Client{Timeout: 10 * time.Second}}
	var st []cluster.NodeStatus
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return st, nil
}

// launchFormed reports whether st shows want reachable voters that agree
// on one leader, with a one-line summary.
func launchFormed(st []cluster.NodeStatus, want int) (bool, string) {
	sum := launchSummary(st)
	if len(st) != want {
		return false, fmt.Sprintf("%d of %d nodes: %s", len(st), want, sum)
	}
	leader := ""
	for _, s := range st {
		if s.Role == "Leader" {
			if leader != "" {
				return false, "two leaders: " + sum
			}
			leader = s.Name
		}
	}
	if leader == "" {
		return false, "no leader: " + sum
	}
	for _, s := range st {
		if !s.Reachable || !s.Voter || s.Leader != leader {
			return false, sum
		}
	}
	return true, sum
}

// launchWaitFormed polls status through via until launchFormed.
func launchWaitFormed(ctx context.Context, via NodeInfo, want int) error {
	last := "no answer yet"
	for {
		st, err := launchStatus(ctx, via)
		if err != nil {
			last = err.Error()
		} else {
			ok, sum := launchFormed(st, want)
			if ok {
				return nil
			}
			last = sum
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d reachable voters and one leader (status via %s): %w; last: %s", want, via.Name, ctx.Err(), last)
		case <-time.After(launchPollInterval):
		}
	}
}

// launchSummary is a one-line view of a status listing.
func launchSummary(st []cluster.NodeStatus) string {
	var parts []string
	for _, s := range st {
		h := s.StateHash
		if len(h) > 8 {
			h = h[:8]
		}
		parts = append(parts, fmt.Sprintf("%s{role=%s voter=%v reachable=%v leader=%s applied=%d hash=%s err=%q}",
			s.Name, s.Role, s.Voter, s.Reachable, s.Leader, s.AppliedIndex, h, s.Error))
	}
	return strings.Join(parts, " ")
}
