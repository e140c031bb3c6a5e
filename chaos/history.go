package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Outcome is what a client was told.
type Outcome string

const (
	// OK: the server acknowledged (SMTP 250 after DATA, IMAP OK).
	OK Outcome = "ok"
	// Fail: the server refused (4xx, 5xx, IMAP NO/BAD).
	Fail Outcome = "fail"
	// Unknown: no answer (timeout, dropped connection): the operation
	// may or may not have happened.
	Unknown Outcome = "unknown"
)

// Op kinds.
const (
	OpSend    = "smtp.send"    // one message over MX or submission
	OpFetch   = "imap.fetch"   // a read of a mailbox: Seen lists what it saw
	OpStore   = "imap.store"   // a flag change
	OpExpunge = "imap.expunge" // STORE \Deleted + UID EXPUNGE of UIDs
	OpMove    = "imap.move"    // UID MOVE of UIDs to another mailbox
	// OpAppend is an IMAP APPEND of a message with a chaos ID to Mailbox
	// of Account (Rcpt is the account too): to the checker a delivery
	// like a send, its OK an acknowledgement like a 250.
	OpAppend = "imap.append"
)

// Op is one client operation with its start and end time, the node it went
// to, and its outcome.
type Op struct {
	ID      int64     `json:"id"`
	Kind    string    `json:"kind"`
	Node    string    `json:"node"`
	Client  int       `json:"client"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Outcome Outcome   `json:"outcome"`
	Code    int       `json:"code,omitempty"`   // SMTP reply code after DATA; 0 if none
	Detail  string    `json:"detail,omitempty"` // the reply or error text

	// Sends.
	ChaosID  string `json:"chaos_id,omitempty"`  // the X-Chaos-Id header
	BodyHash string `json:"body_hash,omitempty"` // SHA-256 hex of the body the client sent (after the headers)
	Rcpt     string `json:"rcpt,omitempty"`      // recipient account (after alias resolution)
	Remote   bool   `json:"remote,omitempty"`    // recipient outside the cluster: lands in the outbound queue
	Via      string `json:"via,omitempty"`       // "mx" or "submission"
	From     string `json:"from,omitempty"`      // MAIL FROM of a submission send: the account a bounce goes to
	Probe    bool   `json:"probe,omitempty"`     // a liveness probe (see TrafficConfig.Probe)
	// Blob is the hex SHA-256 of the whole message as the client sent it
	// (APPEND: the node stores exactly that); "" for SMTP, whose node
	// adds trace fields (see BlobCheck.Blob).
	Blob string `json:"blob,omitempty"`

	// IMAP operations.
	Account     string   `json:"account,omitempty"`
	Mailbox     string   `json:"mailbox,omitempty"`
	Target      string   `json:"target,omitempty"` // MOVE destination
	UIDValidity uint32   `json:"uidvalidity,omitempty"`
	UIDNext     uint32   `json:"uidnext,omitempty"`
	UIDs        []uint32 `json:"uids,omitempty"` // operated on
	Seen        []Msg    `json:"seen,omitempty"` // fetch: what the mailbox held
}

// Msg is a message as read back: its UID and what identifies its content.
type Msg struct {
	UID      uint32 `json:"uid"`
	ChaosID  string `json:"chaos_id"`
	BodyHash string `json:"body_hash"`
	// HeaderMismatch: the message's BODY[HEADER] (the header block the
	// node keeps for ENVELOPE and HEADER) is not the header of its
	// BODY[], byte for byte.
	HeaderMismatch bool `json:"header_mismatch,omitempty"`
	// DSNFor: the message is a delivery status notification (a bounce)
	// naming these chaos IDs as failed recipients; it has no chaos ID of
	// its own, and the outbound invariant judges it.
	DSNFor []string `json:"dsn_for,omitempty"`
}

// Fault is one injected fault: when it started and when it was healed.
type Fault struct {
	Name   string    `json:"name"`
	Target string    `json:"target,omitempty"` // node(s) it hit; "" = all of them
	Start  time.Time `json:"start"`
	// Effect is when the fault took effect (the partition was in place,
	// the process was dead); zero = Start. Liveness is measured from it.
	Effect time.Time `json:"effect,omitzero"`
	Heal   time.Time `json:"heal"`
	// Skew is how far ahead the fault set a node's wall clock (the
	// clock-skew scenario); what that node scheduled by its clock (an
	// outbound retry, a lease) may come that much later.
	Skew time.Duration `json:"skew,omitempty"`
}

// effect is when f took effect.
func (f Fault) effect() time.Time {
	if !f.Effect.IsZero() {
		return f.Effect
	}
	return f.Start
}

// Sample is one node's Raft view at a moment (polled during the run).
type Sample struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`
	Role   string    `json:"role"`
	Term   uint64    `json:"term"`
	Leader string    `json:"leader"`
}

// MailboxState is one mailbox as read from one node at the end.
type MailboxState struct {
	Account     string `json:"account"`
	Name        string `json:"name"`
	UIDValidity uint32 `json:"uidvalidity"`
	UIDNext     uint32 `json:"uidnext"`
	Messages    []Msg  `json:"messages"`
}

