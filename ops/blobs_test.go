package ops

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// TestAdminBlobLocal: GET /v1/blobs/{sha256}?local=1 answers the size and
// the hash of what the node's own store holds, 404 for a blob it lacks,
// 400 for a malformed hash; GET /v1/accepted/{queue_id} answers what
// SetAccepted knows and 404 otherwise.
func TestAdminBlobLocal(t *testing.T) {
	a, c := startAdmin(t)
	ctx := context.Background()
	data := []byte("Received: x\r\nSubject: y\r\n\r\nbody\r\n")
	h := storage.Hash(sha256.Sum256(data))
	if err := a.store.PutBlob(h, data); err != nil {
		t.Fatal(err)
	}
	var got BlobInfo
	if err := c.Do(ctx, "GET", "/v1/blobs/"+h.String()+"?local=1", nil, &got); err != nil {
		t.Fatal(err)
	}
	if got.Hash != h.String() || got.SHA256 != h.String() || got.Size != int64(len(data)) || !got.Local {
		t.Fatalf("got %+v", got)
	}
	status := func(err error) int {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		t.Fatalf("not an API error: %v", err)
		return 0
	}
	absent := storage.Hash(sha256.Sum256([]byte("absent")))
	if err := c.Do(ctx, "GET", "/v1/blobs/"+absent.String()+"?local=1", nil, &got); status(err) != http.StatusNotFound {
		t.Fatalf("absent blob: %v", err)
	}
	for _, p := range []string{"/v1/blobs/xyz?local=1", "/v1/blobs/" + h.String() + "?local=yes"} {
		if err := c.Do(ctx, "GET", p, nil, &got); status(err) != http.StatusBadRequest {
			t.Fatalf("%s: %v", p, err)
		}
	}

	var acc AcceptedInfo
	if err := c.Do(ctx, "GET", "/v1/accepted/QID1", nil, &acc); status(err) != http.StatusNotFound {
		t.Fatalf("no lookup set: %v", err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a.SetAccepted(func(id string) (storage.Hash, int64, time.Time, bool) {
		return h, int64(len(data)), at, id == "QID1"
	})
	if err := c.Do(ctx, "GET", "/v1/accepted/QID1", nil, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.Blob != h.String() || acc.Size != int64(len(data)) || !acc.Time.Equal(at) || acc.QueueID != "QID1" {
		t.Fatalf("accepted %+v", acc)
	}
	if err := c.Do(ctx, "GET", "/v1/accepted/QID2", nil, &acc); status(err) != http.StatusNotFound {
		t.Fatalf("unknown queue ID: %v", err)
	}
}
