package faultfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/bbolt"
)

// testMount mounts a faultfs in a temporary directory, or skips the test
// where FUSE cannot be mounted (not root, no /dev/fuse).
func testMount(t *testing.T, model Model) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("faultfs mounts need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	base := t.TempDir()
	dir, backing := filepath.Join(base, "mnt"), filepath.Join(base, "backing")
	for _, d := range []string{dir, backing} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Mount(dir, backing, Options{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if mounted(t, dir) {
			t.Errorf("%s still mounted after Close", dir)
		}
	})
	return f
}

func mounted(t *testing.T, dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " "+dir+" ")
}

func write(t *testing.T, path string, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func powerLoss(t *testing.T, f *FS) Loss {
	t.Helper()
	l, err := f.PowerLoss()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("power loss: %s", l)
	return l
}

func TestPowerLossData(t *testing.T) {
	f := testMount(t, ModelJournal)
	p := filepath.Join(f.Dir(), "a")
	write(t, p, "synced.", true)
	write(t, p, "lost.", false)
	if got := content(t, p); got != "synced.lost." {
		t.Fatalf("before power loss: %q", got)
	}
	// An overwrite inside the synced part, and a truncate below it.
	g, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt([]byte("XX"), 1); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := os.Truncate(p, 3); err != nil {
		t.Fatal(err)
	}
	// Overwritten by O_TRUNC and never synced.
	q := filepath.Join(f.Dir(), "b")
	write(t, q, "old", true)
	if err := os.WriteFile(q, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := powerLoss(t, f)
	if got := content(t, p); got != "synced." {
		t.Errorf("a after power loss: %q, want %q", got, "synced.")
	}
	if got := content(t, q); got != "old" {
		t.Errorf("b after power loss: %q, want %q", got, "old")
	}
	if l.Files != 2 {
		t.Errorf("%d files rolled back, want 2", l.Files)
	}
	// A second write and sync after the power loss is durable.
	write(t, p, "again.", true)
	powerLoss(t, f)
	if got := content(t, p); got != "synced.again." {
		t.Errorf("after the second power loss: %q", got)
	}
}

func TestPowerLossNamesJournal(t *testing.T) {
	f := testMount(t, ModelJournal)
	dir := f.Dir()
	write(t, filepath.Join(dir, "kept"), "k", true) // the sync commits the create
	write(t, filepath.Join(dir, "new"), "n", false) // never synced: its name goes
	if err := os.Remove(filepath.Join(dir, "kept")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	powerLoss(t, f)
	if got := content(t, filepath.Join(dir, "kept")); got != "k" {
		t.Errorf("kept (removed, not synced): %q", got)
	}
	if got := content(t, filepath.Join(dir, "new")); got != "<none>" {
		t.Errorf("new (created, never synced): %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sub (mkdir, never synced): %v", err)
	}

	// The atomic replace: write tmp, sync, rename over; then any sync.
	write(t, filepath.Join(dir, "cfg"), "v1", true)
	write(t, filepath.Join(dir, "cfg.tmp"), "v2", true)
	if err := os.Rename(filepath.Join(dir, "cfg.tmp"), filepath.Join(dir, "cfg")); err != nil {
		t.Fatal(err)
	}
	powerLoss(t, f)
	if got := content(t, filepath.Join(dir, "cfg")); got != "v1" {
		t.Errorf("cfg after an unsynced rename: %q, want v1", got)
	}
	if got := content(t, filepath.Join(dir, "cfg.tmp")); got != "v2" {
		t.Errorf("cfg.tmp after an unsynced rename: %q, want v2", got)
	}
	if err := os.Rename(filepath.Join(dir, "cfg.tmp"), filepath.Join(dir, "cfg")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "other"), "o", true) // commits the journal
	powerLoss(t, f)
	if got := content(t, filepath.Join(dir, "cfg")); got != "v2" {
		t.Errorf("cfg after a synced rename: %q, want v2", got)
	}
	if got := content(t, filepath.Join(dir, "cfg.tmp")); got != "<none>" {
		t.Errorf("cfg.tmp after a synced rename: %q", got)
	}
}

func TestPowerLossNamesPOSIX(t *testing.T) {
	f := testMount(t, ModelPOSIX)
	dir := f.Dir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	syncDir(t, dir)
	write(t, filepath.Join(dir, "d", "f"), "data", true) // the file is synced, d is not
	powerLoss(t, f)
	if _, err := os.Stat(filepath.Join(dir, "d")); err != nil {
		t.Errorf("d (synced parent): %v", err)
	}
	if got := content(t, filepath.Join(dir, "d", "f")); got != "<none>" {
		t.Errorf("d/f, its directory never synced: %q", got)
	}
	write(t, filepath.Join(dir, "d", "f"), "data", true)
	syncDir(t, filepath.Join(dir, "d"))
	if err := os.Remove(filepath.Join(dir, "d", "f")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, dir) // not d: the unlink is not durable
	powerLoss(t, f)
	if got := content(t, filepath.Join(dir, "d", "f")); got != "data" {
		t.Errorf("d/f, unlinked without a sync of d: %q", got)
	}
}

func TestErrorsAndStalls(t *testing.T) {
	f := testMount(t, ModelJournal)
	p := filepath.Join(f.Dir(), "a")
	write(t, p, "x", true)

	f.Fail(OpFsync, syscall.EIO)
	g, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.WriteString("y"); err != nil {
		t.Fatalf("write with failing fsync: %v", err)
	}
	if err := g.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync: %v, want EIO", err)
	}
	f.Fail(OpWrite, syscall.ENOSPC)
	if _, err := g.WriteString("z"); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write: %v, want ENOSPC", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.Dir(), &st); err != nil || st.Bavail != 0 {
		t.Errorf("statfs on a full disk: bavail %d, %v", st.Bavail, err)
	}
	f.Heal()
	if _, err := g.WriteString("w"); err != nil {
		t.Errorf("write after heal: %v", err)
	}

	f.Stall(OpFsync, 300*time.Millisecond)
	start := time.Now()
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("a stalled fsync took %s", took)
	}
	f.Stall(OpWrite|OpFsync, 0) // until Heal
	done := make(chan error, 1)
	go func() {
		_, err := g.WriteString("v")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a write returned during an unbounded stall: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	f.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled write did not go on after Heal")
	}
	if got := content(t, p); got != "xywv" {
		t.Errorf("content: %q", got)
	}
}

