package storage

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Snapshot stream format (version 1):
//
//	header   "RMSNAP" 0x01
//	record   0x01 uvarint(len key) key uvarint(len value) value   (key order)
//	trailer  0x02 be64(record count) sha256(every byte before it)
//
// Only metadata keys are written. Restore reads and checks the whole
// stream before changing anything, and wants EOF right after the trailer.
var snapMagic = []byte("RMSNAP")

const (
	snapVersion    = 1
	snapTagRecord  = 0x01
	snapTagTrailer = 0x02
	maxSnapKey     = 4 << 10
	maxSnapValue   = 64 << 20
)

// Snapshot is a point-in-time view of the metadata keyspace. Taking one is
// cheap; WriteTo streams it. Release it when done.
type Snapshot struct {
	snap  *pebble.Snapshot
	index uint64
}

// Snapshot takes a Pebble snapshot; it does not copy anything.
func (s *Store) Snapshot() (*Snapshot, error) {
	if err := s.failure.get(); err != nil {
		return nil, err
	}
	// With ApplyNoSync the log behind the snapshot may be compacted away
	// once it is persisted: what it covers must be durable here first.
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.syncApplied(); err != nil {
		return nil, err
	}
	snap := s.db.NewSnapshot()
	idx, err := readApplied(snap)
	if err != nil {
		snap.Close()
		return nil, err
	}
	return &Snapshot{snap: snap, index: idx}, nil
}

// Index is the applied index the snapshot was taken at.
func (sn *Snapshot) Index() uint64 { return sn.index }

