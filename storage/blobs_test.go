package storage

import (
	"bytes"
	"errors"
	"testing"
)

func TestBlobRefcount(t *testing.T) {
	h := newHarness(t)
	h.setup()
	bh, data := blobOf("the message")
	if err := h.s.PutBlob(bh, data); err != nil {
		t.Fatal(err)
	}
	if err := h.s.PutBlob(bh, data); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := h.s.PutBlob(bh, []byte("other")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("PutBlob with wrong hash: %v", err)
	}
	p1 := h.deliver("a@example.test", "", "the message")
	p2 := h.deliver("b@example.test", "", "the message")
	if _, n, _ := h.s.MissingBlobs(10); n != 0 {
		t.Fatalf("%d missing", n)
	}
	h.ok(CmdExpunge, Expunge{MailboxID: p1.MailboxID, UIDs: []uint32{p1.UID}})
	if got, err := h.s.Blob(bh); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob after first expunge: %q, %v", got, err)
	}
	h.ok(CmdExpunge, Expunge{MailboxID: p2.MailboxID, UIDs: []uint32{p2.UID}})
	if !h.s.HasBlob(bh) {
		t.Fatal("blob deleted at once, before BlobDeleteGrace")
	}
	// Accepted again meanwhile (same body): the blob is revived and
	// survives the grace period.
	p3 := h.deliver("a@example.test", "", "the message")
	h.afterGrace()
	if !h.s.HasBlob(bh) {
		t.Fatal("revived blob deleted")
	}
	h.ok(CmdExpunge, Expunge{MailboxID: p3.MailboxID, UIDs: []uint32{p3.UID}})
	h.afterGrace()
	if _, err := h.s.Blob(bh); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob after last expunge: %v", err)
	}
	if h.s.HasBlob(bh) {
		t.Fatal("HasBlob after delete")
	}
}

func TestMissingBlobs(t *testing.T) {
	h := newHarness(t)
	h.setup()
	bh, data := blobOf("late body")
	h.deliver("a@example.test", "", "late body")
	h.deliver("b@example.test", "", "late body")
	other, otherData := blobOf("other")
	h.deliver("a@example.test", "", "other")
	got, n, err := h.s.MissingBlobs(1)
	if err != nil || n != 2 || len(got) != 1 {
		t.Fatalf("MissingBlobs = %v, %d, %v", got, n, err)
	}
	if err := h.s.PutBlob(bh, data); err != nil {
		t.Fatal(err)
	}
	if got, n, _ := h.s.MissingBlobs(10); n != 1 || got[0] != other {
		t.Fatalf("MissingBlobs after PutBlob = %v, %d", got, n)
	}
	if err := h.s.PutBlob(other, otherData); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := h.s.MissingBlobs(10); n != 0 {
		t.Fatalf("%d missing", n)
	}
}
