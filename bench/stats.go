package bench

import (
	"slices"
	"time"
)

// Latency summarises a set of durations, in milliseconds for JSON.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize computes the nearest-rank percentiles of ds (not modified).
func Summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Latency{
		Count: len(s),
		P50:   ms(percentile(s, 50)),
		P90:   ms(percentile(s, 90)),
		P99:   ms(percentile(s, 99)),
		Max:   ms(s[len(s)-1]),
	}
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of the
// sorted, non-empty s.
func percentile(s []time.Duration, p float64) time.Duration {
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Metric is one figure of a result, in the form the side-by-side report
// reads: a name, a unit, a value, and which direction is better.
type Metric struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	// Higher is true when a higher value is better (throughput).
	Higher bool `json:"higher_is_better"`
}

func latencyMetrics(prefix string, l Latency) []Metric {
	return []Metric{
		{Name: prefix + "p50", Unit: "ms", Value: l.P50},
		{Name: prefix + "p90", Unit: "ms", Value: l.P90},
		{Name: prefix + "p99", Unit: "ms", Value: l.P99},
		{Name: prefix + "max", Unit: "ms", Value: l.Max},
	}
}
