package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrInsufficientStorage: the store's file system is below its free-space
// floor (Config.MinFreeBytes, Config.MinFreePercent). Nothing was written;
// the client should try again later or through another node (SMTP 452
// 4.3.1, IMAP NO [OVERQUOTA]).
var ErrInsufficientStorage = errors.New("storage: insufficient disk space")

// The floor protects what the node cannot refuse: replicated metadata
// (Raft log entries, applied entries, snapshots) and Pebble's own work
// (memtable flushes, compactions, blob-file rewrites) all need some disk
// and all fail hard on ENOSPC. Only new message bodies are refused, and
// they are most of what fills a mail server's disk, so keeping them out
// keeps room for the rest. See DESIGN.md, "A node protects itself: disk".

// spaceMaxAge is how long one statfs answer is used. Within it, bytes
// admitted are subtracted from the answer, so a burst of messages cannot
// overshoot the floor by more than what was in flight at once.
const spaceMaxAge = time.Second

// spaceHysteresis: a node below its floor counts as recovered once free
// space is back above the floor by 1/spaceHysteresis of it, so a disk at
// the edge does not flap between the two (and log each time).
const spaceHysteresis = 20

// SpaceStatus is the free space of the store's file system as last
// measured.
type SpaceStatus struct {
	// Known is false when the file system cannot say (in-memory test
	// file systems) or statfs has never succeeded: no floor applies.
	Known bool
	// Free is the space available to this process, in bytes (statfs
	// f_bavail: without blocks reserved for root).
	Free uint64
	// Total is the file system's size in bytes.
	Total uint64
	// Floor is the free space below which new blobs are refused, in bytes;
	// 0 = no floor.
	Floor uint64
	// Below reports that the node is refusing new mail: Free fell under
	// Floor and has not yet come back above it with some margin.
	Below bool
	// Refusals counts CheckSpace and PutBlob calls refused by the floor
	// since the store was opened.
	Refusals uint64
	// Measured is when Free and Total were read.
	Measured time.Time
	// Err is the last statfs error, if the last attempt failed.
	Err error
}

// String is a one-line account for logs and health checks, e.g.
// "disk: 180 MiB free of 20 GiB, floor 1.0 GiB".
func (st SpaceStatus) String() string {
	if !st.Known {
		if st.Err != nil {
			return fmt.Sprintf("disk: free space unknown (%v)", st.Err)
		}
		return "disk: free space unknown"
	}
	s := fmt.Sprintf("disk: %s free of %s", formatBytes(st.Free), formatBytes(st.Total))
	if st.Floor > 0 {
		s += ", floor " + formatBytes(st.Floor)
	}
	return s
}

// formatBytes writes n in binary units, e.g. "1.0 GiB", "180 MiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, suffix)
	}
	return fmt.Sprintf("%.0f %s", v, suffix)
}

// space measures the store's file system and applies the floor. It is
// safe for concurrent use.
type space struct {
	fs       vfs.FS
	dir      string
	minBytes uint64
	minPct   float64
	log      *slog.Logger

	refusals atomic.Uint64

	mu struct {
		sync.Mutex
		st      SpaceStatus // Refusals unused here
		pending uint64      // bytes admitted since st was measured
		warned  bool        // a statfs failure was logged
	}
}

func newSpace(fs vfs.FS, dir string, minBytes int64, minPct float64, log *slog.Logger) *space {
	return &space{fs: fs, dir: dir, minBytes: uint64(minBytes), minPct: minPct, log: log}
}

// floor is the floor for a file system of total bytes: the smaller of the
// configured size and share, or whichever of them is set.
func (sp *space) floor(total uint64) uint64 {
	f := sp.minBytes
	if sp.minPct > 0 {
		p := uint64(float64(total) * sp.minPct / 100)
		if f == 0 || p < f {
			f = p
		}
	}
	return f
}

// status returns the current picture, measuring again if the last
// measurement is older than spaceMaxAge.
func (sp *space) status(now time.Time) SpaceStatus {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if now.Sub(sp.mu.st.Measured) >= spaceMaxAge {
		sp.measureLocked(now)
	}
	st := sp.mu.st
	st.Refusals = sp.refusals.Load()
	return st
}

