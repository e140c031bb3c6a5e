package ops

import (
	"fmt"
	"net/http"

	"github.com/raftmail/raftmail/storage"
)

// Queue management, like postqueue/postsuper, from any node: the change is
// proposed through Raft, so it holds on every node. A delivery already
// running under a lease finishes; hold, retry and release affect the next
// attempt.

// QueueOpResult is the answer to the queue management routes.
type QueueOpResult struct {
	ID      string `json:"id,omitempty"`
	Op      string `json:"op"`
	Changed int    `json:"changed"`
}

// queueShow serves GET /v1/queue/{id}: the entry with its attempts and
// each recipient's last remote reply.
func (a *Admin) queueShow(w http.ResponseWriter, r *http.Request) {
	q, err := a.store.QueueEntry(r.PathValue("id"))
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, q)
}

// queueDelete serves DELETE /v1/queue/{id} (postsuper -d): the message is
// dropped without a bounce.
func (a *Admin) queueDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := a.propose(w, r, storage.CmdQueueRemove, storage.QueueRemove{ID: id}); ok {
		writeJSON(w, http.StatusOK, QueueOpResult{ID: id, Op: "delete", Changed: 1})
	}
}

// queueOp serves POST /v1/queue/{id}/retry|hold|release (postqueue -i,
// postsuper -h / -H).
func (a *Admin) queueOp(w http.ResponseWriter, r *http.Request) {
	id, op := r.PathValue("id"), storage.QueueOp(r.PathValue("op"))
	switch op {
	case storage.QueueRetry, storage.QueueHold, storage.QueueRelease:
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown queue operation %q: want retry, hold or release", op))
		return
	}
	a.queueAdmin(w, r, storage.QueueAdmin{ID: id, Op: op})
}

// queueFlush serves POST /v1/queue/flush (postqueue -f): every entry that
// is not held is due now.
func (a *Admin) queueFlush(w http.ResponseWriter, r *http.Request) {
	a.queueAdmin(w, r, storage.QueueAdmin{Op: storage.QueueFlush})
}

func (a *Admin) queueAdmin(w http.ResponseWriter, r *http.Request, p storage.QueueAdmin) {
	res, ok := a.propose(w, r, storage.CmdQueueAdmin, p)
	if !ok {
		return
	}
	var ar storage.QueueAdminResult
	if err := res.Decode(&ar); err != nil {
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, QueueOpResult{ID: p.ID, Op: string(p.Op), Changed: ar.Changed})
}
