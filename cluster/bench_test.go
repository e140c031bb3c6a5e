package cluster_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/storage"
)

// benchCluster is a three-node loopback cluster with the LAN timings of
// DESIGN.md (not the tight test timings), for figures that mean something.
func benchCluster(b *testing.B) *clustertest.Cluster {
	return clustertest.New(b, 3, func(c *cluster.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 0, 0, 0
		c.GossipInterval = 0
	})
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkPropose measures 1 KiB commands proposed through a follower and
// the leader alternately, at several concurrencies.
func BenchmarkPropose(b *testing.B) {
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			tc := benchCluster(b)
			payload := make([]byte, 1024)
			_, _ = rand.Read(payload)
			nodes := []*cluster.Node{tc.Leader().Node, tc.Follower().Node}
			var next atomic.Int64
			lat := make([][]time.Duration, conc)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						cmd, err := storage.NewCommand(storage.CmdNoop, payload)
						if err != nil {
							b.Error(err)
							return
						}
						t0 := time.Now()
						if _, _, err := nodes[w%2].Propose(context.Background(), cmd); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				}(w)
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			b.ReportMetric(float64(b.N)/el.Seconds(), "cmds/s")
			b.ReportMetric(float64(percentile(all, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkStoreBlob measures replication of a body to a majority.
func BenchmarkStoreBlob(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			tc := benchCluster(b)
			n := tc.Follower().Node
			body := make([]byte, size)
			b.SetBytes(int64(size))
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, _ = rand.Read(body[:32])
				t0 := time.Now()
				if _, err := n.StoreBlob(context.Background(), body); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkFailover stops the leader and times the first successful write
// through a survivor, with the LAN timings. Run with -benchtime 10x for ten
// failovers; it reports the median and the maximum.
func BenchmarkFailover(b *testing.B) {
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		tc := benchCluster(b)
		if err := addDomainB(tc.Leader().Node, "warm.test"); err != nil {
			b.Fatal(err)
		}
		old := tc.Leader()
		start := time.Now()
		tc.Stop(old)
		survivor := tc.Follower()
		for {
			if err := addDomainB(survivor.Node, fmt.Sprintf("after%d.test", i)); err == nil {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatal("no write a minute after losing the leader")
			}
		}
		times = append(times, time.Since(start))
		tc.StopAll()
	}
	b.ReportMetric(float64(percentile(times, 0.5).Milliseconds()), "median-ms")
	b.ReportMetric(float64(slices.Max(times).Milliseconds()), "max-ms")
}

func addDomainB(n *cluster.Node, name string) error {
	cmd, err := storage.NewCommand(storage.CmdDomainAdd, struct{ Name string }{name})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, res, err := n.Propose(ctx, cmd)
	if err != nil {
		return err
	}
	return res.Err()
}
