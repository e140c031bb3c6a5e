package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