// measureLocked asks the file system and logs a crossing of the floor.
func (sp *space) measureLocked(now time.Time) {
	st := &sp.mu.st
	du, err := sp.fs.GetDiskUsage(sp.dir)
	if err != nil {
		st.Measured = now // do not ask again at once
		st.Err = err
		if !errors.Is(err, vfs.ErrUnsupported) && !sp.mu.warned {
			sp.mu.warned = true
			sp.log.Warn("disk: cannot measure free space; no floor applies until it can", "dir", sp.dir, "err", err)
		}
		return
	}
	sp.mu.warned = false
	sp.mu.pending = 0
	was := st.Below
	*st = SpaceStatus{Known: true, Free: du.AvailBytes, Total: du.TotalBytes, Measured: now}
	st.Floor = sp.floor(du.TotalBytes)
	switch {
	case st.Floor == 0:
	case !was:
		st.Below = st.Free < st.Floor
	default:
		st.Below = st.Free < st.Floor+st.Floor/spaceHysteresis
	}
	switch {
	case st.Below && !was:
		sp.log.Warn("disk: free space below the floor: refusing new mail until space is freed (Raft and applied entries go on)",
			"free", formatBytes(st.Free), "floor", formatBytes(st.Floor), "dir", sp.dir)
	case !st.Below && was:
		sp.log.Info("disk: free space back above the floor: accepting mail again",
			"free", formatBytes(st.Free), "floor", formatBytes(st.Floor))
	}
}

// check refuses need more bytes if they would take free space below the
// floor. With reserve, admitted bytes count against free space until the
// next measurement (they are about to be written).
func (sp *space) check(need int64, reserve bool, now time.Time) error {
	if sp.minBytes == 0 && sp.minPct == 0 {
		return nil
	}
	if need < 0 {
		need = 0
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if now.Sub(sp.mu.st.Measured) >= spaceMaxAge {
		sp.measureLocked(now)
	}
	st := sp.mu.st
	if !st.Known || st.Floor == 0 {
		return nil
	}
	free := st.Free - min(st.Free, sp.mu.pending)
	if st.Below || free < st.Floor+uint64(need) {
		sp.refusals.Add(1)
		return fmt.Errorf("%w: %s free, floor %s, %s asked for", ErrInsufficientStorage,
			formatBytes(free), formatBytes(st.Floor), formatBytes(uint64(need)))
	}
	if reserve {
		sp.mu.pending += uint64(need)
	}
	return nil
}

// CheckSpace reports whether the node can take need more bytes of message
// data now: nil, an error wrapping ErrInsufficientStorage (below the
// free-space floor: refuse the message, the client should retry later),
// or one wrapping ErrFailed. need may be 0 (the size is not known yet).
// It measures the file system at most once a second, so it is cheap
// enough to call for every message. Refusals are counted
// (SpaceStatus.Refusals), not logged: crossing the floor is logged once.
func (s *Store) CheckSpace(need int64) error {
	if err := s.failure.get(); err != nil {
		return err
	}
	return s.space.check(need, false, time.Now())
}

// Space returns the free space of the store's file system, measured at
// most a second ago.
func (s *Store) Space() SpaceStatus {
	return s.space.status(time.Now())
}

// Failed returns the reason the store failed (wrapping ErrFailed), or nil.
func (s *Store) Failed() error { return s.failure.get() }

// admitBlob is PutBlob's gate: a failed store and a blob that would take
// the disk below the floor are refused before anything is written.
func (s *Store) admitBlob(size int) error {
	if err := s.failure.get(); err != nil {
		return err
	}
	if err := s.space.check(int64(size), true, time.Now()); err != nil {
		return fmt.Errorf("storage: put blob: %w", err)
	}
	return nil
}

// spaceLoop measures free space every spaceMaxAge, so that crossing the
// floor is logged and health checks and metrics are current even while
// no mail arrives. It ends when stop is closed.
func (s *Store) spaceLoop(stop <-chan struct{}) {
	defer s.bg.Done()
	t := time.NewTicker(spaceMaxAge)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.space.status(now)
		}
	}
}
