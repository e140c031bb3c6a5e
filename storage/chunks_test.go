package storage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// bigMessage is a message of n bytes with a short header, its bytes drawn
// from seed.
func bigMessage(n int, seed uint64) []byte {
	hdr := []byte("Subject: big\r\nMessage-ID: <" + fmt.Sprint(seed) + "@test>\r\n\r\n")
	if n < len(hdr) {
		return hdr[:n]
	}
	out := append(make([]byte, 0, n), hdr...)
	r := rand.New(rand.NewPCG(seed, 1))
	for len(out) < n {
		out = append(out, byte('a'+r.IntN(26)))
	}
	return out
}

func countChunks(tb testing.TB, s *Store, h Hash) int {
	tb.Helper()
	lo, hi := chunkBounds(h)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	it.Close()
	return n
}

// TestBlobChunks stores blobs around the chunk size in writes of several
// sizes and reads them back whole and streamed.
func TestBlobChunks(t *testing.T) {
	s := openStore(t, Config{})
	sizes := []int{0, 1, 100, BlobChunkSize - 1, BlobChunkSize, BlobChunkSize + 1, 2 * BlobChunkSize, 3*BlobChunkSize + 5}
	for i, n := range sizes {
		for _, step := range []int{1 << 20, 4096, 7} {
			if n > BlobChunkSize && step == 7 {
				continue // slow and adds nothing over 4096
			}
			data := bigMessage(n, uint64(i*10+step))
			h := Hash(sha256.Sum256(data))
			w, _ := s.NewBlobWriter(h, 0, true)
			for p := data; len(p) > 0; {
				k := min(step, len(p))
				if _, err := w.Write(p[:k]); err != nil {
					t.Fatal(err)
				}
				p = p[k:]
			}
			if err := w.Commit(); err != nil {
				t.Fatalf("size %d: %v", n, err)
			}
			got, err := s.Blob(h)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d step %d: Blob: %d bytes, %v", n, step, len(got), err)
			}
			r, err := s.OpenBlob(h)
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d step %d: OpenBlob: %d bytes, %v", n, step, len(got), err)
			}
			wantChunks := 0
			if n > BlobChunkSize {
				wantChunks = (n - 1) / BlobChunkSize
			}
			if c := countChunks(t, s, h); c != wantChunks {
				t.Fatalf("size %d: %d continuation chunks, want %d", n, c, wantChunks)
			}
			if n > 100 {
				hdr, err := s.BlobHeader(h)
				if err != nil || !bytes.HasPrefix(data, hdr) || !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
					t.Fatalf("size %d: header %q, %v", n, hdr, err)
				}
			}
		}
	}
}

// TestBlobWriterAbort: an aborted or corrupt write leaves nothing, and a
// second writer of a stored blob writes nothing.
func TestBlobWriterAbort(t *testing.T) {
	s := openStore(t, Config{})
	data := bigMessage(3*BlobChunkSize+10, 1)
	h := Hash(sha256.Sum256(data))

	w, _ := s.NewBlobWriter(h, 0, true)
	w.Write(data[:2*BlobChunkSize+5])
	w.Abort()
	if s.HasBlob(h) || countChunks(t, s, h) != 0 {
		t.Fatal("aborted blob left something")
	}

	w, _ = s.NewBlobWriter(h, 0, true)
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 1
	w.Write(bad)
	if err := w.Commit(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("commit of the wrong content: %v", err)
	}
	if s.HasBlob(h) || countChunks(t, s, h) != 0 {
		t.Fatal("corrupt blob left something")
	}

	// Trusted (no verify), then a second, verified copy: nothing new is
	// written and a wrong second copy is refused.
	w, _ = s.NewBlobWriter(h, 0, false)
	w.Write(data)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	w, _ = s.NewBlobWriter(h, 0, true)
	w.Write(bad)
	if err := w.Commit(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("second copy with the wrong content: %v", err)
	}
	if got, err := s.Blob(h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob after a refused second copy: %d bytes, %v", len(got), err)
	}
}

