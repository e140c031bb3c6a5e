package cluster

import (
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// GossipHandler is what a GossipChannel delivers to: small state that the
// nodes share eventually and outside the Raft log (protocol/auth's login
// throttling). Its methods are called from gossip's goroutines and must not
// block.
type GossipHandler interface {
	// Merge takes in what another member broadcast or sent as its state.
	// Merging must not depend on order or repetition: a message may arrive
	// twice, late, or not at all (the next push-pull heals that).
	Merge(msg []byte) error
	// State is this node's whole share, at most limit bytes, sent to a
	// member when one joins and at every push-pull (30 s on a LAN).
	State(limit int) []byte
}

const (
	// MaxGossipMessage bounds a message given to Broadcast: it travels
	// piggybacked on gossip's UDP packets (about 1400 bytes with
	// memberlist's own).
	MaxGossipMessage = 512
	// maxGossipQueued bounds the messages waiting to be sent; past it the
	// oldest are dropped (a flood costs freshness, not memory).
	maxGossipQueued = 4096
	// maxGossipState bounds what State may return for a push-pull.
	maxGossipState = 1 << 20
	// gossipRetransmitMult: each message is sent this many times × log10 of
	// the cluster size (once per member for a cluster of under ten).
	gossipRetransmitMult = 3
)

// GossipChannel carries a GossipHandler's messages between the members of
// the cluster on memberlist: broadcasts piggyback on gossip, and each
// push-pull exchanges the handler's whole state. memberlist encrypts and
// authenticates every packet and stream with the cluster's gossip key
// (AES-GCM, GossipVerifyIncoming), so only members send what arrives.
// Create it before the node (Config.Gossip); set the handler when it
// exists: what arrives before (the state a member sends when this node
// joins) is kept for it, up to maxGossipPending bytes.
type GossipChannel struct {
	queue   memberlist.TransmitLimitedQueue
	members atomic.Pointer[func() int]

	dropped, rejected, received atomic.Uint64

	mu struct {
		sync.Mutex
		handler      GossipHandler
		pending      [][]byte // arrived before the handler
		pendingBytes int
	}
}

// maxGossipPending bounds what is kept for a handler not set yet.
const maxGossipPending = 4 << 20

// NewGossipChannel returns a channel with no handler.
func NewGossipChannel() *GossipChannel {
	g := &GossipChannel{}
	g.queue.RetransmitMult = gossipRetransmitMult
	g.queue.NumNodes = func() int {
		if f := g.members.Load(); f != nil {
			return (*f)()
		}
		return 1
	}
	return g
}

// SetHandler sets where messages from the other members go, and hands it
// what arrived before.
func (g *GossipChannel) SetHandler(h GossipHandler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.handler = h
	for _, msg := range g.mu.pending {
		g.mergeLocked(msg)
	}
	g.mu.pending, g.mu.pendingBytes = nil, 0
}

// Broadcast queues msg for every other member. A message with the same key
// still queued is replaced. Messages over MaxGossipMessage are dropped.
func (g *GossipChannel) Broadcast(key string, msg []byte) {
	if len(msg) == 0 || len(msg) > MaxGossipMessage {
		g.dropped.Add(1)
		return
	}
	g.queue.QueueBroadcast(&namedBroadcast{name: key, msg: msg})
	if g.queue.NumQueued() > maxGossipQueued {
		g.queue.Prune(maxGossipQueued)
	}
}

// GossipChannelStats are a channel's counts since it was made.
type GossipChannelStats struct {
	Queued   int    // messages waiting to be sent
	Received uint64 // messages and states handed to the handler
	Rejected uint64 // messages the handler refused (malformed)
	Dropped  uint64 // broadcasts too large, arrivals past the pending bound
}

// Stats returns the channel's counts.
func (g *GossipChannel) Stats() GossipChannelStats {
	return GossipChannelStats{Queued: g.queue.NumQueued(), Received: g.received.Load(), Rejected: g.rejected.Load(), Dropped: g.dropped.Load()}
}

// deliver hands msg (a copy memberlist no longer uses) to the handler,
// or keeps it until there is one.
func (g *GossipChannel) deliver(msg []byte) {
	if len(msg) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.handler != nil {
		g.mergeLocked(msg)
		return
	}
	if g.mu.pendingBytes+len(msg) > maxGossipPending {
		g.dropped.Add(1)
		return
	}
	g.mu.pending = append(g.mu.pending, msg)
	g.mu.pendingBytes += len(msg)
}

func (g *GossipChannel) mergeLocked(msg []byte) {
	g.received.Add(1)
	if err := g.mu.handler.Merge(msg); err != nil {
		g.rejected.Add(1)
	}
}

func (g *GossipChannel) state() []byte {
	g.mu.Lock()
	h := g.mu.handler
	g.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.State(maxGossipState)
}

// delegate wraps inner (which answers NodeMeta) with the channel; without a
// channel it is inner itself. members counts the members alive.
func (g *GossipChannel) delegate(inner memberlist.Delegate, members func() int) memberlist.Delegate {
	if g == nil {
		return inner
	}
	g.members.Store(&members)
	return &channelDelegate{Delegate: inner, ch: g}
}

// channelDelegate is memberlist's delegate with the channel's methods.
type channelDelegate struct {
	memberlist.Delegate
	ch *GossipChannel
}

// NotifyMsg hands a broadcast to the handler; memberlist reuses buf, so
// the handler gets a copy.
func (d *channelDelegate) NotifyMsg(buf []byte) {
	d.ch.deliver(append([]byte(nil), buf...))
}

func (d *channelDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.ch.queue.GetBroadcasts(overhead, limit)
}

func (d *channelDelegate) LocalState(join bool) []byte { return d.ch.state() }

func (d *channelDelegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) > 0 {
		d.ch.deliver(append([]byte(nil), buf...))
	}
}

// namedBroadcast is a message that replaces a queued one of the same name.
type namedBroadcast struct {
	name string
	msg  []byte
}

func (b *namedBroadcast) Name() string    { return b.name }
func (b *namedBroadcast) Message() []byte { return b.msg }
func (b *namedBroadcast) Finished()       {}
func (b *namedBroadcast) Invalidates(other memberlist.Broadcast) bool {
	nb, ok := other.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}

// aliveMembers counts the members gossip sees alive (at least this node).
func (e *gossipEvents) aliveMembers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, m := range e.mu.members {
		if m.State == "alive" {
			n++
		}
	}
	return max(n, 1)
}