// Release frees the snapshot. It is safe to call more than once.
func (sn *Snapshot) Release() {
	if sn.snap != nil {
		sn.snap.Close()
		sn.snap = nil
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTo streams the snapshot to w and returns the bytes written.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if sn.snap == nil {
		return 0, fmt.Errorf("storage: snapshot released: %w", ErrInvalid)
	}
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	h := sha256.New()
	out := io.MultiWriter(bw, h)
	if _, err := out.Write(append(append([]byte(nil), snapMagic...), snapVersion)); err != nil {
		return cw.n, fmt.Errorf("storage: write snapshot: %w", err)
	}
	it, err := sn.snap.NewIter(&pebble.IterOptions{LowerBound: metaStart, UpperBound: metaEnd})
	if err != nil {
		return cw.n, fmt.Errorf("storage: snapshot iterate: %w", err)
	}
	var count uint64
	var buf []byte
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		buf = append(buf[:0], snapTagRecord)
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		if _, err := out.Write(buf); err != nil {
			it.Close()
			return cw.n, fmt.Errorf("storage: write snapshot: %w", err)
		}
		if _, err := out.Write(v); err != nil {
			it.Close()
			return cw.n, fmt.Errorf("storage: write snapshot: %w", err)
		}
		count++
	}
	if err := it.Close(); err != nil {
		return cw.n, fmt.Errorf("storage: snapshot iterate: %w", err)
	}
	buf = append(buf[:0], snapTagTrailer)
	buf = binary.BigEndian.AppendUint64(buf, count)
	if _, err := out.Write(buf); err != nil {
		return cw.n, fmt.Errorf("storage: write snapshot: %w", err)
	}
	if _, err := bw.Write(h.Sum(nil)); err != nil {
		return cw.n, fmt.Errorf("storage: write snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("storage: write snapshot: %w", err)
	}
	return cw.n, nil
}

// hashReader hashes every byte it hands out.
type hashReader struct {
	r *bufio.Reader
	h hash.Hash
	b [1]byte
}

func (r *hashReader) ReadByte() (byte, error) {
	c, err := r.r.ReadByte()
	if err == nil {
		r.b[0] = c
		r.h.Write(r.b[:])
	}
	return c, err
}

// readN reads exactly n bytes, growing the buffer as data arrives so that
// a lying length cannot make it allocate much more than the stream holds.
func (r *hashReader) readN(n uint64) ([]byte, error) {
	var out []byte
	for uint64(len(out)) < n {
		chunk := min(n-uint64(len(out)), 64<<10)
		start := len(out)
		out = append(out, make([]byte, chunk)...)
		if _, err := io.ReadFull(r.r, out[start:]); err != nil {
			return nil, err
		}
	}
	r.h.Write(out)
	return out, nil
}

func snapErr(format string, args ...any) error {
	return fmt.Errorf("storage: restore: "+format+": %w", append(args, ErrCorrupt)...)
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Restore replaces the metadata keyspace with the snapshot read from r. It
// reads and checks the whole stream first; a bad magic, truncation or bad
// checksum returns an error wrapping ErrCorrupt and changes nothing.
// Then it swaps the keyspace in one synced batch (so a crash leaves the
// old state or the new, never a mix), recomputes the wanted blobs, moves
// the applied index to the snapshot's and publishes a Reset change.
func (s *Store) Restore(r io.Reader) error {
	if err := s.failure.get(); err != nil {
		return err
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	hr := &hashReader{r: bufio.NewReaderSize(r, 64<<10), h: sha256.New()}
	head, err := hr.readN(uint64(len(snapMagic) + 1))
	if err != nil {
		return snapErr("header: %v", noEOF(err))
	}
	if !bytes.Equal(head[:len(snapMagic)], snapMagic) {
		return snapErr("bad magic %q", head[:len(snapMagic)])
	}
	if head[len(snapMagic)] != snapVersion {
		return snapErr("unknown version %d", head[len(snapMagic)])
	}

	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(metaStart, metaEnd, nil); err != nil {
		return fmt.Errorf("storage: restore: %w", err)
	}
	if err := b.DeleteRange(wantedStart, wantedEnd, nil); err != nil {
		return fmt.Errorf("storage: restore: %w", err)
	}
	var (
		count   uint64
		prev    []byte
		applied uint64
		wanted  []Hash
	)
	for {
		tag, err := hr.ReadByte()
		if err != nil {
			return snapErr("record %d: %v", count, noEOF(err))
		}
		if tag == snapTagTrailer {
			break
		}
		if tag != snapTagRecord {
			return snapErr("record %d: bad tag 0x%02x", count, tag)
		}
		klen, err := binary.ReadUvarint(hr)
		if err != nil {
			return snapErr("record %d: key length: %v", count, noEOF(err))
		}
		if klen < 2 || klen > maxSnapKey {
			return snapErr("record %d: key length %d", count, klen)
		}
		k, err := hr.readN(klen)
		if err != nil {
			return snapErr("record %d: key: %v", count, noEOF(err))
		}
		if k[0] != prefixMeta || bytes.Compare(k, prev) <= 0 {
			return snapErr("record %d: key %q outside metadata or out of order", count, k)
		}
		vlen, err := binary.ReadUvarint(hr)
		if err != nil {
			return snapErr("record %d: value length: %v", count, noEOF(err))
		}
		if vlen > maxSnapValue {
			return snapErr("record %d: value length %d", count, vlen)
		}
		v, err := hr.readN(vlen)
		if err != nil {
			return snapErr("record %d: value: %v", count, noEOF(err))
		}
		switch {
		case bytes.Equal(k, keyApplied):
			if len(v) != 8 {
				return snapErr("applied index is %d bytes", len(v))
			}
			applied = binary.BigEndian.Uint64(v)
		case k[1] == tBlobRef && len(k) == 2+len(Hash{}):
			var h Hash
			copy(h[:], k[2:])
			if !s.HasBlob(h) {
				wanted = append(wanted, h)
				if err := b.Set(wantedKey(h), nil, nil); err != nil {
					return fmt.Errorf("storage: restore: %w", err)
				}
			}
		}
		if err := b.Set(k, v, nil); err != nil {
			return fmt.Errorf("storage: restore: %w", err)
		}
		prev = k
		count++
	}
	cnt, err := hr.readN(8)
	if err != nil {
		return snapErr("trailer: %v", noEOF(err))
	}
	if got := binary.BigEndian.Uint64(cnt); got != count {
		return snapErr("trailer says %d records, stream has %d", got, count)
	}
	sum := hr.h.Sum(nil)
	want := make([]byte, len(sum))
	if _, err := io.ReadFull(hr.r, want); err != nil {
		return snapErr("checksum: %v", noEOF(err))
	}
	if !bytes.Equal(sum, want) {
		return snapErr("checksum mismatch")
	}
	switch _, err := hr.r.ReadByte(); {
	case err == nil:
		return snapErr("data after trailer")
	case err != io.EOF:
		return fmt.Errorf("storage: restore: read: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		panic(fmt.Sprintf("storage: commit restore: %v", err))
	}
	s.recheckWanted(wanted)
	s.setApplied(applied)
	s.publish([]Change{{Index: applied, Kind: Reset}})
	s.log.Info("storage restored from snapshot", "index", applied, "records", count, "missing_blobs", len(wanted))
	return nil
}
