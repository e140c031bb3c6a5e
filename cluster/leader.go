package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The leader loop: one goroutine reads raft's leadership notifications
// (LeaderCh). On gaining leadership it waits for a Barrier, so the local
// store holds everything earlier leaders committed, then starts every
// registered leader task under a context that is cancelled when
// leadership is lost or the node stops, and waits for the tasks to return
// before it acts on the next notification. Nothing else in Raftmail polls
// "am I the leader" to decide whether to act.

// leaderBarrierTimeout bounds one Barrier attempt after gaining leadership.
const leaderBarrierTimeout = 10 * time.Second

type leaderTask struct {
	name string
	run  func(ctx context.Context)
}

// leadership is the state of the leader loop.
type leadership struct {
	mu struct {
		sync.Mutex
		tasks []leaderTask
		// ctx is the context of the current term's tasks; nil while
		// this node has not established leadership.
		ctx    context.Context
		cancel context.CancelFunc
		wg     *sync.WaitGroup
		// established is closed once leadership is established (after
		// the Barrier); a new open channel replaces it when leadership
		// is lost.
		established chan struct{}
	}
}

func (l *leadership) init() {
	l.mu.established = make(chan struct{})
}

// RunAsLeader registers a leader task: run is called in a goroutine of its
// own each time this node establishes leadership (after a Barrier), and
// its context is cancelled when leadership is lost or the node stops; run
// must return soon after. Registered while this node leads, it starts at
// once. Tasks cannot be unregistered: a task whose owner has stopped
// returns at once.
func (n *Node) RunAsLeader(name string, run func(ctx context.Context)) {
	l := &n.leader
	l.mu.Lock()
	defer l.mu.Unlock()
	t := leaderTask{name: name, run: run}
	l.mu.tasks = append(l.mu.tasks, t)
	if l.mu.ctx != nil {
		n.startTaskLocked(t)
	}
}

// IsLeaderEstablished reports whether this node leads and has applied
// everything earlier leaders committed (its leader tasks are running).
func (n *Node) IsLeaderEstablished() bool {
	n.leader.mu.Lock()
	defer n.leader.mu.Unlock()
	return n.leader.mu.ctx != nil
}

// WaitLeading blocks until this node has established leadership, or ctx
// ends.
func (n *Node) WaitLeading(ctx context.Context) error {
	n.leader.mu.Lock()
	ch := n.leader.mu.established
	n.leader.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stop:
		return ErrShutdown
	}
}

func (n *Node) startTaskLocked(t leaderTask) {
	l := &n.leader
	wg, ctx := l.mu.wg, l.mu.ctx
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.log.Debug("leader task started", "task", t.name)
		t.run(ctx)
		n.log.Debug("leader task stopped", "task", t.name)
	}()
}

// leaderLoop follows raft's leadership notifications until the node
// stops. raft keeps only the latest notification when we are slow, so two
// "true" in a row mean leadership was lost and regained in between: the
// tasks of the old term are stopped and started again.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-n.stop:
			n.revokeLeadership()
			return
		case isLeader := <-ch:
			n.revokeLeadership()
			if isLeader {
				n.establishLeadership()
			}
		}
	}
}

// establishLeadership waits for a Barrier (retrying while this node still
// leads), then starts the leader tasks.
func (n *Node) establishLeadership() {
	for {
		err := n.raft.Barrier(leaderBarrierTimeout).Error()
		if err == nil {
			break
		}
		if n.raft.State() != raft.Leader {
			return // a "false" is on its way
		}
		n.log.Warn("leader: barrier after gaining leadership failed; retrying", "err", err)
		select {
		case <-n.stop:
			return
		case <-time.After(time.Second):
		}
	}
	l := &n.leader
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.ctx, l.mu.cancel = context.WithCancel(context.Background())
	l.mu.wg = &sync.WaitGroup{}
	for _, t := range l.mu.tasks {
		n.startTaskLocked(t)
	}
	close(l.mu.established)
	n.log.Info("leader: leadership established", "tasks", len(l.mu.tasks))
}

// revokeLeadership cancels the leader tasks and waits for them; a no-op
// when leadership is not established.
func (n *Node) revokeLeadership() {
	l := &n.leader
	l.mu.Lock()
	if l.mu.ctx == nil {
		l.mu.Unlock()
		return
	}
	cancel, wg := l.mu.cancel, l.mu.wg
	l.mu.ctx, l.mu.cancel, l.mu.wg = nil, nil, nil
	l.mu.established = make(chan struct{})
	l.mu.Unlock()
	cancel()
	wg.Wait()
	n.log.Info("leader: leadership lost; leader tasks stopped")
}
