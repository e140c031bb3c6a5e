// Package faultfs is a loopback FUSE file system that injects disk faults,
// for Raftmail's chaos suite: a node's data directory is a faultfs mount
// over a backing directory, and the chaos process, which serves the mount,
// makes the node's writes and fsyncs stall or fail, or throws away every
// write the node did not make durable (PowerLoss).
//
// # Durability model
//
// A kill -9 keeps the page cache: everything a process wrote survives it,
// synced or not. PowerLoss does not: it rolls the backing directory back to
// what an fsync made durable, under this model.
//
//   - File data and size: a write, truncate, hole punch or zero-range
//     fallocate is durable once fsync or fdatasync of that file (through
//     any descriptor) has succeeded. Until then PowerLoss restores the
//     bytes it overwrote and the size the file had at its last sync:
//     appended bytes vanish, overwritten bytes come back. Nothing is torn
//     or reordered within one file: a write is lost whole or kept whole,
//     and an fsync keeps all earlier writes of that file.
//   - Names (create, mkdir, mknod, symlink, link, unlink, rmdir, rename):
//     with ModelJournal (what Raftmail's chaos suite uses), any successful
//     fsync or fdatasync of a file or directory on the mount makes every
//     earlier name change on the mount durable, as the commit of a
//     metadata journal does on ext4 (data=ordered) and XFS. With
//     ModelPOSIX, a name change is durable only once a directory it
//     changed is fsynced (for rename, either of the two), which is all
//     POSIX promises; fsync of a file does not make its name durable. An
//     unlinked or replaced file is kept aside (in <backing>.stash) until
//     its removal is durable, so PowerLoss can put it back.
//   - Not modelled: attributes (mode, owner, times, xattrs) are never
//     rolled back; writes through a shared writable mmap count as writes
//     when the kernel writes the pages back; a failed fsync keeps the
//     data in place and unsynced (Linux may instead drop the dirty pages,
//     so a read after a failed fsync returns what was written here).
//
// Stricter than ext4: ext4 writes dirty data back on its own (after about
// 30 s) and commits its journal every 5 s, so data and names older than
// that usually survive a power loss without any fsync; here nothing
// survives without one. Looser than ext4: no torn writes, no reordering of
// writes inside a file, no zero-filled tails (data=writeback), no lost
// fsync of a file whose writeback failed.
//
// # Faults
//
// Stall makes operations wait (a slow or hung disk), Fail makes them fail
// with an errno (EIO, ENOSPC: statfs then reports the file system full as
// well), Heal ends both. Operations are grouped by Op.
//
// faultfs needs /dev/fuse and root (it mounts directly, with no
// fusermount helper).
package faultfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Op is a set of operation kinds, for Stall and Fail.
type Op uint

const (
	// OpWrite: write, truncate, fallocate.
	OpWrite Op = 1 << iota
	// OpFsync: fsync and fdatasync of files and directories.
	OpFsync
	// OpMeta: create, mkdir, mknod, symlink, link, unlink, rmdir, rename.
	OpMeta
	// OpRead: open, read.
	OpRead
	// OpAll is every kind.
	OpAll = OpWrite | OpFsync | OpMeta | OpRead
)

// Model is when name changes become durable; see the package comment.
type Model int

const (
	// ModelJournal: any successful fsync on the mount makes every earlier
	// name change durable (ext4 data=ordered, XFS).
	ModelJournal Model = iota
	// ModelPOSIX: a name change is durable once a directory it changed is
	// fsynced.
	ModelPOSIX
)

// Options configure Mount.
type Options struct {
	Model Model
	// Name is shown as the mount's source in /proc/mounts ("" = the
	// backing directory).
	Name string
}

// Loss is what one PowerLoss threw away.
type Loss struct {
	Files    int   // files whose data or size was rolled back
	Bytes    int64 // bytes restored or cut off
	NameOps  int   // name changes undone
	Inflight int   // operations of the dead process still running: failed with EIO
}

func (l Loss) String() string {
	return fmt.Sprintf("%d files rolled back (%d bytes), %d name changes undone", l.Files, l.Bytes, l.NameOps)
}

