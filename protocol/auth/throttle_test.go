package auth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const (
	user  = "u@example.test"
	right = "right-password"
)

// login is Authenticate with a background context.
func login(c *Checker, ip, u, pw string) error {
	_, err := c.Authenticate(context.Background(), ip, u, pw)
	return err
}

// mustLogin fails the test unless the login ends with want.
func mustLogin(t *testing.T, c *Checker, ip, u, pw string, want error) {
	t.Helper()
	if err := login(c, ip, u, pw); !errors.Is(err, want) {
		t.Fatalf("login %s from %q with %q: %v, want %v", u, ip, pw, err, want)
	}
}

func failN(t *testing.T, c *Checker, n int, ip, u string) {
	t.Helper()
	for i := 0; i < n; i++ {
		mustLogin(t, c, ip, u, fmt.Sprintf("wrong-%d", i), ErrFailed)
	}
}

// TestLockIsPerNetworkAndAccount: failures from one address lock that
// address for that account, never the account from another address (the
// old checker locked the account for every address and protocol).
func TestLockIsPerNetworkAndAccount(t *testing.T) {
	st := newStore(t)
	c := New(Config{Store: st, MaxFailures: 3, BaseDelay: -1, Now: newClock().Now})
	mustLogin(t, c, "192.0.2.1", "U@example.test", right, nil)
	failN(t, c, 3, "192.0.2.1", user)
	// Locked from this address, even with the right password...
	mustLogin(t, c, "192.0.2.1", user, right, ErrLocked)
	// ...but the right user from another address logs in.
	mustLogin(t, c, "192.0.2.99", user, right, nil)
	// The locked address may still try another account (the address
	// itself locks at MaxIPFailures = 15).
	mustLogin(t, c, "192.0.2.1", "nobody@example.test", "x", ErrFailed)
}

// TestIPLock: an address that fails for many accounts is locked for all
// of them; other addresses are not.
func TestIPLock(t *testing.T) {
	c := New(Config{Store: newStore(t), MaxFailures: 3, MaxIPFailures: 5, BaseDelay: -1, Now: newClock().Now})
	for i := 0; i < 5; i++ {
		mustLogin(t, c, "198.51.100.7", fmt.Sprintf("spray%d@example.test", i), "x", ErrFailed)
	}
	mustLogin(t, c, "198.51.100.7", user, right, ErrLocked)
	mustLogin(t, c, "198.51.100.8", user, right, nil)
}

// TestIPv6Network: an IPv6 client counts as its /64; an IPv4-mapped
// address as the IPv4 address.
func TestIPv6Network(t *testing.T) {
	c := New(Config{Store: newStore(t), MaxFailures: 2, BaseDelay: -1, Now: newClock().Now})
	failN(t, c, 1, "2001:db8:1:2::1", user)
	failN(t, c, 1, "2001:db8:1:2:ffff::9", user)
	mustLogin(t, c, "2001:db8:1:2::77", user, right, ErrLocked)
	mustLogin(t, c, "2001:db8:1:3::1", user, right, nil)

	failN(t, c, 1, "203.0.113.5", user)
	failN(t, c, 1, "::ffff:203.0.113.5", user)
	mustLogin(t, c, "203.0.113.5", user, right, ErrLocked)
	for ip, want := range map[string]string{
		"2001:db8::1": "2001:db8::/64", "::ffff:10.0.0.1": "10.0.0.1", "fe80::1%eth0": "fe80::/64", "unix": "unix",
	} {
		if got := clientNetwork(ip); got != want {
			t.Errorf("clientNetwork(%q) = %q, want %q", ip, got, want)
		}
	}
}

// TestWindowSlides: a failure counts for Window, then no longer; the lock
// ends when enough failures have left the window.
func TestWindowSlides(t *testing.T) {
	clk := newClock()
	c := New(Config{Store: newStore(t), MaxFailures: 3, Window: 10 * time.Minute, BaseDelay: -1, Now: clk.Now})
	failN(t, c, 2, "192.0.2.1", user)
	clk.add(6 * time.Minute)
	failN(t, c, 1, "192.0.2.1", user)
	mustLogin(t, c, "192.0.2.1", user, right, ErrLocked)
	clk.add(4*time.Minute + time.Millisecond) // the first two are out
	failN(t, c, 2, "192.0.2.1", user)
	mustLogin(t, c, "192.0.2.1", user, right, ErrLocked)
	clk.add(10 * time.Minute)
	mustLogin(t, c, "192.0.2.1", user, right, nil)
}

