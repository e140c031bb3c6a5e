package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// A node's data directory holds its keys (cluster CA, node key, gossip key,
// admin token), the Raft log and every user's mail, so it is the node's
// alone: directories 0700, files 0600. The process runs under umask 077
// from the moment it touches the directory (privateUmask), which covers
// what the libraries create with their own modes (Pebble 0755/0644, raft's
// snapshots 0755/0644); and a node refuses to start on a directory where
// group or others have any bit, so a mistake made outside Raftmail (a
// `cp -r`, a restore, an old version) does not go unnoticed.

// openModeBits are the permission bits that let anyone but the owner in.
const openModeBits fs.FileMode = 0o077

// prepareNewDataDir makes the data directory of a node about to be
// created by init or join, private: created 0700 if missing, tightened to
// 0700 if it exists and is empty (a Docker volume or tmpfs mount point is
// 0755 or 1777), refused if it holds something that group or others can
// read.
func prepareNewDataDir(dir string) error {
	privateUmask()
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read data directory: %w", err)
	case len(ents) == 0:
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make data directory %s private (0700): %w", dir, err)
		}
		return nil
	}
	return checkDataDirPerms(dir)
}

// checkDataDirPerms walks dir and returns an error naming the first
// entry (dir itself included) that group or others have any permission
// on, its mode and the command that fixes it. Symbolic links inside are
// not followed; dir itself may be one.
func checkDataDirPerms(dir string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	var first string
	var firstMode fs.FileMode
	open := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile (a spool file, a Pebble temp)
		}
		if err != nil {
			return err
		}
		if info.Mode().Perm()&openModeBits != 0 {
			if open == 0 {
				first, firstMode = path, info.Mode()
			}
			open++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check the permissions of data directory %s: %w", dir, err)
	}
	if open == 0 {
		return nil
	}
	what := first
	if first == root {
		what = "the directory itself"
	}
	more := ""
	if open > 1 {
		more = fmt.Sprintf(" (and %d more entries)", open-1)
	}
	return fmt.Errorf("data directory %s is open to group or others: %s is mode %s%s; it holds the node's keys and everyone's mail, so it must be the owner's alone: run `chmod -R go-rwx %s` and start again",
		dir, what, octalMode(firstMode), more, dir)
}

// octalMode writes a mode as chmod takes it: 0755, 1777.
func octalMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	return fmt.Sprintf("%04o", v)
}
