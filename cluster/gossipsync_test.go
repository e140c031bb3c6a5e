package cluster_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
)

// sharedSet is a GossipHandler whose state is a set of short strings: the
// union of what every node added.
type sharedSet struct {
	mu  sync.Mutex
	set map[string]bool
}

func (s *sharedSet) Merge(msg []byte) error {
	if bytes.HasPrefix(msg, []byte("bad")) {
		return errors.New("bad message")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range bytes.Fields(msg) {
		s.set[string(f)] = true
	}
	return nil
}

func (s *sharedSet) State(limit int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for k := range s.set {
		if len(b)+len(k)+1 > limit {
			break
		}
		b = append(append(b, k...), ' ')
	}
	return b
}

func (s *sharedSet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set[k]
}

// TestGossipChannel: a broadcast reaches every other member; a node that
// restarts gets the others' state when it joins, even before it has a
// handler; oversized messages are not sent. (A message may arrive more
// than once: gossip sends it to random members several times.)
func TestGossipChannel(t *testing.T) {
	chans := map[string]*cluster.GossipChannel{}
	sets := map[string]*sharedSet{}
	c := clustertest.New(t, 3, func(cfg *cluster.Config) {
		ch := cluster.NewGossipChannel()
		s := &sharedSet{set: map[string]bool{}}
		ch.SetHandler(s)
		chans[cfg.NodeName], sets[cfg.NodeName] = ch, s
		cfg.Gossip = ch
	})
	_ = sets["n1"].Merge([]byte("alpha"))
	chans["n1"].Broadcast("k", []byte("alpha"))
	chans["n1"].Broadcast("big", bytes.Repeat([]byte("x"), cluster.MaxGossipMessage+1))
	chans["n2"].Broadcast("k", []byte("bad"))
	for _, name := range []string{"n2", "n3"} {
		clustertest.WaitFor(t, 10*time.Second, name+" receives alpha", func() bool { return sets[name].has("alpha") })
	}
	if st := chans["n1"].Stats(); st.Dropped != 1 {
		t.Errorf("n1: %+v, want the oversized message dropped", st)
	}
	clustertest.WaitFor(t, 10*time.Second, "n1 rejects the bad message", func() bool { return chans["n1"].Stats().Rejected > 0 })

	// n3 restarts with a new channel and no handler yet: the state of the
	// member it joins through waits for the handler.
	n3 := c.Nodes[2]
	c.Stop(n3)
	ch := cluster.NewGossipChannel()
	n3.Cfg.Gossip = ch
	c.Start(n3)
	clustertest.WaitFor(t, 10*time.Second, "n3 joins gossip", func() bool {
		for _, m := range n3.Node.Members() {
			if m.Name == "n1" && m.State == "alive" {
				return true
			}
		}
		return false
	})
	s := &sharedSet{set: map[string]bool{}}
	ch.SetHandler(s)
	clustertest.WaitFor(t, 10*time.Second, "n3 has alpha", func() bool { return s.has("alpha") })
}
