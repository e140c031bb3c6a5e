package chaos

import (
	"context"
	"errors"
	"time"
)

// ErrNotSupported: the backend cannot inject this fault (for example a
// network partition with local processes on 127.0.0.1).
var ErrNotSupported = errors.New("chaos: fault not supported by this backend")

// NodeInfo is how clients and the suite reach one node.
type NodeInfo struct {
	Name           string
	SMTP           string // MX, host:port
	Submission     string // STARTTLS, host:port
	IMAPS          string // implicit TLS, host:port
	POP3S          string // implicit TLS, host:port
	Admin          string // admin API host:port
	AdminToken     string
	ClusterAddress string
}

// LaunchOptions describe the cluster a scenario needs.
type LaunchOptions struct {
	// Nodes is the cluster size; 0 = 3.
	Nodes int
	// Binary is the raftmail binary (process backend) or the binary to
	// put in the image (Docker backend); "" = the running executable.
	Binary string
	// Dir holds data directories and logs; "" = a new temporary directory.
	Dir string
	// SnapshotThreshold, if not 0, forces frequent Raft snapshots.
	SnapshotThreshold uint64
	// RaftTimeout, if not 0, overrides the Raft heartbeat/election timeout.
	RaftTimeout time.Duration
	// DiskLimitBytes, if not 0, puts each node's data on a file system of
	// that size (for the disk-full scenario), where the backend can.
	DiskLimitBytes int64
	// FaultFS, if true, puts each node's data directory on a faultfs
	// mount (chaos/faultfs), for DiskFaulter, where the backend can
	// (the process backend as root, with /dev/fuse).
	FaultFS bool
	// DNSResolver is the DNS server (host:port) the nodes use for
	// outbound delivery and mail authentication (serve --dns-resolver);
	// "" = DeadResolver(), a loopback port where nothing listens: every
	// lookup fails at once as a temporary error, so no chaos cluster ever
	// sends mail out, inbound checks are temperrors that never reject,
	// and mail to a remote recipient stays deferred in the outbound
	// queue, where the read-back finds it.
	DNSResolver string
	// Outside, if not nil, is the DNS server and SMTP sink the nodes
	// deliver outbound mail to (sink.go): it overrides DNSResolver, sets
	// the remote MX port, and shortens delivery's lease and retry delay
	// (outsideLease, outsideRetry) so that retries and take-overs happen
	// within a run. Only the process backend uses it; see OutsideReacher.
	Outside *Outside
}

// OutsideReacher is a Launcher that can tell whether its nodes reach an
// Outside: nil if they do, else an error wrapping ErrNotSupported. A
// Launcher without the method gets no sink.
type OutsideReacher interface {
	ReachesOutside() error
}

// Cluster is a running cluster under test. Node names are those of
// Nodes(). Every method is safe to call from the scenario goroutine while
// traffic runs.
type Cluster interface {
	Nodes() []NodeInfo
	// Kill sends SIGKILL (docker kill); Start starts a killed or stopped
	// node again on its data.
	Kill(node string) error
	Start(node string) error
	// Pause and Resume freeze and thaw a node (SIGSTOP/SIGCONT, docker
	// pause/unpause).
	Pause(node string) error
	Resume(node string) error
	// Partition cuts the given nodes off from the others (they still
	// reach clients): on the Docker backend each of them alone, in the
	// process backend's network namespaces as one group. Heal undoes
	// every partition, cut and degraded link. ErrNotSupported on
	// backends without a network of their own.
	Partition(nodes ...string) error
	Heal() error
	// Cut cuts the cluster link between a and b both ways, and
	// CutOneWay drops only what from sends to to: every other link
	// stays up. Packets are dropped without a word to the sender.
	// ErrNotSupported but in the process backend's network namespaces.
	Cut(a, b string) error
	CutOneWay(from, to string) error
	// Degrade delays and loses packets that node sends on its cluster
	// link (netem). Only in the process backend's network namespaces,
	// on a kernel with sch_netem; else ErrNotSupported.
	Degrade(node string, l LinkFault) error
	// Supports returns nil if the cluster can inject every fault in
	// need, else an error wrapping ErrNotSupported that says why not.
	Supports(need Need) error
	// Wipe kills a node, deletes its data, and joins it again as a new
	// member with the same name and addresses.
	Wipe(node string) error
	// FillDisk fills the node's data file system; FreeDisk undoes it.
	FillDisk(node string) error
	FreeDisk(node string) error
	// SkewClock sets the offset of node's wall clock (0: none), also
	// across restarts; ErrNotSupported but on the process backend with a
	// binary built with -tags chaos_clock (clock.go).
	SkewClock(node string, d time.Duration) error
	// Close stops every node and frees what Launch made (keeps logs when
	// asked through LaunchOptions.Dir).
	Close() error
}

// LinkFault is how Degrade spoils a link; zero fields change nothing.
type LinkFault struct {
	Delay       time.Duration // added to every packet
	Jitter      time.Duration // the delay varies by up to this much
	LossPercent float64       // share of packets dropped, 0 to 100
}

// Launcher starts clusters: ProcessLauncher (local processes on loopback)
// or DockerLauncher (containers FROM scratch on two Docker networks).
type Launcher interface {
	Launch(ctx context.Context, opts LaunchOptions) (Cluster, error)
}
