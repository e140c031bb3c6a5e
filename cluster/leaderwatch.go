package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leaderWatch tells waiters that this node's view of the leader changed.
// A forwarded proposal waits on the leader it was sent to; when that node
// stops being the leader (it was cut off and the others elected another),
// its answer may never come: the connection to a partitioned peer neither
// answers nor fails until TCP gives up. The forward is abandoned as soon
// as the leader changes and retried with the same command ID at the new
// one, which the state machine de-duplicates.
type leaderWatch struct {
	mu struct {
		sync.Mutex
		ch       chan struct{} // closed at the next change
		noLeader time.Time     // since when no leader is known; zero if one is
	}
}

func newLeaderWatch() *leaderWatch {
	w := &leaderWatch{}
	w.mu.ch = make(chan struct{})
	w.mu.noLeader = time.Now() // none is known until raft reports one
	return w
}

// changed returns a channel that is closed at the next leader change.
// Take it before reading the leader, so a change in between is not lost.
func (w *leaderWatch) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.ch
}

// fire records a change: leader is the new leader's address, "" if none.
func (w *leaderWatch) fire(leader string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case leader != "":
		w.mu.noLeader = time.Time{}
	case w.mu.noLeader.IsZero():
		w.mu.noLeader = now
	}
	close(w.mu.ch)
	w.mu.ch = make(chan struct{})
}

// leaderless returns since when no leader has been known (zero if one
// is) and a channel closed at the next change.
func (w *leaderWatch) leaderless() (since time.Time, changed <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.noLeader, w.mu.ch
}

// watchLeader feeds raft's leader observations into n.leaders until the
// node stops. Raft drops an observation when the channel is full; the
// buffer is large and every observation fires, so a change is never
// missed by a waiter (a dropped one comes with others that fire).
func (n *Node) watchLeader() {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.raft.DeregisterObserver(obs)
		for {
			select {
			case o := <-ch:
				lo, _ := o.Data.(raft.LeaderObservation)
				n.leaders.fire(string(lo.LeaderAddr), time.Now())
			case <-n.stop:
				return
			}
		}
	}()
}
