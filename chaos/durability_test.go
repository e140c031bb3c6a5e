package chaos

import (
	"bytes"
	"strings"
	"testing"
)

func answers(states ...string) []BlobAnswer {
	var out []BlobAnswer
	for i, s := range states {
		a := BlobAnswer{Node: []string{"n1", "n2", "n3"}[i], Time: at(1020), State: s}
		if s == BlobPresent {
			a.SHA256 = "blob-c1"
		}
		out = append(out, a)
	}
	return out
}

func blobCheck(final bool, states ...string) BlobCheck {
	return BlobCheck{OpID: 1, Kind: OpSend, ChaosID: "c1", Node: "n1", Acked: at(1010), Final: final, Blob: "blob-c1", Nodes: 3, Answers: answers(states...)}
}

func TestCheckDurability(t *testing.T) {
	cases := []struct {
		name      string
		checks    []BlobCheck
		inv       string
		pass      bool
		want      string
		dropFinal bool // n2 no longer holds c1 at the end
	}{
		{"on every node", []BlobCheck{blobCheck(false, BlobPresent, BlobPresent, BlobPresent)}, InvDurableAtAck, true, "", false},
		{"on a majority", []BlobCheck{blobCheck(false, BlobPresent, BlobAbsent, BlobPresent)}, InvDurableAtAck, true, "", false},
		{"one node absent, one unreachable", []BlobCheck{blobCheck(false, BlobPresent, BlobAbsent, BlobError)}, InvDurableAtAck, true, "", false},
		{"on the accepting node alone", []BlobCheck{blobCheck(false, BlobPresent, BlobAbsent, BlobAbsent)}, InvDurableAtAck, false, "absent on n2, n3", false},
		{"a damaged copy", []BlobCheck{func() BlobCheck {
			c := blobCheck(false, BlobPresent, BlobPresent, BlobPresent)
			c.Answers[2].SHA256 = "other"
			return c
		}()}, InvDurableAtAck, false, "damaged on n3", false},
		{"no key learned", []BlobCheck{{OpID: 1, Kind: OpSend, ChaosID: "c1", Node: "n1", Acked: at(1010), Nodes: 3, Detail: "no queue ID"}}, InvDurableAtAck, true, "", false},
		{"after the heal on every node", []BlobCheck{blobCheck(true, BlobPresent, BlobPresent, BlobPresent)}, InvBlobsEveryNode, true, "", false},
		{"after the heal missing on a node that holds the message", []BlobCheck{blobCheck(true, BlobPresent, BlobAbsent, BlobPresent)}, InvBlobsEveryNode, false, "n2 holds message c1", false},
		{"after the heal missing on a node that no longer holds the message", []BlobCheck{blobCheck(true, BlobPresent, BlobAbsent, BlobPresent)}, InvBlobsEveryNode, true, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := cleanHistory()
			h.Blobs = tc.checks
			if tc.dropFinal {
				dropMsg(mailbox(&h, "n2", "INBOX"), "c1")
			}
			r := resultOf(Check(h), tc.inv)
			if r.Pass != tc.pass {
				t.Fatalf("%s pass=%v, want %v: %v", tc.inv, r.Pass, tc.pass, r.Examples)
			}
			if tc.want != "" && !strings.Contains(strings.Join(r.Examples, "\n"), tc.want) {
				t.Fatalf("examples %q do not say %q", r.Examples, tc.want)
			}
		})
	}
	// The checks survive the JSON lines round trip.
	h := cleanHistory()
	h.Blobs = []BlobCheck{blobCheck(false, BlobPresent, BlobAbsent, BlobAbsent), blobCheck(true, BlobPresent, BlobPresent, BlobPresent)}
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, h); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Blobs) != 2 || resultOf(Check(back), InvDurableAtAck).Pass {
		t.Fatalf("read back %d blob checks: %+v", len(back.Blobs), back.Blobs)
	}
	if s := Summarize(back, Check(back)); !strings.Contains(s.Line(), "blob-checks=1") || !strings.Contains(s.Line(), "failed=durable-at-ack") {
		t.Fatalf("summary line %q", s.Line())
	}
}
