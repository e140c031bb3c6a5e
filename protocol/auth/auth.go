package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
	"github.com/raftmail/raftmail/storage"
)

var (
	// ErrFailed: wrong user name or password. Answer with the protocol's
	// authentication failure (SMTP 535 5.7.8, IMAP NO [AUTHENTICATIONFAILED],
	// POP3 -ERR [AUTH]).
	ErrFailed = errors.New("auth: invalid credentials")
	// ErrLocked: too many recent failures from this client network for
	// this account, or from this client network for any account; answer a
	// temporary failure (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE],
	// POP3 -ERR [SYS/TEMP]). The same account from another network is not
	// locked.
	ErrLocked = errors.New("auth: too many failed logins, try again later")
)

// Peers carries throttle records to the other nodes of the cluster,
// eventually and best effort (cmd wires the cluster's gossip channel).
type Peers interface {
	// Broadcast queues msg for the other nodes. A later message with the
	// same key replaces one still queued. It must not block.
	Broadcast(key string, msg []byte)
}

// Config configures a Checker. Zero values take the defaults given.
type Config struct {
	// Store holds the accounts. Required.
	Store *storage.Store
	// Node names this node in the records it sends; "" = "local".
	Node string
	// Peers, if not nil, receives a record for every failure and every
	// login that clears failures, for the other nodes' Merge.
	Peers Peers
	// MaxFailures is how many failed logins of one account from one client
	// network (an IPv4 address, an IPv6 /64) within Window lock that pair;
	// 0 = 10, at most 50.
	MaxFailures int
	// MaxIPFailures is how many failed logins from one client network,
	// whatever the account, within Window lock that network; 0 = 5 ×
	// MaxFailures, at most 50.
	MaxIPFailures int
	// Window is how long a failure counts (a sliding window); 0 = 30
	// minutes.
	Window time.Duration
	// BaseDelay is how long the answer to a failure waits when the key
	// with the most failures (pair, network or account) has one; it
	// doubles with each further failure up to MaxDelay. 0 = 250ms;
	// negative disables delays (tests).
	BaseDelay time.Duration
	// MaxDelay caps the delay; 0 = 4s.
	MaxDelay time.Duration
	// MaxDelayed bounds the failures being delayed at once on this node;
	// past it failures are answered at once (the locks still hold).
	// 0 = 1024.
	MaxDelayed int
	// MaxKeys bounds the throttle table (about 300 bytes a key); the least
	// recently used keys go first. 0 = 65536.
	MaxKeys int
	// Logger; nil = discard.
	Logger *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node = "local"
	}
	if len(c.Node) > maxOriginLen {
		c.Node = c.Node[:maxOriginLen]
	}
	if c.MaxFailures <= 0 {
		c.MaxFailures = 10
	}
	if c.MaxIPFailures <= 0 {
		c.MaxIPFailures = 5 * c.MaxFailures
	}
	// A node sends at most maxWireTimes failures per key: more could not
	// be counted across the cluster.
	c.MaxFailures = min(c.MaxFailures, maxWireTimes)
	c.MaxIPFailures = min(c.MaxIPFailures, maxWireTimes)
	if c.Window <= 0 {
		c.Window = 30 * time.Minute
	}
	if c.BaseDelay == 0 {
		c.BaseDelay = 250 * time.Millisecond
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 4 * time.Second
	}
	if c.MaxDelayed <= 0 {
		c.MaxDelayed = 1024
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 65536
	}
	if c.Now == nil {
		c.Now = wallclock.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Checker verifies credentials and throttles failures. Safe for
// concurrent use.
type Checker struct {
	cfg     Config
	log     *slog.Logger
	delayed chan struct{} // a slot per failure being delayed
	stats   stats

	mu struct {
		sync.Mutex
		t       *table
		changes uint64
	}
}

type stats struct {
	success, failure, locked    atomic.Uint64
	lockedPair, lockedIP        atomic.Uint64
	delayedN, delaySkipped      atomic.Uint64
	mergedRecords, badMessages  atomic.Uint64
	staleRecords, futureRecords atomic.Uint64
}

// New returns a Checker with defaults filled in.
func New(cfg Config) *Checker {
	cfg.setDefaults()
	c := &Checker{cfg: cfg, log: cfg.Logger, delayed: make(chan struct{}, cfg.MaxDelayed)}
	c.mu.t = newTable(cfg.MaxKeys, cfg.Window, c.keep)
	return c
}

// keep is how many failure times per node a key of class needs: enough
// to know it is locked (or, for an account, that its delay is at its
// cap).
func (c *Checker) keep(class keyClass) int {
	switch class {
	case classIP:
		return c.cfg.MaxIPFailures
	case classPair:
		return c.cfg.MaxFailures
	}
	return delaySteps(c.cfg.BaseDelay, c.cfg.MaxDelay)
}

// delaySteps is how many failures bring the delay to its cap.
func delaySteps(base, maxDelay time.Duration) int {
	n := 1
	for d := base; d > 0 && d < maxDelay; d *= 2 {
		n++
	}
	return n
}

// Authenticate checks username (an address) and password for a login from
// ip (a string form of the client IP; "" if unknown). When the pair
// (client network, account) or the client network is locked it returns
// ErrLocked at once, without checking. On failure it waits a growing
// delay (bounded by MaxDelay and ctx) before returning ErrFailed.
func (c *Checker) Authenticate(ctx context.Context, ip, username, password string) (storage.Account, error) {
	user := strings.ToLower(strings.TrimSpace(username))
	network := ""
	if ip != "" {
		network = clientNetwork(ip)
	}
	keys := []throttleKey{makeKey(classPair, network, user), makeKey(classAccount, "", user)}
	if network != "" {
		keys = append(keys, makeKey(classIP, network, ""))
	}
	now := c.cfg.Now()
	if class, warn := c.begin(keys, now); class != 0 {
		c.stats.locked.Add(1)
		if class == classPair {
			c.stats.lockedPair.Add(1)
		} else {
			c.stats.lockedIP.Add(1)
		}
		lvl := slog.LevelDebug
		if warn {
			lvl = slog.LevelWarn
		}
		c.log.Log(ctx, lvl, "login refused: too many recent failures", "user", user, "ip", ip, "locked", class.label())
		return storage.Account{}, ErrLocked
	}
	acct, err := c.cfg.Store.Authenticate(user, password)
	switch {
	case err == nil:
		c.stats.success.Add(1)
		c.end(keys, now, succeeded)
		return acct, nil
	case !errors.Is(err, storage.ErrAuthFailed) && !errors.Is(err, storage.ErrNotFound):
		c.end(keys, now, undecided)
		return storage.Account{}, fmt.Errorf("auth: check credentials: %w", err)
	}
	c.stats.failure.Add(1)
	n, lockedNow := c.end(keys, now, failed)
	c.log.Warn("login failed", "user", user, "ip", ip, "recent_failures", n, "locked", lockedNow)
	c.wait(ctx, c.delay(n))
	return storage.Account{}, ErrFailed
}

// begin refuses an attempt whose pair or network is locked (returning the
// class that is, and whether to log it at warning level: once a minute
// per key), else counts the attempt in flight on every key so that
// parallel attempts cannot pass the limit while passwords are checked.
func (c *Checker) begin(keys []throttleKey, now time.Time) (keyClass, bool) {
	ms := now.UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.mu.t
	for _, k := range keys {
		limit := c.limit(k.class)
		if limit == 0 {
			continue
		}
		if e := t.get(k); e != nil && t.count(e, ms) >= limit {
			warn := now.Sub(e.warned) >= time.Minute
			if warn {
				e.warned = now
			}
			return k.class, warn
		}
	}
	for _, k := range keys {
		t.getOrCreate(k, ms).inflight++
	}
	return 0, false
}

// limit is the failure count that locks a key of class; 0 = never.
func (c *Checker) limit(class keyClass) int {
	switch class {
	case classPair:
		return c.cfg.MaxFailures
	case classIP:
		return c.cfg.MaxIPFailures
	}
	return 0
}

// outcome is how an attempt ended.
type outcome int

const (
	failed    outcome = iota // wrong credentials
	succeeded                // logged in
	undecided                // the check itself failed (the store)
)

// end ends an attempt begun at now. A failure is recorded under every key;
// a success clears the pair. It sends the changed records to the peers
// and returns the highest failure count of the keys and whether this
// failure locked one of them.
func (c *Checker) end(keys []throttleKey, now time.Time, how outcome) (int, bool) {
	ms := now.UnixMilli()
	var out []record
	highest, lockedNow := 0, false
	c.mu.Lock()
	t := c.mu.t
	for _, k := range keys {
		e := t.getOrCreate(k, ms)
		if e.inflight > 0 {
			e.inflight--
		}
		switch {
		case how == failed:
			out = append(out, t.fail(e, c.cfg.Node, ms))
			n := t.count(e, ms)
			highest = max(highest, n)
			if limit := c.limit(k.class); limit > 0 && n == limit {
				lockedNow = true
			}
		case how == succeeded && k.class == classPair:
			if t.count(e, ms) > e.inflight {
				out = append(out, t.clear(e, c.cfg.Node, ms))
			}
		}
	}
	if len(out) > 0 {
		c.mu.changes++
	}
	c.mu.Unlock()
	if c.cfg.Peers != nil {
		for _, r := range out {
			c.cfg.Peers.Broadcast(string(append([]byte{byte(r.class)}, r.id[:]...)), encodeRecords([]record{r}))
		}
	}
	return highest, lockedNow
}

// delay is how long to hold the answer to a failure when the key with the
// most failures has n.
func (c *Checker) delay(n int) time.Duration {
	if c.cfg.BaseDelay < 0 || n <= 0 {
		return 0
	}
	d := c.cfg.BaseDelay
	for i := 1; i < n && d < c.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxDelay)
}

