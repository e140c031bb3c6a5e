package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Entry is one committed Raft log entry.
type Entry struct {
	Index uint64
	Data  []byte // an encoded Command
}

// maxPrunePerEntry bounds the de-duplication records one entry prunes, so a
// long quiet period does not make one Apply slow. It is a constant, so
// pruning stays deterministic.
const maxPrunePerEntry = 1024

// BlobDeleteGrace is how long a blob stays after its last reference is
// dropped (in command time). A message accepted meanwhile with the same
// body (its blob stored, its Deliver not yet applied) revives the blob
// instead of finding it deleted on every node. A constant: every node must
// delete at the same point of the log.
const BlobDeleteGrace = time.Hour

// strictHandlers makes a handler that writes and then fails panic. Tests
// set it; in production such a bug is logged and its writes committed (on
// every node alike) rather than stopping the whole cluster.
var strictHandlers = false

// Apply applies one committed entry. See ApplyBatch.
func (s *Store) Apply(e Entry) Result {
	return s.ApplyBatch([]Entry{e})[0]
}

// ApplyBatch applies committed entries in order in one Pebble batch with
// one commit, synced unless Config.ApplyNoSync; later entries see the
// writes of earlier ones. Entries whose index is not above the applied
// index (replays after a restart) get an empty Result and change nothing.
//
// A command whose ID was already applied gets the first Result again and
// changes nothing. A domain error (not found, over quota...) is a Result
// with a Code and changes nothing but the de-duplication table.
//
// It panics on an undecodable entry, on an unknown command type without the
// Ignorable bit, and on a failed read: the node must stop rather than
// diverge. A failed commit, or a call on a failed store, fails the store
// (Config.OnFatal) and does not return: the entries are not durable here,
// and the caller must not go on as if they were applied.
func (s *Store) ApplyBatch(es []Entry) []Result {
	if err := s.failure.get(); err != nil {
		s.failure.halt(err)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	results := make([]Result, len(es))
	start := s.applied.Load()
	applied := start
	b := s.db.NewIndexedBatch()
	defer b.Close()
	var changes []Change
	var wanted, swept []Hash
	// The blobs this batch deletes stay locked against writers until the
	// batch is committed (a writer that looked meanwhile would see the
	// blob still there, skip writing it, and lose it to the commit).
	defer func() {
		for _, h := range swept {
			s.unlockBlob(h)
		}
	}()
	for i, e := range es {
		if e.Index <= applied {
			continue
		}
		t := &tx{s: s, b: b, index: e.Index}
		results[i] = t.apply(e)
		applied = e.Index
		changes = append(changes, t.changes...)
		wanted = append(wanted, t.wanted...)
		swept = append(swept, t.swept...)
	}
	if applied == start {
		return results
	}
	if err := b.Set(keyApplied, be64(applied), nil); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: %v", applied, err))
	}
	if err := s.failure.commit(b, s.applyWrite); err != nil {
		s.failure.halt(fmt.Errorf("commit entries %d..%d: %w", es[0].Index, applied, err))
	}
	s.recheckWanted(wanted)
	s.setApplied(applied)
	s.publish(changes)
	return results
}

// tx is the state of one entry being applied inside a batch.
type tx struct {
	s       *Store
	b       *pebble.Batch
	index   uint64
	cmd     Command
	seq     uint64 // mailboxes created by this entry
	changes []Change
	wanted  []Hash // blobs this entry marked wanted
	swept   []Hash // blobs this entry deletes, locked until the commit
}

type handler func(t *tx) (any, error)

var handlers map[CommandType]handler

