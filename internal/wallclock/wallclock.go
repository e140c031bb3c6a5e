// Package wallclock is the wall clock behind Raftmail's time-dependent
// decisions: the time a replicated command carries (lease expiry, de-dup
// pruning, INTERNALDATE), join-token and certificate validity, certificate
// renewal, login throttling and the time a node reports in its status.
//
// It is time.Now, plus an offset that only a binary built with the
// chaos_clock tag can change (chaos_clock.go): the chaos suite uses such a
// binary to skew or jump one node's clock without touching the machine's.
// Go reads the clock through the vDSO, not libc, so faketime cannot do it.
// In a normal build the offset is always zero.
package wallclock

import (
	"sync/atomic"
	"time"
)

var offset atomic.Int64 // nanoseconds

// Now is time.Now plus the offset. With an offset, the monotonic reading
// is dropped, so that differences between two readings see a jump.
func Now() time.Time {
	d := offset.Load()
	if d == 0 {
		return time.Now()
	}
	return time.Now().Round(0).Add(time.Duration(d))
}

// Since is Now().Sub(t).
func Since(t time.Time) time.Duration { return Now().Sub(t) }

// Until is t.Sub(Now()).
func Until(t time.Time) time.Duration { return t.Sub(Now()) }

// Offset is the current offset (zero but in a chaos_clock build).
func Offset() time.Duration { return time.Duration(offset.Load()) }
