package ops

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmail/raftmail/cluster"
)

// nodeCollector exposes the node's status as gauges, read at scrape time.
type nodeCollector struct {
	node    *cluster.Node
	applied *prometheus.Desc
	missing *prometheus.Desc
	leader  *prometheus.Desc
	term    *prometheus.Desc
	members *prometheus.Desc
}

func newNodeCollector(n *cluster.Node) *nodeCollector {
	l := prometheus.Labels{"node": n.Name()}
	return &nodeCollector{
		node:    n,
		applied: prometheus.NewDesc("raftmail_raft_applied_index", "Last Raft index applied to this node's store.", nil, l),
		missing: prometheus.NewDesc("raftmail_blobs_missing", "Blobs referenced by metadata but not stored on this node.", nil, l),
		leader:  prometheus.NewDesc("raftmail_raft_is_leader", "1 if this node is the Raft leader.", nil, l),
		term:    prometheus.NewDesc("raftmail_raft_term", "Current Raft term.", nil, l),
		members: prometheus.NewDesc("raftmail_gossip_members", "Gossip members this node sees.", nil, l),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.applied
	ch <- c.missing
	ch <- c.leader
	ch <- c.term
	ch <- c.members
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.node.QuickStatus()
	leader := 0.0
	if st.Role == "Leader" {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(st.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(c.missing, prometheus.GaugeValue, float64(st.MissingBlobs))
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(st.Members))
}
