package ops

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// BlobInfo is the body of GET /v1/blobs/{sha256}: what this node read for
// the blob, hashed as it was read, so a copy damaged on disk shows as a
// SHA256 that is not the Hash asked for.
type BlobInfo struct {
	Hash   string `json:"hash"`   // the blob asked for
	Size   int64  `json:"size"`   // bytes read
	SHA256 string `json:"sha256"` // hex SHA-256 of the bytes read
	Local  bool   `json:"local"`  // read from this node's own store only
}

// blobShow serves GET /v1/blobs/{sha256}: the blob's size and the hash of
// its content. With ?local=1 only this node's own store is read and a
// blob it lacks is 404, never fetched from a peer: that tells which nodes
// hold a copy (DESIGN.md: a 250 means the body is on a majority).
// Without it the blob is read as IMAP reads it, from a peer if need be.
func (a *Admin) blobShow(w http.ResponseWriter, r *http.Request) {
	h, err := storage.ParseHash(r.PathValue("sha256"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "blob: want the 64 hex digits of a SHA-256: "+err.Error())
		return
	}
	local := r.URL.Query().Get("local")
	if local != "" && local != "0" && local != "1" {
		writeError(w, http.StatusBadRequest, `blob: local must be "1" (this node's own store only) or "0"`)
		return
	}
	var rd io.ReadCloser
	if local == "1" {
		rd, err = a.store.OpenBlob(h)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		rd, err = a.node.OpenBlob(ctx, h)
	}
	if errors.Is(err, storage.ErrNotFound) {
		where := "this node's store"
		if local != "1" {
			where = "this node's store or any peer's"
		}
		writeError(w, http.StatusNotFound, "blob "+h.String()+": not in "+where)
		return
	}
	if err != nil {
		a.log.Error("admin API: read blob", "hash", h.String(), "err", err)
		writeError(w, http.StatusInternalServerError, "blob "+h.String()+": "+err.Error())
		return
	}
	defer rd.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, rd)
	if err != nil {
		a.log.Error("admin API: read blob", "hash", h.String(), "err", err)
		writeError(w, http.StatusInternalServerError, "blob "+h.String()+": "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, BlobInfo{Hash: h.String(), Size: n, SHA256: storage.Hash(sum.Sum(nil)).String(), Local: local == "1"})
}

// AcceptedInfo is the body of GET /v1/accepted/{queue_id}.
type AcceptedInfo struct {
	QueueID string    `json:"queue_id"`
	Blob    string    `json:"blob"` // hex SHA-256: the key of GET /v1/blobs
	Size    int64     `json:"size"`
	Time    time.Time `json:"time"`
}

// AcceptedLookup finds the blob of a message this node answered 250 to
// under a queue ID ("queued as ID"); see SetAccepted.
type AcceptedLookup func(queueID string) (blob storage.Hash, size int64, at time.Time, ok bool)

// SetAccepted sets what GET /v1/accepted/{queue_id} asks (the mail
// services start after the admin API); nil = 404 for every ID.
func (a *Admin) SetAccepted(f AcceptedLookup) {
	if f == nil {
		a.accepted.Store(nil)
		return
	}
	a.accepted.Store(&f)
}

// acceptedShow serves GET /v1/accepted/{queue_id}: the blob a message
// this node accepted under that queue ID was stored as. Only this node's
// recent acceptances are known (the last few thousand since it started).
func (a *Admin) acceptedShow(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("queue_id")
	if f := a.accepted.Load(); f != nil && id != "" {
		if h, size, at, ok := (*f)(id); ok {
			writeJSON(w, http.StatusOK, AcceptedInfo{QueueID: id, Blob: h.String(), Size: size, Time: at.UTC()})
			return
		}
	}
	writeError(w, http.StatusNotFound, "queue ID "+id+": not among the messages this node accepted recently (ask the node that answered 250; it forgets on restart)")
}
