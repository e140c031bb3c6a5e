package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

// statusCode is `raftmail status --json` through n with its exit status
// and the raw JSON rows.
func statusCode(t *testing.T, n *node) (int, []cluster.NodeStatus, []map[string]any) {
	t.Helper()
	res := n.tryCLI("", "status", "--json")
	var st []cluster.NodeStatus
	var raw []map[string]any
	if res.exitCode == 0 || res.exitCode == 1 {
		if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
			t.Fatalf("status: %v\n%s", err, res)
		}
		_ = json.Unmarshal([]byte(res.stdout), &raw)
	}
	return res.exitCode, st, raw
}

// waitExit waits for n's serve process to end by itself and returns its
// exit status.
func waitExit(t *testing.T, n *node, what string) int {
	t.Helper()
	select {
	case <-n.done:
	case <-time.After(clusterTimeout):
		t.Fatalf("%s did not exit (%s)", n.name, what)
	}
	return n.cmd.ProcessState.ExitCode()
}

// TestE2EMembership runs the membership commands the way an operator
// would, with real processes: a dead node is removed after
// --dead-server-grace while more than three voters remain and kept (and
// said so) when only three do; status shows a dead node's values as
// unknown and exits 1; remove refuses to cost the cluster its quorum;
// remove of a running node takes it out for good (it says goodbye to its
// clients, exits 3 and refuses to start again); leave is remembered across
// a restart; and a departed node comes back only through a new join.
func TestE2EMembership(t *testing.T) {
	nodes := make([]*node, 4)
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("node%d", i+1))
		nodes[i].serveFlags = []string{"--dead-server-grace", "5s"}
	}
	formCluster(t, nodes)
	n1, n2, n3, n4 := nodes[0], nodes[1], nodes[2], nodes[3]

	// Four voters: a dead one is removed after the grace period.
	n4.kill()
	waitFor(t, clusterTimeout, "the dead node4 removed (status via node1)", func() (bool, string) {
		code, st, _ := statusCode(t, n1)
		ok, detail := healthy(st, 3)
		return ok && code == 0, fmt.Sprintf("exit %d: %s", code, detail)
	})

	// Three voters: a dead one stays (the minimum is three), and status
	// says why, shows what it cannot know as unknown, and exits 1.
	n3.kill()
	waitFor(t, clusterTimeout, "status showing node3 dead and kept", func() (bool, string) {
		code, st, raw := statusCode(t, n1)
		if code != 1 {
			return false, fmt.Sprintf("exit %d, want 1: %s", code, summary(st))
		}
		for i, s := range st {
			if s.Name != "node3" {
				continue
			}
			if s.Reachable || !s.Voter {
				return false, summary(st)
			}
			for _, k := range []string{"applied_index", "lag", "missing_blobs", "state_hash"} {
				if v, ok := raw[i][k]; !ok || v != nil {
					t.Errorf("status --json: node3's %s = %v, want null (unknown)", k, v)
				}
			}
			return s.Gossip == "dead" && strings.Contains(strings.Join(s.Problems, " "), "kept as a voter"), fmt.Sprintf("gossip %s, problems %q", s.Gossip, s.Problems)
		}
		return false, "node3 not listed: " + summary(st)
	})
	table := n1.tryCLI("", "status")
	if table.exitCode != 1 {
		t.Errorf("status with node3 down: exit %d, want 1: %s", table.exitCode, table)
	}
	for _, line := range strings.Split(table.stdout, "\n") {
		if strings.HasPrefix(line, "node3 ") {
			if f := strings.Fields(line); len(f) < 8 || !strings.Contains(line, " - ") || strings.Contains(line, " 0 ") {
				t.Errorf("status table: node3's row should show unknown values as -, not 0: %q", line)
			}
		}
	}
	if !strings.Contains(table.stderr, "node3 unreachable") {
		t.Errorf("status should say why it exits 1: %s", table)
	}

	// Removing a live node while node3 is dead would leave node1 alone
	// of two voters: refused.
	res := n1.tryCLI("", "remove", "node2")
	assertFailure(t, res, "quorum", "--force")
	if _, st, _ := statusCode(t, n1); len(st) != 3 {
		t.Fatalf("after the refused remove: %s", summary(st))
	}

	// node3 back; then removed while it runs, with a client connected.
	n3.start()
	waitHealthy(t, n1, 3)
	smtp, err := net.DialTimeout("tcp", n3.smtpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer smtp.Close()
	r := bufio.NewReader(smtp)
	_ = smtp.SetReadDeadline(time.Now().Add(clusterTimeout))
	if greet, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(greet, "220") {
		t.Fatalf("SMTP greeting from node3: %q %v", greet, err)
	}
	out := n1.cli("remove", "node3")
	if !strings.Contains(out, "Removed node node3") || !strings.Contains(out, "2 voters remain") {
		t.Errorf("remove printed %q", out)
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "421") {
		t.Errorf("node3's SMTP client after the removal: %q %v, want a 421", line, err)
	}
	if code := waitExit(t, n3, "removed"); code != exitDeparted {
		t.Errorf("removed node3 exited with status %d, want %d", code, exitDeparted)
	}
	if log := tail(n3.logPath, 60); !strings.Contains(log, "this node was removed from the cluster") {
		t.Errorf("node3's log does not say it was removed:\n%s", log)
	}
	waitFor(t, clusterTimeout, "two healthy voters after the removal", func() (bool, string) {
		code, st, _ := statusCode(t, n1)
		ok, detail := healthy(st, 2)
		return ok && code == 0, fmt.Sprintf("exit %d: %s", code, detail)
	})
	// A restart (a supervisor's) does not bring it back.
	res = runCLI(t, "", append(append([]string{"serve"}, n3.nodeFlags()...), fastTimings...)...)
	if res.exitCode != exitDeparted {
		t.Errorf("serve of the removed node3: exit %d, want %d: %s", res.exitCode, exitDeparted, res)
	}
	assertFailure(t, res, "removed from the cluster", "raftmail join")

	// leave: node2 goes, and stays gone after a restart.
	out = n2.cli("leave")
	if !strings.Contains(out, "left the cluster") {
		t.Errorf("leave printed %q", out)
	}
	if code := waitExit(t, n2, "left"); code != 0 {
		t.Errorf("node2 exited with status %d after leave, want 0", code)
	}
	res = runCLI(t, "", append(append([]string{"serve"}, n2.nodeFlags()...), fastTimings...)...)
	if res.exitCode != exitDeparted {
		t.Errorf("serve after leave: exit %d, want %d: %s", res.exitCode, exitDeparted, res)
	}
	assertFailure(t, res, "left the cluster", "raftmail join")
	waitHealthy(t, n1, 1)

	// A new join on the departed data directory makes a new node there,
	// which becomes a voter again (the old tombstone does not apply).
	var created struct {
		Token string `json:"token"`
	}
	mustCLIJSON(t, &created, append([]string{"token", "create", "--ttl", "10m", "--json"}, n1.adminFlags()...)...)
	if res := n2.join(created.Token, n1.clusterAddr); res.exitCode != 0 {
		t.Fatalf("join again after leave: %s", res)
	}
	n2.start()
	waitHealthy(t, n1, 2)
}
