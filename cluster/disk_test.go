package cluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/storage"
)

// A node below its free-space floor refuses blob pushes with an answer the
// sender classifies; with the other two nodes healthy the message still
// reaches a majority, metadata keeps flowing to the full node, and once
// both peers are full the writer's error says why.
func TestBlobPushRefusedBelowFloor(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	leader := tc.Leader()
	setupAccount(t, leader.Node)
	var peers []*clustertest.Node
	for _, n := range tc.Nodes {
		if n != leader {
			peers = append(peers, n)
		}
	}
	full := peers[0]
	fs := tc.RestartWithDisk(full, 1<<20, 64<<20)
	tc.WaitConverged()
	if p := full.Node.Problems(); len(p) != 1 || !strings.Contains(p[0], "floor 64 MiB") {
		t.Fatalf("Problems of the full node: %q", p)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body := []byte("Subject: one full peer\r\n\r\nhello\r\n")
	h, err := leader.Node.StoreBlob(ctx, body)
	if err != nil {
		t.Fatalf("StoreBlob with one of three peers full: %v", err)
	}
	if err := deliver(t, leader.Node, h, len(body)); err != nil {
		t.Fatal(err)
	}
	tc.WaitConverged() // metadata reaches the full node
	if full.Store.HasBlob(h) {
		t.Fatal("the full node stored the blob")
	}
	if full.Store.Space().Refusals == 0 {
		t.Error("the full node counted no refusal")
	}
	// A read on the full node fetches the body without keeping it.
	got, err := full.Node.FetchBlob(ctx, h)
	if err != nil || string(got) != string(body) {
		t.Fatalf("FetchBlob on the full node: %q, %v", got, err)
	}

	// Both peers full: no majority, and the error says why.
	tc.RestartWithDisk(peers[1], 0, 64<<20)
	tc.WaitConverged()
	_, err = tc.Leader().Node.StoreBlob(ctx, []byte("Subject: two full peers\r\n\r\nhello\r\n"))
	if !errors.Is(err, cluster.ErrNoQuorum) || !errors.Is(err, storage.ErrInsufficientStorage) {
		t.Fatalf("StoreBlob with two full peers: %v, want ErrNoQuorum and ErrInsufficientStorage", err)
	}

	// Space comes back on the first: no restart needed.
	fs.SetAvail(1 << 30)
	clustertest.WaitFor(t, 10*time.Second, "the first full node recovers", func() bool {
		return len(full.Node.Problems()) == 0
	})
	if _, err := tc.Leader().Node.StoreBlob(ctx, []byte("Subject: one full peer again\r\n\r\nhello\r\n")); err != nil {
		t.Fatalf("StoreBlob after space came back on one peer: %v", err)
	}
}
