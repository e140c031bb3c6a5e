//go:build !chaos_clock

package wallclock

// ClockFileEnv is honoured only by a chaos_clock build (chaos_clock.go).
const ClockFileEnv = "RAFTMAIL_CHAOS_CLOCK_FILE"

// Tagged reports whether this binary honours ClockFileEnv: not this one.
const Tagged = false
