package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/ops"
)

// Durability checked node by node: DESIGN.md promises that a 250 (and an
// APPEND's OK) means the body is durable on a majority. A read through
// IMAP cannot tell, since a node fetches a body it lacks from a peer; so
// right after each acknowledgement every node is asked whether its own
// store holds the blob (GET /v1/blobs/{sha256}?local=1, which never
// fetches), and again after the heal.

// The invariants of this file.
const (
	// InvDurableAtAck: right after an acknowledgement, the nodes that
	// answered "absent" leave at least a majority able to hold the blob,
	// and no node holds a copy whose content does not hash to its key.
	InvDurableAtAck = "durable-at-ack"
	// InvBlobsEveryNode: after the heal, every node's own store holds,
	// with the right hash, the blob of every acknowledged message that
	// node still holds.
	InvBlobsEveryNode = "blobs-on-every-node"
)

// Blob answers.
const (
	BlobPresent = "present"
	BlobAbsent  = "absent"
	BlobError   = "error" // no answer, or not a 200 or 404: proves nothing
)

// BlobCheck is one round of asking every node for the blob of one
// acknowledged message: right after the acknowledgement, or (Final) after
// the heal.
type BlobCheck struct {
	OpID    int64     `json:"op_id"`
	Kind    string    `json:"kind"`
	ChaosID string    `json:"chaos_id"`
	Node    string    `json:"node"`  // the node that acknowledged
	Acked   time.Time `json:"acked"` // when the client got the acknowledgement
	Final   bool      `json:"final,omitempty"`
	// Blob is the hex SHA-256 key of the stored message: what the client
	// APPENDed, or what the acknowledging node says it stored under the
	// 250's queue ID (GET /v1/accepted/{queue_id}). "" if it could not
	// be learned (Detail says why): nothing was asked.
	Blob   string `json:"blob,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Nodes is the cluster's size when asked.
	Nodes   int          `json:"nodes"`
	Answers []BlobAnswer `json:"answers,omitempty"`
}

// BlobAnswer is one node's answer about one blob.
type BlobAnswer struct {
	Node   string    `json:"node"`
	Time   time.Time `json:"time"` // when the answer came
	State  string    `json:"state"`
	Size   int64     `json:"size,omitempty"`
	SHA256 string    `json:"sha256,omitempty"` // of what the node read
	Detail string    `json:"detail,omitempty"`
}

// Bounds of the checks made while traffic runs: a few at a time, so that
// the senders are not slowed much; past the queue, an acknowledgement is
// recorded unchecked.
const (
	durabilityWorkers = 4
	durabilityQueue   = 4096
	durabilityTimeout = 3 * time.Second
)

// Durability asks every node about the blob of each acknowledged message,
// in the background. Safe for concurrent use.
type Durability struct {
	nodes []NodeInfo
	ctx   context.Context
	queue chan Op
	wg    sync.WaitGroup
	mu    struct {
		sync.Mutex
		checks []BlobCheck
		closed bool
	}
}

// StartDurability starts the workers; Observe feeds them, Stop ends them.
func StartDurability(ctx context.Context, nodes []NodeInfo) *Durability {
	d := &Durability{nodes: nodes, ctx: ctx, queue: make(chan Op, durabilityQueue)}
	for range durabilityWorkers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for op := range d.queue {
				d.add(d.check(op))
			}
		}()
	}
	return d
}

// Observe takes an acknowledged send or APPEND (TrafficConfig.OnAck); it
// never blocks.
func (d *Durability) Observe(op Op) {
	if op.Outcome != OK || (op.Kind != OpSend && op.Kind != OpAppend) {
		return
	}
	if op.End.IsZero() {
		op.End = time.Now() // Recorder.Finish stamped its own copy
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return
	}
	select {
	case d.queue <- op:
	default:
		d.mu.checks = append(d.mu.checks, BlobCheck{OpID: op.ID, Kind: op.Kind, ChaosID: op.ChaosID, Node: op.Node, Acked: op.End,
			Nodes: len(d.nodes), Detail: "not checked: the durability checker was behind"})
	}
}

// Stop waits for the checks queued (each bounded by its timeouts) and
// returns every check in acknowledgement order.
func (d *Durability) Stop() []BlobCheck {
	d.mu.Lock()
	if !d.mu.closed {
		d.mu.closed = true
		close(d.queue)
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.mu.checks)
	slices.SortStableFunc(out, func(a, b BlobCheck) int { return a.Acked.Compare(b.Acked) })
	return out
}

func (d *Durability) add(c BlobCheck) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.checks = append(d.mu.checks, c)
}

// check learns the blob's key and asks every node.
func (d *Durability) check(op Op) BlobCheck {
	c := BlobCheck{OpID: op.ID, Kind: op.Kind, ChaosID: op.ChaosID, Node: op.Node, Acked: op.End, Nodes: len(d.nodes), Blob: op.Blob}
	if c.Blob == "" {
		c.Blob, c.Detail = d.keyOf(op)
		if c.Blob == "" {
			return c
		}
	}
	c.Answers = askBlob(d.ctx, d.nodes, c.Blob)
	return c
}

// keyOf asks the acknowledging node which blob it stored under the queue
// ID of its 250.
func (d *Durability) keyOf(op Op) (string, string) {
	qid := QueueIDOf(op.Detail)
	if qid == "" {
		return "", "no queue ID in the 250 reply"
	}
	i := slices.IndexFunc(d.nodes, func(n NodeInfo) bool { return n.Name == op.Node })
	if i < 0 {
		return "", "unknown node " + op.Node
	}
	ctx, cancel := context.WithTimeout(d.ctx, durabilityTimeout)
	defer cancel()
	var acc ops.AcceptedInfo
	if err := adminClient(d.nodes[i], durabilityTimeout).Do(ctx, http.MethodGet, "/v1/accepted/"+url.PathEscape(qid), nil, &acc); err != nil {
		return "", fmt.Sprintf("blob of queue ID %s not learned from %s: %v", qid, op.Node, err)
	}
	return acc.Blob, ""
}

// askBlob asks every node, in parallel, whether its own store holds blob.
func askBlob(ctx context.Context, nodes []NodeInfo, blob string) []BlobAnswer {
	out := make([]BlobAnswer, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = askOne(ctx, n, blob)
		}()
	}
	wg.Wait()
	return out
}

func askOne(ctx context.Context, n NodeInfo, blob string) BlobAnswer {
	ctx, cancel := context.WithTimeout(ctx, durabilityTimeout)
	defer cancel()
	var info ops.BlobInfo
	err := adminClient(n, durabilityTimeout).Do(ctx, http.MethodGet, "/v1/blobs/"+url.PathEscape(blob)+"?local=1", nil, &info)
	a := BlobAnswer{Node: n.Name, Time: time.Now()}
	var ae *ops.APIError
	switch {
	case err == nil:
		a.State, a.Size, a.SHA256 = BlobPresent, info.Size, info.SHA256
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		a.State = BlobAbsent
	default:
		a.State, a.Detail = BlobError, err.Error()
	}
	return a
}

// FinalBlobChecks asks every node, a few blobs at a time, for the blob of
// every acknowledged message whose key the checks at acknowledgement
// learned: the per-node half of the read-back, made before the IMAP
// read-back (whose reads would fetch a missing body from a peer).
func FinalBlobChecks(ctx context.Context, nodes []NodeInfo, atAck []BlobCheck) []BlobCheck {
	var todo []BlobCheck
	seen := make(map[string]bool)
	for _, c := range atAck {
		if c.Final || c.Blob == "" || seen[c.Blob] {
			continue
		}
		seen[c.Blob] = true
		f := c
		f.Final, f.Answers, f.Detail, f.Nodes = true, nil, "", len(nodes)
		todo = append(todo, f)
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			todo[i].Answers = askBlob(ctx, nodes, todo[i].Blob)
		}()
	}
	wg.Wait()
	return todo
}

// ---- the checks ----

// checkDurableAtAck: see InvDurableAtAck.
func checkDurableAtAck(h History, ix *index) CheckResult {
	c := collector{name: InvDurableAtAck}
	checked, noKey, unanswered := 0, 0, 0
	for _, bc := range h.Blobs {
		if bc.Final {
			continue
		}
		if bc.Blob == "" {
			noKey++
			continue
		}
		checked++
		var absent, bad []string
		for _, a := range bc.Answers {
			switch a.State {
			case BlobAbsent:
				absent = append(absent, a.Node)
			case BlobPresent:
				if a.SHA256 != bc.Blob {
					bad = append(bad, fmt.Sprintf("%s (content hashes to %s)", a.Node, short(a.SHA256)))
				}
			default:
				unanswered++
			}
		}
		n := max(bc.Nodes, len(bc.Answers))
		majority := n/2 + 1
		if n-len(absent) < majority {
			c.add("%s %s (%s on %s, acknowledged at %s): blob %s absent on %s right after (answers within %s): at most %d of %d nodes can hold it, a majority is %d",
				bc.Kind, bc.ChaosID, opRef(bc), bc.Node, ix.rel(bc.Acked), short(bc.Blob), strings.Join(absent, ", "),
				lastAnswer(bc).Sub(bc.Acked).Round(time.Millisecond), n-len(absent), n, majority)
		}
		if len(bad) > 0 {
			c.add("%s %s (%s): blob %s damaged on %s", bc.Kind, bc.ChaosID, opRef(bc), short(bc.Blob), strings.Join(bad, ", "))
		}
	}
	if checked+noKey > 0 {
		c.info = fmt.Sprintf("%d acknowledgements checked on every node, %d without a known blob, %d answers missing (a node that does not answer proves nothing)", checked, noKey, unanswered)
	}
	return c.result()
}

// checkBlobsEveryNode: see InvBlobsEveryNode. A message a node no longer
// holds (expunged, moved out of the account, its mailbox deleted) may
// have its blob dropped, or never fetched by a node that joined later.
func checkBlobsEveryNode(h History, ix *index) CheckResult {
	c := collector{name: InvBlobsEveryNode}
	holds := make(map[string]map[string]bool) // node -> chaos IDs held
	reachable := make(map[string]bool)
	for _, n := range h.Final {
		if !n.Reachable {
			continue
		}
		reachable[n.Node] = true
		set := make(map[string]bool)
		for _, mb := range n.Mailboxes {
			for _, m := range mb.Messages {
				set[m.ChaosID] = true
			}
		}
		for _, q := range n.Queue {
			set[q] = true
		}
		holds[n.Node] = set
	}
	checked := 0
	for _, bc := range h.Blobs {
		if !bc.Final || bc.Blob == "" {
			continue
		}
		checked++
		for _, a := range bc.Answers {
			if !reachable[a.Node] || !holds[a.Node][bc.ChaosID] {
				continue
			}
			switch {
			case a.State == BlobAbsent:
				c.add("%s holds message %s (%s) but not its blob %s in its own store after the heal", a.Node, bc.ChaosID, opRef(bc), short(bc.Blob))
			case a.State == BlobError:
				c.add("%s holds message %s (%s), but could not be asked for its blob %s after the heal: %s", a.Node, bc.ChaosID, opRef(bc), short(bc.Blob), a.Detail)
			case a.SHA256 != bc.Blob:
				c.add("%s holds blob %s of message %s (%s) damaged: its content hashes to %s", a.Node, short(bc.Blob), bc.ChaosID, opRef(bc), short(a.SHA256))
			}
		}
	}
	if checked > 0 {
		c.info = fmt.Sprintf("%d blobs checked on every node", checked)
	}
	return c.result()
}

func opRef(bc BlobCheck) string { return fmt.Sprintf("op %d", bc.OpID) }

func lastAnswer(bc BlobCheck) time.Time {
	var t time.Time
	for _, a := range bc.Answers {
		if a.Time.After(t) {
			t = a.Time
		}
	}
	return t
}