// TestSuccessClearsPairOnly: a login clears the failures of its pair, not
// those of its address (or a valid account would launder an attacker's
// address).
func TestSuccessClearsPairOnly(t *testing.T) {
	c := New(Config{Store: newStore(t), MaxFailures: 3, MaxIPFailures: 4, BaseDelay: -1, Now: newClock().Now})
	failN(t, c, 2, "192.0.2.1", user)
	mustLogin(t, c, "192.0.2.1", user, right, nil)
	failN(t, c, 2, "192.0.2.1", user)
	mustLogin(t, c, "192.0.2.1", user, right, ErrLocked) // 4 for the address
	mustLogin(t, c, "192.0.2.2", user, right, nil)
}

// TestParallelAttempts: attempts in flight count, so parallel guesses on
// one node get no more than MaxFailures checks.
func TestParallelAttempts(t *testing.T) {
	c := New(Config{Store: newStore(t), MaxFailures: 3, BaseDelay: -1, Now: newClock().Now})
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[error]int{}
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := login(c, "192.0.2.1", user, "wrong")
			mu.Lock()
			got[err]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got[ErrFailed] > 3 || got[ErrFailed]+got[ErrLocked] != 12 {
		t.Fatalf("results %v: want at most 3 checked failures, the rest locked", got)
	}
}

// TestMergeSharesLocks: records one checker sends lock and clear on
// another (what gossip carries between nodes).
func TestMergeSharesLocks(t *testing.T) {
	st := newStore(t)
	clk := newClock()
	var a, b *Checker
	a = New(Config{Store: st, Node: "a", MaxFailures: 3, BaseDelay: -1, Now: clk.Now, Peers: peersFunc(func(m []byte) { mustMerge(t, b, m) })})
	b = New(Config{Store: st, Node: "b", MaxFailures: 3, BaseDelay: -1, Now: clk.Now, Peers: peersFunc(func(m []byte) { mustMerge(t, a, m) })})
	failN(t, a, 2, "192.0.2.1", user)
	failN(t, b, 1, "192.0.2.1", user) // 3 in all
	mustLogin(t, a, "192.0.2.1", user, right, ErrLocked)
	mustLogin(t, b, "192.0.2.1", user, right, ErrLocked)
	mustLogin(t, b, "192.0.2.2", user, right, nil)

	clk.add(31 * time.Minute)
	failN(t, a, 2, "192.0.2.1", user)
	mustLogin(t, b, "192.0.2.1", user, right, nil) // clears a's two as well
	failN(t, b, 2, "192.0.2.1", user)
	mustLogin(t, a, "192.0.2.1", user, right, nil)
}

type peersFunc func([]byte)

func (f peersFunc) Broadcast(key string, msg []byte) {
	if len(msg) > 512 {
		panic(fmt.Sprintf("a %d-byte record does not fit a gossip message", len(msg)))
	}
	f(msg)
}

func mustMerge(t *testing.T, c *Checker, m []byte) {
	if err := c.Merge(m); err != nil {
		t.Errorf("merge: %v", err)
	}
}

