package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// Propose commits cmd through Raft from any node and returns its log index
// and the state machine's result. On a follower the command is forwarded to
// the leader; across leader changes it is retried with the same command ID,
// which the state machine de-duplicates, so a retry never applies twice.
// Propose returns only once this node's own store has applied the index, so
// the caller's next local read sees the write.
//
// Errors: ErrNoQuorum when the command was certainly not committed,
// ErrUnknownOutcome when it may have been and retries could not tell,
// ErrShutdown when the node stops. A command the state machine refused
// (not found, exists, over quota...) is a nil error with res.Err() set.
func (n *Node) Propose(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	return n.propose(ctx, cmd, true)
}

// ProposeNoWait is Propose without the wait for this node's own store: it
// returns once the command is committed and the leader applied it (res is
// the leader's result). For writers that read nothing back through this
// node (an SMTP delivery): on a follower, that saves the wait until it
// learns of the commit, up to the leader's commit timeout.
func (n *Node) ProposeNoWait(ctx context.Context, cmd storage.Command) (uint64, storage.Result, error) {
	return n.propose(ctx, cmd, false)
}

func (n *Node) propose(ctx context.Context, cmd storage.Command, waitLocal bool) (uint64, storage.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ProposeTimeout)
		defer cancel()
	}
	data := cmd.Encode()
	maybe := false // true once an attempt may have reached a leader's log
	var lastErr error
	var noLeaderSince time.Time // when attempts started finding no leader
	backoff := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, storage.Result{}, n.proposeFailure(maybe, lastErr)
			case <-n.stop:
				if maybe {
					return 0, storage.Result{}, fmt.Errorf("%w (node shutting down)", ErrUnknownOutcome)
				}
				return 0, storage.Result{}, ErrShutdown
			case <-time.After(backoff):
			}
			if backoff < 200*time.Millisecond {
				backoff *= 2
			}
		}
		if ctx.Err() != nil {
			return 0, storage.Result{}, n.proposeFailure(maybe, lastErr)
		}
		idx, res, sent, err := n.proposeOnce(ctx, data)
		if err == nil {
			if !waitLocal {
				return idx, res, nil
			}
			if lerr := n.RaftLogError(); lerr != nil {
				// This node cannot append entries, so it will not apply
				// this one soon: do not hold the client until its
				// deadline for a write that is durable on a majority.
				n.log.Warn("committed write not applied locally: the raft log cannot be written", "index", idx, "err", lerr)
				return idx, res, nil
			}
			if werr := n.store.WaitApplied(ctx, idx); werr != nil {
				// Committed on a majority, but this node lags (it may have
				// just been cut off). The write is durable: report success.
				n.log.Warn("committed write not yet applied locally", "index", idx, "err", werr)
			}
			return idx, res, nil
		}
		maybe = maybe || sent
		if errors.Is(err, errNoLeader) {
			if noLeaderSince.IsZero() {
				noLeaderSince = time.Now()
			} else if !maybe && time.Since(noLeaderSince) > n.cfg.NoLeaderTimeout {
				// Nothing was sent anywhere and no election has succeeded
				// for several election timeouts: say so now rather than
				// at the caller's deadline.
				return 0, storage.Result{}, fmt.Errorf("%w: no leader for %s", ErrNoQuorum, n.cfg.NoLeaderTimeout)
			}
		} else {
			noLeaderSince = time.Time{}
		}
		if errors.Is(err, ErrShutdown) {
			if maybe {
				return 0, storage.Result{}, fmt.Errorf("%w (node shutting down)", ErrUnknownOutcome)
			}
			return 0, storage.Result{}, err
		}
		lastErr = err
	}
}

func (n *Node) proposeFailure(maybe bool, last error) error {
	if maybe {
		return fmt.Errorf("%w (last error: %v)", ErrUnknownOutcome, last)
	}
	if last == nil {
		return ErrNoQuorum
	}
	return fmt.Errorf("%w (last error: %v)", ErrNoQuorum, last)
}

var errNoLeader = errors.New("no leader known")

// proposeOnce makes one attempt. sent reports whether the command may have
// reached a leader's log despite the error.
func (n *Node) proposeOnce(ctx context.Context, data []byte) (idx uint64, res storage.Result, sent bool, err error) {
	if n.raft.State() == raft.Leader {
		return n.applyLocal(ctx, data)
	}
	changed := n.leaders.changed()
	leaderAddr, _ := n.raft.LeaderWithID()
	if leaderAddr == "" {
		return 0, res, false, errNoLeader
	}
	timeout := time.Until(deadlineOf(ctx))
	// The forward is abandoned when the leader changes: the old one may be
	// cut off and never answer (see leaderWatch); the retry goes to the
	// new leader with the same command ID.
	out, err := n.rpc.callAbort(string(leaderAddr), methodApply, data, timeout, changed)
	if err != nil {
		var re *rpcError
		switch {
		case errors.As(err, &re) && re.Code == codeNotLeader:
			return 0, res, false, err
		case errors.As(err, &re):
			return 0, res, true, err
		case errors.Is(err, errSent):
			return 0, res, true, err
		default:
			return 0, res, false, err
		}
	}
	idx, res, err = decodeApplyResult(out)
	if err != nil {
		return 0, res, true, fmt.Errorf("decode forwarded result: %w", err)
	}
	return idx, res, false, nil
}

// applyLocal applies on this node, which believes it leads.
func (n *Node) applyLocal(ctx context.Context, data []byte) (uint64, storage.Result, bool, error) {
	timeout := time.Until(deadlineOf(ctx))
	if timeout <= 0 {
		return 0, storage.Result{}, false, context.DeadlineExceeded
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
			return 0, storage.Result{}, false, err
		case errors.Is(err, raft.ErrRaftShutdown):
			return 0, storage.Result{}, true, ErrShutdown
		default: // ErrLeadershipLost and anything else after enqueueing
			return 0, storage.Result{}, true, err
		}
	}
	res, ok := f.Response().(storage.Result)
	if !ok {
		return 0, storage.Result{}, true, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	return f.Index(), res, false, nil
}

// handleApply serves a forwarded proposal on the leader, within the
// caller's deadline (ctx).
func (n *Node) handleApply(ctx context.Context, cmd []byte) ([]byte, error) {
	if n.raft.State() != raft.Leader {
		return nil, &rpcError{Code: codeNotLeader, Msg: "not the leader"}
	}
	idx, res, sent, err := n.applyLocal(ctx, cmd)
	if err != nil {
		if sent {
			return nil, &rpcError{Code: codeUnknown, Msg: err.Error()}
		}
		return nil, &rpcError{Code: codeNotLeader, Msg: err.Error()}
	}
	return encodeApplyResult(idx, res), nil
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(10 * time.Second)
}

// Barrier waits until this node, as leader, has applied everything
// committed before it. Used by readers that need linearizable state.
func (n *Node) Barrier(timeout time.Duration) error {
	return n.raft.Barrier(timeout).Error()
}