func init() {
	handlers = map[CommandType]handler{
		CmdNoop:              func(*tx) (any, error) { return nil, nil },
		CmdSettingSet:        (*tx).settingSet,
		CmdTokenAdd:          (*tx).tokenAdd,
		CmdTokenRevoke:       (*tx).tokenRevoke,
		CmdTokenUse:          (*tx).tokenUse,
		CmdCertAdd:           (*tx).certAdd,
		CmdCertRevoke:        (*tx).certRevoke,
		CmdDomainAdd:         (*tx).domainAddDKIM, // domainAdd plus initial DKIM keys
		CmdDomainRemove:      (*tx).domainRemove,
		CmdAccountAdd:        (*tx).accountAdd,
		CmdAccountPassword:   (*tx).accountPassword,
		CmdAccountRemove:     (*tx).accountRemove,
		CmdAccountQuota:      (*tx).accountQuota,
		CmdAppPasswordAdd:    (*tx).appPasswordAdd,
		CmdAppPasswordRemove: (*tx).appPasswordRemove,
		CmdAliasAdd:          (*tx).aliasAdd,
		CmdAliasRemove:       (*tx).aliasRemove,
		CmdMailboxCreate:     (*tx).mailboxCreate,
		CmdMailboxRename:     (*tx).mailboxRename,
		CmdMailboxDelete:     (*tx).mailboxDelete,
		CmdMailboxSubscribe:  (*tx).mailboxSubscribe,
		CmdDeliver:           (*tx).deliver,
		CmdFlags:             (*tx).flags,
		CmdExpunge:           (*tx).expunge,
		CmdCopy:              (*tx).copyCmd,
		CmdMove:              (*tx).move,
		CmdQueueAdd:          (*tx).queueAdd,
		CmdQueueUpdate:       (*tx).queueUpdate,
		CmdQueueRemove:       (*tx).queueRemove,
		CmdDKIMRotate:        (*tx).dkimRotate,
		CmdDKIMRetire:        (*tx).dkimRetire,
		CmdQueueLease:        (*tx).queueLease,
		CmdQueueResult:       (*tx).queueResult,
		CmdQueueAdmin:        (*tx).queueAdmin,
	}
}

func (t *tx) apply(e Entry) Result {
	cmd, err := DecodeCommand(e.Data)
	if err != nil {
		panic(fmt.Sprintf("storage: log entry %d: %v", e.Index, err))
	}
	t.cmd = cmd
	h, ok := handlers[cmd.Type]
	if !ok {
		if cmd.Type&Ignorable != 0 {
			t.s.log.Warn("skipping unknown ignorable command", "index", e.Index, "type", uint8(cmd.Type))
			return Result{}
		}
		panic(fmt.Sprintf("storage: log entry %d: unknown command type 0x%02x (not ignorable)", e.Index, uint8(cmd.Type)))
	}
	if v, ok := t.get(dedupKey(cmd.ID)); ok {
		var r Result
		if err := json.Unmarshal(v, &r); err != nil {
			panic(fmt.Sprintf("storage: log entry %d: stored result of command %x: %v", e.Index, cmd.ID, err))
		}
		t.prune()
		t.sweepBlobs()
		return r
	}
	t.prune()
	t.sweepBlobs()
	before := t.b.Count()
	data, err := h(t)
	var r Result
	switch {
	case err != nil:
		if t.b.Count() != before {
			if strictHandlers {
				panic(fmt.Sprintf("storage: bug: %v handler wrote before failing: %v", cmd.Type, err))
			}
			t.s.log.Error("bug: handler wrote before failing", "index", e.Index, "type", cmd.Type.String(), "err", err)
		}
		r = errResult(err)
		t.changes = nil
	case data != nil:
		raw, err := json.Marshal(data)
		if err != nil {
			panic(fmt.Sprintf("storage: log entry %d: encode result: %v", e.Index, err))
		}
		r.Data = raw
	}
	for i := range t.changes {
		t.changes[i].Index = e.Index
	}
	raw, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("storage: log entry %d: encode result: %v", e.Index, err))
	}
	t.set(dedupKey(cmd.ID), raw)
	t.set(dedupTimeKey(cmdNanos(cmd), cmd.ID), nil)
	return r
}

func cmdNanos(c Command) int64 {
	if c.Time.IsZero() {
		return 0
	}
	return c.Time.UnixNano()
}

// prune deletes de-duplication records older than the command's time minus
// the window.
func (t *tx) prune() {
	cutoff := cmdNanos(t.cmd) - int64(t.s.window)
	if cutoff > cmdNanos(t.cmd) { // underflow
		return
	}
	lo := []byte{prefixMeta, tDedupTime}
	hi := append([]byte{prefixMeta, tDedupTime}, be64(orderedNanos(cutoff))...)
	kvs := t.scanRange(lo, hi, maxPrunePerEntry)
	for _, kv := range kvs {
		var id [16]byte
		copy(id[:], kv.k[len(kv.k)-16:])
		t.del(kv.k)
		t.del(dedupKey(id))
	}
}

