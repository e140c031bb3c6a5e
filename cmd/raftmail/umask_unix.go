//go:build unix

package main

import "syscall"

// privateUmask makes everything this process creates from now on, by any
// library (Pebble, raft's snapshot store, bbolt), the owner's alone:
// directories 0700, files 0600 at most.
func privateUmask() { syscall.Umask(0o077) }
