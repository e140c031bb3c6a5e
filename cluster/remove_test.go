package cluster

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzRemoveRequest: the remove.node payload decoder takes what the
// encoder writes and refuses the rest without panicking.
func FuzzRemoveRequest(f *testing.F) {
	for _, r := range []removeRequest{
		{Node: "node3", Reason: DepartedRemoved},
		{Node: "b", Instance: "0123456789abcdef01234567", Reason: DepartedLeft, Force: true},
	} {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte(`{"node":"../x","reason":"removed"}`))
	f.Add([]byte(`{"node":"a","reason":"gone"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRemoveRequest(b)
		if err != nil {
			return
		}
		if CheckNodeName(r.Node) != nil || (r.Reason != DepartedRemoved && r.Reason != DepartedLeft) {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := decodeRemoveRequest(again); err != nil || r2 != r {
			t.Fatalf("re-encoded %+v as %s: %+v %v", r, again, r2, err)
		}
	})
}

// A tombstone covers the instance it names, or, naming none, every
// instance created before the removal.
func TestTombstoneCovers(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	named := tombstone{Node: "c", Instance: "old", Time: at}
	anon := tombstone{Node: "c", Time: at}
	for _, tc := range []struct {
		ts      tombstone
		id      string
		created time.Time
		want    bool
	}{
		{named, "old", at.Add(-time.Hour), true},
		{named, "new", at.Add(-time.Hour), false},
		{named, "new", at.Add(time.Hour), false},
		{anon, "any", at.Add(-time.Hour), true},
		{anon, "any", at.Add(time.Minute), false},
	} {
		if got := tc.ts.covers(tc.id, tc.created); got != tc.want {
			t.Errorf("%+v covers(%s, %s) = %v, want %v", tc.ts, tc.id, tc.created, got, tc.want)
		}
	}
}