// TestStateSurvivesRestart: State taken in by a new checker (the node
// after a restart) keeps the locks.
func TestStateSurvivesRestart(t *testing.T) {
	st := newStore(t)
	clk := newClock()
	c := New(Config{Store: st, Node: "n1", MaxFailures: 3, BaseDelay: -1, Now: clk.Now})
	failN(t, c, 3, "192.0.2.1", user)
	failN(t, c, 1, "192.0.2.5", user)
	saved := c.State(0)
	if c.Changes() == 0 {
		t.Fatal("no changes counted")
	}

	c2 := New(Config{Store: st, Node: "n1", MaxFailures: 3, BaseDelay: -1, Now: clk.Now})
	if err := c2.Merge(saved); err != nil {
		t.Fatal(err)
	}
	mustLogin(t, c2, "192.0.2.1", user, right, ErrLocked)
	failN(t, c2, 2, "192.0.2.5", user)
	mustLogin(t, c2, "192.0.2.5", user, right, ErrLocked)
	// Merging the same state again changes nothing.
	if err := c2.Merge(saved); err != nil {
		t.Fatal(err)
	}
	clk.add(31 * time.Minute)
	mustLogin(t, c2, "192.0.2.1", user, right, nil)
	if s := c2.State(0); len(s) != 0 && len(mustDecode(t, s)) != 1 {
		t.Errorf("state after the window: %d records, want only the clearing", len(mustDecode(t, s)))
	}
}

// TestMergeOrderIndependent: any order and repetition of the same
// records gives the same table.
func TestMergeOrderIndependent(t *testing.T) {
	clk := newClock()
	base := clk.Now().UnixMilli()
	var msgs [][]byte
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 60; i++ {
		rec := record{class: keyClass(1 + r.IntN(3)), origin: fmt.Sprintf("n%d", r.IntN(3)), cleared: 0}
		rec.id[0] = byte(r.IntN(4))
		if r.IntN(4) == 0 {
			rec.cleared = base - int64(r.IntN(600_000))
		}
		t0 := base - int64(r.IntN(1_000_000))
		for j := 0; j < 1+r.IntN(5); j++ {
			t0 += 1 + int64(r.IntN(10_000))
			rec.at = append(rec.at, t0)
		}
		msgs = append(msgs, encodeRecords([]record{rec}))
	}
	var states []string
	for k := 0; k < 5; k++ {
		c := New(Config{Node: "x", MaxFailures: 4, MaxIPFailures: 6, Now: clk.Now})
		order := r.Perm(len(msgs))
		order = append(order, order[:10]...) // repeats
		for _, i := range order {
			mustMerge(t, c, msgs[i])
		}
		states = append(states, canonical(t, c))
	}
	for _, s := range states[1:] {
		if s != states[0] {
			t.Fatalf("tables differ by merge order:\n%s\n---\n%s", states[0], s)
		}
	}
}

// canonical prints a checker's state independent of its LRU order.
func canonical(t *testing.T, c *Checker) string {
	rs := mustDecode(t, c.State(0))
	var lines []string
	for _, r := range rs {
		lines = append(lines, fmt.Sprintf("%d %x %s %d %v", r.class, r.id[:2], r.origin, r.cleared, r.at))
	}
	slices.Sort(lines)
	return fmt.Sprint(lines)
}

