package ops

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// Below the free-space floor /healthz answers 503 and says why, the disk
// metrics show it, and both recover with the space, without a restart.
func TestHealthDiskBelowFloor(t *testing.T) {
	c := clustertest.New(t, 1, nil)
	const floor = 512 << 20
	disk := c.RestartWithDisk(c.Nodes[0], 180<<20, floor)
	clustertest.WaitFor(t, 10*time.Second, "a leader after the restart", c.Nodes[0].Node.IsLeader)
	a, err := NewAdmin(AdminConfig{Addr: "127.0.0.1:0", Token: testToken, Node: c.Nodes[0].Node})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + a.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	code, body := get("/healthz")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/healthz body: %v\n%s", err, body)
	}
	if code != http.StatusServiceUnavailable || h.Healthy || len(h.Problems) != 1 ||
		h.Problems[0] != "disk: 180 MiB free of 1.0 GiB, floor 512 MiB" {
		t.Fatalf("/healthz below the floor: %d %s", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`raftmail_disk_free_bytes{node="n1"} 1.8874368e+08`,
		`raftmail_disk_floor_bytes{node="n1"} 5.36870912e+08`,
		`raftmail_disk_floor_refusals_total{node="n1"} 0`,
		`raftmail_storage_failed{node="n1"} 0`,
		`raftmail_raft_log_write_failures_total{node="n1"} 0`,
		`raftmail_raft_log_write_stalls_total{node="n1"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	disk.SetAvail(1 << 30)
	clustertest.WaitFor(t, 10*time.Second, "/healthz 200 once space is back", func() bool {
		code, _ := get("/healthz")
		return code == http.StatusOK
	})
}

// A node removed from the cluster that is still running (its process
// has not stopped yet) answers /healthz with 503 "removed from cluster";
// the admin API's remove answers how many voters remain.
func TestHealthRemovedNode(t *testing.T) {
	c := clustertest.New(t, 3, nil)
	leader := c.Leader()
	var victim *clustertest.Node
	for _, n := range c.Nodes {
		if n != leader {
			victim = n
		}
	}
	admin := func(n *clustertest.Node) *Admin {
		a, err := NewAdmin(AdminConfig{Addr: "127.0.0.1:0", Token: testToken, Node: n.Node})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
		return a
	}
	la, va := admin(leader), admin(victim)
	cl := &Client{Addr: la.Addr(), Token: testToken}
	var out Removed
	if err := cl.Do(context.Background(), "DELETE", "/v1/nodes/"+victim.Name, nil, &out); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if out.Removed != victim.Name || out.Voters != 2 {
		t.Errorf("remove answered %+v", out)
	}
	clustertest.WaitFor(t, 20*time.Second, "/healthz of the removed node says so", func() bool {
		resp, err := http.Get("http://" + va.Addr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "removed from cluster")
	})
}
