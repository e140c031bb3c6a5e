package storage

import (
	"bytes"
	"errors"
	"testing"
)

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	n, err := sn.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v (buffer %d)", n, err, buf.Len())
	}
	return buf.Bytes()
}

func TestSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	log := workload(h)
	bh, data := blobOf("body 1")
	if err := h.s.PutBlob(bh, data); err != nil {
		t.Fatal(err)
	}
	want, idx, _ := h.s.StateHash()
	sn, err := h.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sn.Index() != idx {
		t.Fatalf("snapshot index %d, want %d", sn.Index(), idx)
	}
	// Changes after the snapshot is taken are not in it.
	h.ok(CmdDomainAdd, DomainAdd{Name: "later.test"})
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	sn.Release()

	fresh := openStore(t, Config{})
	sub := fresh.Subscribe(4)
	if err := fresh.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	got, gotIdx, _ := fresh.StateHash()
	if got != want || gotIdx != idx || fresh.AppliedIndex() != idx {
		t.Fatalf("restored hash %v at %d (applied %d), want %v at %d", got, gotIdx, fresh.AppliedIndex(), want, idx)
	}
	if c := <-sub.C; c.Kind != Reset || c.Index != idx {
		t.Fatalf("change %+v, want reset", c)
	}
	// Blobs are not in snapshots: the restored node wants them all.
	_, wantMissing, _ := h.s.MissingBlobs(0)
	if _, n, _ := fresh.MissingBlobs(0); n != wantMissing+1 {
		t.Fatalf("restored node misses %d blobs, want %d", n, wantMissing+1)
	}
	// The restored store goes on applying the log.
	for _, e := range log {
		fresh.Apply(e) // replays: ignored
	}
	if got2, _, _ := fresh.StateHash(); got2 != want {
		t.Fatal("replay after restore changed state")
	}

	// Restore over a store with other state replaces it, never merges.
	other := newHarness(t)
	other.ok(CmdDomainAdd, DomainAdd{Name: "gone.test"})
	for range 40 {
		other.ok(CmdNoop, nil)
	}
	if err := other.s.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := other.s.StateHash(); got != want {
		t.Fatal("restore merged instead of replacing")
	}
	if _, err := other.s.Domain("gone.test"); !errors.Is(err, ErrNotFound) {
		t.Fatal("old domain survived restore")
	}
}

func TestRestoreRefusesDamage(t *testing.T) {
	h := newHarness(t)
	workload(h)
	snap := snapshotBytes(t, h.s)

	target := newHarness(t)
	target.setup()
	want := target.hash()
	damaged := map[string][]byte{
		"empty":          nil,
		"bad magic":      append([]byte("XXSNAP"), snap[6:]...),
		"bad version":    append(append([]byte("RMSNAP"), 9), snap[7:]...),
		"truncated":      snap[:len(snap)/2],
		"no checksum":    snap[:len(snap)-32],
		"trailing bytes": append(append([]byte(nil), snap...), 0),
	}
	flipped := append([]byte(nil), snap...)
	flipped[len(flipped)/2] ^= 0x01
	damaged["flipped bit"] = flipped
	badSum := append([]byte(nil), snap...)
	badSum[len(badSum)-1] ^= 0xff
	damaged["bad checksum"] = badSum
	for name, b := range damaged {
		err := target.s.Restore(bytes.NewReader(b))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Restore = %v, want ErrCorrupt", name, err)
		}
		if got := target.hash(); got != want {
			t.Fatalf("%s: refused restore changed state", name)
		}
	}
	if target.s.AppliedIndex() != 3 {
		t.Fatalf("applied index %d", target.s.AppliedIndex())
	}
}

func FuzzRestore(f *testing.F) {
	h := newHarness(f)
	h.setup()
	f.Add(snapshotBytes(f, h.s))
	f.Add(snapshotBytes(f, openStore(f, Config{})))
	f.Add([]byte("RMSNAP\x01\x02"))
	f.Add([]byte("RMSNAP\x01\x01\xff\xff\xff\xff\x0f"))
	s := openStore(f, Config{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Must never panic; a valid stream may restore.
		_ = s.Restore(bytes.NewReader(b))
	})
}
