package accept

import (
	"sync"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// acceptedKeep is how many accepted messages with a queue ID a Pipeline
// remembers (Accepted): enough for the last minutes of a busy node, about
// 100 bytes each.
const acceptedKeep = 8192

// AcceptedBlob is what this node stored for a message it accepted under a
// queue ID: the blob every target references, and when it was accepted.
type AcceptedBlob struct {
	QueueID string       `json:"queue_id"`
	Blob    storage.Hash `json:"-"`
	Size    int64        `json:"size"`
	Time    time.Time    `json:"time"`
}

// accepted is a ring of the last acceptedKeep AcceptedBlobs, by queue ID.
type accepted struct {
	mu   sync.Mutex
	ring []AcceptedBlob
	next int
	byID map[string]int // queue ID -> index in ring
}

func (a *accepted) add(b AcceptedBlob) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = make(map[string]int)
	}
	if len(a.ring) < acceptedKeep {
		a.ring = append(a.ring, b)
		a.byID[b.QueueID] = len(a.ring) - 1
		return
	}
	if old := a.ring[a.next]; a.byID[old.QueueID] == a.next {
		delete(a.byID, old.QueueID)
	}
	a.ring[a.next] = b
	a.byID[b.QueueID] = a.next
	a.next = (a.next + 1) % acceptedKeep
}

func (a *accepted) get(queueID string) (AcceptedBlob, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.byID[queueID]
	if !ok {
		return AcceptedBlob{}, false
	}
	return a.ring[i], true
}

// Accepted returns the blob of a message this node accepted (Commit
// answered Accepted) under queueID, the ID SMTP names in its 250 reply,
// if it is among the last few thousand and the node has not restarted
// since: an operator (and the chaos suite) can go from a sender's "queued
// as ID" to the stored body without reading the mailbox. Messages without
// a queue ID (IMAP APPEND) are not kept.
func (p *Pipeline) Accepted(queueID string) (AcceptedBlob, bool) {
	return p.accepted.get(queueID)
}
