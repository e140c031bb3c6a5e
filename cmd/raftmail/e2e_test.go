package main

// End-to-end tests: the real raftmail binary, run as separate processes on
// 127.0.0.1, each node with its own data directory, driven only through the
// CLI and the admin HTTP API. Helpers are in e2e_helpers_test.go.
//
// Run them alone with: go test -race -count=1 -run TestE2E ./cmd/raftmail/
// (-short skips them).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
)

func TestE2ECluster(t *testing.T) {
	nodes := newCluster(t, 3)

	// a. Status through every node shows three reachable voters and one
	// leader they all agree on.
	for _, n := range nodes {
		waitHealthy(t, n, 3)
		waitLeader(t, n, nodes)
	}
	leader, followers := waitLeader(t, nodes[0], nodes)
	t.Logf("leader %s, followers %s and %s", leader.name, followers[0].name, followers[1].name)

	// b. A write through a follower is forwarded to the leader; the follower
	// reads its own write at once, the others once they apply it.
	follower := followers[0]
	follower.cli("domain", "add", "example.test")
	if ok, detail := follower.hasDomain("example.test"); !ok {
		t.Errorf("%s does not read its own write: %s", follower.name, detail)
	}
	for _, n := range nodes {
		waitFor(t, clusterTimeout, "example.test on "+n.name, func() (bool, string) { return n.hasDomain("example.test") })
	}

	// c. A user added through one node is listed by another.
	if res := follower.tryCLI("s3cret-pass\n", "user", "add", "demo@example.test", "--password-stdin"); res.exitCode != 0 {
		t.Fatalf("user add: %s", res)
	}
	other := followers[1]
	waitFor(t, clusterTimeout, "demo@example.test listed by "+other.name, func() (bool, string) {
		var users []ops.UserInfo
		mustCLIJSON(t, &users, append([]string{"user", "list", "--json"}, other.adminFlags()...)...)
		for _, u := range users {
			if u.Address == "demo@example.test" {
				return true, ""
			}
		}
		return false, "users: " + jsonString(users)
	})

	// d. kill -9 the leader; a write through a survivor succeeds once the
	// other two elect a new leader.
	leader.kill()
	killedAt := time.Now()
	addDomainEventually(t, follower, "after.test")
	t.Logf("failover: after.test committed via %s %s after kill -9 of leader %s",
		follower.name, time.Since(killedAt).Round(time.Millisecond), leader.name)
	newLeader, _ := waitLeader(t, follower, nodes)
	t.Logf("new leader: %s", newLeader.name)

	// e. The killed node restarts with the same flags and catches up.
	leader.start()
	restartedAt := time.Now()
	for _, n := range nodes {
		waitConverged(t, n, 3)
	}
	t.Logf("catch-up: all 3 nodes converged %s after restarting %s", time.Since(restartedAt).Round(time.Millisecond), leader.name)
	for _, d := range []string{"example.test", "after.test"} {
		if ok, detail := leader.hasDomain(d); !ok {
			t.Errorf("restarted %s misses %s: %s", leader.name, d, detail)
		}
	}

	// f. The admin API wants the token; /healthz and /metrics do not.
	base := "http://" + nodes[0].adminAddr
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer " + strings.Repeat("0", 48), http.StatusUnauthorized},
		{"token without Bearer", readAdminToken(t, nodes[0]), http.StatusUnauthorized},
		{"right token", "Bearer " + readAdminToken(t, nodes[0]), http.StatusOK},
	} {
		code, body := httpGet(t, base+"/v1/status", tc.auth)
		if code != tc.want {
			t.Errorf("GET /v1/status with %s: status %d, want %d: %s", tc.name, code, tc.want, body)
		}
		if tc.want == http.StatusUnauthorized && !strings.Contains(body, "admin token missing or wrong") {
			t.Errorf("GET /v1/status with %s: want an error saying the admin token is missing or wrong, got %s", tc.name, body)
		}
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if code, body := httpGet(t, base+path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: status %d, want 200: %s", path, code, body)
		}
	}
}

