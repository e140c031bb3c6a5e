package auth

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a Checker's login and throttling figures to
// Prometheus.
type Collector struct {
	c                                          *Checker
	logins, lockouts, delayed, skipped, merged *prometheus.Desc
	keys, locked                               *prometheus.Desc
}

// NewCollector returns a Collector of c, whose metrics carry the label
// node="node" (as the node's other metrics do) unless node is "".
func NewCollector(node string, c *Checker) *Collector {
	var l prometheus.Labels
	if node != "" {
		l = prometheus.Labels{"node": node}
	}
	return &Collector{
		c: c,
		logins: prometheus.NewDesc("raftmail_auth_logins_total",
			"Logins by result: success, failure (wrong credentials), locked (refused without a check: too many recent failures).",
			[]string{"result"}, l),
		lockouts: prometheus.NewDesc("raftmail_auth_lockouts_total",
			"Logins refused because the pair (client network, account) or the client network had too many recent failures, by key.",
			[]string{"key"}, l),
		delayed: prometheus.NewDesc("raftmail_auth_delayed_failures_total",
			"Failed logins whose answer was delayed.", nil, l),
		skipped: prometheus.NewDesc("raftmail_auth_delay_skipped_total",
			"Failed logins answered at once because too many answers were being delayed already.", nil, l),
		merged: prometheus.NewDesc("raftmail_auth_throttle_records_total",
			"Throttle records received from other nodes or a saved state: merged, stale (outside the window), future (ahead of this clock), or whole messages rejected as malformed.",
			[]string{"result"}, l),
		keys: prometheus.NewDesc("raftmail_auth_throttle_keys",
			"Keys in this node's throttle table.", nil, l),
		locked: prometheus.NewDesc("raftmail_auth_throttle_locked_keys",
			"Keys locked now, by key: ip_account (a client network for one account) or ip (a client network).",
			[]string{"key"}, l),
	}
}

// Describe implements prometheus.Collector.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.logins, m.lockouts, m.delayed, m.skipped, m.merged, m.keys, m.locked} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	s := &m.c.stats
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.logins, s.success.Load(), "success")
	counter(m.logins, s.failure.Load(), "failure")
	counter(m.logins, s.locked.Load(), "locked")
	counter(m.lockouts, s.lockedPair.Load(), classPair.label())
	counter(m.lockouts, s.lockedIP.Load(), classIP.label())
	counter(m.delayed, s.delayedN.Load())
	counter(m.skipped, s.delaySkipped.Load())
	counter(m.merged, s.mergedRecords.Load(), "merged")
	counter(m.merged, s.staleRecords.Load(), "stale")
	counter(m.merged, s.futureRecords.Load(), "future")
	counter(m.merged, s.badMessages.Load(), "malformed")
	keys, pair, ip := m.c.tableStats()
	ch <- prometheus.MustNewConstMetric(m.keys, prometheus.GaugeValue, float64(keys))
	ch <- prometheus.MustNewConstMetric(m.locked, prometheus.GaugeValue, float64(pair), classPair.label())
	ch <- prometheus.MustNewConstMetric(m.locked, prometheus.GaugeValue, float64(ip), classIP.label())
}

// tableStats counts the keys and the locked keys of each class (a scan of
// the table, at most MaxKeys).
func (c *Checker) tableStats() (keys, lockedPair, lockedIP int) {
	ms := c.cfg.Now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.mu.t
	for _, e := range t.byKey {
		limit := c.limit(e.key.class)
		if limit == 0 || t.count(e, ms)-e.inflight < limit {
			continue
		}
		if e.key.class == classPair {
			lockedPair++
		} else {
			lockedIP++
		}
	}
	return len(t.byKey), lockedPair, lockedIP
}
