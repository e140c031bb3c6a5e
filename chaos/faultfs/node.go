package faultfs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is go-fuse's loopback node with the faults and the undo records in
// front of every operation that changes the backing directory.
type node struct {
	fs.LoopbackNode
	m *mount
}

func (m *mount) newNode(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
	return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, m: m}
}

var (
	_ fs.NodeCreater         = (*node)(nil)
	_ fs.NodeOpener          = (*node)(nil)
	_ fs.NodeOpendirHandler  = (*node)(nil)
	_ fs.NodeFsyncer         = (*node)(nil)
	_ fs.NodeSetattrer       = (*node)(nil)
	_ fs.NodeUnlinker        = (*node)(nil)
	_ fs.NodeRmdirer         = (*node)(nil)
	_ fs.NodeRenamer         = (*node)(nil)
	_ fs.NodeStatfser        = (*node)(nil)
	_ fs.NodeCopyFileRanger  = (*node)(nil)
	_ fs.FileWriter          = (*file)(nil)
	_ fs.FileWritever        = (*file)(nil)
	_ fs.FileAllocater       = (*file)(nil)
	_ fs.FilePassthroughFder = (*file)(nil)
	_ fs.FileReleaser        = (*file)(nil)
	_ fs.FileFsyncdirer      = (*dir)(nil)
)

// rel is the node's path relative to the backing directory.
func (n *node) rel() string { return n.Path(n.Root()) }

func (n *node) abs(name string) string {
	return filepath.Join(n.RootData.Path, n.rel(), name)
}

func (n *node) ino() uint64 { return n.StableAttr().Ino }

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if errno := n.LoopbackNode.Statfs(ctx, out); errno != 0 {
		return errno
	}
	if n.m.fs.statfsFull() {
		out.Bfree, out.Bavail = 0, 0
	}
	return 0
}

// created records a new name in n once op succeeded.
func (n *node) created(name string, errno syscall.Errno) {
	if errno == 0 {
		n.m.fs.record(nameOp{kind: created, path: filepath.Join(n.rel(), name), dirs: []uint64{n.ino()}})
	}
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return nil, errno
	}
	defer n.m.leave()
	in, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	n.created(name, errno)
	return in, errno
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return nil, errno
	}
	defer n.m.leave()
	in, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	n.created(name, errno)
	return in, errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return nil, errno
	}
	defer n.m.leave()
	in, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
	n.created(name, errno)
	return in, errno
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return nil, errno
	}
	defer n.m.leave()
	in, errno := n.LoopbackNode.Link(ctx, target, name, out)
	n.created(name, errno)
	return in, errno
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return nil, nil, 0, errno
	}
	defer n.m.leave()
	p := n.abs(name)
	var st syscall.Stat_t
	existed := syscall.Lstat(p, &st) == nil
	if existed && flags&syscall.O_EXCL != 0 {
		return nil, nil, 0, syscall.EEXIST
	}
	if existed && flags&syscall.O_TRUNC != 0 && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
		if errno := n.saveTruncate(p, st.Ino, 0); errno != 0 {
			return nil, nil, 0, errno
		}
	}
	in, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if !existed {
		n.created(name, 0)
	}
	return in, n.m.wrap(fh, in.StableAttr().Ino), fuseFlags, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if errno := n.m.enter(ctx, OpRead); errno != 0 {
		return nil, 0, errno
	}
	defer n.m.leave()
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		if errno := n.saveTruncate(n.abs(""), n.ino(), 0); errno != 0 {
			return nil, 0, errno
		}
	}
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.m.wrap(fh, n.ino()), fuseFlags, 0
}

// saveTruncate keeps what cutting the file at p to size would lose.
func (n *node) saveTruncate(p string, ino uint64, size int64) syscall.Errno {
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer syscall.Close(fd)
	return n.m.fs.saveRange(ino, fd, size, 1<<62)
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, ok := in.GetSize()
	if !ok {
		return n.LoopbackNode.Setattr(ctx, f, in, out)
	}
	if errno := n.m.enter(ctx, OpWrite); errno != 0 {
		return errno
	}
	defer n.m.leave()
	var errno syscall.Errno
	if ff, ok := f.(*file); ok {
		errno = ff.save(int64(size), 1<<62)
	} else {
		errno = n.saveTruncate(n.abs(""), n.ino(), int64(size))
	}
	if errno != 0 {
		return errno
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if errno := n.m.enter(ctx, OpFsync); errno != 0 {
		return errno
	}
	defer n.m.leave()
	if ff, ok := f.(*file); ok {
		if errno := ff.LoopbackFile.Fsync(ctx, flags); errno != 0 {
			return errno
		}
	} else {
		fd, err := syscall.Open(n.abs(""), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fs.ToErrno(err)
		}
		err = syscall.Fsync(fd)
		syscall.Close(fd)
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	n.m.fs.synced(n.ino(), n.IsDir())
	return 0
}

// remove keeps the entry name of n aside in the stash and returns its
// stash name.
func (n *node) remove(name string) (string, syscall.Errno) {
	s := n.m.fs.stashName()
	if err := syscall.Rename(n.abs(name), filepath.Join(n.m.fs.stash, s)); err != nil {
		return "", fs.ToErrno(err)
	}
	return s, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return errno
	}
	defer n.m.leave()
	var st syscall.Stat_t
	if err := syscall.Lstat(n.abs(name), &st); err != nil {
		return fs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EISDIR
	}
	s, errno := n.remove(name)
	if errno == 0 {
		n.m.fs.record(nameOp{kind: removed, path: filepath.Join(n.rel(), name), stash: s, dirs: []uint64{n.ino()}})
	}
	return errno
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return errno
	}
	defer n.m.leave()
	ents, err := os.ReadDir(n.abs(name))
	if err != nil {
		return fs.ToErrno(err)
	}
	if len(ents) > 0 {
		return syscall.ENOTEMPTY
	}
	s, errno := n.remove(name)
	if errno == 0 {
		n.m.fs.record(nameOp{kind: removed, path: filepath.Join(n.rel(), name), stash: s, dirs: []uint64{n.ino()}})
	}
	return errno
}

