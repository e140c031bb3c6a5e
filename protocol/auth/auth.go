package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/raftmail/raftmail/storage"
)

var (
	// ErrFailed: wrong user name or password. Answer with the protocol's
	// authentication failure (SMTP 535 5.7.8, IMAP NO [AUTHENTICATIONFAILED],
	// POP3 -ERR [AUTH]).
	ErrFailed = errors.New("auth: invalid credentials")
	// ErrLocked: too many recent failures from this IP or for this account;
	// answer a temporary failure (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE],
	// POP3 -ERR [IN-USE]/[SYS/TEMP]).
	ErrLocked = errors.New("auth: too many failed logins, try again later")
)

// Config configures a Checker. Zero values take the defaults given.
type Config struct {
	// Store holds the accounts. Required.
	Store *storage.Store
	// MaxFailures is how many failures within Window lock an IP or an
	// account; 0 = 10.
	MaxFailures int
	// Window is how long a failure counts; 0 = 15 minutes.
	Window time.Duration
	// LockFor is how long a lock lasts; 0 = 15 minutes.
	LockFor time.Duration
	// BaseDelay is the delay after the first failure, doubled for each
	// further one up to MaxDelay; 0 = 250ms. Negative disables delays
	// (tests).
	BaseDelay time.Duration
	// MaxDelay caps the delay; 0 = 4s.
	MaxDelay time.Duration
	// Logger; nil = discard.
	Logger *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// Checker verifies credentials and throttles failures. Safe for
// concurrent use.
type Checker struct {
	cfg Config
	log *slog.Logger

	mu struct {
		sync.Mutex
		byKey map[string]*record // "ip:1.2.3.4" or "user:a@b"
	}
}

type record struct {
	failures    []time.Time
	lockedUntil time.Time
}

// New returns a Checker with defaults filled in.
func New(cfg Config) *Checker {
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = 10
	}
	if cfg.Window == 0 {
		cfg.Window = 15 * time.Minute
	}
	if cfg.LockFor == 0 {
		cfg.LockFor = 15 * time.Minute
	}
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = 250 * time.Millisecond
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = 4 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checker{cfg: cfg, log: cfg.Logger}
	c.mu.byKey = make(map[string]*record)
	return c
}

// Authenticate checks username (an address) and password for a login from
// ip (a string form of the client IP; "" if unknown). On failure it waits
// a growing delay (bounded by ctx) before returning ErrFailed; when the IP
// or the account is locked it returns ErrLocked at once, without checking.
func (c *Checker) Authenticate(ctx context.Context, ip, username, password string) (storage.Account, error) {
	user := strings.ToLower(strings.TrimSpace(username))
	keys := []string{"user:" + user}
	if ip != "" {
		keys = append(keys, "ip:"+ip)
	}
	now := c.cfg.Now()
	if until, locked := c.locked(keys, now); locked {
		c.log.Warn("login refused: locked after repeated failures", "user", user, "ip", ip, "until", until.UTC().Format(time.RFC3339))
		return storage.Account{}, ErrLocked
	}
	acct, err := c.cfg.Store.Authenticate(user, password)
	if err == nil {
		c.clear("user:" + user)
		return acct, nil
	}
	if !errors.Is(err, storage.ErrAuthFailed) && !errors.Is(err, storage.ErrNotFound) {
		return storage.Account{}, fmt.Errorf("auth: check credentials: %w", err)
	}
	n, lockedNow := c.fail(keys, now)
	c.log.Warn("login failed", "user", user, "ip", ip, "recent_failures", n, "locked", lockedNow)
	if d := c.delay(n); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return storage.Account{}, ErrFailed
}

func (c *Checker) locked(keys []string, now time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if r := c.mu.byKey[k]; r != nil && now.Before(r.lockedUntil) {
			return r.lockedUntil, true
		}
	}
	return time.Time{}, false
}

// fail records a failure under every key and returns the highest recent
// failure count and whether this failure locked a key.
func (c *Checker) fail(keys []string, now time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maxN, locked := 0, false
	for _, k := range keys {
		r := c.mu.byKey[k]
		if r == nil {
			r = &record{}
			c.mu.byKey[k] = r
		}
		kept := r.failures[:0]
		for _, f := range r.failures {
			if now.Sub(f) < c.cfg.Window {
				kept = append(kept, f)
			}
		}
		r.failures = append(kept, now)
		if len(r.failures) >= c.cfg.MaxFailures {
			r.lockedUntil = now.Add(c.cfg.LockFor)
			r.failures = nil
			locked = true
			maxN = max(maxN, c.cfg.MaxFailures)
		}
		maxN = max(maxN, len(r.failures))
	}
	c.pruneLocked(now)
	return maxN, locked
}

// pruneLocked drops records with nothing left to remember, so the table
// stays bounded by recent activity.
func (c *Checker) pruneLocked(now time.Time) {
	if len(c.mu.byKey) < 4096 {
		return
	}
	for k, r := range c.mu.byKey {
		if now.After(r.lockedUntil) && (len(r.failures) == 0 || now.Sub(r.failures[len(r.failures)-1]) >= c.cfg.Window) {
			delete(c.mu.byKey, k)
		}
	}
}

func (c *Checker) clear(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mu.byKey, key)
}

func (c *Checker) delay(failures int) time.Duration {
	if c.cfg.BaseDelay < 0 || failures <= 0 {
		return 0
	}
	d := c.cfg.BaseDelay
	for i := 1; i < failures && d < c.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxDelay)
}
