package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
)

// BenchmarkApplyBatch applies batches of 64 deliver commands of about
// 1 KiB each (a deliver with many flags and a remote queue entry) with one
// synced commit per batch.
func BenchmarkApplyBatch(b *testing.B) {
	h := &harness{tb: b, s: openStore(b, Config{})}
	h.setup()
	const batch = 64
	flags := make([]string, 0, 40)
	for i := range 40 {
		flags = append(flags, fmt.Sprintf("$keyword-%02d", i))
	}
	var n uint64
	mk := func() []byte {
		n++
		var body [8]byte
		binary.BigEndian.PutUint64(body[:], n)
		c := h.cmd(CmdDeliver, Deliver{
			QueueID: fmt.Sprintf("Q%016x", n), Blob: sha256.Sum256(body[:]), Size: 1024,
			Targets: []DeliverTarget{{Account: "a@example.test", Flags: flags}},
			Remote: &QueueEntry{ID: fmt.Sprintf("Q%016x", n), From: "a@example.test",
				Recipients: []QueueRecipient{{Address: "someone@remote.example"}, {Address: "other@remote.example"}}},
		})
		return c.Encode()
	}
	if size := len(mk()); size < 900 || size > 1300 {
		b.Fatalf("command is %d bytes, want about 1 KiB", size)
	}
	b.ReportAllocs()
	iters := 0
	for b.Loop() {
		iters++
		es := make([]Entry, batch)
		for i := range es {
			h.idx++
			es[i] = Entry{Index: h.idx, Data: mk()}
		}
		for _, r := range h.s.ApplyBatch(es) {
			if r.Err() != nil {
				b.Fatal(r.Err())
			}
		}
	}
	b.ReportMetric(float64(iters*batch)/b.Elapsed().Seconds(), "cmds/s")
}
