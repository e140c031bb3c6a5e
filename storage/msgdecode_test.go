package storage

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func testMessages() []Message {
	t0 := time.Date(2026, 11, 28, 13, 55, 32, 207152114, time.UTC)
	return []Message{
		{},
		{MailboxID: 1, UID: 1, Blob: Hash{1, 2, 3}, Size: 10240, InternalDate: t0, Flags: []string{`\Seen`, `\Flagged`, "$Junk"}, ModSeq: 7},
		{MailboxID: 1<<64 - 1, UID: 1<<32 - 1, Size: 1<<63 - 1, InternalDate: t0.Truncate(time.Second), Flags: []string{}, ModSeq: 1<<64 - 1},
		{MailboxID: 3, UID: 9, InternalDate: t0.In(time.FixedZone("x", 3600)), Flags: []string{"a<b", "é", `"q"`, `back\\slash`}},
		{MailboxID: 4, UID: 2, InternalDate: time.Time{}, Flags: nil},
	}
}

// TestDecodeMessage: every Message decodes as with encoding/json, and the
// common ones take the fast path.
func TestDecodeMessage(t *testing.T) {
	for i, want := range testMessages() {
		raw, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var ref, got Message
		if err := json.Unmarshal(raw, &ref); err != nil {
			t.Fatal(err)
		}
		if err := decodeMessage(raw, &got); err != nil || !reflect.DeepEqual(got, ref) {
			t.Errorf("%d: %s decoded to %+v, %v; want %+v", i, raw, got, err, ref)
		}
		var fast Message
		if i < 3 && !decodeMessageFast(raw, &fast) {
			t.Errorf("%d: %s not on the fast path", i, raw)
		}
	}
}

// FuzzDecodeMessage: where the fast path answers, it answers what
// encoding/json does; decodeMessage fails exactly when json.Unmarshal does.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range testMessages() {
		raw, _ := json.Marshal(m)
		f.Add(raw)
	}
	f.Add([]byte(`{"MailboxID":01,"UID":1}`))
	f.Add([]byte(`{"MailboxID":1,"UID":1,"Blob":"00","Size":1,"InternalDate":"2026-11-28T13:55:32Z","Flags":["\u005cSeen"],"ModSeq":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ref Message
		refErr := json.Unmarshal(raw, &ref)
		var fast Message
		if decodeMessageFast(raw, &fast) {
			if refErr != nil {
				t.Fatalf("fast path accepts %q, encoding/json says %v", raw, refErr)
			}
			if !reflect.DeepEqual(fast, ref) {
				t.Fatalf("%q: fast %+v, encoding/json %+v", raw, fast, ref)
			}
		}
		var got Message
		if err := decodeMessage(raw, &got); (err == nil) != (refErr == nil) {
			t.Fatalf("%q: error %v, encoding/json %v", raw, err, refErr)
		}
	})
}

func BenchmarkDecodeMessage(b *testing.B) {
	raw, _ := json.Marshal(testMessages()[1])
	for _, fn := range []struct {
		name string
		f    func([]byte, *Message) error
	}{
		{"fast", decodeMessage},
		{"json", func(r []byte, m *Message) error { return json.Unmarshal(r, m) }},
	} {
		b.Run(fn.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m Message
				if err := fn.f(raw, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
