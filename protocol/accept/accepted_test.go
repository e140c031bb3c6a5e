package accept_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/storage"
)

// TestAcceptedByQueueID: a committed message with a queue ID is found by
// it, with the blob its delivery references; a refused one and one
// without a queue ID are not.
func TestAcceptedByQueueID(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, "q@example.test", "pw")
	p, err := accept.New(accept.Config{Cluster: n.Node, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: q\r\n\r\nbody\r\n")
	commit := func(queueID, account string) accept.Outcome {
		_, out, _ := p.CommitBytes(context.Background(), msg, time.Time{}, func(st accept.Stored) (storage.Deliver, error) {
			return storage.Deliver{QueueID: queueID, Blob: st.Hash, Size: st.Size,
				Targets: []storage.DeliverTarget{{Account: account, Mailbox: "INBOX"}}}, nil
		})
		return out
	}
	if out := commit("QID1", "q@example.test"); out != accept.Accepted {
		t.Fatalf("commit: %v", out)
	}
	if out := commit("", "q@example.test"); out != accept.Accepted {
		t.Fatalf("commit without a queue ID: %v", out)
	}
	if out := commit("QID2", "nobody@example.test"); out == accept.Accepted {
		t.Fatal("a delivery to an unknown account was accepted")
	}
	got, ok := p.Accepted("QID1")
	if !ok || got.Blob != storage.Hash(sha256.Sum256(msg)) || got.Size != int64(len(msg)) || got.Time.IsZero() {
		t.Fatalf("Accepted(QID1) = %+v, %v", got, ok)
	}
	for _, id := range []string{"QID2", "", "nope"} {
		if got, ok := p.Accepted(id); ok {
			t.Errorf("Accepted(%q) = %+v, want none", id, got)
		}
	}
}
