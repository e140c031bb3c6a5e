package storage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Blobs are message bodies keyed by SHA-256, outside the metadata
// keyspace: never in snapshots or the state hash. Metadata holds their
// reference counts; Apply deletes a blob whose count drops to zero and
// records in the node-local wanted keyspace a referenced blob this node
// lacks.

// BlobChunkSize is the most of a blob kept under one key. A longer blob
// keeps its first chunk under its blob key and the rest as continuation
// chunks, so that it is written and read in pieces of this size and never
// held whole by the store.
const BlobChunkSize = 256 << 10

// PutBlob stores data under h durably (pebble.Sync). It returns ErrCorrupt
// if sha256(data) != h, ErrInsufficientStorage below the free-space floor
// and ErrFailed once the store has failed. Storing a blob twice is
// harmless.
func (s *Store) PutBlob(h Hash, data []byte) error {
	w, err := s.NewBlobWriter(h, int64(len(data)), true)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	return w.Commit()
}

// Blob returns the content of blob h, or ErrNotFound. It holds the whole
// blob in memory: readers that can stream use OpenBlob.
func (s *Store) Blob(h Hash) ([]byte, error) {
	first, err := s.getCopy(blobKey(h), "blob "+h.String())
	if err != nil || len(first) != BlobChunkSize {
		return first, err
	}
	r, err := s.OpenBlob(h)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// NewBlobWriter starts storing blob h, written in order through the
// writer and made durable by Commit; Abort (or a failed Commit) leaves
// nothing behind. With verify the content must hash to h (data from a
// peer); without it the caller vouches for h (it hashed the same bytes
// itself). If the blob is already stored the content is only counted (and
// checked). One writer per hash at a time: a second one waits until the
// first is done. size is the blob's size if known (0 if not): a blob the
// free-space floor has no room for is refused at once with
// ErrInsufficientStorage, as is any blob on a failed store (ErrFailed).
//
// A writer holds at most two chunks (2*BlobChunkSize) in memory: the first,
// written last so that the blob key exists only once every chunk does, and
// the one being filled.
func (s *Store) NewBlobWriter(h Hash, size int64, verify bool) (*BlobWriter, error) {
	if err := s.admitBlob(int(size)); err != nil {
		return nil, err
	}
	s.lockBlob(h)
	w := &BlobWriter{s: s, h: h, next: 1}
	if verify {
		w.sum = sha256.New()
	}
	w.skip = s.HasBlob(h)
	return w, nil
}

// BlobWriter stores one blob in chunks (Store.NewBlobWriter). It is not
// safe for concurrent use.
type BlobWriter struct {
	s     *Store
	h     Hash
	sum   hash.Hash // nil: not verified
	skip  bool      // already stored: count and verify only
	first []byte    // chunk 0
	cur   []byte    // the continuation chunk being filled
	next  uint32    // index of the next continuation chunk to write
	size  int64
	err   error
	done  bool
}

// Write adds p to the blob. A continuation chunk is committed (without
// fsync; Commit syncs them all) as soon as it is full.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("storage: write blob %s after commit or abort: %w", w.h, ErrInvalid)
	}
	n := len(p)
	w.size += int64(n)
	if w.sum != nil {
		w.sum.Write(p)
	}
	if w.skip {
		return n, nil
	}
	for len(p) > 0 {
		if w.next == 1 && len(w.first) < BlobChunkSize && len(w.cur) == 0 {
			if w.first == nil {
				w.first = make([]byte, 0, min(len(p), BlobChunkSize))
			}
			k := min(len(p), BlobChunkSize-len(w.first))
			w.first = append(w.first, p[:k]...)
			p = p[k:]
			continue
		}
		if w.cur == nil {
			w.cur = make([]byte, 0, BlobChunkSize)
		}
		k := min(len(p), BlobChunkSize-len(w.cur))
		w.cur = append(w.cur, p[:k]...)
		p = p[k:]
		if len(w.cur) == BlobChunkSize {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// flush commits the chunk being filled.
func (w *BlobWriter) flush() error {
	if len(w.cur) == 0 {
		return nil
	}
	b := w.s.db.NewBatch()
	defer b.Close()
	if err := b.Set(chunkKey(w.h, w.next), w.cur, nil); err != nil {
		w.err = fmt.Errorf("storage: put blob %s: %w", w.h, err)
		return w.err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		w.err = fmt.Errorf("storage: put blob %s: %w", w.h, err)
		return w.err
	}
	w.next++
	w.cur = w.cur[:0]
	return nil
}

// Size is how many bytes were written.
func (w *BlobWriter) Size() int64 { return w.size }

// Commit makes the blob durable (one fsync for every chunk) and ends the
// writer. With verify, content that does not hash to h is ErrCorrupt and
// nothing is kept.
func (w *BlobWriter) Commit() error {
	if w.done {
		return w.err
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	if w.sum != nil && Hash(w.sum.Sum(nil)) != w.h {
		w.Abort()
		w.err = fmt.Errorf("storage: put blob %s: content hash differs: %w", w.h, ErrCorrupt)
		return w.err
	}
	defer w.finish()
	b := w.s.db.NewBatch()
	defer b.Close()
	if !w.skip {
		if err := w.flush(); err != nil {
			w.abortLocked()
			return err
		}
		if w.first == nil {
			w.first = []byte{}
		}
		if err := b.Set(blobKey(w.h), w.first, nil); err != nil {
			return w.fail(err)
		}
		// The header block, for header-only reads. Written without
		// looking first: the header of content-addressed data is always
		// the same bytes.
		if hdr, ok := headerOf(w.first, w.next == 1); ok {
			if err := b.Set(headerKey(w.h), hdr, nil); err != nil {
				return w.fail(err)
			}
		}
	}
	if err := b.Delete(wantedKey(w.h), nil); err != nil {
		return w.fail(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		w.abortLocked()
		return w.fail(err)
	}
	if garbage, err := w.s.hasKey(blobGarbIdxKey(w.h)); err == nil && garbage {
		// Stored again while unreferenced and due for the sweep: keep
		// it until the Deliver it is stored for references it.
		w.s.pinBlob(w.h)
	}
	return nil
}

func (w *BlobWriter) fail(err error) error {
	w.abortLocked()
	w.err = fmt.Errorf("storage: put blob %s: %w", w.h, err)
	return w.err
}

// Abort drops what was written and ends the writer. It does nothing after
// Commit.
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	defer w.finish()
	w.abortLocked()
}

// abortLocked deletes the continuation chunks written so far.
func (w *BlobWriter) abortLocked() {
	if w.skip || w.next == 1 {
		return
	}
	lo, hi := chunkBounds(w.h)
	b := w.s.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(lo, hi, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		w.s.log.Warn("storage: drop chunks of an aborted blob", "hash", w.h.String(), "err", err)
	}
	w.next = 1
}

func (w *BlobWriter) finish() {
	w.done = true
	w.first, w.cur = nil, nil
	w.s.unlockBlob(w.h)
}

// headerOf is the header block of a blob whose first chunk is first
// (whole: the blob is that chunk alone).
func headerOf(first []byte, whole bool) ([]byte, bool) {
	if whole {
		return MessageHeader(first)
	}
	end := HeaderEnd(first, 0)
	if end < 0 || end > MaxStoredHeader {
		// No empty line in the first chunk: the header goes on.
		return nil, false
	}
	return first[:end], true
}

// lockBlob waits until no other writer holds h, then holds it.
func (s *Store) lockBlob(h Hash) {
	for {
		s.blobs.Lock()
		ch, busy := s.blobs.writing[h]
		if !busy {
			s.blobs.writing[h] = make(chan struct{})
			s.blobs.Unlock()
			return
		}
		s.blobs.Unlock()
		<-ch
	}
}

func (s *Store) unlockBlob(h Hash) {
	s.blobs.Lock()
	if ch, ok := s.blobs.writing[h]; ok {
		close(ch)
		delete(s.blobs.writing, h)
	}
	s.blobs.Unlock()
}

// tryLockBlob holds h if no writer does.
func (s *Store) tryLockBlob(h Hash) bool {
	s.blobs.Lock()
	defer s.blobs.Unlock()
	if _, busy := s.blobs.writing[h]; busy {
		return false
	}
	s.blobs.writing[h] = make(chan struct{})
	return true
}

// blobPinTime is how long a blob stays safe from the sweep after a writer
// stored it (or found it stored), unless a Deliver references it sooner:
// longer than a proposer retries that Deliver.
const blobPinTime = 10 * time.Minute

// pinBlob records that h was just stored for a Deliver to come.
func (s *Store) pinBlob(h Hash) {
	now := time.Now()
	s.blobs.Lock()
	defer s.blobs.Unlock()
	s.blobs.pinned[h] = now
	if len(s.blobs.pinned) > 1024 && now.Sub(s.blobs.pruned) > time.Minute {
		for k, at := range s.blobs.pinned {
			if now.Sub(at) > blobPinTime {
				delete(s.blobs.pinned, k)
			}
		}
		s.blobs.pruned = now
	}
}

// unpinBlob ends h's pin: a Deliver references it.
func (s *Store) unpinBlob(h Hash) {
	s.blobs.Lock()
	delete(s.blobs.pinned, h)
	s.blobs.Unlock()
}

// blobPinned reports whether h was stored within blobPinTime.
func (s *Store) blobPinned(h Hash) bool {
	s.blobs.Lock()
	defer s.blobs.Unlock()
	at, ok := s.blobs.pinned[h]
	return ok && time.Since(at) < blobPinTime
}

// OpenBlob returns a reader of blob h, chunk by chunk from one consistent
// view of the store, or ErrNotFound. The caller must close it.
func (s *Store) OpenBlob(h Hash) (io.ReadCloser, error) {
	snap := s.db.NewSnapshot()
	v, c, err := snap.Get(blobKey(h))
	if errors.Is(err, pebble.ErrNotFound) {
		snap.Close()
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	if err != nil {
		snap.Close()
		return nil, fmt.Errorf("storage: read blob %s: %w", h, err)
	}
	r := &blobReader{snap: snap, cur: append([]byte(nil), v...)}
	c.Close()
	if len(r.cur) != BlobChunkSize {
		return r, nil
	}
	lo, hi := chunkBounds(h)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		snap.Close()
		return nil, fmt.Errorf("storage: read blob %s: %w", h, err)
	}
	r.it, r.first = it, true
	return r, nil
}

// blobReader reads a blob's first chunk, then its continuation chunks.
type blobReader struct {
	snap  *pebble.Snapshot
	it    *pebble.Iterator // nil: no continuation chunks
	first bool             // it not positioned yet
	cur   []byte           // what is left of the current chunk
	err   error
}

func (r *blobReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.it == nil {
			r.err = io.EOF
			continue
		}
		var ok bool
		if r.first {
			ok, r.first = r.it.First(), false
		} else {
			ok = r.it.Next()
		}
		if !ok {
			if err := r.it.Error(); err != nil {
				r.err = fmt.Errorf("storage: read blob chunk: %w", err)
			} else {
				r.err = io.EOF
			}
			continue
		}
		v, err := r.it.ValueAndErr()
		if err != nil {
			r.err = fmt.Errorf("storage: read blob chunk: %w", err)
			continue
		}
		r.cur = v
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *blobReader) Close() error {
	var err error
	if r.it != nil {
		err = r.it.Close()
		r.it = nil
	}
	if r.snap != nil {
		if cerr := r.snap.Close(); err == nil {
			err = cerr
		}
		r.snap = nil
	}
	r.cur = nil
	return err
}

// dropOrphanChunks deletes continuation chunks of blobs that were never
// committed (the node stopped in the middle of a write). Called by Open,
// before any writer exists.
func (s *Store) dropOrphanChunks() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixChunk}, UpperBound: []byte{prefixChunk + 1}})
	if err != nil {
		return err
	}
	var orphans []Hash
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) != 1+len(Hash{})+4 {
			ok = it.Next()
			continue
		}
		var h Hash
		copy(h[:], k[1:])
		if !s.HasBlob(h) {
			orphans = append(orphans, h)
		}
		_, hi := chunkBounds(h)
		ok = it.SeekGE(hi)
	}
	if err := it.Close(); err != nil {
		return err
	}
	if len(orphans) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, h := range orphans {
		lo, hi := chunkBounds(h)
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return err
		}
	}
	s.log.Info("dropped the chunks of blobs left unfinished", "blobs", len(orphans))
	return b.Commit(pebble.Sync)
}