func mustDecode(t *testing.T, b []byte) []record {
	t.Helper()
	rs, err := decodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestMergeRefuses: malformed messages, records from the future and
// records outside the window change nothing.
func TestMergeRefuses(t *testing.T) {
	clk := newClock()
	c := New(Config{Store: newStore(t), MaxFailures: 1, BaseDelay: -1, Now: clk.Now})
	now := clk.Now().UnixMilli()
	key := makeKey(classPair, "192.0.2.1", user)
	rec := func(at int64) []byte {
		return encodeRecords([]record{{class: classPair, id: key.id, origin: "evil", at: []int64{at}}})
	}
	mustMerge(t, c, rec(now+2*time.Hour.Milliseconds()))
	mustMerge(t, c, rec(now-time.Hour.Milliseconds()))
	for _, bad := range [][]byte{{2, 1}, {1}, append(rec(now), 0)} {
		if err := c.Merge(bad); !errors.Is(err, ErrBadRecords) {
			t.Errorf("Merge(%x): %v, want ErrBadRecords", bad, err)
		}
	}
	mustLogin(t, c, "192.0.2.1", user, right, nil)
	mustMerge(t, c, rec(now))
	mustLogin(t, c, "192.0.2.1", user, right, ErrLocked)
}

// TestTableBounded: the table never holds more than MaxKeys idle keys,
// and what it holds stays encodable within a gossip message per record.
func TestTableBounded(t *testing.T) {
	clk := newClock()
	c := New(Config{MaxKeys: 50, BaseDelay: -1, Now: clk.Now})
	now := clk.Now()
	for i := 0; i < 300; i++ {
		keys := []throttleKey{makeKey(classPair, fmt.Sprint(i), user), makeKey(classIP, fmt.Sprint(i), "")}
		if class, _ := c.begin(keys, now); class != 0 {
			t.Fatalf("fresh key locked")
		}
		c.end(keys, now, failed)
		id := makeKey(classAccount, "", fmt.Sprint(i)).id
		mustMerge(t, c, encodeRecords([]record{{class: classAccount, id: id, origin: "n2", at: []int64{now.UnixMilli()}}}))
	}
	if keys, _, _ := c.tableStats(); keys > 50 {
		t.Fatalf("%d keys, want at most 50", keys)
	}
	if s := c.State(1000); len(s) > 1000 || len(s) < 900 {
		t.Fatalf("State(1000) is %d bytes", len(s))
	}
	// Keys with attempts in flight are never evicted.
	held := []throttleKey{makeKey(classPair, "held", user)}
	c.begin(held, now)
	for i := 0; i < 100; i++ {
		mustMerge(t, c, encodeRecords([]record{{class: classIP, id: makeKey(classIP, fmt.Sprint(i), "").id, origin: "n2", at: []int64{now.UnixMilli()}}}))
	}
	c.mu.Lock()
	e := c.mu.t.byKey[held[0]]
	c.mu.Unlock()
	if e == nil || e.inflight != 1 {
		t.Fatal("an entry with an attempt in flight was evicted")
	}
}

func TestDelay(t *testing.T) {
	c := New(Config{Store: nil})
	if c.delay(1) != 250*time.Millisecond || c.delay(2) != 500*time.Millisecond || c.delay(10) != 4*time.Second {
		t.Fatalf("delays: %v %v %v", c.delay(1), c.delay(2), c.delay(10))
	}
	if got := delaySteps(250*time.Millisecond, 4*time.Second); got != 5 {
		t.Fatalf("delaySteps = %d, want 5", got)
	}
	// A delay ends with its context (the server stopping), and at most
	// MaxDelayed wait at once.
	c = New(Config{Store: nil, MaxDelayed: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.wait(ctx, time.Hour); close(done) }()
	for c.stats.delayedN.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	c.wait(context.Background(), time.Hour) // no slot: returns at once
	if c.stats.delaySkipped.Load() != 1 {
		t.Fatal("second delay not skipped")
	}
	cancel()
	<-done
}

func TestMetrics(t *testing.T) {
	c := New(Config{Store: newStore(t), MaxFailures: 2, BaseDelay: -1, Now: newClock().Now})
	failN(t, c, 2, "192.0.2.1", user)
	mustLogin(t, c, "192.0.2.1", user, right, ErrLocked)
	mustLogin(t, c, "192.0.2.2", user, right, nil)
	_ = c.Merge([]byte{9})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector("n1", c))
	for name, want := range map[string]float64{
		"raftmail_auth_logins_total":           4,
		"raftmail_auth_lockouts_total":         1,
		"raftmail_auth_throttle_locked_keys":   1,
		"raftmail_auth_throttle_records_total": 1,
	} {
		if got := sum(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	if err != nil || n != 14 {
		t.Errorf("%d series (%v), want 14", n, err)
	}
}

func sum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// TestRecordFitsGossip: the largest record a node sends fits a gossip
// message (cluster.MaxGossipMessage, 512 bytes).
func TestRecordFitsGossip(t *testing.T) {
	r := record{class: classIP, origin: string(make([]byte, maxOriginLen)), cleared: 1}
	for i := range maxWireTimes {
		r.at = append(r.at, int64(i+1))
	}
	if n := len(encodeRecords([]record{r})); n > 512 {
		t.Fatalf("largest record: %d bytes", n)
	}
	c := New(Config{MaxFailures: 1000})
	if c.cfg.MaxFailures != maxWireTimes || c.cfg.MaxIPFailures != maxWireTimes {
		t.Fatalf("limits not capped: %d %d", c.cfg.MaxFailures, c.cfg.MaxIPFailures)
	}
}
