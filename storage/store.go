package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// cacheBytes is Pebble's block cache: metadata lookups in Apply and IMAP
// reads stay in memory for a mailbox of a few hundred thousand messages.
// Without cgo the cache lives on the Go heap, so with the default GOGC it
// costs about twice its size in resident memory.
const cacheBytes = 32 << 20

// DefaultDedupWindow is how long applied command IDs are remembered when
// Config.DedupWindow is 0.
const DefaultDedupWindow = 24 * time.Hour

// Config configures a Store.
type Config struct {
	// Dir is the Pebble directory. Required.
	Dir string
	// FS is the filesystem; nil is vfs.Default. Tests use
	// vfs.NewCrashableMem().
	FS vfs.FS
	// Logger receives the store's and Pebble's logs; nil discards them.
	Logger *slog.Logger
	// DedupWindow is how long applied command IDs are remembered, measured
	// in proposer time (Command.Time). 0 is DefaultDedupWindow. A proposer
	// must not retry a command for longer than this.
	DedupWindow time.Duration
	// ApplyNoSync commits applied entries without waiting for fsync: a
	// power loss may take the store back to an earlier applied index. Only
	// for a caller that keeps every entry above the index of its last
	// Snapshot in a durable log and replays them after a restart (raft with
	// NoSnapshotRestoreOnStart): Snapshot and Close make everything applied
	// durable first, so the store never ends up behind its last snapshot.
	ApplyNoSync bool
	// MinFreeBytes is the free-space floor of the file system holding
	// Dir, in bytes: PutBlob refuses (ErrInsufficientStorage) a blob that
	// would leave less free, and CheckSpace tells protocols to refuse new
	// mail. Metadata (Apply, Restore) is never refused. 0 = no floor of
	// this kind.
	MinFreeBytes int64
	// MinFreePercent is the floor as a share of the file system's size,
	// in percent. With both set the smaller applies, so a floor sized for
	// a large disk does not refuse everything on a small one. 0 = none.
	MinFreePercent float64
	// OnFatal is called once, in a goroutine of its own, when the store
	// fails (ErrFailed: a WAL write failed, Pebble called Fatalf, or
	// applied entries could not be committed). The store is unusable from then on and the caller
	// should stop the process; the goroutine that met the failure stays
	// blocked until it does. nil = only mark the store failed.
	OnFatal func(error)
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	if c.Dir == "" {
		return fmt.Errorf("storage: config: Dir is required: %w", ErrInvalid)
	}
	if c.DedupWindow < 0 {
		return fmt.Errorf("storage: config: negative DedupWindow %v: %w", c.DedupWindow, ErrInvalid)
	}
	if c.MinFreeBytes < 0 {
		return fmt.Errorf("storage: config: negative MinFreeBytes %d: %w", c.MinFreeBytes, ErrInvalid)
	}
	if c.MinFreePercent < 0 || c.MinFreePercent >= 100 {
		return fmt.Errorf("storage: config: MinFreePercent %v not in [0, 100): %w", c.MinFreePercent, ErrInvalid)
	}
	return nil
}

// Store is one node's Pebble database: the replicated metadata state
// machine and the local blob store. It is safe for concurrent use.
type Store struct {
	db     *pebble.DB
	log    *slog.Logger
	window time.Duration
	// applyWrite is how ApplyBatch commits (Config.ApplyNoSync).
	applyWrite *pebble.WriteOptions
	failure    *failure
	space      *space

	// bg runs spaceLoop until stopBG is closed (by Close, once).
	bg       sync.WaitGroup
	stopBG   chan struct{}
	stopOnce sync.Once

	// applyMu serialises Apply, ApplyBatch, Restore and Close.
	applyMu sync.Mutex
	closed  bool // guarded by applyMu
	applied atomic.Uint64

	// wait wakes WaitApplied: ch is closed and replaced whenever the
	// applied index moves.
	wait struct {
		sync.Mutex
		ch     chan struct{}
		closed bool
	}

	subs struct {
		sync.Mutex
		m map[*Subscription]struct{}
	}

	// blobs holds the hashes being written by a BlobWriter, or being
	// deleted by an applied batch: one at a time per hash (the channel is
	// closed when it is done); and the hashes written lately (pinned
	// against the sweep until their Deliver is applied).
	blobs struct {
		sync.Mutex
		writing map[Hash]chan struct{}
		pinned  map[Hash]time.Time
		pruned  time.Time
	}
}

