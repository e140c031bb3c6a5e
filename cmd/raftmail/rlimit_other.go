//go:build !unix

package main

// descriptorLimit: no RLIMIT_NOFILE here; the caps are taken as given.
func descriptorLimit() (uint64, bool) { return 0, false }