// MaxStoredHeader bounds the header kept apart from a blob; a message
// with a longer header is always read whole.
const MaxStoredHeader = 64 << 10

// MessageHeader returns the prefix of a message that holds its whole
// header: up to and including the first empty line (CRLF or bare LF), or
// the whole message if it has none. Every header-derived IMAP item (HEADER,
// HEADER.FIELDS, ENVELOPE) computed from it equals the one computed from the
// whole message, since a header parser stops at that line. ok is false
// above MaxStoredHeader.
func MessageHeader(data []byte) (hdr []byte, ok bool) {
	end := HeaderEnd(data, 0)
	if end < 0 {
		end = len(data)
	}
	if end > MaxStoredHeader {
		return nil, false
	}
	return data[:end], true
}

// HeaderEnd returns the offset just past the empty line (CRLF or bare LF)
// that ends the header at the start of b, or -1 if b holds none (yet): a
// CR at the very end of b may be the start of that line. A caller that
// reads a message in pieces passes from, where the previous call's search
// may resume (a few bytes before the end of what it saw), so the scan is
// not repeated.
func HeaderEnd(b []byte, from int) int {
	switch {
	case bytes.HasPrefix(b, []byte("\n")):
		return 1
	case bytes.HasPrefix(b, []byte("\r\n")):
		return 2
	}
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		next := i + j + 1 // start of the next line
		if next < len(b) && b[next] == '\n' {
			return next + 1
		}
		if next+1 < len(b) && b[next] == '\r' && b[next+1] == '\n' {
			return next + 2
		}
		i = next
	}
	return -1
}

