package accept

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes a Pipeline's Stats to Prometheus, read at scrape time.
type Collector struct {
	p                                    *Pipeline
	memory, inflight, spoolFiles, busies *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns the pipeline's metrics, labelled with the node name.
func NewCollector(node string, p *Pipeline) *Collector {
	var l prometheus.Labels
	if node != "" {
		l = prometheus.Labels{"node": node}
	}
	return &Collector{
		p: p,
		memory: prometheus.NewDesc("raftmail_accept_spool_memory_bytes",
			"Bytes of incoming messages held in memory now (bounded by --spool-memory; the rest are in spool files).", nil, l),
		inflight: prometheus.NewDesc("raftmail_accept_unauth_inflight_bytes",
			"Bytes of messages from unauthenticated senders being received or stored now (bounded by --mx-inflight).", nil, l),
		spoolFiles: prometheus.NewDesc("raftmail_accept_spool_files_total",
			"Incoming messages that were spooled to a file rather than held in memory.", nil, l),
		busies: prometheus.NewDesc("raftmail_accept_unauth_busy_refusals_total",
			"Messages from unauthenticated senders refused with 452 4.3.1 because --mx-inflight was spent.", nil, l),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.memory
	ch <- c.inflight
	ch <- c.spoolFiles
	ch <- c.busies
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(st.SpoolMemoryBytes))
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(st.UnauthInFlightBytes))
	ch <- prometheus.MustNewConstMetric(c.spoolFiles, prometheus.CounterValue, float64(st.SpoolFiles))
	ch <- prometheus.MustNewConstMetric(c.busies, prometheus.CounterValue, float64(st.BusyRefusals))
}
