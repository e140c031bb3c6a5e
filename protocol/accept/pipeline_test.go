package accept_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/storage"
)

// TestCommitBigMessage accepts a message far over the in-memory threshold
// through a follower of a real three-node cluster: it is spooled to a file,
// stored on every node byte for byte (prefix, header, body), delivered, and
// no spool file or budget is left behind.
func TestCommitBigMessage(t *testing.T) {
	c := clustertest.New(t, 3, nil)
	clustertest.AddUser(t, c.Leader().Node, "big@example.test", "pw")
	f := c.Follower()
	dir := t.TempDir()
	p, err := accept.New(accept.Config{Cluster: f.Node, SpoolDir: dir, SpoolMemoryMessage: 64 << 10, Logger: clustertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	hdr := "Subject: big\r\nFrom: a@example.test\r\n\r\n"
	var msg bytes.Buffer
	msg.WriteString(hdr)
	for i := 0; msg.Len() < 3<<20; i++ {
		fmt.Fprintf(&msg, "line %d of a big message\r\n", i)
	}
	sp := p.NewSpool(10<<20, 0, true)
	for b := msg.Bytes(); len(b) > 0; {
		k := min(len(b), 32<<10)
		if _, err := sp.Write(b[:k]); err != nil {
			t.Fatal(err)
		}
		b = b[k:]
	}
	h, err := sp.Header()
	if err != nil || string(h) != hdr {
		t.Fatalf("header %q, %v", h, err)
	}
	m := accept.Message{Prefix: []byte("Received: test\r\n"), Header: []byte("Subject: big\r\nFrom: a@example.test\r\nX-Added: 1\r\n\r\n"), Spool: sp, BodyOffset: int64(len(h))}
	want := append(append(append([]byte(nil), m.Prefix...), m.Header...), msg.Bytes()[len(h):]...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stored accept.Stored
	res, out, err := p.Commit(ctx, m, func(st accept.Stored) (storage.Deliver, error) {
		stored = st
		return storage.Deliver{Blob: st.Hash, Size: st.Size,
			Targets: []storage.DeliverTarget{{Account: "big@example.test", Mailbox: "INBOX"}}}, nil
	})
	if out != accept.Accepted || err != nil || res.Err() != nil {
		t.Fatalf("commit: %v %v %v", out, err, res.Err())
	}
	if stored.Hash != storage.Hash(sha256.Sum256(want)) || stored.Size != int64(len(want)) {
		t.Fatalf("stored %d bytes as %s, want %d", stored.Size, stored.Hash, len(want))
	}
	sp.Close()
	clustertest.WaitFor(t, 20*time.Second, "the body on every node", func() bool {
		for _, n := range c.Nodes {
			if !n.Store.HasBlob(stored.Hash) {
				return false
			}
		}
		return true
	})
	for _, n := range c.Nodes {
		r, err := n.Store.OpenBlob(stored.Hash)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s holds %d bytes, want %d", n.Name, len(got), len(want))
		}
	}
	clustertest.WaitFor(t, 10*time.Second, "spool and budgets released", func() bool {
		st := p.Stats()
		left, _ := os.ReadDir(dir)
		return st.SpoolMemoryBytes == 0 && st.UnauthInFlightBytes == 0 && len(left) == 0
	})
	if st := p.Stats(); st.SpoolFiles != 1 {
		t.Fatalf("stats %+v: want one spool file", st)
	}
}

// TestCommitOverQuota: the state machine's refusal is classified.
func TestCommitOverQuota(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, "full@example.test", "pw")
	clustertest.Propose(t, n.Node, storage.CmdAccountQuota, storage.AccountQuota{Address: "full@example.test", QuotaBytes: 10})
	p, err := accept.New(accept.Config{Cluster: n.Node, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, out, err := p.CommitBytes(context.Background(), []byte("Subject: x\r\n\r\ntoo big for the quota\r\n"), time.Time{}, func(st accept.Stored) (storage.Deliver, error) {
		return storage.Deliver{Blob: st.Hash, Size: st.Size,
			Targets: []storage.DeliverTarget{{Account: "full@example.test", Mailbox: "INBOX"}}}, nil
	})
	if out != accept.OverQuota {
		t.Fatalf("outcome %v (%v), want over quota", out, err)
	}
}

// TestCommitEmpty: an empty message (APPEND of {0}) is stored like any
// other.
func TestCommitEmpty(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	n := c.Nodes[0]
	clustertest.AddUser(t, n.Node, "empty@example.test", "pw")
	p, err := accept.New(accept.Config{Cluster: n.Node, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var st accept.Stored
	res, out, err := p.CommitBytes(context.Background(), nil, time.Time{}, func(s accept.Stored) (storage.Deliver, error) {
		st = s
		return storage.Deliver{Blob: s.Hash, Size: s.Size, Targets: []storage.DeliverTarget{{Account: "empty@example.test"}}}, nil
	})
	if out != accept.Accepted || res.Err() != nil {
		t.Fatalf("%v %v %v", out, err, res.Err())
	}
	if got, err := n.Store.Blob(st.Hash); err != nil || len(got) != 0 {
		t.Fatalf("empty blob: %q, %v", got, err)
	}
	if _, missing, _ := n.Store.MissingBlobs(1); missing != 0 {
		t.Fatalf("%d blobs missing", missing)
	}
}
