package storage

import (
	"bytes"
	"errors"
	"strings"
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
	if got, err := h.s.BlobHeader(bh); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("header of a message without an empty line: %q, %v; want the message", got, err)
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
	if _, err := h.s.BlobHeader(bh); !errors.Is(err, ErrNotFound) {
		t.Fatalf("header after the blob's delete: %v", err)
	}
}

func TestMessageHeader(t *testing.T) {
	long := "X: " + strings.Repeat("a", MaxStoredHeader) + "\r\n\r\nbody"
	for _, tc := range []struct{ msg, want string }{
		{"Subject: a\r\nFrom: b\r\n\r\nbody\r\n\r\nmore", "Subject: a\r\nFrom: b\r\n\r\n"},
		{"Subject: a\nFrom: b\n\nbody", "Subject: a\nFrom: b\n\n"},
		{"Subject: a\n\r\nbody", "Subject: a\n\r\n"},
		{"Subject: a\r\n\nbody", "Subject: a\r\n\n"},
		{"Subject: a\r\n folded\r\n\r\n", "Subject: a\r\n folded\r\n\r\n"},
		{"\r\nbody only", "\r\n"},
		{"\nbody only", "\n"},
		{"Subject: no body\r\n", "Subject: no body\r\n"},
		{"Subject: unterminated", "Subject: unterminated"},
		{"Subject: a\r\r\nX: b\r\n\r\nbody", "Subject: a\r\r\nX: b\r\n\r\n"},
		{"", ""},
	} {
		got, ok := MessageHeader([]byte(tc.msg))
		if !ok || string(got) != tc.want {
			t.Errorf("MessageHeader(%q) = %q, %v; want %q", tc.msg, got, ok, tc.want)
		}
	}
	if _, ok := MessageHeader([]byte(long)); ok {
		t.Error("a header over MaxStoredHeader is kept")
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
