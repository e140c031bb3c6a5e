package cluster_test

import (
	"slices"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

func TestLiveNodes(t *testing.T) {
	c := clustertest.New(t, 3, nil)
	n1 := c.Nodes[0].Node
	clustertest.WaitFor(t, 10*time.Second, "all three live", func() bool {
		return slices.Equal(n1.LiveNodes(), []string{"n1", "n2", "n3"})
	})
	c.Stop(c.Nodes[2])
	clustertest.WaitFor(t, 20*time.Second, "n3 no longer live", func() bool {
		return slices.Equal(n1.LiveNodes(), []string{"n1", "n2"})
	})
}