// wait holds the answer to a failure for d, or until ctx ends (the
// session's server stops). At most MaxDelayed answers wait at once; past
// that they go out at once.
func (c *Checker) wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case c.delayed <- struct{}{}:
	default:
		c.stats.delaySkipped.Add(1)
		return
	}
	defer func() { <-c.delayed }()
	c.stats.delayedN.Add(1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Merge takes in throttle records: what another node sent (one record,
// or its whole table at a gossip push-pull), or what State returned
// before this node restarted. Records from the future (more than a
// minute ahead of this node's clock) are ignored. It does no I/O and
// holds the lock only for in-memory work, so gossip may call it.
func (c *Checker) Merge(msg []byte) error {
	rs, err := decodeRecords(msg)
	if err != nil {
		c.stats.badMessages.Add(1)
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	ms := c.cfg.Now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rs {
		if last(r.at) > ms+maxSkew || r.cleared > ms+maxSkew {
			c.stats.futureRecords.Add(1)
			continue
		}
		if last(r.at) <= ms-c.mu.t.window && r.cleared <= ms-c.mu.t.window {
			c.stats.staleRecords.Add(1)
			continue
		}
		c.mu.t.merge(r, ms)
		c.stats.mergedRecords.Add(1)
	}
	c.mu.changes++
	return nil
}

// maxSkew is how far ahead of this node's clock a record may be (ms).
const maxSkew = int64(time.Minute / time.Millisecond)

// State encodes what this node knows that still counts, the most
// recently used keys first, in at most limit bytes (0 or more than
// MaxStateBytes = MaxStateBytes). Merge takes it in, on this node after a
// restart or on another.
func (c *Checker) State(limit int) []byte {
	if limit <= 0 || limit > MaxStateBytes {
		limit = MaxStateBytes
	}
	ms := c.cfg.Now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.t.state(ms, limit)
}

// Changes counts the changes to the throttle table so far: a caller that
// saves State can skip saving when it has not moved.
func (c *Checker) Changes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.changes
}

// Locked reports whether a login of username from ip would be refused
// now, without counting an attempt.
func (c *Checker) Locked(ip, username string) bool {
	user := strings.ToLower(strings.TrimSpace(username))
	network := ""
	if ip != "" {
		network = clientNetwork(ip)
	}
	keys := []throttleKey{makeKey(classPair, network, user)}
	if network != "" {
		keys = append(keys, makeKey(classIP, network, ""))
	}
	ms := c.cfg.Now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if e := c.mu.t.byKey[k]; e != nil && c.mu.t.count(e, ms) >= c.limit(k.class) {
			return true
		}
	}
	return false
}
