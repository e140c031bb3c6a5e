package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func init() { strictHandlers = true }

// t0 is the proposer time of the first command of deterministic tests.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func openStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = tb.TempDir()
	}
	s, err := Open(cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// harness applies commands with deterministic IDs, times and indexes.
type harness struct {
	tb   testing.TB
	s    *Store
	idx  uint64
	n    uint64 // commands made, for IDs and times
	skew time.Duration
	log  []Entry
}

// afterGrace moves command time past BlobDeleteGrace and applies a no-op,
// so blobs unreferenced before now are deleted.
func (h *harness) afterGrace() {
	h.tb.Helper()
	h.skew += BlobDeleteGrace + time.Minute
	h.ok(CmdNoop, nil)
}

func newHarness(tb testing.TB) *harness {
	return &harness{tb: tb, s: openStore(tb, Config{})}
}

// cmd makes a command with a deterministic ID and time.
func (h *harness) cmd(typ CommandType, payload any) Command {
	h.tb.Helper()
	c, err := NewCommand(typ, payload)
	if err != nil {
		h.tb.Fatalf("NewCommand: %v", err)
	}
	h.n++
	c.ID = [16]byte{}
	binary.BigEndian.PutUint64(c.ID[8:], h.n)
	c.Time = t0.Add(time.Duration(h.n)*time.Second + h.skew)
	return c
}

func (h *harness) applyCmd(c Command) Result {
	h.idx++
	e := Entry{Index: h.idx, Data: c.Encode()}
	h.log = append(h.log, e)
	return h.s.Apply(e)
}

func (h *harness) apply(typ CommandType, payload any) Result {
	h.tb.Helper()
	return h.applyCmd(h.cmd(typ, payload))
}

func (h *harness) ok(typ CommandType, payload any) Result {
	h.tb.Helper()
	r := h.apply(typ, payload)
	if err := r.Err(); err != nil {
		h.tb.Fatalf("%v %+v: %v", typ, payload, err)
	}
	return r
}

func (h *harness) hash() Hash {
	h.tb.Helper()
	hs, _, err := h.s.StateHash()
	if err != nil {
		h.tb.Fatal(err)
	}
	return hs
}

// setup creates domain example.test and accounts a@ and b@ (quota 0).
func (h *harness) setup() {
	h.tb.Helper()
	h.ok(CmdDomainAdd, DomainAdd{Name: "example.test"})
	h.ok(CmdAccountAdd, AccountAdd{Address: "a@example.test", PasswordHash: "x"})
	h.ok(CmdAccountAdd, AccountAdd{Address: "b@example.test", PasswordHash: "x"})
}

func (h *harness) mailbox(account, name string) Mailbox {
	h.tb.Helper()
	mb, err := h.s.Mailbox(account, name)
	if err != nil {
		h.tb.Fatalf("Mailbox(%q, %q): %v", account, name, err)
	}
	return mb
}

func blobOf(s string) (Hash, []byte) {
	return sha256.Sum256([]byte(s)), []byte(s)
}

// deliver delivers a blob of body to account's mailbox and returns its UID.
func (h *harness) deliver(account, mailbox, body string, flags ...string) Placed {
	h.tb.Helper()
	bh, data := blobOf(body)
	r := h.ok(CmdDeliver, Deliver{Blob: bh, Size: int64(len(data)), Targets: []DeliverTarget{{Account: account, Mailbox: mailbox, Flags: flags}}})
	var dr DeliverResult
	if err := r.Decode(&dr); err != nil {
		h.tb.Fatal(err)
	}
	return dr.Placed[0]
}

func wantErr(tb testing.TB, r Result, want error) {
	tb.Helper()
	err := r.Err()
	if want == nil {
		if err != nil {
			tb.Fatalf("got %v, want success", err)
		}
		return
	}
	if !errors.Is(err, want) {
		tb.Fatalf("got %v (code %q), want %v", err, r.Code, want)
	}
}

// dumpState lists every metadata and wanted key and value except the
// applied index and the de-duplication tables.
func dumpState(tb testing.TB, s *Store) []string {
	tb.Helper()
	it, err := s.db.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if k[0] == prefixMeta && (k[1] == tApplied || k[1] == tDedup || k[1] == tDedupTime) {
			continue
		}
		out = append(out, string(k)+"="+string(it.Value()))
	}
	return out
}
