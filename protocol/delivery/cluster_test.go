package delivery

import (
	"slices"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// The node holding the delivery lease is stopped in the middle of the
// transaction (the remote holds its DATA until then): once the lease
// expires, another node delivers the message.
func TestLeaseExpiresAfterNodeStops(t *testing.T) {
	c := clustertest.New(t, 3, nil)
	dns := remoteDNS(t)
	unblock := make(chan struct{})
	var once sync.Once
	reached := make(chan struct{}, 1)
	remote := startRemote(t, nil, func(tx int) error {
		if tx == 1 {
			reached <- struct{}{}
			<-unblock
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "aborted")
		}
		return nil
	})
	t.Cleanup(func() { once.Do(func() { close(unblock) }) })
	services := map[string]*Service{}
	for _, n := range c.Nodes {
		services[n.Name] = startService(t, n.Node, dns.Addr, remote.port, func(cfg *Config) {
			cfg.LeaseDuration = 2 * time.Second
		})
	}
	id := enqueue(t, c.Nodes[0].Node, "QL", "a@example.test", []string{"x@remote.test"}, testMessage)
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery attempt reached the remote's DATA")
	}
	q, err := c.Nodes[0].Store.QueueEntry(id)
	if err != nil {
		t.Fatal(err)
	}
	holder := q.LeaseNode
	var stopped *clustertest.Node
	for _, n := range c.Nodes {
		if n.Name == holder {
			stopped = n
		}
	}
	if stopped == nil {
		t.Fatalf("entry leased to %q, not a node", holder)
	}
	services[holder].Stop()
	c.Stop(stopped)
	once.Do(func() { close(unblock) })

	var live *clustertest.Node
	for _, n := range c.Nodes {
		if n != stopped {
			live = n
		}
	}
	clustertest.WaitFor(t, 60*time.Second, "another node delivers after the lease expires", queueGone(live.Store, id))
	_, msgs, _ := remote.snapshot()
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{"x@remote.test"}) {
		t.Fatalf("remote got %+v", msgs)
	}
	if msgs[0].helo == holder+".mail.test" {
		t.Fatalf("delivered by the stopped node %s", holder)
	}
}