// FS is one faultfs mount. Its methods are safe for concurrent use.
type FS struct {
	dir, backing, stash string
	opts                Options

	// gate: every operation that changes the backing directory holds it
	// for reading; PowerLoss and Close hold it for writing, so that no
	// change of a dead process lands after the roll-back.
	gate sync.RWMutex

	mu struct {
		sync.Mutex
		m       *mount
		files   map[uint64]*undo // by backing inode: data not yet synced
		journal []nameOp         // name changes not yet durable, oldest first
		seq     int              // names in the stash
		stall   Op
		stallD  time.Duration // <= 0: until Heal
		release chan struct{} // closed by Heal: wakes stalled operations
		fail    Op
		errno   syscall.Errno
		closed  bool
	}
}

// mount is one FUSE mount of an FS: PowerLoss replaces it, so that the
// kernel's caches of the old one (pages, names) cannot outlive the
// roll-back.
type mount struct {
	fs     *FS
	server *fuse.Server
	dead   bool // guarded by FS.gate: operations fail with EIO
}

// undo is what restores one file to its last synced state.
type undo struct {
	size  int64    // at the last sync
	saved []extent // old bytes, in the order they were saved
}

type extent struct {
	off  int64
	data []byte
}

type nameKind int

const (
	created nameKind = iota
	removed
	renamed
)

// nameOp is one name change not yet durable. Paths are relative to the
// backing directory.
type nameOp struct {
	kind  nameKind
	path  string   // created, removed: the name; renamed: the new name
	from  string   // renamed: the old name
	stash string   // removed: where the entry is kept; renamed: the replaced target, or ""
	dirs  []uint64 // backing inodes of the directories it changed
}

// Mount mounts a faultfs over dir that serves backing (both existing
// directories; backing's sibling <backing>.stash is made and must be on
// the same file system). Unmount with Close.
func Mount(dir, backing string, opts Options) (*FS, error) {
	var err error
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if backing, err = filepath.Abs(backing); err != nil {
		return nil, err
	}
	f := &FS{dir: dir, backing: backing, stash: backing + ".stash", opts: opts}
	f.mu.files = map[uint64]*undo{}
	f.mu.release = make(chan struct{})
	if err := os.MkdirAll(f.stash, 0o700); err != nil {
		return nil, fmt.Errorf("faultfs: %w", err)
	}
	m, err := f.mount()
	if err != nil {
		return nil, err
	}
	f.mu.m = m
	return f, nil
}

// Dir is the mount point.
func (f *FS) Dir() string { return f.dir }

func (f *FS) mount() (*mount, error) {
	m := &mount{fs: f}
	//lint:ignore SA1019 NodeWrapChilder hands over a LoopbackNode built by go-fuse, which our node would have to copy (an Inode, with its lock); NewNode builds ours in place.
	root := &fs.LoopbackRoot{Path: f.backing, NewNode: m.newNode}
	var st syscall.Stat_t
	if err := syscall.Stat(f.backing, &st); err != nil {
		return nil, fmt.Errorf("faultfs: backing directory: %w", err)
	}
	root.Dev = st.Dev
	root.RootNode = m.newNode(root, nil, "", &st)
	name := f.opts.Name
	if name == "" {
		name = f.backing
	}
	zero := time.Duration(0)
	server, err := fs.Mount(f.dir, root.RootNode, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:        name,
			Name:          "faultfs",
			DirectMount:   true,
			DisableXAttrs: true,
		},
		// Names change under the kernel's feet only at PowerLoss, which
		// mounts afresh; no negative entries, so a name PowerLoss put
		// back is seen at once.
		NegativeTimeout: &zero,
	})
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount %s over %s: %w (needs root and /dev/fuse)", f.dir, f.backing, err)
	}
	m.server = server
	return m, nil
}