// Open opens (creating if needed) the store in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	fail := newFailure(log, cfg.OnFatal)
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref() // Open takes its own reference
	opts := &pebble.Options{
		FS:                 walGuardFS{FS: cfg.FS, halt: fail.halt},
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: log.With("component", "pebble"), fail: fail},
		Cache:              cache,
	}
	// Apply looks up many keys that do not exist (a blob's first
	// reference, a mailbox name not yet taken): bloom filters answer
	// those without reading data blocks.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		// Message bodies go to blob files; small metadata stays in sstables.
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           1024,
			MaxBlobReferenceDepth: 64,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	// Blob headers are read one per message when a client lists a
	// mailbox: they stay in the sstables (block cache, no blob-file read)
	// although most are over the separation threshold.
	opts.Experimental.SpanPolicyFunc = pebble.MakeStaticSpanPolicyFunc(pebble.DefaultComparer.Compare,
		pebble.KeyRange{Start: []byte{prefixHeader}, End: []byte{prefixHeader + 1}},
		pebble.SpanPolicy{ValueStoragePolicy: pebble.ValueStorageLowReadLatency})
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("storage: open pebble %q: %w", cfg.Dir, err)
	}
	s := &Store{db: db, log: log, window: cfg.DedupWindow, applyWrite: pebble.Sync, failure: fail,
		space:  newSpace(cfg.FS, cfg.Dir, cfg.MinFreeBytes, cfg.MinFreePercent, log),
		stopBG: make(chan struct{})}
	if cfg.ApplyNoSync {
		s.applyWrite = pebble.NoSync
	}
	s.wait.ch = make(chan struct{})
	s.subs.m = make(map[*Subscription]struct{})
	s.blobs.writing = make(map[Hash]chan struct{})
	s.blobs.pinned = make(map[Hash]time.Time)
	if err := s.dropOrphanChunks(); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: drop unfinished blobs: %w", err)
	}
	idx, err := readApplied(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.applied.Store(idx)
	sp := s.space.status(time.Now())
	log.Info("storage opened", "dir", cfg.Dir, "index", idx, "space", sp.String())
	s.bg.Add(1)
	go s.spaceLoop(s.stopBG)
	return s, nil
}

// Close closes subscriptions, wakes WaitApplied callers with ErrClosed and
// closes Pebble. The store must not be used afterwards; a second Close
// does nothing. A failed store (ErrFailed) is not closed: Pebble's commit
// pipeline may be wedged and closing it could hang; the process is about
// to exit anyway.
func (s *Store) Close() error {
	s.stopBackground()
	if err := s.failure.get(); err != nil {
		s.closeSubscriptions()
		return fmt.Errorf("storage: close: %w", err)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.wait.Lock()
	if !s.wait.closed {
		s.wait.closed = true
		close(s.wait.ch)
	}
	s.wait.Unlock()
	s.closeSubscriptions()
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		s.log.Error("sync before close", "err", err)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close pebble: %w", err)
	}
	return nil
}

// stopBackground stops spaceLoop and waits for it.
func (s *Store) stopBackground() {
	s.stopOnce.Do(func() { close(s.stopBG) })
	s.bg.Wait()
}

// syncApplied makes every applied entry durable (the WAL up to here).
func (s *Store) syncApplied() error {
	if err := s.failure.get(); err != nil {
		return err
	}
	if s.applyWrite == pebble.Sync {
		return nil
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("storage: sync applied entries: %w", err)
	}
	return nil
}

type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func readApplied(r reader) (uint64, error) {
	v, c, err := r.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: read applied index: %w", err)
	}
	defer c.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("storage: applied index is %d bytes: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// AppliedIndex is the index of the last applied (or restored) log entry.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// WaitApplied blocks until AppliedIndex() >= index, ctx is done (its error
// is returned), the store is closed (ErrClosed) or it fails (ErrFailed).
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		s.wait.Lock()
		ch, closed := s.wait.ch, s.wait.closed
		s.wait.Unlock()
		if s.applied.Load() >= index {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-s.failure.ch:
			return s.failure.get()
		}
	}
}

// setApplied publishes a new applied index and wakes waiters.
func (s *Store) setApplied(idx uint64) {
	s.applied.Store(idx)
	s.wait.Lock()
	if !s.wait.closed {
		close(s.wait.ch)
		s.wait.ch = make(chan struct{})
	}
	s.wait.Unlock()
}

// pebbleLogger routes Pebble's logger into slog.
type pebbleLogger struct {
	l    *slog.Logger
	fail *failure
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

// Fatalf is how Pebble says it cannot go on (a failed WAL or MANIFEST
// write, typically ENOSPC or EIO). It fails the store, which starts
// Config.OnFatal, and never returns: Pebble expects it not to, and a
// panic here would unwind into whichever goroutine committed (an SMTP or
// IMAP connection handler, which recovers panics and would leave the node
// running with a wedged commit pipeline).
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "fatal", true)
	p.fail.halt(errors.New(msg))
}
