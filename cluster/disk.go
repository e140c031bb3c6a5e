package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// When the disk under the Raft log fails (ENOSPC, EIO), hashicorp/raft
// v1.8 does this (see DESIGN.md, "A full disk"):
//
//   - a leader that cannot append its own entries fails them (Propose
//     retries them with the same command ID elsewhere) and steps down;
//   - a follower that cannot append answers the leader with a failure and
//     is sent the entries again later: it falls behind but stays a member;
//   - a failed write of the current term (starting an election, or seeing
//     a higher term) makes raft panic.
//
// raftLog and raftStable make that loud and keep it from wedging: a failed
// append is logged once when it starts and once when appends work again,
// counted, and reported by Problems (so /healthz goes red), and a failed
// term write stops the node through Config.OnFatal instead of a panic in
// raft's goroutine.

// keyCurrentTerm is the stable-store key under which raft keeps its
// current term (raft.go); raft panics when it cannot be written.
var keyCurrentTerm = []byte("CurrentTerm")

// A hung disk. A write that neither returns nor fails is worse than one
// that fails: raft's leader appends its own entries in its main loop, so a
// leader whose disk hangs commits nothing, yet its replication goroutines
// go on sending heartbeats, and no follower ever starts an election: the
// whole cluster waits for one disk (the chaos scenario disk-stall-leader
// measured 5 s of no 250 anywhere for a 5 s hang). So a log write that
// has not returned after Config.LogStallTimeout closes a gate on the
// transport (stallGate): the node sends no appends and no heartbeats until
// the write returns. Its followers time out and elect a leader among
// themselves; when the disk comes back, the old leader's first append
// meets the new term and it steps down, its pending entries failing with
// "leadership lost" (Propose retries them, same command IDs, on the new
// leader). A follower's hung disk needs nothing: the others are a
// majority.

// logHealth tracks whether the Raft log can be written.
type logHealth struct {
	failures atomic.Uint64
	// writingSince is when the log write in progress started (unix
	// nanoseconds, monotonic enough for the purpose), 0 when none is.
	writingSince atomic.Int64
	stalls       atomic.Uint64 // writes that outlasted LogStallTimeout
	mu           struct {
		sync.Mutex
		err error // the last append failed with err, and none has worked since
	}
}

// raftLog is the Raft log store with failed appends made loud.
type raftLog struct {
	raft.LogStore
	n *Node
}

func (l *raftLog) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

func (l *raftLog) StoreLogs(logs []*raft.Log) error {
	h := &l.n.logHealth
	start := time.Now()
	h.writingSince.Store(start.UnixNano())
	err := l.LogStore.StoreLogs(logs)
	h.writingSince.Store(0)
	if took := time.Since(start); took > l.n.cfg.LogStallTimeout {
		h.stalls.Add(1)
		l.n.log.Warn("raft log: a write hung; this node sent no appends or heartbeats meanwhile", "took", took.Round(time.Millisecond))
	}
	l.n.noteLogWrite(err, logs)
	return err
}

// logStalled reports how long the Raft log write in progress has taken,
// if longer than LogStallTimeout.
func (n *Node) logStalled() (time.Duration, bool) {
	since := n.logHealth.writingSince.Load()
	if since == 0 {
		return 0, false
	}
	took := time.Since(time.Unix(0, since))
	return took, took > n.cfg.LogStallTimeout
}

// RaftLogStalls counts Raft log writes that outlasted LogStallTimeout.
func (n *Node) RaftLogStalls() uint64 { return n.logHealth.stalls.Load() }

// stallGate is the Raft transport with appends and heartbeats refused
// while this node's Raft log write hangs (see "A hung disk" above). The
// rest of the transport (votes, snapshots, the optional interfaces raft
// looks for) is the NetworkTransport's.
type stallGate struct {
	*raft.NetworkTransport
	n *Node
}

func (g *stallGate) stalled() error {
	if took, ok := g.n.logStalled(); ok {
		return fmt.Errorf("cluster: this node's raft log write has hung for %s: no appends or heartbeats until it returns", took.Round(time.Millisecond))
	}
	return nil
}

func (g *stallGate) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if err := g.stalled(); err != nil {
		return err
	}
	return g.NetworkTransport.AppendEntries(id, target, args, resp)
}

func (g *stallGate) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	// MaxRPCsInFlight 1 (node.go) means no pipeline; keep it so.
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (n *Node) noteLogWrite(err error, logs []*raft.Log) {
	h := &n.logHealth
	if err != nil {
		h.failures.Add(1)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && h.mu.err == nil:
		var first uint64
		if len(logs) > 0 {
			first = logs[0].Index
		}
		n.log.Error("RAFT LOG CANNOT BE WRITTEN: this node takes no new entries until it can (as leader it steps down; as follower it falls behind)",
			"index", first, "err", err)
	case err == nil && h.mu.err != nil:
		n.log.Info("raft log: writes work again", "failures", h.failures.Load())
	}
	h.mu.err = err
}

// RaftLogError is the error of the last Raft log append if it failed and
// none has worked since, else nil.
func (n *Node) RaftLogError() error {
	n.logHealth.mu.Lock()
	defer n.logHealth.mu.Unlock()
	return n.logHealth.mu.err
}

// RaftLogFailures counts failed Raft log appends since the node started.
func (n *Node) RaftLogFailures() uint64 { return n.logHealth.failures.Load() }

// raftStable is the Raft stable store (current term, last vote) with a
// failed term write turned into an orderly stop.
type raftStable struct {
	raft.StableStore
	n *Node
}

func (s *raftStable) SetUint64(key []byte, val uint64) error {
	err := s.StableStore.SetUint64(key, val)
	if err != nil && bytes.Equal(key, keyCurrentTerm) && s.n.cfg.OnFatal != nil {
		// raft would panic on this error in its own goroutine: stop the
		// node the orderly way and keep raft from going on meanwhile.
		err = fmt.Errorf("cluster: raft cannot record term %d: %w", val, err)
		s.n.log.Error("RAFT STATE CANNOT BE WRITTEN: the node stops", "term", val, "err", err)
		go s.n.cfg.OnFatal(err)
		select {}
	}
	return err
}

// Problems lists what keeps this node from doing its whole job, for health
// checks and `raftmail status`: a failed store, free space below the
// floor, a Raft log that cannot be written. nil when there is nothing.
func (n *Node) Problems() []string {
	var out []string
	if err := n.store.Failed(); err != nil {
		out = append(out, err.Error())
	}
	if sp := n.store.Space(); sp.Below {
		out = append(out, sp.String())
	}
	if err := n.RaftLogError(); err != nil {
		out = append(out, "raft log: cannot be written: "+err.Error())
	}
	return append(out, n.departedProblem()...)
}

// peerOutOfSpace reports whether err is a refusal for lack of disk space
// (a peer's codeNoSpace, or the local store's).
func peerOutOfSpace(err error) bool {
	return errors.Is(err, storage.ErrInsufficientStorage)
}
