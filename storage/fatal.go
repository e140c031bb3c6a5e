package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrFailed is returned by every write (and WaitApplied) once the store
// has met an error it cannot go on from: Pebble called Fatalf (a failed
// WAL write, a MANIFEST that cannot be written), or a commit of applied
// entries failed. The node must stop; Config.OnFatal is how it learns.
var ErrFailed = errors.New("storage: store failed")

// failure is the store's failed state. It is set once and never cleared:
// after a failed commit Pebble's commit pipeline is wedged (the failed
// batch stays at the head of its pending queue), so nothing written
// afterwards could complete.
type failure struct {
	log     *slog.Logger
	onFatal func(error)

	err  atomic.Pointer[error]
	once sync.Once
	ch   chan struct{} // closed when the store fails
}

func newFailure(log *slog.Logger, onFatal func(error)) *failure {
	return &failure{log: log, onFatal: onFatal, ch: make(chan struct{})}
}

// get returns the failure (wrapping ErrFailed), or nil.
func (f *failure) get() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// fail marks the store failed with cause. The first call logs it and
// starts Config.OnFatal in its own goroutine (it may take a while to say
// goodbye to clients); later calls do nothing.
func (f *failure) fail(cause error) {
	f.once.Do(func() {
		err := fmt.Errorf("%w: %w", ErrFailed, cause)
		f.err.Store(&err)
		close(f.ch)
		f.log.Error("STORAGE FAILED: this node can no longer write and must stop", "err", cause)
		if f.onFatal != nil {
			go f.onFatal(err)
		}
	})
}

// halt fails the store and blocks the calling goroutine for good. It is
// for goroutines that must not go on: Pebble's, after Fatalf (returning
// would let it continue with broken internals; a panic could be recovered
// by a protocol server's connection handler and leave a zombie), and the
// one applying Raft entries after a failed commit (the entries are not
// durable here; raft must not believe they were applied). The process
// exit that Config.OnFatal starts ends it.
func (f *failure) halt(cause error) {
	f.fail(cause)
	select {}
}

// commit commits b. A panic inside Pebble (some WAL errors panic instead
// of calling Fatalf) fails the store and halts the goroutine, as Fatalf
// does, instead of unwinding into the caller.
func (f *failure) commit(b *pebble.Batch, o *pebble.WriteOptions) error {
	defer func() {
		if r := recover(); r != nil {
			f.halt(fmt.Errorf("pebble panicked in a commit: %v", r))
		}
	}()
	return b.Commit(o)
}

// walGuardFS is the store's file system with a failed write, sync or
// creation of Pebble's WAL failing the store, and the goroutine that met
// it halted, before Pebble sees the error. Pebble cannot go on after one
// (its log writer keeps the error), and it does not always call Fatalf:
// the next commit panics (pebble v2.1 db.go, commitWrite), which a
// connection handler recovers, leaving the commit pipeline locked and the
// node a zombie; rotating to a new WAL panics with DB.mu released and then
// unlocks it again, a fatal runtime error no one can recover. Halting here
// leaves the exit to Config.OnFatal.
type walGuardFS struct {
	vfs.FS
	halt func(error)
}

// Unwrap is for vfs.Root.
func (fs walGuardFS) Unwrap() vfs.FS { return fs.FS }

func (fs walGuardFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.guard(name, category, f, err)
}

func (fs walGuardFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.guard(newname, category, f, err)
}

func (fs walGuardFS) guard(name string, category vfs.DiskWriteCategory, f vfs.File, err error) (vfs.File, error) {
	if category != walCategory {
		return f, err
	}
	if err != nil {
		fs.halt(fmt.Errorf("create WAL %s: %w", name, err))
	}
	return &walFile{File: f, name: name, halt: fs.halt}, nil
}

// walCategory is the write category Pebble creates WAL files with.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// walFile is a WAL file whose write and sync errors fail the store and
// halt the goroutine (walGuardFS).
type walFile struct {
	vfs.File
	name string
	halt func(error)
}

func (f *walFile) check(op string, err error) error {
	if err != nil {
		f.halt(fmt.Errorf("%s WAL %s: %w", op, f.name, err))
	}
	return nil
}

func (f *walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.check("write", err)
}

func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.check("write", err)
}

func (f *walFile) Preallocate(off, length int64) error {
	return f.check("preallocate", f.File.Preallocate(off, length))
}

func (f *walFile) Sync() error { return f.check("sync", f.File.Sync()) }

func (f *walFile) SyncData() error { return f.check("sync", f.File.SyncData()) }

func (f *walFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.check("sync", err)
}