// TestPebble: a Pebble database on the mount keeps what it wrote with
// Sync across a kill -9 and a power loss, loses what it wrote with NoSync
// (its WAL is not synced), and opens again. The writer is a child process
// (this test binary again), killed the way the chaos suite kills a node.
func TestPebble(t *testing.T) {
	f := testMount(t, ModelJournal)
	dir := filepath.Join(f.Dir(), "db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestPebbleWriter$")
	cmd.Env = append(os.Environ(), "FAULTFS_PEBBLE_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "written") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the writer said %q (%v)", line, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if l := powerLoss(t, f); l.Bytes == 0 {
		t.Errorf("nothing rolled back: the NoSync writes did not reach the file system")
	}

	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatalf("pebble after power loss: %v", err)
	}
	defer db.Close()
	for i := range 100 {
		if _, closer, err := db.Get(fmt.Appendf(nil, "synced-%03d", i)); err != nil {
			t.Fatalf("synced-%03d after power loss: %v", i, err)
		} else {
			closer.Close()
		}
	}
	lost := 0
	for i := range 100 {
		_, closer, err := db.Get(fmt.Appendf(nil, "nosync-%03d", i))
		if err == nil {
			closer.Close()
		} else {
			lost++
		}
	}
	if lost != 100 {
		t.Errorf("%d of 100 NoSync writes lost, want all", lost)
	}
}

// TestPebbleWriter is TestPebble's child process.
func TestPebbleWriter(t *testing.T) {
	dir := os.Getenv("FAULTFS_PEBBLE_DIR")
	if dir == "" {
		t.Skip("only as TestPebble's child process")
	}
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.Set(fmt.Appendf(nil, "synced-%03d", i), []byte("v"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		// 1 KB each: Pebble hands its WAL to the file a 32 KB block at a
		// time, unless a batch asks for a sync.
		if err := db.Set(fmt.Appendf(nil, "nosync-%03d", i), bytes.Repeat([]byte("v"), 1000), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	// Pebble writes a NoSync batch into its WAL's buffer and hands it to
	// the file soon after, unsynced: give it that moment, so that the
	// file system holds what the power loss must drop.
	time.Sleep(500 * time.Millisecond)
	fmt.Println("written")
	time.Sleep(time.Minute) // until killed
}

// TestBbolt: bbolt (the Raft log's store) keeps every committed
// transaction across a power loss.
func TestBbolt(t *testing.T) {
	f := testMount(t, ModelJournal)
	p := filepath.Join(f.Dir(), "raft.db")
	db, err := bbolt.Open(p, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("logs"))
			if err != nil {
				return err
			}
			return b.Put(fmt.Appendf(nil, "%03d", i), bytes.Repeat([]byte("e"), 1000))
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Close writes nothing: every commit is synced already. (A database
	// left open would close at this test process's exit, and a close on
	// a FUSE mount this very process serves never returns.)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	powerLoss(t, f)
	db2, err := bbolt.Open(p, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bbolt after power loss: %v", err)
	}
	defer db2.Close()
	if err := db2.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("logs"))
		if b == nil {
			return errors.New("no bucket")
		}
		if n := b.Stats().KeyN; n != 50 {
			return fmt.Errorf("%d keys, want 50", n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
