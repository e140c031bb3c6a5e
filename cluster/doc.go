// Package cluster makes a set of Raftmail nodes one replicated state
// machine: hashicorp/raft (log and stable store in raft-boltdb, snapshots
// on disk) over a single mutual-TLS cluster port, memberlist gossip for
// liveness and addresses, Propose from any node (forwarded to the leader,
// retried with the same command ID), majority replication and repair of
// message blobs, join tokens, membership (the leader's reconciliation of
// gossip into voters, checked removal with tombstones, leave), and the
// leader loop that runs leader tasks while this node leads.
//
// It imports storage and nothing else of Raftmail. It knows nothing about
// mail: protocols call Propose, StoreBlob, FetchBlob and read the store.
// See DESIGN.md in this directory for the reasons behind the choices.
package cluster
