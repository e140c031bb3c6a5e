package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashSafety simulates power loss with a filesystem that keeps only
// what was synced (plus, in some rounds, a random part of what was not).
func TestCrashSafety(t *testing.T) {
	for _, pct := range []int{0, 50, 100} {
		t.Run(fmt.Sprintf("unsynced%d", pct), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			h := &harness{tb: t, s: openStore(t, Config{Dir: "db", FS: fs})}
			workload(h)
			bh, data := blobOf("body 3")
			if err := h.s.PutBlob(bh, data); err != nil {
				t.Fatal(err)
			}
			want, idx, _ := h.s.StateHash()

			// A batch built but never committed.
			b := h.s.db.NewBatch()
			b.Set([]byte("m\x10half.test"), []byte("{}"), nil)
			b.Set(keyApplied, be64(idx+100), nil)

			clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(1, uint64(pct)))})
			b.Close()
			s2 := openStore(t, Config{Dir: "db", FS: clone})
			got, gotIdx, err := s2.StateHash()
			if err != nil {
				t.Fatal(err)
			}
			if got != want || gotIdx != idx || s2.AppliedIndex() != idx {
				t.Fatalf("after crash: hash %v at %d, want %v at %d", got, gotIdx, want, idx)
			}
			if !s2.HasBlob(bh) {
				t.Fatal("synced blob lost")
			}
			if _, err := s2.Domain("half.test"); err == nil {
				t.Fatal("uncommitted batch appeared")
			}
		})
	}
}

// TestCrashDuringRestore checks a restore is all or nothing across a crash.
func TestCrashDuringRestore(t *testing.T) {
	src := newHarness(t)
	workload(src)
	snap := snapshotBytes(t, src.s)
	want, _, _ := src.s.StateHash()

	fs := vfs.NewCrashableMem()
	h := &harness{tb: t, s: openStore(t, Config{Dir: "db", FS: fs})}
	h.setup()
	before := h.hash()
	// Crash before the restore commits: the old state.
	clone := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := h.s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	// Crash after it returns: the new state.
	after := fs.CrashClone(vfs.CrashCloneCfg{})
	s1 := openStore(t, Config{Dir: "db", FS: clone})
	if got, _, _ := s1.StateHash(); got != before {
		t.Fatal("pre-restore crash clone differs from old state")
	}
	s2 := openStore(t, Config{Dir: "db", FS: after})
	if got, _, _ := s2.StateHash(); got != want {
		t.Fatal("post-restore crash clone differs from snapshot")
	}
}

// TestCrashApplyNoSync: with ApplyNoSync a crash may take the store back to
// an earlier applied index, never past its last Snapshot, and replaying the
// log from there rebuilds exactly the state it had.
func TestCrashApplyNoSync(t *testing.T) {
	fs := vfs.NewCrashableMem()
	h := &harness{tb: t, s: openStore(t, Config{Dir: "db", FS: fs, ApplyNoSync: true})}
	log := workload(h)
	want, idx, _ := h.s.StateHash()

	// Nothing synced yet: the crash may lose every applied entry.
	early := fs.CrashClone(vfs.CrashCloneCfg{})
	s1 := openStore(t, Config{Dir: "db", FS: early, ApplyNoSync: true})
	if s1.AppliedIndex() >= idx {
		t.Fatalf("applied index %d after a crash with nothing synced, want below %d", s1.AppliedIndex(), idx)
	}
	for _, e := range log {
		s1.Apply(e)
	}
	if got, gotIdx, _ := s1.StateHash(); got != want || gotIdx != idx {
		t.Fatalf("after replay: hash %v at %d, want %v at %d", got, gotIdx, want, idx)
	}

	// A snapshot makes what it covers durable.
	sn, err := h.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sn.Index() != idx {
		t.Fatalf("snapshot at %d, want %d", sn.Index(), idx)
	}
	sn.Release()
	h.deliver("a@example.test", "Old", "after the snapshot")
	for _, pct := range []int{0, 50, 100} {
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(2, uint64(pct)))})
		s2 := openStore(t, Config{Dir: "db", FS: clone, ApplyNoSync: true})
		if got := s2.AppliedIndex(); got < idx || got > idx+1 {
			t.Fatalf("unsynced %d%%: applied index %d after crash, want %d or %d", pct, got, idx, idx+1)
		}
		for _, e := range h.log {
			s2.Apply(e)
		}
		if got, _, _ := s2.StateHash(); got != h.hash() {
			t.Fatalf("unsynced %d%%: replay does not rebuild the state", pct)
		}
	}
}
