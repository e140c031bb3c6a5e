// Package storage is Raftmail's deterministic state machine and its local
// blob store, both kept in one Pebble database per node.
//
// It owns:
//
//   - the metadata keyspace: domains, accounts, aliases, mailboxes,
//     messages, the outbound queue, join tokens (and their uses), the
//     record of issued node certificates (the revocation list), cluster
//     settings, the de-duplication table of applied command IDs and the last
//     applied Raft index. It is changed only by [Store.Apply], [Store.ApplyBatch] and
//     [Store.Restore], and is the whole of what Raft replicates;
//   - the command encoding ([Command], [Command.Encode], [DecodeCommand]) and
//     the result of each command ([Result]);
//   - snapshots of the metadata keyspace ([Store.Snapshot], [Store.Restore]);
//   - the content-addressed blob keyspace (message bodies keyed by SHA-256)
//     and the node-local set of blobs that metadata references but this node
//     lacks ([Store.MissingBlobs]);
//   - change notifications for IMAP IDLE trackers ([Store.Subscribe]).
//
// It must not:
//
//   - import anything internal to Raftmail, nor raft, nor the network: it is
//     driven by the cluster package, which decides what is committed;
//   - read the local clock, random numbers or map iteration order inside
//     Apply: every node applies the same log to the same state (time comes
//     from [Command.Time], identifiers from the Raft index);
//   - go on after a failed durable write: a failed Pebble commit (or any
//     Pebble Fatalf) fails the store ([ErrFailed], Config.OnFatal) and a
//     corrupt log entry panics, so the node stops instead of diverging;
//   - refuse metadata for lack of disk space: only new blobs are refused
//     below the free-space floor ([ErrInsufficientStorage], [Store.CheckSpace]);
//   - read files or environment variables other than its Pebble directory.
//
// Locking: Apply, ApplyBatch and Restore are serialised by an internal
// mutex. Reads may run concurrently with them and see the state either
// before or after a whole batch, never a part of one. See DESIGN.md for the
// reasons behind the keyspace, de-duplication, snapshot format and crash
// safety.
package storage
