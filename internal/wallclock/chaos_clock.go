//go:build chaos_clock

package wallclock

import (
	"os"
	"strings"
	"time"
)

// ClockFileEnv names the file a chaos_clock build reads its offset from:
// a Go duration ("90s", "-10m"), re-read every 50ms, so the chaos suite
// can skew a node's clock and make it jump while the node runs. A missing
// or empty file is no offset; an unreadable one keeps the last.
const ClockFileEnv = "RAFTMAIL_CHAOS_CLOCK_FILE"

// Tagged reports whether this binary honours ClockFileEnv.
const Tagged = true

func init() {
	path := os.Getenv(ClockFileEnv)
	if path == "" {
		return
	}
	read := func() {
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			offset.Store(0)
			return
		}
		if err != nil {
			return
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			offset.Store(0)
			return
		}
		if d, err := time.ParseDuration(s); err == nil {
			offset.Store(int64(d))
		}
	}
	read()
	go func() {
		for range time.Tick(50 * time.Millisecond) {
			read()
		}
	}()
}
