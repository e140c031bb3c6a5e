package ops

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/storage"
)

func TestAdminQueue(t *testing.T) {
	a, c := startAdmin(t)
	ctx := context.Background()
	status := func(err error) int {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}
	later := time.Now().Add(time.Hour).UTC()
	for _, id := range []string{"Q1", "Q2"} {
		clustertest.Propose(t, a.node, storage.CmdQueueAdd, storage.QueueEntry{ID: id, Blob: storage.Hash{1}, From: "a@example.test",
			NextAttempt: later, Attempts: 2, Recipients: []storage.QueueRecipient{{Address: "x@remote.test", LastReply: "451 4.7.1 later", Attempts: 2}}})
	}
	var q storage.QueueEntry
	if err := c.Do(ctx, "GET", "/v1/queue/Q1", nil, &q); err != nil || q.Attempts != 2 || q.Recipients[0].LastReply != "451 4.7.1 later" {
		t.Fatalf("show: %+v %v", q, err)
	}
	if err := c.Do(ctx, "GET", "/v1/queue/nope", nil, nil); status(err) != http.StatusNotFound {
		t.Fatalf("show missing: %v", err)
	}
	var res QueueOpResult
	if err := c.Do(ctx, "POST", "/v1/queue/Q1/hold", nil, &res); err != nil || res.Changed != 1 {
		t.Fatalf("hold: %+v %v", res, err)
	}
	if q, _ := a.store.QueueEntry("Q1"); !q.Hold {
		t.Fatal("not held")
	}
	if err := c.Do(ctx, "POST", "/v1/queue/flush", nil, &res); err != nil || res.Changed != 1 {
		t.Fatalf("flush: %+v %v (the held entry must not count)", res, err)
	}
	if q, _ := a.store.QueueEntry("Q2"); q.NextAttempt.After(time.Now()) {
		t.Fatalf("Q2 not flushed: %+v", q)
	}
	if err := c.Do(ctx, "POST", "/v1/queue/Q1/release", nil, &res); err != nil {
		t.Fatal(err)
	}
	if q, _ := a.store.QueueEntry("Q1"); q.Hold || q.NextAttempt.After(time.Now()) {
		t.Fatalf("release: %+v", q)
	}
	if err := c.Do(ctx, "POST", "/v1/queue/Q1/retry", nil, &res); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "POST", "/v1/queue/Q1/explode", nil, nil); status(err) != http.StatusNotFound {
		t.Fatalf("unknown op: %v", err)
	}
	if err := c.Do(ctx, "POST", "/v1/queue/nope/retry", nil, nil); status(err) != http.StatusNotFound {
		t.Fatalf("retry missing: %v", err)
	}
	if err := c.Do(ctx, "DELETE", "/v1/queue/Q1", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.QueueEntry("Q1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := c.Do(ctx, "DELETE", "/v1/queue/Q1", nil, nil); status(err) != http.StatusNotFound {
		t.Fatalf("delete again: %v", err)
	}
}