// unmount takes m's mount point away: at once if nothing uses it, else
// lazily (the mount disappears from the name space now and goes once the
// last user lets go). It does not wait for the server's loops to end: a
// copy of the mount in another mount namespace (ip netns exec makes one
// per process) can keep them going a while, and any request they still
// get fails with EIO (m.dead).
func (m *mount) unmount() error {
	if err := syscall.Unmount(m.fs.dir, 0); err != nil {
		if err2 := syscall.Unmount(m.fs.dir, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("faultfs: unmount %s: %w (lazily: %v)", m.fs.dir, err, err2)
		}
	}
	return nil
}

// Stall makes every operation in ops wait d before it runs; d <= 0: until
// Heal. It replaces an earlier Stall.
func (f *FS) Stall(ops Op, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.stall, f.mu.stallD = ops, d
}

// Fail makes every operation in ops fail with errno (EIO, ENOSPC...)
// without touching the backing directory. With ENOSPC in OpWrite, statfs
// reports no free space either. It replaces an earlier Fail.
func (f *FS) Fail(ops Op, errno syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.fail, f.mu.errno = ops, errno
}

// Heal ends every Stall and Fail; stalled operations go on at once.
func (f *FS) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.stall, f.mu.stallD, f.mu.fail, f.mu.errno = 0, 0, 0, 0
	close(f.mu.release)
	f.mu.release = make(chan struct{})
}

// Pending returns how many files hold unsynced data and how many name
// changes are not durable yet.
func (f *FS) Pending() (files, names int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mu.files), len(f.mu.journal)
}

// enter applies the faults to an operation of kind op: it waits out a
// stall (or ctx), then returns the injected errno, if any. The caller then
// holds the gate for reading (and must call leave) unless an errno is
// returned. An operation of a mount PowerLoss replaced fails with EIO.
func (m *mount) enter(ctx context.Context, op Op) syscall.Errno {
	f := m.fs
	f.mu.Lock()
	stall, d, release := f.mu.stall&op != 0, f.mu.stallD, f.mu.release
	f.mu.Unlock()
	if stall {
		var timeout <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-timeout:
		case <-release:
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
	f.mu.Lock()
	fail, errno := f.mu.fail&op != 0, f.mu.errno
	f.mu.Unlock()
	if fail {
		return errno
	}
	f.gate.RLock()
	if m.dead {
		f.gate.RUnlock()
		return syscall.EIO
	}
	return 0
}

func (m *mount) leave() { m.fs.gate.RUnlock() }

// saveRange keeps the bytes [off, end) of the file with backing inode ino
// (read through rfd) that its last sync made durable, before a write or
// truncate changes them. Bytes past the synced size need nothing: the
// roll-back cuts the file to that size.
func (f *FS) saveRange(ino uint64, rfd int, off, end int64) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.mu.files[ino]
	if u == nil {
		var st syscall.Stat_t
		if err := syscall.Fstat(rfd, &st); err != nil {
			return fs.ToErrno(err)
		}
		u = &undo{size: st.Size}
		f.mu.files[ino] = u
	}
	end = min(end, u.size)
	if off >= end {
		return 0
	}
	buf := make([]byte, end-off)
	n, err := syscall.Pread(rfd, buf, off)
	if err != nil {
		return fs.ToErrno(err)
	}
	u.saved = append(u.saved, extent{off, buf[:n]})
	return 0
}

// synced records a successful fsync of the file or directory ino (the
// root directory's is 0).
func (f *FS) synced(ino uint64, dir bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !dir {
		delete(f.mu.files, ino)
	}
	var keep []nameOp
	for _, op := range f.mu.journal {
		durable := f.opts.Model == ModelJournal
		if f.opts.Model == ModelPOSIX && dir {
			for _, d := range op.dirs {
				durable = durable || d == ino
			}
		}
		if durable {
			f.commitLocked(op)
		} else {
			keep = append(keep, op)
		}
	}
	f.mu.journal = keep
}

// commitLocked makes op durable: an entry kept aside is deleted for good.
func (f *FS) commitLocked(op nameOp) {
	if op.stash == "" {
		return
	}
	p := filepath.Join(f.stash, op.stash)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Nlink == 1 {
		delete(f.mu.files, st.Ino)
	}
	_ = os.RemoveAll(p)
}

