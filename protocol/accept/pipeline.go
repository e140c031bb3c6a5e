package accept

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// Cluster is what accepting a message needs from the cluster (satisfied by
// *cluster.Node).
type Cluster interface {
	// StoreBlobFrom makes the blob durable on a majority of voters.
	StoreBlobFrom(ctx context.Context, src storage.BlobSource) error
	// Propose commits cmd through Raft and returns once the local store
	// applied it.
	Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error)
	// ProposeNoWait commits cmd and returns the leader's result without
	// waiting for the local store.
	ProposeNoWait(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error)
}

// Defaults for zero Config fields.
const (
	DefaultMaxMessageBytes    = 50 << 20
	DefaultMaxHeaderBytes     = 1 << 20
	DefaultSpoolMemoryMessage = 4 << 20
	DefaultSpoolMemory        = 64 << 20
	DefaultUnauthInFlight     = 512 << 20
)

// Config configures a Pipeline.
type Config struct {
	// Cluster stores blobs and commits deliveries. Required.
	Cluster Cluster
	// SpoolDir holds the spool files of messages too big to keep in
	// memory (unlinked as soon as they are created). It should be on the
	// data directory's filesystem, so the free-space floor covers it.
	// "" = os.TempDir().
	SpoolDir string
	// MaxMessageBytes is the default size limit of a spool; 0 =
	// DefaultMaxMessageBytes (50 MiB).
	MaxMessageBytes int64
	// MaxHeaderBytes bounds a message's header block, which is held in
	// memory; 0 = DefaultMaxHeaderBytes (1 MiB).
	MaxHeaderBytes int
	// SpoolMemoryMessage: a message up to this size stays in memory
	// while the node-wide budget allows; 0 = DefaultSpoolMemoryMessage
	// (4 MiB).
	SpoolMemoryMessage int
	// SpoolMemory is the node-wide budget of message bytes held in
	// memory by spools; past it, messages go to spool files. 0 =
	// DefaultSpoolMemory (64 MiB).
	SpoolMemory int64
	// UnauthInFlight is the node-wide budget of bytes of messages from
	// unauthenticated senders (MX) being received or stored at once;
	// past it a sender is told to try later (ErrBusy). 0 =
	// DefaultUnauthInFlight (512 MiB); negative = no budget.
	UnauthInFlight int64
	// Logger; nil discards.
	Logger *slog.Logger
}

// Pipeline accepts messages: spools them (Spool), stores their body on a
// majority and commits their delivery (Store, Deliver, Commit). It is the
// one accept path of SMTP DATA/BDAT, IMAP APPEND and bounces. Safe for
// concurrent use.
type Pipeline struct {
	cfg Config
	log *slog.Logger

	memUsed    atomic.Int64
	flightUsed atomic.Int64

	spilled atomic.Uint64 // spools that went to a file
	busy    atomic.Uint64 // ErrBusy answers

	accepted accepted // the last messages accepted with a queue ID
}