func TestE2EJoinRefusals(t *testing.T) {
	nodes := newCluster(t, 1)
	member := nodes[0]
	via := member.clusterAddr

	createToken := func(ttl string) ops.TokenCreated {
		t.Helper()
		var tc ops.TokenCreated
		mustCLIJSON(t, &tc, append([]string{"token", "create", "--ttl", ttl, "--json"}, member.adminFlags()...)...)
		return tc
	}

	// A token whose secret is wrong in one byte.
	good, err := cluster.ParseToken(createToken("10m").Token)
	if err != nil {
		t.Fatal(err)
	}
	good.Secret[0] ^= 0x01
	wrongSecret := good.String()

	// A token that has expired. Its expiry is a wall-clock instant on this
	// host, so waiting for it is waiting for a condition, not for a race.
	short := createToken("1ms")
	time.Sleep(time.Until(short.Expires.Add(10 * time.Millisecond)))

	// A revoked token.
	revoked := createToken("10m")
	member.cli("token", "revoke", revoked.ID)

	// A valid token of another, independent cluster.
	stranger := newNode(t, "stranger")
	foreign := stranger.initCluster()

	// A single-use token that admitted a node already.
	used := createToken("10m")
	if res := newNode(t, "first").join(used.Token, via); res.exitCode != 0 {
		t.Fatalf("first join with a fresh token: %s", res)
	}

	i := 0

	for _, tc := range []struct {
		name    string
		token   string
		phrases []string
	}{
		{"wrong secret", wrongSecret, []string{"join refused", "secret does not match"}},
		{"expired", short.Token, []string{"join refused", "expired"}},
		{"revoked", revoked.Token, []string{"join refused", "revoked"}},
		{"used", used.Token, []string{"join refused", "has been used already (1 of 1 uses, by first)", "raftmail token create"}},
		{"other cluster", foreign, []string{"CA fingerprint mismatch"}},
		{"garbage", "garbage", []string{"not a Raftmail join token"}},
	} {
		i++
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			n := newNode(t, fmt.Sprintf("joiner%d", i))
			res := n.join(tc.token, via)
			t.Logf("join refused: %s", strings.TrimSpace(res.stderr))
			assertFailure(t, res, tc.phrases...)
			assertNotInitialized(t, n.dir)

			// The refused data directory is still usable for a proper join.
			ok := createToken("10m")
			if res := n.join(ok.Token, via); res.exitCode != 0 {
				t.Errorf("join with a valid token after a refused one: %s", res)
			}
		})
	}

	// A valid token, but the name of an existing member.
	t.Run("name_taken", func(t *testing.T) {
		n := newNode(t, member.name)
		res := n.join(createToken("10m").Token, via)
		t.Logf("join refused: %s", strings.TrimSpace(res.stderr))
		assertFailure(t, res, "join refused", `node name "`+member.name+`" is already used`)
		assertNotInitialized(t, n.dir)
	})

	// A valid token, but a data directory that already holds a node.
	t.Run("data_dir_in_use", func(t *testing.T) {
		res := stranger.join(createToken("10m").Token, via)
		assertFailure(t, res, "already holds a node", "pick another --data-dir")
	})

	// The member still has exactly the one node: none of the joins above
	// changed its membership.
	st, err := member.status()
	if err != nil {
		t.Fatal(err)
	}
	if ok, detail := healthy(st, 1); !ok {
		t.Errorf("after the refusals: %s", detail)
	}
}

func TestE2ECLIMistakes(t *testing.T) {
	empty := t.TempDir()
	nowhere := loopback(freePort(t)) // nothing listens here

	for _, tc := range []struct {
		name    string
		args    []string
		phrases []string
	}{
		{"domain add without a domain", []string{"domain", "add"}, []string{"expected a domain name", "--help"}},
		{"unknown flag", []string{"status", "--bogus"}, []string{"unknown flag: --bogus", "--help"}},
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{"join without a token", []string{"join", "127.0.0.1:7947"}, []string{"--token is required", "token create"}},
		{"join with two addresses", []string{"join", "--token", "x", "a:1", "b:2"}, []string{"at most one HOST:PORT"}},
		{"status with an argument", []string{"status", "extra"}, []string{"expected no arguments"}},
		{"bad duration", []string{"serve", "--data-dir", empty, "--raft-timeout", "fast"}, []string{"--raft-timeout", "invalid"}},
		{"no admin token", []string{"status", "--data-dir", empty, "--admin-addr", nowhere}, []string{"no admin token", "admin.token"}},
		{"nothing listens", []string{"status", "--data-dir", empty, "--admin-addr", nowhere, "--admin-token", strings.Repeat("a", 48)},
			[]string{"admin API unreachable", nowhere, "raftmail serve"}},
		{"both password options", []string{"user", "add", "a@b.test", "--password", "x", "--password-stdin", "--data-dir", empty, "--admin-token", "t"},
			[]string{"either --password or --password-stdin"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			assertFailure(t, runCLI(t, "", tc.args...), tc.phrases...)
		})
	}
	if entries, err := os.ReadDir(empty); err != nil || len(entries) != 0 {
		t.Errorf("the failed commands left files in %s: %v %v", empty, entries, err)
	}
}

