package cluster

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// fsm adapts the storage state machine to raft. Entries are applied in
// batches so one Pebble commit (one fsync) covers many commands.
type fsm struct {
	store *storage.Store
	node  *Node
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func (f *fsm) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	entries := make([]storage.Entry, 0, len(logs))
	pos := make([]int, 0, len(logs))
	revocation := false
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		entries = append(entries, storage.Entry{Index: l.Index, Data: l.Data})
		pos = append(pos, i)
		revocation = revocation || isRevocation(l.Data)
	}
	if len(entries) == 0 {
		return out
	}
	res := f.store.ApplyBatch(entries)
	for i, r := range res {
		out[pos[i]] = r
	}
	if revocation && f.node != nil {
		f.node.loadRevocations()
	}
	if f.node != nil {
		kick(f.node.departKick)
	}
	return out
}

// isRevocation reports whether an encoded command (storage.Command.Encode:
// version byte, then type byte) changes the revocation list. A command the
// store refuses or skips as a repeat only costs a needless reload.
func isRevocation(data []byte) bool {
	return len(data) > 1 && storage.CommandType(data[1]) == storage.CmdCertRevoke
}

// Snapshot only takes a Pebble snapshot; Persist streams it.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.store.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{sn: sn}, nil
}

// Restore replaces the whole metadata keyspace with the snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.Restore(rc); err != nil {
		return err
	}
	if f.node != nil {
		kick(f.node.repairKick)
		f.node.loadRevocations()
		kick(f.node.departKick)
	}
	return nil
}

type fsmSnapshot struct{ sn *storage.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.sn.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.sn.Release() }