// NodeState is everything read back from one node after healing.
type NodeState struct {
	Node         string         `json:"node"`
	Reachable    bool           `json:"reachable"`
	Error        string         `json:"error,omitempty"`
	AppliedIndex uint64         `json:"applied_index"`
	StateHash    string         `json:"state_hash"`
	MissingBlobs int            `json:"missing_blobs"`
	Leader       string         `json:"leader"`
	Voter        bool           `json:"voter"`
	Gossip       string         `json:"gossip"` // as the node reading the status saw it
	Mailboxes    []MailboxState `json:"mailboxes"`
	Queue        []string       `json:"queue"` // X-Chaos-Id of each outbound queue entry
}

// History is the record of one scenario run: what the clients did and were
// told, the faults, Raft samples, what every node holds at the end, and
// how long the cluster took to accept a new message after healing.
type History struct {
	Scenario string      `json:"scenario"`
	Seed     int64       `json:"seed"`
	Start    time.Time   `json:"start"`
	End      time.Time   `json:"end"`
	Ops      []Op        `json:"ops"`
	Faults   []Fault     `json:"faults"`
	Samples  []Sample    `json:"samples"`
	Final    []NodeState `json:"final"`
	// Canary is the send made after healing to prove the cluster accepts
	// mail again (Convergence requires it within 30s).
	Canary *Op `json:"canary,omitempty"`
	// Liveness holds the bounds the liveness invariant checks; zero
	// fields are the defaults (DefaultLiveness).
	Liveness LivenessBounds `json:"liveness,omitzero"`
	// Outbound is what the sink took and the queue still held after the
	// traffic (outbound.go); nil when no sink ran (the Docker backend, or
	// a history from before the sink). It rides on the header line, so
	// readers that do not know it skip it.
	Outbound *OutboundRecord `json:"outbound,omitempty"`
	// Blobs: every node asked for the blob of each acknowledged message,
	// right after the acknowledgement and after the heal (durability.go).
	Blobs []BlobCheck `json:"blobs,omitempty"`
}

// Recorder collects operations from concurrent clients. Safe for
// concurrent use.
type Recorder struct {
	mu struct {
		sync.Mutex
		next int64
		ops  []Op
	}
}

// Begin returns an Op with an ID and start time; the caller fills in the
// rest and passes it to Finish.
func (r *Recorder) Begin(kind, node string, client int) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.next++
	return Op{ID: r.mu.next, Kind: kind, Node: node, Client: client, Start: time.Now()}
}

// Finish stamps the end time and records op.
func (r *Recorder) Finish(op Op) {
	op.End = time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.ops = append(r.mu.ops, op)
}

// Ops returns a copy of everything recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.mu.ops...)
}

// WriteJSONL writes a history as JSON lines: a header line with the
// scenario fields, then one line per op, fault, sample and node state, each
// tagged with its type, so a report can be checked again later with
// ReadJSONL.
func WriteJSONL(w io.Writer, h History) error {
	enc := json.NewEncoder(w)
	write := func(typ string, v any) error {
		return enc.Encode(struct {
			Type string `json:"type"`
			V    any    `json:"v"`
		}{typ, v})
	}
	head := h
	head.Ops, head.Faults, head.Samples, head.Final, head.Canary, head.Blobs = nil, nil, nil, nil, nil, nil
	if err := write("history", head); err != nil {
		return err
	}
	for _, op := range h.Ops {
		if err := write("op", op); err != nil {
			return err
		}
	}
	for _, f := range h.Faults {
		if err := write("fault", f); err != nil {
			return err
		}
	}
	for _, s := range h.Samples {
		if err := write("sample", s); err != nil {
			return err
		}
	}
	for _, n := range h.Final {
		if err := write("final", n); err != nil {
			return err
		}
	}
	if h.Canary != nil {
		if err := write("canary", h.Canary); err != nil {
			return err
		}
	}
	for _, b := range h.Blobs {
		if err := write("blob", b); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSONL reads what WriteJSONL wrote.
func ReadJSONL(r io.Reader) (History, error) {
	var h History
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		var rec struct {
			Type string          `json:"type"`
			V    json.RawMessage `json:"v"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return h, fmt.Errorf("chaos: history line %d: %w", line, err)
		}
		var err error
		switch rec.Type {
		case "history":
			err = json.Unmarshal(rec.V, &h)
		case "op":
			var op Op
			err = json.Unmarshal(rec.V, &op)
			h.Ops = append(h.Ops, op)
		case "fault":
			var f Fault
			err = json.Unmarshal(rec.V, &f)
			h.Faults = append(h.Faults, f)
		case "sample":
			var s Sample
			err = json.Unmarshal(rec.V, &s)
			h.Samples = append(h.Samples, s)
		case "final":
			var n NodeState
			err = json.Unmarshal(rec.V, &n)
			h.Final = append(h.Final, n)
		case "canary":
			var op Op
			err = json.Unmarshal(rec.V, &op)
			h.Canary = &op
		case "blob":
			var b BlobCheck
			err = json.Unmarshal(rec.V, &b)
			h.Blobs = append(h.Blobs, b)
		default:
			err = fmt.Errorf("unknown record type %q", rec.Type)
		}
		if err != nil {
			return h, fmt.Errorf("chaos: history line %d: %w", line, err)
		}
	}
	return h, sc.Err()
}

// WriteFile writes a history as JSON lines to path.
func WriteFile(path string, h History) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteJSONL(f, h); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