// New checks cfg and returns a Pipeline.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Cluster == nil {
		return nil, errors.New("accept: config: Cluster is required")
	}
	if cfg.MaxMessageBytes < 0 || cfg.MaxHeaderBytes < 0 || cfg.SpoolMemoryMessage < 0 || cfg.SpoolMemory < 0 {
		return nil, errors.New("accept: config: negative limit")
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.SpoolMemoryMessage == 0 {
		cfg.SpoolMemoryMessage = DefaultSpoolMemoryMessage
	}
	if cfg.SpoolMemory == 0 {
		cfg.SpoolMemory = DefaultSpoolMemory
	}
	if cfg.UnauthInFlight == 0 {
		cfg.UnauthInFlight = DefaultUnauthInFlight
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("accept: spool directory: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{cfg: cfg, log: cfg.Logger}, nil
}

func (p *Pipeline) reserveMem(n int64) bool {
	if p.memUsed.Add(n) > p.cfg.SpoolMemory {
		p.memUsed.Add(-n)
		return false
	}
	return true
}

func (p *Pipeline) releaseMem(n int64) { p.memUsed.Add(-n) }

func (p *Pipeline) reserveFlight(n int64) bool {
	if p.cfg.UnauthInFlight < 0 {
		return true
	}
	if p.flightUsed.Add(n) > p.cfg.UnauthInFlight {
		p.flightUsed.Add(-n)
		p.busy.Add(1)
		return false
	}
	return true
}

func (p *Pipeline) releaseFlight(n int64) { p.flightUsed.Add(-n) }

// Stats are the pipeline's gauges and counters, for metrics.
type Stats struct {
	SpoolMemoryBytes    int64  // message bytes held in memory now
	UnauthInFlightBytes int64  // reserved by unauthenticated messages now
	SpoolFiles          uint64 // spools that went to a file, ever
	BusyRefusals        uint64 // ErrBusy answers, ever
}

// Stats returns the current figures.
func (p *Pipeline) Stats() Stats {
	return Stats{
		SpoolMemoryBytes:    p.memUsed.Load(),
		UnauthInFlightBytes: p.flightUsed.Load(),
		SpoolFiles:          p.spilled.Load(),
		BusyRefusals:        p.busy.Load(),
	}
}

// Message is a message as it will be stored: new header fields to put
// first (trace fields: Received, Authentication-Results, DKIM-Signature),
// the message's header block (possibly changed), then its body, read from
// the spool from BodyOffset.
type Message struct {
	Prefix     []byte
	Header     []byte
	Spool      *Spool
	BodyOffset int64
	// Time stamps the Deliver command; zero = now.
	Time time.Time
	// ReadBack: the caller reads the delivery back through this node
	// (IMAP APPEND), so Commit returns only once this node's store has
	// applied it. Otherwise (SMTP, bounces) it returns as soon as the
	// delivery is committed.
	ReadBack bool
}

// Size is the stored size.
func (m Message) Size() int64 {
	return int64(len(m.Prefix)+len(m.Header)) + m.Spool.stored - m.BodyOffset
}

// open returns a reader of the whole stored message.
func (m Message) open() (io.ReadCloser, error) {
	body, err := m.Spool.Open(m.BodyOffset)
	if err != nil {
		return nil, err
	}
	return readCloser{io.MultiReader(bytes.NewReader(m.Prefix), bytes.NewReader(m.Header), body), body}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Outcome classifies the end of an attempt to accept a message, for the
// protocol to answer.
type Outcome int

const (
	// Accepted: committed; answer success.
	Accepted Outcome = iota + 1
	// TempFail: certainly not committed (no quorum, a timeout, a local
	// error); answer a temporary failure.
	TempFail
	// Unknown: may have been committed; neither success nor failure is
	// true (close without an answer: RFC 5321 §4.2.5).
	Unknown
	// OverQuota: a target account is over its quota; nothing committed.
	OverQuota
	// NoSpace: the node (or too many of its peers) is out of disk space;
	// nothing committed; temporary.
	NoSpace
	// Refused: the state machine refused the delivery for another
	// reason (Result.Err, e.g. a mailbox that does not exist).
	Refused
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case TempFail:
		return "tempfail"
	case Unknown:
		return "unknown"
	case OverQuota:
		return "over_quota"
	case NoSpace:
		return "no_space"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Stored is a message body stored on a majority.
type Stored struct {
	Hash storage.Hash
	Size int64
}

// Store hashes the message (once, on this node) and stores it on a
// majority of voters. Outcome is Accepted, TempFail or NoSpace.
func (p *Pipeline) Store(ctx context.Context, m Message) (Stored, Outcome, error) {
	r, err := m.open()
	if err != nil {
		return Stored{}, TempFail, err
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	r.Close()
	if err != nil {
		return Stored{}, TempFail, fmt.Errorf("accept: hash: %w", err)
	}
	st := Stored{Hash: storage.Hash(h.Sum(nil)), Size: n}
	err = p.cfg.Cluster.StoreBlobFrom(ctx, storage.BlobSource{Hash: st.Hash, Size: st.Size, Open: m.open})
	if err != nil {
		if isNoSpace(err) {
			return st, NoSpace, err
		}
		return st, TempFail, err
	}
	return st, Accepted, nil
}

// Deliver proposes cmd (a Deliver referencing a stored body) and
// classifies the outcome. res is the state machine's result when
// Accepted or Refused. With readBack it returns only once this node's
// store applied it.
func (p *Pipeline) Deliver(ctx context.Context, cmd storage.Command, readBack bool) (storage.Result, Outcome, error) {
	propose := p.cfg.Cluster.ProposeNoWait
	if readBack {
		propose = p.cfg.Cluster.Propose
	}
	_, res, err := propose(ctx, cmd)
	if err != nil {
		if outcomeUnknown(err) {
			return res, Unknown, err
		}
		return res, TempFail, err
	}
	if err := res.Err(); err != nil {
		if errors.Is(err, storage.ErrOverQuota) {
			return res, OverQuota, err
		}
		return res, Refused, err
	}
	return res, Accepted, nil
}

// Commit stores the message, builds the delivery for the stored body
// with build, and proposes it: the whole accept path after the message
// was received and checked.
func (p *Pipeline) Commit(ctx context.Context, m Message, build func(Stored) (storage.Deliver, error)) (storage.Result, Outcome, error) {
	st, out, err := p.Store(ctx, m)
	if out != Accepted {
		return storage.Result{}, out, err
	}
	d, err := build(st)
	if err != nil {
		return storage.Result{}, TempFail, err
	}
	cmd, err := storage.NewCommand(storage.CmdDeliver, d)
	if err != nil {
		return storage.Result{}, TempFail, err
	}
	if !m.Time.IsZero() {
		cmd.Time = m.Time.UTC()
	}
	res, out, err := p.Deliver(ctx, cmd, m.ReadBack)
	if out == Accepted && d.QueueID != "" {
		p.accepted.add(AcceptedBlob{QueueID: d.QueueID, Blob: d.Blob, Size: d.Size, Time: time.Now()})
	}
	return res, out, err
}

// CommitBytes is Commit for a message held whole in memory (a bounce),
// stamped with now (zero: the current time).
func (p *Pipeline) CommitBytes(ctx context.Context, msg []byte, now time.Time, build func(Stored) (storage.Deliver, error)) (storage.Result, Outcome, error) {
	sp := p.NewSpool(int64(len(msg))+1, int64(len(msg)), false)
	defer sp.Close()
	if _, err := sp.Write(msg); err != nil {
		return storage.Result{}, TempFail, err
	}
	return p.Commit(ctx, Message{Spool: sp, Time: now}, build)
}

func outcomeUnknown(err error) bool {
	var u interface{ OutcomeUnknown() bool }
	return errors.As(err, &u) && u.OutcomeUnknown()
}

// isNoSpace reports whether err says a disk is below its free-space floor
// (this node's, or too many peers').
func isNoSpace(err error) bool { return errors.Is(err, storage.ErrInsufficientStorage) }
