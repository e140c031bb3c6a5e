package storage

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Blobs are message bodies keyed by SHA-256, outside the metadata
// keyspace: never in snapshots or the state hash. Metadata holds their
// reference counts; Apply deletes a blob whose count drops to zero and
// records in the node-local wanted keyspace a referenced blob this node
// lacks.

// PutBlob stores data under h durably (pebble.Sync). It returns ErrCorrupt
// if sha256(data) != h. Storing a blob twice is harmless.
func (s *Store) PutBlob(h Hash, data []byte) error {
	if err := s.admitBlob(len(data)); err != nil {
		return err
	}
	if sha256.Sum256(data) != h {
		return fmt.Errorf("storage: put blob %s: content hash differs: %w", h, ErrCorrupt)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if !s.HasBlob(h) {
		if err := b.Set(blobKey(h), data, nil); err != nil {
			return fmt.Errorf("storage: put blob %s: %w", h, err)
		}
	}
	// Written without looking first: the header of content-addressed data
	// is always the same bytes, and a re-put adds one stored before
	// headers were kept.
	if hdr, ok := MessageHeader(data); ok {
		if err := b.Set(headerKey(h), hdr, nil); err != nil {
			return fmt.Errorf("storage: put blob %s: %w", h, err)
		}
	}
	if err := b.Delete(wantedKey(h), nil); err != nil {
		return fmt.Errorf("storage: put blob %s: %w", h, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("storage: put blob %s: %w", h, err)
	}
	return nil
}

// Blob returns the content of blob h, or ErrNotFound.
func (s *Store) Blob(h Hash) ([]byte, error) {
	return s.getCopy(blobKey(h), "blob "+h.String())
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
	end := len(data)
	switch {
	case bytes.HasPrefix(data, []byte("\n")):
		return data[:1], true
	case bytes.HasPrefix(data, []byte("\r\n")):
		return data[:2], true
	}
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			break
		}
		next := i + j + 1 // start of the next line
		if next < len(data) && data[next] == '\n' {
			end = next + 1
			break
		}
		if next+1 < len(data) && data[next] == '\r' && data[next+1] == '\n' {
			end = next + 2
			break
		}
		i = next
	}
	if end > MaxStoredHeader {
		return nil, false
	}
	return data[:end], true
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
