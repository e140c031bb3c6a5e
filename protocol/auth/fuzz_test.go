package auth

import (
	"bytes"
	"testing"
	"time"
)

// FuzzThrottleRecords: the decoder refuses what the encoder would not
// write (whatever it accepts encodes back to the same bytes), and Merge
// takes any message without panicking or growing the table past MaxKeys.
func FuzzThrottleRecords(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := now.UnixMilli()
	pair := makeKey(classPair, "192.0.2.1", "u@example.test")
	ip := makeKey(classIP, "2001:db8::/64", "")
	f.Add(encodeRecords([]record{{class: classPair, id: pair.id, origin: "node1", at: []int64{ms - 2000, ms - 1000, ms}}}))
	f.Add(encodeRecords([]record{{class: classPair, id: pair.id, origin: "node2", cleared: ms}}))
	f.Add(encodeRecords([]record{
		{class: classIP, id: ip.id, origin: "node3", at: []int64{ms}},
		{class: classAccount, id: pair.id, origin: "n", cleared: 1, at: []int64{2, 3}},
	}))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeRecords(b)
		if err == nil && len(b) > 0 {
			if got := encodeRecords(rs); !bytes.Equal(got, b) {
				t.Fatalf("decode then encode: %x, want %x", got, b)
			}
		}
		c := New(Config{MaxKeys: 8, Now: func() time.Time { return now }})
		_ = c.Merge(b)
		if keys, _, _ := c.tableStats(); keys > 8 {
			t.Fatalf("%d keys after Merge, MaxKeys 8", keys)
		}
		if s := c.State(0); len(s) > 0 {
			if _, err := decodeRecords(s); err != nil {
				t.Fatalf("State does not decode: %v", err)
			}
		}
	})
}