// BlobHeader returns the stored header of blob h (MessageHeader), or
// ErrNotFound: the blob is not here, or was stored before headers were
// kept, or its header is too long.
func (s *Store) BlobHeader(h Hash) ([]byte, error) {
	return s.getCopy(headerKey(h), "blob header "+h.String())
}

// HasBlob reports whether blob h is stored locally. It does not read the
// blob's content.
func (s *Store) HasBlob(h Hash) bool {
	ok, err := s.hasKey(blobKey(h))
	return err == nil && ok
}

func (s *Store) hasKey(key []byte) (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: key, UpperBound: append(append([]byte(nil), key...), 0)})
	if err != nil {
		return false, err
	}
	ok := it.First()
	return ok, it.Close()
}

// MissingBlobs returns up to limit blobs referenced by metadata but absent
// locally, in hash order, and how many there are in all.
func (s *Store) MissingBlobs(limit int) ([]Hash, int, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: wantedStart, UpperBound: wantedEnd})
	if err != nil {
		return nil, 0, fmt.Errorf("storage: iterate wanted blobs: %w", err)
	}
	var out []Hash
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) != 1+len(Hash{}) {
			continue
		}
		n++
		if len(out) < limit {
			var h Hash
			copy(h[:], it.Key()[1:])
			out = append(out, h)
		}
	}
	if err := it.Close(); err != nil {
		return nil, 0, fmt.Errorf("storage: iterate wanted blobs: %w", err)
	}
	return out, n, nil
}

// recheckWanted drops from the wanted set blobs that a concurrent PutBlob
// stored between Apply's check and its commit.
func (s *Store) recheckWanted(hs []Hash) {
	if len(hs) == 0 {
		return
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, h := range hs {
		if s.HasBlob(h) {
			_ = b.Delete(wantedKey(h), nil)
		}
	}
	if b.Empty() {
		return
	}
	if err := b.Commit(pebble.Sync); err != nil {
		panic(fmt.Sprintf("storage: commit wanted blobs: %v", err))
	}
}

// DropBlob deletes the local copy of blob h (a copy found damaged, or to
// test repair). If metadata references it, it becomes wanted and the
// cluster fetches it again.
func (s *Store) DropBlob(h Hash) error {
	s.lockBlob(h)
	defer s.unlockBlob(h)
	b := s.db.NewBatch()
	defer b.Close()
	lo, hi := chunkBounds(h)
	_ = b.Delete(blobKey(h), nil)
	_ = b.Delete(headerKey(h), nil)
	_ = b.DeleteRange(lo, hi, nil)
	if ok, err := s.hasKey(blobRefKey(h)); err == nil && ok {
		_ = b.Set(wantedKey(h), nil, nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("storage: drop blob %s: %w", h, err)
	}
	return nil
}
