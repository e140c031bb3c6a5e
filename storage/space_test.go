package storage

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// diskFS is an in-memory file system whose statfs answer the test sets.
// The real floor is tested on a real size-limited file system by
// cmd/raftmail's TestE2EDiskFull.
type diskFS struct {
	vfs.FS
	avail, total atomic.Uint64
}

func newDiskFS(avail, total uint64) *diskFS {
	fs := &diskFS{FS: vfs.NewMem()}
	fs.avail.Store(avail)
	fs.total.Store(total)
	return fs
}

func (fs *diskFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	a, t := fs.avail.Load(), fs.total.Load()
	return vfs.DiskUsage{AvailBytes: a, TotalBytes: t, UsedBytes: t - a}, nil
}

// logBuffer collects log records as text, for counting them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

func TestSpaceFloorSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bytes  int64
		pct    float64
		total  uint64
		want   uint64
		reason string
	}{
		{"none", 0, 0, 100 * gib, 0, "no floor configured"},
		{"bytes", gib, 0, 100 * gib, gib, "only a size"},
		{"percent", 0, 5, 100 * gib, 5 * gib, "only a share"},
		{"large disk", gib, 5, 100 * gib, gib, "1 GiB < 5 % of 100 GiB"},
		{"small disk", gib, 5, 4 * gib, 4 * gib / 20, "5 % of 4 GiB < 1 GiB"},
	} {
		sp := newSpace(nil, "", tc.bytes, tc.pct, slog.New(slog.DiscardHandler))
		if got := sp.floor(tc.total); got != tc.want {
			t.Errorf("%s: floor(%d) = %d, want %d (%s)", tc.name, tc.total, got, tc.want, tc.reason)
		}
	}
}

func TestSpaceFloorRefusesBlobsNotMetadata(t *testing.T) {
	fs := newDiskFS(10*mib, 100*mib)
	var logs logBuffer
	s := openStore(t, Config{Dir: "/store", FS: fs, MinFreeBytes: 4 * mib,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h := &harness{tb: t, s: s}
	h.setup()
	now := time.Now()
	later := func() time.Time { now = now.Add(spaceMaxAge); return now }

	st := s.space.status(later())
	if !st.Known || st.Free != 10*mib || st.Floor != 4*mib || st.Below {
		t.Fatalf("space: %+v", st)
	}
	if got := st.String(); got != "disk: 10 MiB free of 100 MiB, floor 4.0 MiB" {
		t.Errorf("String() = %q", got)
	}
	// 10 MiB free, floor 4: a 5 MiB body fits; a second one within the
	// same second does not (the first counts against the stale answer).
	big1, big2 := strings.Repeat("a", 5*mib), strings.Repeat("b", 5*mib)
	h1, d1 := blobOf(big1)
	if err := s.PutBlob(h1, d1); err != nil {
		t.Fatalf("PutBlob within the floor: %v", err)
	}
	h2, d2 := blobOf(big2)
	err := s.PutBlob(h2, d2)
	if !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("second PutBlob of 5 MiB with 5 MiB left above the floor: %v, want ErrInsufficientStorage", err)
	}
	if s.HasBlob(h2) {
		t.Fatal("a refused blob was stored")
	}
	if err := s.CheckSpace(5 * mib); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("CheckSpace(5 MiB): %v", err)
	}
	if err := s.CheckSpace(0); err != nil {
		t.Fatalf("CheckSpace(0) above the floor: %v", err)
	}

	// The file system fills (something else wrote to it).
	fs.avail.Store(3 * mib)
	st = s.space.status(later())
	if !st.Below {
		t.Fatalf("3 MiB free under a 4 MiB floor: not below: %+v", st)
	}
	if err := s.CheckSpace(0); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("CheckSpace(0) below the floor: %v", err)
	}
	small, sd := blobOf("tiny")
	if err := s.PutBlob(small, sd); !errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("PutBlob below the floor: %v", err)
	}
	// Metadata is never refused: a delivery of the blob stored before,
	// and an account, still apply.
	h.deliver("a@example.test", "", big1)
	h.ok(CmdAccountAdd, AccountAdd{Address: "c@example.test", PasswordHash: "x"})
	if got := s.Space().Refusals; got != 4 {
		t.Errorf("Refusals = %d, want 4", got)
	}

	// Just above the floor is not yet recovered (no flapping) ...
	fs.avail.Store(4*mib + 1)
	if st := s.space.status(later()); !st.Below {
		t.Fatalf("recovered at the floor itself: %+v", st)
	}
	// ... 5 % of it above is, without a restart.
	fs.avail.Store(4*mib + 4*mib/spaceHysteresis)
	if st := s.space.status(later()); st.Below {
		t.Fatalf("not recovered at the floor + 5%%: %+v", st)
	}
	if err := s.PutBlob(small, sd); err != nil {
		t.Fatalf("PutBlob after recovery: %v", err)
	}
	if n := logs.count("free space below the floor"); n != 1 {
		t.Errorf("%d warnings of crossing the floor, want 1", n)
	}
	if n := logs.count("free space back above the floor"); n != 1 {
		t.Errorf("%d notes of recovery, want 1", n)
	}
}