// TestBlobWritersSameHash: concurrent writers of one blob, some aborting,
// never leave a blob with missing chunks.
func TestBlobWritersSameHash(t *testing.T) {
	s := openStore(t, Config{})
	data := bigMessage(2*BlobChunkSize+3, 2)
	h := Hash(sha256.Sum256(data))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			w, _ := s.NewBlobWriter(h, 0, true)
			w.Write(data[:BlobChunkSize+100])
			if i%2 == 0 {
				w.Abort()
				return
			}
			w.Write(data[BlobChunkSize+100:])
			if err := w.Commit(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, err := s.Blob(h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob: %d bytes, %v", len(got), err)
	}
}

// TestBlobChunksDeleted: the sweep of an unreferenced big blob deletes its
// continuation chunks too.
func TestBlobChunksDeleted(t *testing.T) {
	h := newHarness(t)
	h.setup()
	data := bigMessage(2*BlobChunkSize+1, 3)
	bh := Hash(sha256.Sum256(data))
	if err := h.s.PutBlob(bh, data); err != nil {
		t.Fatal(err)
	}
	r := h.ok(CmdDeliver, Deliver{Blob: bh, Size: int64(len(data)), Targets: []DeliverTarget{{Account: "a@example.test", Mailbox: "INBOX"}}})
	var res DeliverResult
	if err := r.Decode(&res); err != nil {
		t.Fatal(err)
	}
	p := res.Placed[0]
	h.ok(CmdExpunge, Expunge{MailboxID: p.MailboxID, UIDs: []uint32{p.UID}})
	h.afterGrace()
	if h.s.HasBlob(bh) || countChunks(t, h.s, bh) != 0 {
		t.Fatalf("big blob left after its sweep: has %v, %d chunks", h.s.HasBlob(bh), countChunks(t, h.s, bh))
	}
}

// TestBlobLegacyWhole reads a blob longer than a chunk stored under one key,
// as stores did before chunks.
func TestBlobLegacyWhole(t *testing.T) {
	s := openStore(t, Config{})
	data := bigMessage(BlobChunkSize*2+7, 4)
	h := Hash(sha256.Sum256(data))
	if err := s.db.Set(blobKey(h), data, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Blob(h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("legacy blob: %d bytes, %v", len(got), err)
	}
	r, _ := s.OpenBlob(h)
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("legacy blob streamed: %d bytes", len(got))
	}
}

// TestCrashInsideBlobWrite: a node that stops in the middle of a big
// blob's write comes back without the blob and without its chunks; a
// committed one survives the loss of everything unsynced.
func TestCrashInsideBlobWrite(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openStore(t, Config{Dir: "db", FS: fs})
	done := bigMessage(3*BlobChunkSize+1, 5)
	dh := Hash(sha256.Sum256(done))
	if err := s.PutBlob(dh, done); err != nil {
		t.Fatal(err)
	}
	half := bigMessage(3*BlobChunkSize+1, 6)
	hh := Hash(sha256.Sum256(half))
	w, _ := s.NewBlobWriter(hh, 0, true)
	w.Write(half[:3*BlobChunkSize])
	s.db.LogData(nil, pebble.Sync) // the chunks reach the disk

	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	w.Abort()
	s2 := openStore(t, Config{Dir: "db", FS: clone})
	if got, err := s2.Blob(dh); err != nil || !bytes.Equal(got, done) {
		t.Fatalf("committed blob after crash: %d bytes, %v", len(got), err)
	}
	if s2.HasBlob(hh) || countChunks(t, s2, hh) != 0 {
		t.Fatalf("unfinished blob after crash: has %v, %d chunks", s2.HasBlob(hh), countChunks(t, s2, hh))
	}
}

// TestSweepSparesBlobStoredAgain: a body stored again (for a Deliver not
// yet applied) after its last reference went is not swept meanwhile.
func TestSweepSparesBlobStoredAgain(t *testing.T) {
	h := newHarness(t)
	h.setup()
	data := bigMessage(BlobChunkSize+40<<10, 9)
	bh := Hash(sha256.Sum256(data))
	tgt := []DeliverTarget{{Account: "a@example.test", Mailbox: "INBOX"}}
	if err := h.s.PutBlob(bh, data); err != nil {
		t.Fatal(err)
	}
	var res DeliverResult
	if err := h.ok(CmdDeliver, Deliver{Blob: bh, Size: int64(len(data)), Targets: tgt}).Decode(&res); err != nil {
		t.Fatal(err)
	}
	h.ok(CmdExpunge, Expunge{MailboxID: res.Placed[0].MailboxID, UIDs: []uint32{res.Placed[0].UID}})
	// The same body arrives again: stored (found stored), its Deliver
	// still to come when the sweep's time is reached.
	if err := h.s.PutBlob(bh, data); err != nil {
		t.Fatal(err)
	}
	h.afterGrace()
	if got, err := h.s.Blob(bh); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob stored again was swept: %d bytes, %v", len(got), err)
	}
	h.ok(CmdDeliver, Deliver{Blob: bh, Size: int64(len(data)), Targets: tgt})
	if _, n, _ := h.s.MissingBlobs(10); n != 0 {
		t.Fatalf("%d blobs missing", n)
	}
}
