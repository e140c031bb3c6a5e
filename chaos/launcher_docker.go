package chaos

// The Docker backend: every node is a container of an image FROM scratch
// holding only the static raftmail binary, on two Docker networks this
// backend creates and owns:
//
//	cluster  172.28.X.0/24, internal: Raft, RPC and gossip only
//	clients  172.29.X.0/24: mail and admin listeners, published to
//	         127.0.0.1 on the host
//
// Node i has address .(10+i) on both. Partition disconnects nodes from the
// cluster network, so they still answer clients but reach no other node:
// a real partition, which the process backend cannot make.
//
// Every container, network and volume is named raftmail-chaos-<id>-... and
// labelled raftmail-chaos=<id>; this backend touches nothing else.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/ops"
)

// dockerfile is the repository's Dockerfile (TestDockerfileInSync checks
// that they agree), so that the backend needs only a binary at run time.
const dockerfile = `# Raftmail's container image: the static binary and nothing else.
#
#   make build                  # CGO_ENABLED=0: bin/raftmail runs FROM scratch
#   docker build -t raftmail .
#
# The image has no shell: run the CLI with ` + "`docker exec NODE /raftmail ...`" + `.
# deploy/docker-compose.yml runs three nodes on one host from this image;
# the chaos suite's Docker backend builds it too (chaos/launcher_docker.go
# keeps a copy of this file, and a test checks that the two agree).
FROM scratch
COPY bin/raftmail /raftmail
# The node's data: keys, Raft log, Pebble store, mail blobs.
ENV RAFTMAIL_DATA_DIR=/data
VOLUME ["/data"]
# SMTP MX, submissions, submission, IMAP, IMAPS, POP3, POP3S
EXPOSE 25 465 587 143 993 110 995
# gossip (TCP and UDP), cluster (Raft and RPC over mutual TLS), admin API
EXPOSE 7946/tcp 7946/udp 7947 7948
ENTRYPOINT ["/raftmail"]
CMD ["serve"]
`

// DockerImage is the tag DockerLauncher builds when Image is "".
const DockerImage = "raftmail:chaos"

// dockerLabel marks everything a Docker cluster creates, with its id.
const dockerLabel = "raftmail-chaos"

const (
	dockerTimeout      = 2 * time.Minute // one docker command
	dockerBuildTimeout = 5 * time.Minute // docker build
	dockerDataDir      = "/data"
)

// DockerLauncher starts clusters of containers (see the top of
// launcher_docker.go). It needs a working `docker` command; the binary
// must be a static Linux build (CGO_ENABLED=0, as `make build` makes it).
// FillDisk and FreeDisk are not supported: the image has no shell to fill
// a disk with, and a tmpfs would not survive docker kill.
type DockerLauncher struct {
	// Logf, if not nil, receives one line per step (t.Logf fits).
	Logf func(format string, args ...any)
	// Image is the tag to build; "" = DockerImage.
	Image string
}

var _ Launcher = DockerLauncher{}

// Launch builds the image, creates the networks and volumes, forms the
// cluster (init in a one-shot container on node1's volume, then for each
// other node `token create` through `docker exec` on node1 and join in a
// one-shot container on the node's volume and cluster address), and
// returns once every node is a reachable voter and there is one leader.
// On error, whatever it created is removed again.
//
// The one-shot containers use the node's cluster address too, so the
// serve container is created only after them.
// ReachesOutside: not on this backend. The containers would reach a sink
// on the host through their network's gateway, which the host's firewall
// may drop; remote mail stays queued (DeadResolver) and is checked there.
func (DockerLauncher) ReachesOutside() error {
	return fmt.Errorf("an outbound sink is not run on the Docker backend: %w", ErrNotSupported)
}