func TestE2EMinority(t *testing.T) {
	nodes := newCluster(t, 3)
	leader, followers := waitLeader(t, nodes[0], nodes)
	survivor, victim := followers[0], followers[1]

	// Kill the leader and one follower: the survivor is left without a
	// quorum and cannot elect a leader.
	leader.kill()
	victim.kill()
	start := time.Now()
	res := survivor.tryCLI("", "domain", "add", "x.test")
	t.Logf("minority write via %s failed after %s: %s", survivor.name, time.Since(start).Round(time.Millisecond), strings.TrimSpace(res.stderr))
	assertFailure(t, res)
	// Nothing reached a live leader, so the answer is a clean "no quorum",
	// never "outcome unknown".
	if !strings.Contains(res.stderr, "no quorum") {
		t.Errorf("want the error to say %q: %s", "no quorum", res)
	}

	// Status still answers and shows the two dead nodes as unreachable.
	st, err := survivor.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if want := s.Name == survivor.name; s.Reachable != want {
			t.Errorf("status in the minority: %s reachable=%v, want %v: %s", s.Name, s.Reachable, want, summary(st))
		}
	}

	// With the two back, the write goes through.
	leader.start()
	victim.start()
	restartedAt := time.Now()
	addDomainEventually(t, survivor, "x.test")
	t.Logf("recovery: x.test committed %s after restarting %s and %s", time.Since(restartedAt).Round(time.Millisecond), leader.name, victim.name)
	for _, n := range nodes {
		waitFor(t, clusterTimeout, "x.test on "+n.name, func() (bool, string) { return n.hasDomain("x.test") })
	}
}

// addDomainEventually retries `domain add` through n until it succeeds.
// An "already exists" after a failed attempt counts as success: that
// attempt was committed although its answer was lost or uncertain.
func addDomainEventually(t *testing.T, n *node, domain string) {
	t.Helper()
	attempts := 0
	waitFor(t, clusterTimeout, "domain add "+domain+" via "+n.name, func() (bool, string) {
		attempts++
		res := n.tryCLI("", "domain", "add", domain)
		if res.exitCode == 0 {
			return true, ""
		}
		if attempts > 1 && strings.Contains(res.stderr, "already exists") {
			t.Logf("domain add %s: an earlier failed attempt was committed after all", domain)
			return true, ""
		}
		return false, strings.TrimSpace(res.stderr)
	})
	t.Logf("domain add %s via %s: %d attempt(s)", domain, n.name, attempts)
}

// waitConverged waits until status through via shows want reachable
// voters, one leader, the same applied index and state hash everywhere,
// and no missing blobs.
func waitConverged(t *testing.T, via *node, want int) {
	t.Helper()
	waitFor(t, clusterTimeout, "convergence (status via "+via.name+")", func() (bool, string) {
		st, err := via.status()
		if err != nil {
			return false, err.Error()
		}
		if ok, detail := healthy(st, want); !ok {
			return false, detail
		}
		for _, s := range st {
			if s.AppliedIndex != st[0].AppliedIndex || s.StateHash != st[0].StateHash || s.StateHash == "" || s.MissingBlobs != 0 {
				return false, summary(st)
			}
		}
		return true, ""
	})
}

func readAdminToken(t *testing.T, n *node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, adminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// httpGet does a plain GET with an optional Authorization header.
func httpGet(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// assertNotInitialized checks that a refused join left nothing that makes
// dir look like a node: no configuration, keys, certificates or token.
func assertNotInitialized(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{configFile, adminTokenFile, "cluster/ca.crt", "cluster/node.crt", "cluster/node.key", "cluster/gossip.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("refused join left %s in the data directory", f)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
