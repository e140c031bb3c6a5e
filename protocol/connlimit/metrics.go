package connlimit

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes Limiters' figures to Prometheus, read at scrape time:
//
//	raftmail_connections_open{protocol}
//	raftmail_connections_refused_total{protocol,reason}
//
// with reason "per_ip" or "per_node".
type Collector struct {
	limiters []*Limiter
	open     *prometheus.Desc
	refused  *prometheus.Desc
}

// NewCollector returns a Collector of ls, whose metrics carry the label
// node="node" (as the node's other metrics do) unless node is "".
func NewCollector(node string, ls ...*Limiter) *Collector {
	var constLabels prometheus.Labels
	if node != "" {
		constLabels = prometheus.Labels{"node": node}
	}
	return &Collector{
		limiters: ls,
		open: prometheus.NewDesc("raftmail_connections_open",
			"Mail connections accepted and not yet closed, per protocol (submission counts 587 and 465, imap 143 and 993, pop3 110 and 995).",
			[]string{"protocol"}, constLabels),
		refused: prometheus.NewDesc("raftmail_connections_refused_total",
			"Mail connections refused at accept because the client address (per_ip) or the node (per_node) held its cap of the protocol.",
			[]string{"protocol", "reason"}, constLabels),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.refused
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.limiters {
		st := l.Stats()
		p := l.Protocol()
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Open), p)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.RefusedPerIP), p, string(PerIP))
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.RefusedPerNode), p, string(PerNode))
	}
}
