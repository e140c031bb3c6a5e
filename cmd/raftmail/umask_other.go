//go:build !unix

package main

// privateUmask: no umask here; the data directory check still runs.
func privateUmask() {}
