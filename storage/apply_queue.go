package storage

import (
	"fmt"
	"time"
)

// Outbound queue commands used by protocol/delivery and the admin API
// (DESIGN.md "Outbound queue"). Like every handler, each checks first and
// writes only once it cannot fail; time comes from the command.

// Recipient states of a QueueRecipient.
const (
	QueuePending   = "pending"
	QueueDelivered = "delivered"
	QueueFailed    = "failed"
)

// QueueLease leases a queue entry to a node for delivery until Until.
//
// A new lease (Renew false) is granted only if the entry is not held, is
// due (NextAttempt at or before the command's time) and has no live lease
// (none, or one whose LeaseUntil is not after the command's time);
// otherwise the result is ErrExists (leased to a node) or ErrInvalid (held
// or not due). Because the check happens in Apply, two leaders proposing
// leases for the same entry after a leader change cannot both succeed.
//
// A renewal (Renew true) only extends a live lease held by Node; it is
// ErrInvalid when Node does not hold one (it expired or was taken over).
type QueueLease struct {
	ID    string
	Node  string
	Until time.Time
	Renew bool `json:",omitempty"`
}

// QueueResult records the outcome of one delivery attempt by Node. Each of
// Recipients (matched by Address) that is still pending in the entry takes
// the given Status, LastReply and Attempts; others are ignored. The entry's
// Attempts is incremented, NextAttempt (zero: the command's time) and
// LastError are set, and Node's lease, if it still holds it, is released.
// The entry is not removed even when no recipient is pending: the deliverer
// sends any bounce first and then proposes QueueRemove.
type QueueResult struct {
	ID          string
	Node        string
	Recipients  []QueueRecipient
	NextAttempt time.Time
	LastError   string
}

// QueueOp is what [QueueAdmin] does.
type QueueOp string

// Queue management operations, like postqueue/postsuper.
const (
	QueueHold    QueueOp = "hold"    // keep the entry, attempt no delivery
	QueueRelease QueueOp = "release" // undo hold; due at once
	QueueRetry   QueueOp = "retry"   // due at once (a held entry stays held)
	QueueFlush   QueueOp = "flush"   // every entry that is not held: due at once (ID must be "")
)

// QueueAdmin is an operator's change to the queue. A lease in progress is
// left alone: the delivery running under it finishes.
type QueueAdmin struct {
	ID string `json:",omitempty"`
	Op QueueOp
}

// QueueAdminResult is the Data of a CmdQueueAdmin result: how many entries
// changed.
type QueueAdminResult struct{ Changed int }

func (t *tx) queueEntry(id string) (QueueEntry, error) {
	var q QueueEntry
	if !t.getJSON(queueKey(id), &q) {
		return q, fmt.Errorf("queue entry %q: %w", id, ErrNotFound)
	}
	return q, nil
}

func (t *tx) queueLease() (any, error) {
	var p QueueLease
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if p.Node == "" || !p.Until.After(t.cmd.Time) {
		return nil, fmt.Errorf("queue lease %q: no node or lease already over: %w", p.ID, ErrInvalid)
	}
	q, err := t.queueEntry(p.ID)
	if err != nil {
		return nil, err
	}
	live := q.LeaseNode != "" && q.LeaseUntil.After(t.cmd.Time)
	switch {
	case p.Renew:
		if !live || q.LeaseNode != p.Node {
			return nil, fmt.Errorf("queue entry %q: %s holds no lease to renew: %w", p.ID, p.Node, ErrInvalid)
		}
	case live:
		return nil, fmt.Errorf("queue entry %q: leased to %s until %s: %w", p.ID, q.LeaseNode, q.LeaseUntil.Format(time.RFC3339), ErrExists)
	case q.Hold:
		return nil, fmt.Errorf("queue entry %q: on hold: %w", p.ID, ErrInvalid)
	case q.NextAttempt.After(t.cmd.Time):
		return nil, fmt.Errorf("queue entry %q: not due before %s: %w", p.ID, q.NextAttempt.Format(time.RFC3339), ErrInvalid)
	}
	q.LeaseNode, q.LeaseUntil = p.Node, p.Until.UTC()
	t.setJSON(queueKey(q.ID), q)
	return q, nil
}

func (t *tx) queueResult() (any, error) {
	var p QueueResult
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	q, err := t.queueEntry(p.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range p.Recipients {
		switch r.Status {
		case QueuePending, QueueDelivered, QueueFailed:
		default:
			return nil, fmt.Errorf("queue result %q: recipient %q: unknown status %q: %w", p.ID, r.Address, r.Status, ErrInvalid)
		}
	}
	for _, r := range p.Recipients {
		for i := range q.Recipients {
			if q.Recipients[i].Address != r.Address || q.Recipients[i].Status != QueuePending {
				continue
			}
			q.Recipients[i].Status = r.Status
			q.Recipients[i].LastReply = r.LastReply
			q.Recipients[i].Attempts = r.Attempts
		}
	}
	q.Attempts++
	q.NextAttempt = p.NextAttempt.UTC()
	if p.NextAttempt.IsZero() {
		q.NextAttempt = t.cmd.Time
	}
	q.LastError = p.LastError
	if p.Node != "" && q.LeaseNode == p.Node {
		q.LeaseNode, q.LeaseUntil = "", time.Time{}
	}
	t.setJSON(queueKey(q.ID), q)
	return q, nil
}

func (t *tx) queueAdmin() (any, error) {
	var p QueueAdmin
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if p.Op == QueueFlush {
		if p.ID != "" {
			return nil, fmt.Errorf("queue flush: takes no ID: %w", ErrInvalid)
		}
		n := 0
		for _, kv := range t.scan(metaKey(tQueue)) {
			var q QueueEntry
			t.unmarshal(kv.v, &q)
			if q.Hold || !q.NextAttempt.After(t.cmd.Time) {
				continue
			}
			q.NextAttempt = t.cmd.Time
			t.setJSON(kv.k, q)
			n++
		}
		return QueueAdminResult{Changed: n}, nil
	}
	q, err := t.queueEntry(p.ID)
	if err != nil {
		return nil, err
	}
	switch p.Op {
	case QueueHold:
		q.Hold = true
	case QueueRelease:
		q.Hold = false
		q.NextAttempt = t.cmd.Time
	case QueueRetry:
		q.NextAttempt = t.cmd.Time
	default:
		return nil, fmt.Errorf("queue admin: unknown operation %q: %w", p.Op, ErrInvalid)
	}
	t.setJSON(queueKey(q.ID), q)
	return QueueAdminResult{Changed: 1}, nil
}