// sweepBlobs deletes blobs unreferenced for longer than BlobDeleteGrace
// (in command time), at most maxPrunePerEntry per entry.
func (t *tx) sweepBlobs() {
	now := cmdNanos(t.cmd)
	cutoff := now - int64(BlobDeleteGrace)
	if cutoff > now { // underflow
		return
	}
	lo := []byte{prefixMeta, tBlobGarbage}
	hi := append([]byte{prefixMeta, tBlobGarbage}, be64(orderedNanos(cutoff))...)
	for _, kv := range t.scanRange(lo, hi, maxPrunePerEntry) {
		var h Hash
		copy(h[:], kv.k[len(kv.k)-len(h):])
		t.del(kv.k)
		t.del(blobGarbIdxKey(h))
		t.del(wantedKey(h))
		if t.s.blobPinned(h) || !t.s.tryLockBlob(h) {
			// Being stored again, or stored again moments ago, for a
			// Deliver that has not been applied yet (the same body
			// arrived): the copy stays, and that Deliver references it.
			continue
		}
		t.swept = append(t.swept, h)
		t.del(blobKey(h))
		t.del(headerKey(h))
		if lo, hi := chunkBounds(h); t.hasPrefix(lo[:1+len(h)]) {
			if err := t.b.DeleteRange(lo, hi, nil); err != nil {
				panic(fmt.Sprintf("storage: apply index %d: delete range: %v", t.index, err))
			}
		}
	}
}

// Batch access. A read error inside Apply cannot become a deterministic
// result, so it panics.

func (t *tx) get(key []byte) ([]byte, bool) {
	v, c, err := t.b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		panic(fmt.Sprintf("storage: apply index %d: read %q: %v", t.index, key, err))
	}
	out := append([]byte(nil), v...)
	c.Close()
	return out, true
}

func (t *tx) getJSON(key []byte, v any) bool {
	raw, ok := t.get(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: decode %q: %v", t.index, key, err))
	}
	return true
}

func (t *tx) set(key, val []byte) {
	if err := t.b.Set(key, val, nil); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: set: %v", t.index, err))
	}
}

func (t *tx) setJSON(key []byte, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("storage: apply index %d: encode %T: %v", t.index, v, err))
	}
	t.set(key, raw)
}

func (t *tx) del(key []byte) {
	if err := t.b.Delete(key, nil); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: delete: %v", t.index, err))
	}
}

type kv struct{ k, v []byte }

// scan returns copies of the keys and values with prefix p in key order.
func (t *tx) scan(p []byte) []kv { return t.scanRange(p, prefixEnd(p), 0) }

// scanRange returns up to limit (0: all) keys and values in [lo, hi).
func (t *tx) scanRange(lo, hi []byte, limit int) []kv {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		panic(fmt.Sprintf("storage: apply index %d: iterate: %v", t.index, err))
	}
	var out []kv
	for ok := it.First(); ok && (limit == 0 || len(out) < limit); ok = it.Next() {
		out = append(out, kv{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
	}
	if err := it.Close(); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: iterate: %v", t.index, err))
	}
	return out
}

func (t *tx) exists(key []byte) bool {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: key, UpperBound: append(append([]byte(nil), key...), 0)})
	if err != nil {
		panic(fmt.Sprintf("storage: apply index %d: iterate: %v", t.index, err))
	}
	ok := it.First()
	if err := it.Close(); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: iterate: %v", t.index, err))
	}
	return ok
}

func (t *tx) hasPrefix(p []byte) bool {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		panic(fmt.Sprintf("storage: apply index %d: iterate: %v", t.index, err))
	}
	ok := it.First()
	if err := it.Close(); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: iterate: %v", t.index, err))
	}
	return ok
}

// decode unmarshals the command payload.
func (t *tx) decode(v any) error {
	if err := json.Unmarshal(t.cmd.Payload, v); err != nil {
		return fmt.Errorf("%v payload: %v: %w", t.cmd.Type, err, ErrInvalid)
	}
	return nil
}

// Blob references. Each placed message and queue entry holds one.

func (t *tx) incref(h Hash) {
	if v, ok := t.get(blobGarbIdxKey(h)); ok && len(v) == 8 {
		// Unreferenced but not yet deleted: referenced again.
		t.del(blobGarbageKey(binary.BigEndian.Uint64(v), h))
		t.del(blobGarbIdxKey(h))
	}
	var n uint64
	if v, ok := t.get(blobRefKey(h)); ok && len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n++
	t.set(blobRefKey(h), be64(n))
	t.s.unpinBlob(h) // referenced now: the sweep no longer targets it
	if n == 1 && !t.exists(blobKey(h)) {
		t.set(wantedKey(h), nil)
		t.wanted = append(t.wanted, h)
	}
}

func (t *tx) decref(h Hash) {
	var n uint64
	if v, ok := t.get(blobRefKey(h)); ok && len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	if n <= 1 {
		// Deleted after BlobDeleteGrace by sweepBlobs, unless referenced
		// again by then.
		t.del(blobRefKey(h))
		t.del(wantedKey(h))
		at := orderedNanos(cmdNanos(t.cmd))
		t.set(blobGarbageKey(at, h), nil)
		t.set(blobGarbIdxKey(h), be64(at))
		return
	}
	t.set(blobRefKey(h), be64(n-1))
}
