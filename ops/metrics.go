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

	diskFree     *prometheus.Desc
	diskFloor    *prometheus.Desc
	diskRefusals *prometheus.Desc
	storeFailed  *prometheus.Desc
	logFailures  *prometheus.Desc
	logStalls    *prometheus.Desc
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

		diskFree:     prometheus.NewDesc("raftmail_disk_free_bytes", "Free space of the store's file system available to the node (measured at most a second ago).", nil, l),
		diskFloor:    prometheus.NewDesc("raftmail_disk_floor_bytes", "Free space below which the node refuses new mail (--min-free-space); 0 = none.", nil, l),
		diskRefusals: prometheus.NewDesc("raftmail_disk_floor_refusals_total", "Messages and blob copies refused because free space was below the floor.", nil, l),
		storeFailed:  prometheus.NewDesc("raftmail_storage_failed", "1 once the store met a write error it cannot go on from (the node is stopping).", nil, l),
		logFailures:  prometheus.NewDesc("raftmail_raft_log_write_failures_total", "Raft log appends that failed (a full or failing disk).", nil, l),
		logStalls:    prometheus.NewDesc("raftmail_raft_log_write_stalls_total", "Raft log appends that hung longer than the stall timeout (1s): meanwhile the node sent no heartbeats, so a leader lost its leadership.", nil, l),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.applied
	ch <- c.missing
	ch <- c.leader
	ch <- c.term
	ch <- c.members
	ch <- c.diskFree
	ch <- c.diskFloor
	ch <- c.diskRefusals
	ch <- c.storeFailed
	ch <- c.logFailures
	ch <- c.logStalls
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

	store := c.node.Store()
	sp := store.Space()
	if sp.Known {
		ch <- prometheus.MustNewConstMetric(c.diskFree, prometheus.GaugeValue, float64(sp.Free))
	}
	ch <- prometheus.MustNewConstMetric(c.diskFloor, prometheus.GaugeValue, float64(sp.Floor))
	ch <- prometheus.MustNewConstMetric(c.diskRefusals, prometheus.CounterValue, float64(sp.Refusals))
	failed := 0.0
	if store.Failed() != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.storeFailed, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(c.logFailures, prometheus.CounterValue, float64(c.node.RaftLogFailures()))
	ch <- prometheus.MustNewConstMetric(c.logStalls, prometheus.CounterValue, float64(c.node.RaftLogStalls()))
}
