package chaos

import (
	"context"
	"errors"
	"time"
)

// ErrNotSupported: the backend cannot inject this fault (for example a
// network partition with local processes).
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
	// DNSResolver is the DNS server (host:port) the nodes use for
	// outbound delivery and mail authentication (serve --dns-resolver);
	// "" = DeadResolver(), a loopback port where nothing listens: every
	// lookup fails at once as a temporary error, so no chaos cluster ever
	// sends mail out, inbound checks are temperrors that never reject,
	// and mail to a remote recipient stays deferred in the outbound
	// queue, where the read-back finds it.
	DNSResolver string
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
	// reach clients); Heal undoes every partition. ErrNotSupported on
	// backends without a network of their own.
	Partition(nodes ...string) error
	Heal() error
	// Wipe kills a node, deletes its data, and joins it again as a new
	// member with the same name and addresses.
	Wipe(node string) error
	// FillDisk fills the node's data file system; FreeDisk undoes it.
	FillDisk(node string) error
	FreeDisk(node string) error
	// Close stops every node and frees what Launch made (keeps logs when
	// asked through LaunchOptions.Dir).
	Close() error
}

// Launcher starts clusters: ProcessLauncher (local processes on loopback)
// or DockerLauncher (containers FROM scratch on two Docker networks).
type Launcher interface {
	Launch(ctx context.Context, opts LaunchOptions) (Cluster, error)
}