func TestSpaceNoFloor(t *testing.T) {
	fs := newDiskFS(0, 100*mib) // full, but no floor configured
	s := openStore(t, Config{Dir: "/store", FS: fs})
	h, d := blobOf("x")
	if err := s.PutBlob(h, d); err != nil {
		t.Fatalf("PutBlob without a floor: %v", err)
	}
	if err := s.CheckSpace(gib); err != nil {
		t.Fatalf("CheckSpace without a floor: %v", err)
	}
	// In-memory file systems cannot measure: no floor applies.
	m := openStore(t, Config{Dir: "/m", FS: vfs.NewMem(), MinFreeBytes: gib})
	if err := m.PutBlob(h, d); err != nil {
		t.Fatalf("PutBlob where free space is unknown: %v", err)
	}
	if st := m.Space(); st.Known {
		t.Fatalf("MemFS space known: %+v", st)
	}
}

func TestConfigValidateFloor(t *testing.T) {
	for _, c := range []Config{
		{Dir: "x", MinFreeBytes: -1},
		{Dir: "x", MinFreePercent: -1},
		{Dir: "x", MinFreePercent: 100},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}

// injectWrites fails writes to files whose name contains part, once on.
func injectWrites(part string) *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, part) && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errors.New("no space left on device (injected)")
		}
		return nil
	})}
}

// checkFailed checks that every later write of a failed store fails at
// once, and nothing hangs.
func checkFailed(t *testing.T, s *Store, fatal <-chan error) {
	t.Helper()
	bh, data := blobOf("another")
	if err := s.PutBlob(bh, data); !errors.Is(err, ErrFailed) {
		t.Errorf("PutBlob after the failure: %v", err)
	}
	if err := s.CheckSpace(0); !errors.Is(err, ErrFailed) {
		t.Errorf("CheckSpace after the failure: %v", err)
	}
	if err := s.Failed(); !errors.Is(err, ErrFailed) {
		t.Errorf("Failed() = %v", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrFailed) {
		t.Errorf("Snapshot after the failure: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitApplied(ctx, s.AppliedIndex()+1); !errors.Is(err, ErrFailed) {
		t.Errorf("WaitApplied after the failure: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Errorf("Close after the failure: %v", err)
	}
	select {
	case err := <-fatal:
		t.Errorf("OnFatal called twice (%v)", err)
	default:
	}
}

// Pebble calls Fatalf when it cannot write its MANIFEST (here after a
// flush). The store must fail (OnFatal, ErrFailed for every later write
// and for WaitApplied), and Pebble's goroutine must not go on.
func TestPebbleFatalfFailsStore(t *testing.T) {
	inj := injectWrites("MANIFEST")
	fatal := make(chan error, 2)
	s, err := Open(Config{Dir: "/store", FS: errorfs.Wrap(vfs.NewMem(), inj), OnFatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tb: t, s: s}
	h.setup()
	inj.On()
	returned := make(chan any, 1)
	go func() {
		defer func() { returned <- recover() }()
		_ = s.db.Flush()
	}()
	select {
	case err := <-fatal:
		if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "MANIFEST") {
			t.Fatalf("OnFatal(%v): want ErrFailed with the cause", err)
		}
	case r := <-returned:
		t.Fatalf("a flush whose MANIFEST write failed returned (recovered %v) before OnFatal", r)
	case <-time.After(time.Minute): // hang guard, not an assertion
		t.Fatal("OnFatal was not called")
	}
	checkFailed(t, s, fatal)
}

// A WAL write error fails the store, and the commit that met it neither
// returns nor panics (it could be a connection handler's, which recovers
// panics).
func TestWALWriteErrorFailsStore(t *testing.T) {
	inj := injectWrites(".log")
	fatal := make(chan error, 2)
	s, err := Open(Config{Dir: "/store", FS: errorfs.Wrap(vfs.NewMem(), inj), OnFatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tb: t, s: s}
	h.setup()
	inj.On()
	returned := make(chan any, 1)
	go func() {
		defer func() { returned <- recover() }()
		bh, data := blobOf("message whose commit fails")
		_ = s.PutBlob(bh, data)
	}()
	select {
	case err := <-fatal:
		if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("OnFatal(%v): want ErrFailed with the cause", err)
		}
	case r := <-returned:
		t.Fatalf("PutBlob whose WAL write failed returned (recovered %v) before OnFatal", r)
	case <-time.After(time.Minute): // hang guard, not an assertion
		t.Fatal("OnFatal was not called")
	}
	select {
	case r := <-returned:
		t.Fatalf("the commit that met the WAL error went on (recovered %v)", r)
	default:
	}
	checkFailed(t, s, fatal)
}

// A WAL write error that no commit waits for (entries applied without
// fsync) makes Pebble neither return an error nor call Fatalf: the next
// commit would panic in its goroutine. The store fails at the write.
func TestWALWriteErrorUnsyncedFailsStore(t *testing.T) {
	inj := injectWrites(".log")
	fatal := make(chan error, 2)
	s, err := Open(Config{Dir: "/store", FS: errorfs.Wrap(vfs.NewMem(), inj), ApplyNoSync: true,
		OnFatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tb: t, s: s}
	h.setup()
	inj.On()
	// Entries applied without fsync stay in the WAL's buffer until a
	// block fills: apply until one is written (the goroutine then stays
	// in ApplyBatch, halted).
	go func() {
		for range 100000 {
			h.apply(CmdNoop, nil)
		}
	}()
	select {
	case err := <-fatal:
		if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "WAL") {
			t.Fatalf("OnFatal(%v): want ErrFailed naming the WAL", err)
		}
	case <-time.After(time.Minute): // hang guard
		t.Fatal("OnFatal was not called")
	}
	bh, data := blobOf("after the failure")
	if err := s.PutBlob(bh, data); !errors.Is(err, ErrFailed) {
		t.Fatalf("PutBlob after a WAL write error: %v", err)
	}
}