// Rename keeps a replaced target aside, so that PowerLoss can undo the
// rename. RENAME_EXCHANGE and RENAME_WHITEOUT are not supported.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.m.enter(ctx, OpMeta); errno != 0 {
		return errno
	}
	defer n.m.leave()
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^unix.RENAME_NOREPLACE != 0 {
		return syscall.ENOTSUP
	}
	from, to := n.abs(name), np.abs(newName)
	var src, dst syscall.Stat_t
	if err := syscall.Lstat(from, &src); err != nil {
		return fs.ToErrno(err)
	}
	replaced := ""
	if err := syscall.Lstat(to, &dst); err == nil {
		switch {
		case flags&unix.RENAME_NOREPLACE != 0:
			return syscall.EEXIST
		case dst.Ino == src.Ino:
			return 0 // the same file: rename does nothing
		case dst.Mode&syscall.S_IFMT == syscall.S_IFDIR && src.Mode&syscall.S_IFMT != syscall.S_IFDIR:
			return syscall.EISDIR
		case dst.Mode&syscall.S_IFMT != syscall.S_IFDIR && src.Mode&syscall.S_IFMT == syscall.S_IFDIR:
			return syscall.ENOTDIR
		case dst.Mode&syscall.S_IFMT == syscall.S_IFDIR:
			if ents, err := os.ReadDir(to); err != nil || len(ents) > 0 {
				return syscall.ENOTEMPTY
			}
		}
		s, errno := np.remove(newName)
		if errno != 0 {
			return errno
		}
		replaced = s
	}
	if err := syscall.Rename(from, to); err != nil {
		if replaced != "" {
			_ = syscall.Rename(filepath.Join(n.m.fs.stash, replaced), to)
		}
		return fs.ToErrno(err)
	}
	n.m.fs.record(nameOp{
		kind: renamed, path: filepath.Join(np.rel(), newName), from: filepath.Join(n.rel(), name),
		stash: replaced, dirs: []uint64{n.ino(), np.ino()},
	})
	return 0
}

// CopyFileRange is refused, so that the kernel or the caller falls back to
// reads and writes, which this file system sees.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	inner, ok := fh.(dirStream)
	if !ok {
		return fh, fuseFlags, 0
	}
	return &dir{dirStream: inner, n: n}, fuseFlags, 0
}

// dirStream is what go-fuse's loopback directory handle does.
type dirStream interface {
	fs.FileReaddirenter
	fs.FileSeekdirer
	fs.FileReleasedirer
}

// dir is a directory handle whose fsync counts.
type dir struct {
	dirStream
	n *node
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.Fsync(ctx, nil, flags)
}

// file is go-fuse's loopback file with the faults and the undo records in
// front of its writes.
type file struct {
	*fs.LoopbackFile
	m   *mount
	ino uint64

	mu  sync.Mutex
	rfd int // for reading the bytes a write overwrites; -1 until needed
}

func (m *mount) wrap(fh fs.FileHandle, ino uint64) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	return &file{LoopbackFile: lf, m: m, ino: ino, rfd: -1}
}

// PassthroughFd: never hand the kernel the backing file, or writes would
// bypass this file system.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

// save keeps the synced bytes in [off, end) before they change.
func (f *file) save(off, end int64) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rfd < 0 {
		fd, ok := f.LoopbackFile.PassthroughFd()
		if !ok {
			return syscall.EBADF
		}
		// A descriptor of our own that can read even when the file was
		// opened write-only, and follows the file through renames.
		rfd, err := syscall.Open("/proc/self/fd/"+strconv.Itoa(fd), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fs.ToErrno(err)
		}
		f.rfd = rfd
	}
	return f.m.fs.saveRange(f.ino, f.rfd, off, end)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.m.enter(ctx, OpWrite); errno != 0 {
		return 0, errno
	}
	defer f.m.leave()
	if errno := f.save(off, off+int64(len(data))); errno != 0 {
		return 0, errno
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if errno := f.m.enter(ctx, OpWrite); errno != 0 {
		return 0, errno
	}
	defer f.m.leave()
	var n int64
	for _, d := range data {
		n += int64(len(d))
	}
	if errno := f.save(off, off+n); errno != 0 {
		return 0, errno
	}
	return f.LoopbackFile.Writev(ctx, data, off)
}

func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if errno := f.m.enter(ctx, OpWrite); errno != 0 {
		return errno
	}
	defer f.m.leave()
	if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_COLLAPSE_RANGE|unix.FALLOC_FL_INSERT_RANGE) != 0 {
		end := int64(off + size)
		if mode&(unix.FALLOC_FL_COLLAPSE_RANGE|unix.FALLOC_FL_INSERT_RANGE) != 0 {
			end = 1 << 62 // shifts everything after off
		}
		if errno := f.save(int64(off), end); errno != 0 {
			return errno
		}
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

func (f *file) Release(ctx context.Context) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rfd >= 0 {
		syscall.Close(f.rfd)
		f.rfd = -1
	}
	return f.LoopbackFile.Release(ctx)
}