func (f *FS) record(op nameOp) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.journal = append(f.mu.journal, op)
}

// stashName is a new name in the stash.
func (f *FS) stashName() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.seq++
	return strconv.Itoa(f.mu.seq)
}

// PowerLoss throws away every write and name change not made durable (see
// the package comment), as a power cut and reboot would. Call it while no
// process uses the mount (the node killed): it unmounts, rolls the backing
// directory back, and mounts again, so no kernel cache of the old mount
// survives. Faults are healed first.
func (f *FS) PowerLoss() (Loss, error) {
	f.Heal()
	f.gate.Lock()
	defer f.gate.Unlock()
	f.mu.Lock()
	if f.mu.closed {
		f.mu.Unlock()
		return Loss{}, errors.New("faultfs: closed")
	}
	old := f.mu.m
	journal, files := f.mu.journal, f.mu.files
	f.mu.journal, f.mu.files = nil, map[uint64]*undo{}
	f.mu.Unlock()
	old.dead = true
	var loss Loss
	if err := old.unmount(); err != nil {
		return loss, err
	}

	// Names first, newest first: then every file is where its last
	// durable name says, and its data can be found by inode.
	for i := len(journal) - 1; i >= 0; i-- {
		op := journal[i]
		p := filepath.Join(f.backing, op.path)
		switch op.kind {
		case created:
			_ = os.RemoveAll(p)
		case removed:
			_ = os.Rename(filepath.Join(f.stash, op.stash), p)
		case renamed:
			_ = os.Rename(p, filepath.Join(f.backing, op.from))
			if op.stash != "" {
				_ = os.Rename(filepath.Join(f.stash, op.stash), p)
			}
		}
		loss.NameOps++
	}
	byIno := map[uint64]string{}
	_ = filepath.WalkDir(f.backing, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) == nil {
			byIno[st.Ino] = p
		}
		return nil
	})
	var errs []error
	for ino, u := range files {
		p, ok := byIno[ino]
		if !ok {
			continue // its name was never durable, or its removal was
		}
		n, err := u.rollBack(p)
		if err != nil {
			errs = append(errs, err)
		}
		loss.Files++
		loss.Bytes += n
	}
	if err := clearDir(f.stash); err != nil {
		errs = append(errs, err)
	}
	m, err := f.mount()
	if err != nil {
		errs = append(errs, err)
	} else {
		f.mu.Lock()
		f.mu.m = m
		f.mu.Unlock()
	}
	return loss, errors.Join(errs...)
}

// rollBack restores the file at p and returns how many bytes changed.
func (u *undo) rollBack(p string) (int64, error) {
	fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("faultfs: roll back %s: %w", p, err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("faultfs: roll back %s: %w", p, err)
	}
	n := max(st.Size-u.size, 0)
	for i := len(u.saved) - 1; i >= 0; i-- {
		e := u.saved[i]
		if _, err := syscall.Pwrite(fd, e.data, e.off); err != nil {
			return n, fmt.Errorf("faultfs: roll back %s: %w", p, err)
		}
		n += int64(len(e.data))
	}
	if err := syscall.Ftruncate(fd, u.size); err != nil {
		return n, fmt.Errorf("faultfs: roll back %s: %w", p, err)
	}
	return n, nil
}

func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// Close heals every fault and unmounts (lazily if the mount is busy). The
// backing directory keeps what was written, synced or not; the stash goes.
func (f *FS) Close() error {
	f.Heal()
	f.gate.Lock()
	defer f.gate.Unlock()
	f.mu.Lock()
	if f.mu.closed {
		f.mu.Unlock()
		return nil
	}
	f.mu.closed = true
	m := f.mu.m
	f.mu.Unlock()
	m.dead = true
	err := m.unmount()
	return errors.Join(err, os.RemoveAll(f.stash))
}

// statfsFull reports whether statfs must say the disk is full.
func (f *FS) statfsFull() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.fail&OpWrite != 0 && f.mu.errno == syscall.ENOSPC
}