func (l DockerLauncher) Launch(ctx context.Context, opts LaunchOptions) (Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 || opts.Nodes > 200 {
		return nil, fmt.Errorf("chaos: docker launch: %d nodes (1 to 200)", opts.Nodes)
	}
	if opts.DNSResolver == "" {
		opts.DNSResolver = DeadResolver() // a chaos cluster never sends mail out
	}
	bin, err := launchBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	if err := dockerCheckStatic(bin); err != nil {
		return nil, err
	}
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	c := &dockerCluster{
		logf:  l.Logf,
		opts:  opts,
		image: l.Image,
		id:    hex.EncodeToString(idb[:]),
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.image == "" {
		c.image = DockerImage
	}
	c.prefix = "raftmail-chaos-" + c.id
	if opts.Dir != "" {
		if c.dir, err = filepath.Abs(opts.Dir); err == nil {
			err = os.MkdirAll(c.dir, 0o755)
		}
		if err != nil {
			return nil, fmt.Errorf("chaos: docker launch: %w", err)
		}
	}
	if _, err := c.docker(ctx, nil, "info", "--format", "{{.ServerVersion}}"); err != nil {
		return nil, fmt.Errorf("chaos: docker launch: is Docker running? %w", err)
	}
	if err := c.build(ctx, bin); err != nil {
		return nil, err
	}
	if err := c.launch(ctx); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return c, nil
}

// dockerCluster is a cluster of containers.
type dockerCluster struct {
	logf   func(string, ...any)
	opts   LaunchOptions
	image  string
	id     string // random, in every name and label
	prefix string // raftmail-chaos-<id>
	dir    string // LaunchOptions.Dir made absolute: container logs go there at Close
	x      int    // the networks are 172.28.x.0/24 (cluster) and 172.29.x.0/24 (clients)
	nodes  []*dockerNode

	// opMu serializes faults (and Close): one at a time.
	opMu sync.Mutex
	// mu guards the node states, read by Nodes and liveNode.
	mu struct {
		sync.Mutex
		closed bool
	}
}

// dockerNode is one container and its volume.
type dockerNode struct {
	info      NodeInfo
	container string
	volume    string
	clusterIP string
	clientIP  string
	// host ports published on 127.0.0.1, by container port
	ports map[int]int

	// Guarded by dockerCluster.mu.
	running     bool
	paused      bool
	partitioned bool
}

func (c *dockerCluster) clusterNet() string { return c.prefix + "-cluster" }
func (c *dockerCluster) clientsNet() string { return c.prefix + "-clients" }
func (c *dockerCluster) labelArg() string   { return dockerLabel + "=" + c.id }

// docker runs the docker command and returns its standard output; errors
// carry the first argument and standard error, never the other arguments.
// env is added to the environment of the docker command (`-e NAME`
// passes a secret into a container without putting it on a command line).
func (c *dockerCluster) docker(ctx context.Context, env []string, args ...string) (string, error) {
	return c.dockerIn(ctx, nil, env, args...)
}

func (c *dockerCluster) dockerIn(ctx context.Context, stdin io.Reader, env []string, args ...string) (string, error) {
	timeout := dockerTimeout
	if len(args) > 0 && args[0] == "build" {
		timeout = dockerBuildTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		what := "docker"
		if len(args) > 0 {
			what += " " + args[0]
		}
		if len(args) > 1 && (args[0] == "network" || args[0] == "volume") {
			what += " " + args[1]
		}
		return stdout.String(), fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// build makes the image from the Dockerfile and bin in a temporary build
// context, so that nothing depends on the repository's layout.
func (c *dockerCluster) build(ctx context.Context, bin string) error {
	dir, err := os.MkdirTemp("", "raftmail-chaos-image-")
	if err != nil {
		return fmt.Errorf("chaos: docker build: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return fmt.Errorf("chaos: docker build: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		return fmt.Errorf("chaos: docker build: %w", err)
	}
	if err := launchCopyFile(bin, filepath.Join(dir, "bin", "raftmail"), 0o755); err != nil {
		return fmt.Errorf("chaos: docker build: %w", err)
	}
	start := time.Now()
	if _, err := c.docker(ctx, nil, "build", "-q", "-t", c.image, "-f", filepath.Join(dir, "Dockerfile"), dir); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	c.logf("chaos: built image %s from %s in %s", c.image, bin, time.Since(start).Round(time.Millisecond))
	return nil
}

func launchCopyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// dockerCheckStatic refuses a binary that cannot run FROM scratch: not a
// Linux ELF file, or dynamically linked.
func dockerCheckStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("chaos: %s is not a Linux binary, so it cannot run in the image: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("chaos: %s is dynamically linked, so it cannot run FROM scratch: build it with CGO_ENABLED=0 (make build)", bin)
		}
	}
	return nil
}

// flags are the node settings inside the container, the same for init,
// join and serve. The cluster and gossip ports listen on the cluster
// network's address, mail and admin on the clients network's.
//
// Not 0.0.0.0 with --advertise for the cluster port: the Raft transport
// then tells followers the leader is at [::]:7947, so they forward writes
// to themselves and every write through a follower fails (a cluster bug
// this backend found). The price: a node cannot start while partitioned,
// its cluster address being gone until Heal.
func (c *dockerCluster) flags(n *dockerNode) []string {
	on := func(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	f := []string{
		"--data-dir", dockerDataDir, "--name", n.info.Name,
		"--cluster-addr", on(n.clusterIP, 7947),
		"--gossip-addr", on(n.clusterIP, 7946),
		"--admin-addr", on(n.clientIP, 7948),
		"--hostname", n.info.Name,
		"--smtp-addr", on(n.clientIP, 25),
		"--submission-addr", on(n.clientIP, 587),
		"--submissions-addr", "off",
		"--imap-addr", "off",
		"--imaps-addr", on(n.clientIP, 993),
		"--pop3-addr", "off",
		"--pop3s-addr", on(n.clientIP, 995),
	}
	return append(f, launchTimingFlags(c.opts)...)
}

func (c *dockerCluster) launch(ctx context.Context) error {
	if err := c.createNetworks(ctx); err != nil {
		return err
	}
	for i := range c.opts.Nodes {
		name := fmt.Sprintf("node%d", i+1)
		hp, err := launchFreePorts(5)
		if err != nil {
			return err
		}
		n := &dockerNode{
			container: c.prefix + "-" + name,
			volume:    c.prefix + "-" + name,
			clusterIP: fmt.Sprintf("172.28.%d.%d", c.x, 11+i),
			clientIP:  fmt.Sprintf("172.29.%d.%d", c.x, 11+i),
			ports:     map[int]int{25: hp[0], 587: hp[1], 993: hp[2], 995: hp[3], 7948: hp[4]},
		}
		n.info = NodeInfo{
			Name:           name,
			SMTP:           launchLoopback(n.ports[25]),
			Submission:     launchLoopback(n.ports[587]),
			IMAPS:          launchLoopback(n.ports[993]),
			POP3S:          launchLoopback(n.ports[995]),
			Admin:          launchLoopback(n.ports[7948]),
			ClusterAddress: net.JoinHostPort(n.clusterIP, "7947"),
		}
		c.nodes = append(c.nodes, n)
		if _, err := c.docker(ctx, nil, "volume", "create", "--label", c.labelArg(), n.volume); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
	}

	first := c.nodes[0]
	// init opens the cluster port (it bootstraps a one-node Raft): on the
	// node's cluster address, before the serve container takes it.
	args := append([]string{"run", "--rm", "--network", c.clusterNet(), "--ip", first.clusterIP, "--label", c.labelArg(),
		"-v", first.volume + ":" + dockerDataDir, c.image, "init", "--token-ttl", "10m"}, c.flags(first)...)
	if _, err := c.docker(ctx, nil, args...); err != nil {
		return fmt.Errorf("chaos: init %s: %w", first.info.Name, err)
	}
	if err := c.create(ctx, first, ""); err != nil {
		return err
	}
	if err := c.start(ctx, first); err != nil {
		return err
	}
	if err := c.readToken(ctx, first); err != nil {
		return err
	}
	for _, n := range c.nodes[1:] {
		if err := c.join(ctx, n, first); err != nil {
			return err
		}
		if err := c.create(ctx, n, ""); err != nil {
			return err
		}
		if err := c.start(ctx, n); err != nil {
			return err
		}
		if err := c.readToken(ctx, n); err != nil {
			return err
		}
	}
	fctx, cancel := context.WithTimeout(ctx, launchFormTimeout)
	defer cancel()
	if err := launchWaitFormed(fctx, first.info, len(c.nodes)); err != nil {
		return fmt.Errorf("chaos: docker launch: %w\n%s", err, c.logTail(first, 20))
	}
	c.logf("chaos: %d raftmail containers formed a cluster (%s, networks %s and %s)", len(c.nodes), c.prefix, c.clusterNet(), c.clientsNet())
	return nil
}

// createNetworks picks x so that neither 172.28.x.0/24 nor 172.29.x.0/24
// overlaps a Docker network or a host interface, and creates both
// networks (the cluster one internal: no way out of the host).
func (c *dockerCluster) createNetworks(ctx context.Context) error {
	used, err := c.usedSubnets(ctx)
	if err != nil {
		return err
	}
	overlaps := func(s *net.IPNet) bool {
		for _, u := range used {
			if u.Contains(s.IP) || s.Contains(u.IP) {
				return true
			}
		}
		return false
	}
	var lastErr error
	for _, x := range mrand.Perm(254) {
		x++
		_, cl, _ := net.ParseCIDR(fmt.Sprintf("172.28.%d.0/24", x))
		_, cn, _ := net.ParseCIDR(fmt.Sprintf("172.29.%d.0/24", x))
		if overlaps(cl) || overlaps(cn) {
			continue
		}
		_, err := c.docker(ctx, nil, "network", "create", "--driver", "bridge", "--internal",
			"--subnet", cl.String(), "--label", c.labelArg(), c.clusterNet())
		if err != nil {
			lastErr = err // another network took it meanwhile: try the next
			continue
		}
		_, err = c.docker(ctx, nil, "network", "create", "--driver", "bridge",
			"--subnet", cn.String(), "--label", c.labelArg(), c.clientsNet())
		if err != nil {
			lastErr = err
			if _, err := c.docker(ctx, nil, "network", "rm", c.clusterNet()); err != nil {
				return fmt.Errorf("chaos: %w", err)
			}
			continue
		}
		c.x = x
		c.logf("chaos: created networks %s (%s) and %s (%s)", c.clusterNet(), cl, c.clientsNet(), cn)
		return nil
	}
	return fmt.Errorf("chaos: no free pair of subnets 172.28.X.0/24 and 172.29.X.0/24 for the Docker networks: %v", lastErr)
}

// usedSubnets lists the subnets of every Docker network and host
// interface.
func (c *dockerCluster) usedSubnets(ctx context.Context) ([]*net.IPNet, error) {
	var used []*net.IPNet
	ids, err := c.docker(ctx, nil, "network", "ls", "-q")
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if f := strings.Fields(ids); len(f) > 0 {
		out, err := c.docker(ctx, nil, append([]string{"network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, f...)...)
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		for _, s := range strings.Fields(out) {
			if _, n, err := net.ParseCIDR(s); err == nil {
				used = append(used, n)
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				used = append(used, n)
			}
		}
	}
	return used, nil
}

// join makes n a member through via: a token from `token create` run in
// via's container, then `join` in a one-shot container on n's volume and
// cluster address (the token goes in through the environment).
func (c *dockerCluster) join(ctx context.Context, n, via *dockerNode) error {
	out, err := c.docker(ctx, nil, "exec", via.container, "/raftmail", "token", "create",
		"--ttl", "10m", "--json", "--description", "chaos: "+n.info.Name)
	if err != nil {
		return fmt.Errorf("chaos: token create via %s: %w", via.info.Name, err)
	}
	var tok ops.TokenCreated
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Token == "" {
		return fmt.Errorf("chaos: token create via %s: no token in its answer (%v)", via.info.Name, err)
	}
	args := append([]string{"run", "--rm", "--label", c.labelArg(),
		"--network", c.clusterNet(), "--ip", n.clusterIP,
		"-v", n.volume + ":" + dockerDataDir, "-e", "RAFTMAIL_TOKEN",
		c.image, "join"}, c.flags(n)...)
	args = append(args, via.info.ClusterAddress)
	if _, err := c.docker(ctx, []string{"RAFTMAIL_TOKEN=" + tok.Token}, args...); err != nil {
		return fmt.Errorf("chaos: join %s via %s: %w", n.info.Name, via.info.Name, err)
	}
	return nil
}

// create makes n's serve container (not started) on the clients network,
// writes token into its data as admin.token when not "", and connects it
// to the cluster network unless n is partitioned.
func (c *dockerCluster) create(ctx context.Context, n *dockerNode, token string) error {
	args := []string{"create", "--name", n.container, "--hostname", n.info.Name, "--label", c.labelArg(),
		"--network", c.clientsNet(), "--ip", n.clientIP, "-v", n.volume + ":" + dockerDataDir}
	for _, p := range []int{25, 587, 993, 995, 7948} {
		args = append(args, "-p", fmt.Sprintf("127.0.0.1:%d:%d", n.ports[p], p))
	}
	args = append(append(args, c.image, "serve"), c.flags(n)...)
	if _, err := c.docker(ctx, nil, args...); err != nil {
		return fmt.Errorf("chaos: create %s: %w", n.info.Name, err)
	}
	if token != "" {
		if err := c.writeToken(ctx, n, token); err != nil {
			return err
		}
	}
	c.mu.Lock()
	partitioned := n.partitioned
	c.mu.Unlock()
	if !partitioned {
		if _, err := c.docker(ctx, nil, "network", "connect", "--ip", n.clusterIP, c.clusterNet(), n.container); err != nil {
			return fmt.Errorf("chaos: connect %s to the cluster network: %w", n.info.Name, err)
		}
	}
	return nil
}

// start starts n's container and waits until its admin API answers.
func (c *dockerCluster) start(ctx context.Context, n *dockerNode) error {
	if _, err := c.docker(ctx, nil, "start", n.container); err != nil {
		return fmt.Errorf("chaos: start %s: %w", n.info.Name, err)
	}
	c.mu.Lock()
	n.running, n.paused = true, false
	c.mu.Unlock()
	c.logf("chaos: started %s (container %s)", n.info.Name, n.container)
	ctx, cancel := context.WithTimeout(ctx, launchStartTimeout)
	defer cancel()
	exited := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // ends the wait if the container stops
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			out, err := c.docker(ctx, nil, "inspect", "--format", "{{.State.Running}}", n.container)
			if err == nil && strings.TrimSpace(out) == "false" {
				close(exited)
				return
			}
		}
	}()
	if err := launchWaitAdmin(ctx, n.info.Admin, exited); err != nil {
		return fmt.Errorf("chaos: start %s: %w\n%s", n.info.Name, err, c.logTail(n, 20))
	}
	return nil
}

// logTail is the end of a container's log, for error messages.
func (c *dockerCluster) logTail(n *dockerNode, lines int) string {
	out, err := c.dockerCombined(context.Background(), "logs", "--tail", strconv.Itoa(lines), n.container)
	if err != nil {
		return fmt.Sprintf("(no log of %s: %v)", n.container, err)
	}
	return fmt.Sprintf("---- last lines of %s's log ----\n%s", n.container, strings.TrimRight(out, "\n"))
}

// dockerCombined runs docker with standard output and error together (for
// docker logs).
func (c *dockerCluster) dockerCombined(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w", args[0], err)
	}
	return string(out), nil
}

// readToken reads n's admin.token out of its container (docker cp writes
// a tar stream).
func (c *dockerCluster) readToken(ctx context.Context, n *dockerNode) error {
	out, err := c.docker(ctx, nil, "cp", n.container+":"+dockerDataDir+"/admin.token", "-")
	if err != nil {
		return fmt.Errorf("chaos: read %s's admin token: %w", n.info.Name, err)
	}
	tr := tar.NewReader(strings.NewReader(out))
	if _, err := tr.Next(); err != nil {
		return fmt.Errorf("chaos: read %s's admin token: %w", n.info.Name, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return fmt.Errorf("chaos: read %s's admin token: %w", n.info.Name, err)
	}
	c.mu.Lock()
	n.info.AdminToken = strings.TrimSpace(string(b))
	c.mu.Unlock()
	return nil
}

// writeToken writes token as admin.token into n's (created, not running)
// container's data.
func (c *dockerCluster) writeToken(ctx context.Context, n *dockerNode, token string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "admin.token", Mode: 0o600, Size: int64(len(token)), ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write([]byte(token)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if _, err := c.dockerIn(ctx, &buf, nil, "cp", "-", n.container+":"+dockerDataDir+"/"); err != nil {
		return fmt.Errorf("chaos: keep %s's admin token: %w", n.info.Name, err)
	}
	return nil
}

func (c *dockerCluster) node(name string) (*dockerNode, error) {
	for _, n := range c.nodes {
		if n.info.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("chaos: no node named %q", name)
}

// Nodes returns the nodes in order, node1 first. Addresses are the
// host-side ones (127.0.0.1); ClusterAddress is on the cluster network.
func (c *dockerCluster) Nodes() []NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.info
	}
	return out
}

// op runs f on the named node with faults serialized.
func (c *dockerCluster) op(name string, f func(ctx context.Context, n *dockerNode) error) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	closed := c.mu.closed
	c.mu.Unlock()
	if closed {
		return errors.New("chaos: cluster closed")
	}
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return f(context.Background(), n)
}

// Kill is docker kill (SIGKILL).
func (c *dockerCluster) Kill(node string) error {
	return c.op(node, func(ctx context.Context, n *dockerNode) error {
		if _, err := c.docker(ctx, nil, "kill", n.container); err != nil {
			return fmt.Errorf("chaos: kill %s: %w", node, err)
		}
		c.mu.Lock()
		n.running, n.paused = false, false
		c.mu.Unlock()
		c.logf("chaos: killed %s (docker kill)", node)
		return nil
	})
}

// Start is docker start; it waits until the node's admin API answers. A
// partitioned node cannot start: its cluster address is gone until Heal.
func (c *dockerCluster) Start(node string) error {
	return c.op(node, func(ctx context.Context, n *dockerNode) error {
		c.mu.Lock()
		partitioned := n.partitioned
		c.mu.Unlock()
		if partitioned {
			return fmt.Errorf("chaos: start %s: partitioned, so its cluster address is gone: Heal first", node)
		}
		return c.start(ctx, n)
	})
}

// Pause is docker pause (the cgroup freezer).
func (c *dockerCluster) Pause(node string) error {
	return c.op(node, func(ctx context.Context, n *dockerNode) error {
		if _, err := c.docker(ctx, nil, "pause", n.container); err != nil {
			return fmt.Errorf("chaos: pause %s: %w", node, err)
		}
		c.mu.Lock()
		n.paused = true
		c.mu.Unlock()
		c.logf("chaos: paused %s", node)
		return nil
	})
}

// Resume is docker unpause.
func (c *dockerCluster) Resume(node string) error {
	return c.op(node, func(ctx context.Context, n *dockerNode) error {
		if _, err := c.docker(ctx, nil, "unpause", n.container); err != nil {
			return fmt.Errorf("chaos: resume %s: %w", node, err)
		}
		c.mu.Lock()
		n.paused = false
		c.mu.Unlock()
		c.logf("chaos: resumed %s", node)
		return nil
	})
}

// Partition disconnects the nodes from the cluster network: they keep
// their client addresses but reach no other node, and no other node
// reaches them.
func (c *dockerCluster) Partition(nodes ...string) error {
	for _, name := range nodes {
		err := c.op(name, func(ctx context.Context, n *dockerNode) error {
			c.mu.Lock()
			done := n.partitioned
			c.mu.Unlock()
			if done {
				return nil
			}
			if _, err := c.docker(ctx, nil, "network", "disconnect", c.clusterNet(), n.container); err != nil {
				return fmt.Errorf("chaos: partition %s: %w", name, err)
			}
			c.mu.Lock()
			n.partitioned = true
			c.mu.Unlock()
			c.logf("chaos: partitioned %s (disconnected from %s)", name, c.clusterNet())
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Heal connects every partitioned node to the cluster network again, with
// its address.
func (c *dockerCluster) Heal() error {
	var errs []error
	for _, n := range c.nodes {
		err := c.op(n.info.Name, func(ctx context.Context, n *dockerNode) error {
			c.mu.Lock()
			partitioned := n.partitioned
			c.mu.Unlock()
			if !partitioned {
				return nil
			}
			if _, err := c.docker(ctx, nil, "network", "connect", "--ip", n.clusterIP, c.clusterNet(), n.container); err != nil {
				return fmt.Errorf("chaos: heal %s: %w", n.info.Name, err)
			}
			c.mu.Lock()
			n.partitioned = false
			c.mu.Unlock()
			c.logf("chaos: healed %s (connected to %s again)", n.info.Name, c.clusterNet())
			return nil
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Wipe removes the node's container and volume, removes the old member
// through a live node (`raftmail remove` by docker exec), joins it again
// on a new volume with the same name and addresses, and starts it. The
// node keeps its admin token (copied into the new volume), so NodeInfo
// stays valid.
func (c *dockerCluster) Wipe(node string) error {
	return c.op(node, func(ctx context.Context, n *dockerNode) error {
		c.mu.Lock()
		partitioned := n.partitioned
		c.mu.Unlock()
		if partitioned {
			return fmt.Errorf("chaos: wipe %s: partitioned, so it could not join again: Heal first", node)
		}
		c.saveLog(ctx, n)
		if _, err := c.docker(ctx, nil, "rm", "-f", "-v", n.container); err != nil {
			return fmt.Errorf("chaos: wipe %s: %w", node, err)
		}
		c.mu.Lock()
		n.running, n.paused = false, false
		token := n.info.AdminToken
		c.mu.Unlock()
		fresh := func() error {
			if _, err := c.docker(ctx, nil, "volume", "rm", "-f", n.volume); err != nil {
				return err
			}
			_, err := c.docker(ctx, nil, "volume", "create", "--label", c.labelArg(), n.volume)
			return err
		}
		if err := fresh(); err != nil {
			return fmt.Errorf("chaos: wipe %s: %w", node, err)
		}
		c.logf("chaos: wiped %s (new volume %s)", node, n.volume)
		rctx, cancel := context.WithTimeout(ctx, launchFormTimeout)
		defer cancel()
		err := launchRetry(rctx, func() error {
			via, err := c.liveNode(n)
			if err == nil {
				err = c.removeMember(rctx, n, via)
			}
			if err == nil {
				err = c.join(rctx, n, via)
			}
			if err != nil {
				// join wants an empty data directory.
				if ferr := fresh(); ferr != nil {
					return errors.Join(err, ferr)
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("chaos: wipe %s: rejoin: %w", node, err)
		}
		if err := c.create(ctx, n, token); err != nil {
			return err
		}
		return c.start(ctx, n)
	})
}

// removeMember is `raftmail remove n` in via's container; a node the
// cluster already forgot is fine.
func (c *dockerCluster) removeMember(ctx context.Context, n, via *dockerNode) error {
	_, err := c.docker(ctx, nil, "exec", via.container, "/raftmail", "remove", n.info.Name)
	if err != nil && strings.Contains(err.Error(), "no node named") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chaos: remove %s via %s: %w", n.info.Name, via.info.Name, err)
	}
	return nil
}

// liveNode is a running node, neither paused nor partitioned, other than
// not.
func (c *dockerCluster) liveNode(not *dockerNode) (*dockerNode, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n != not && n.running && !n.paused && !n.partitioned {
			return n, nil
		}
	}
	return nil, errors.New("no other node is running and connected")
}

// Cut is not supported by the Docker backend: a container is on the
// cluster network or not, with every peer at once.
func (c *dockerCluster) Cut(a, b string) error { return ErrNotSupported }

// CutOneWay is not supported by the Docker backend (see Cut).
func (c *dockerCluster) CutOneWay(from, to string) error { return ErrNotSupported }

// Degrade is not supported by the Docker backend.
func (c *dockerCluster) Degrade(node string, l LinkFault) error { return ErrNotSupported }

// Supports: partitions only.
func (c *dockerCluster) Supports(need Need) error {
	switch {
	case need&NeedDisk != 0:
		return fmt.Errorf("a size-limited disk: the image has no shell to fill it with: %w", ErrNotSupported)
	case need&NeedClock != 0:
		return fmt.Errorf("clock faults run on the process backend only: %w", ErrNotSupported)
	case need&(NeedLinkCut|NeedNetem) != 0:
		return fmt.Errorf("cuts of single links, latency and loss need the process backend's network namespaces: %w", ErrNotSupported)
	}
	return nil
}

// FillDisk is not supported by the Docker backend.
func (c *dockerCluster) FillDisk(node string) error { return ErrNotSupported }

// FreeDisk is not supported by the Docker backend.
func (c *dockerCluster) FreeDisk(node string) error { return ErrNotSupported }

// saveLog appends n's container log to <Dir>/<node>.log when
// LaunchOptions.Dir was given.
func (c *dockerCluster) saveLog(ctx context.Context, n *dockerNode) {
	if c.dir == "" {
		return
	}
	out, err := c.dockerCombined(ctx, "logs", "--timestamps", n.container)
	if err != nil {
		return // no container (yet)
	}
	f, err := os.OpenFile(filepath.Join(c.dir, n.info.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.logf("chaos: save %s's log: %v", n.info.Name, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %s: chaos: log of container %s\n%s", time.Now().Format(time.RFC3339Nano), n.container, out)
}

// Close stops the containers (docker stop: SIGTERM, SIGKILL after 15s),
// keeps their logs in LaunchOptions.Dir when given, and removes every
// container, network and volume labelled with this cluster's id.
func (c *dockerCluster) Close() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	c.mu.Unlock()
	ctx := context.Background()
	var errs []error
	var names []string
	for _, n := range c.nodes {
		names = append(names, n.container)
		_, _ = c.docker(ctx, nil, "unpause", n.container) // a paused container cannot stop
	}
	if len(names) > 0 {
		// Errors for containers never created or stopped already.
		_, _ = c.docker(ctx, nil, append([]string{"stop", "--time", strconv.Itoa(int(launchStopTimeout / time.Second))}, names...)...)
	}
	for _, n := range c.nodes {
		c.saveLog(ctx, n)
	}
	filter := "label=" + c.labelArg()
	if ids, err := c.docker(ctx, nil, "ps", "-aq", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(ids); len(f) > 0 {
		if _, err := c.docker(ctx, nil, append([]string{"rm", "-f", "-v"}, f...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ids, err := c.docker(ctx, nil, "network", "ls", "-q", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(ids); len(f) > 0 {
		if _, err := c.docker(ctx, nil, append([]string{"network", "rm"}, f...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if ids, err := c.docker(ctx, nil, "volume", "ls", "-q", "--filter", filter); err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(ids); len(f) > 0 {
		if _, err := c.docker(ctx, nil, append([]string{"volume", "rm", "-f"}, f...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		c.logf("chaos: removed the containers, networks and volumes of %s", c.prefix)
	}
	return errors.Join(errs...)
}
