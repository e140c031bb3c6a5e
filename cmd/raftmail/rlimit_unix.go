//go:build unix

package main

import "syscall"

// descriptorLimit raises the soft RLIMIT_NOFILE to the hard limit (Go's
// runtime does so at start on Linux; this covers the rest) and returns the
// soft limit, or false if it cannot be read.
func descriptorLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	return uint64(lim.Cur), true
}
