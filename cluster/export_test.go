package cluster

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Internals the external tests (package cluster_test) look at.

// Voters is the Raft configuration's voters (ID → cluster address).
func (n *Node) Voters() (map[string]string, error) { return n.voters() }

// SnapshotNow takes a Raft snapshot (and so compacts the log).
func (n *Node) SnapshotNow() error { return n.raft.Snapshot().Error() }

// FirstLogIndex and LastLogIndex bound the Raft log kept on disk.
func (n *Node) FirstLogIndex() (uint64, error) { return n.boltStore.FirstIndex() }
func (n *Node) LastLogIndex() (uint64, error)  { return n.boltStore.LastIndex() }

// KnownPeers is what the node remembers of the others' gossip addresses.
func (n *Node) KnownPeers() map[string]string { return n.loadPeers() }

// DialRPCWithoutCert opens an RPC connection to the cluster port with a
// TLS client that has no certificate (only the join tag allows that).
func DialRPCWithoutCert(addr string, caFingerprint [32]byte, timeout time.Duration) (net.Conn, error) {
	d := &dialer{tlsConf: func() *tls.Config { return PinnedTLSConfig(caFingerprint) }}
	return d.dial(addr, tagRPC, timeout)
}

// TransferLeadershipTo hands leadership to the voter id (this node must
// lead).
func (n *Node) TransferLeadershipTo(id string) error {
	v, err := n.voters()
	if err != nil {
		return err
	}
	return n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(v[id])).Error()
}
