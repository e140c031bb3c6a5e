package connlimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says which cap refused a connection. Its value is the "reason"
// label of raftmail_connections_refused_total.
type Reason string

const (
	// PerIP: the client address already holds Config.PerIP connections.
	PerIP Reason = "per_ip"
	// PerNode: the node already holds Config.PerNode connections of the
	// protocol.
	PerNode Reason = "per_node"
)

// Defaults for zero Config fields.
const (
	// DefaultRefuseTimeout bounds writing a refusal line.
	DefaultRefuseTimeout = time.Second
	// DefaultLogInterval is the least time between two log lines about
	// the same client address and reason, and between two about accept
	// failures of one listener.
	DefaultLogInterval = time.Minute
)

// maxLogged bounds the client addresses whose last refusal log line is
// remembered. Past it, refusals of addresses not yet remembered share one
// entry, logged with ip "other".
const maxLogged = 10000

// Config configures a Limiter.
type Config struct {
	// Protocol names the connections counted together, in logs (key
	// "protocol") and metrics (label "protocol"): for example "smtp",
	// "submission", "imap", "pop3". Required.
	Protocol string
	// PerIP is how many connections one client address may hold at once,
	// summed over every listener wrapped by the Limiter (see the package
	// documentation for what an address is). 0 = no cap per address.
	PerIP int
	// PerNode is how many connections all clients together may hold at
	// once on the Limiter's listeners. 0 = no cap.
	PerNode int
	// Exempt lists the networks whose clients are not held to PerIP;
	// they still count towards PerNode. nil = none. ParseExempt reads the
	// --conn-limit-exempt form.
	Exempt []netip.Prefix
	// RefusePerIP and RefusePerNode are the lines (without CRLF) written to
	// a client refused by each cap on a listener wrapped with Wrap, before
	// the connection is closed. "" = closed without a word. Listeners
	// wrapped with WrapTLS never write them.
	RefusePerIP, RefusePerNode string
	// RefuseTimeout bounds writing a refusal line, so that a client that
	// does not read cannot hold the accept loop. 0 = DefaultRefuseTimeout
	// (1 second).
	RefuseTimeout time.Duration
	// LogInterval is the least time between two log lines about refusals
	// of the same client address for the same reason (the next line
	// carries the count since the last), and between two about accept
	// failures (out of descriptors) of one listener. 0 =
	// DefaultLogInterval (1 minute).
	LogInterval time.Duration
	// Logger receives the refusal and accept-failure lines, at warn level;
	// nil = discard.
	Logger *slog.Logger
	// NodeName is logged with key "node"; "" is allowed.
	NodeName string
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Protocol == "" {
		errs = append(errs, errors.New("Protocol is required"))
	}
	if c.PerIP < 0 || c.PerNode < 0 {
		errs = append(errs, fmt.Errorf("negative cap (PerIP %d, PerNode %d)", c.PerIP, c.PerNode))
	}
	if c.RefuseTimeout < 0 || c.LogInterval < 0 {
		errs = append(errs, errors.New("negative RefuseTimeout or LogInterval"))
	}
	for _, p := range c.Exempt {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid exempt prefix %v", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("connlimit: config: %w", err)
	}
	return nil
}

// Limiter counts the open connections of one protocol and refuses those
// past its caps. Safe for concurrent use. From its first refusal on it runs
// one goroutine, which logs the refusals not yet logged once their
// interval is over; Close stops it.
type Limiter struct {
	cfg Config
	log *slog.Logger

	refusedPerIP   atomic.Uint64
	refusedPerNode atomic.Uint64

	stop      chan struct{} // closed by Close: ends the flusher
	closeOnce sync.Once
	flusher   sync.WaitGroup

	mu struct {
		sync.Mutex
		open     int
		byAddr   map[netip.Addr]int // client key -> open connections, for PerIP
		logged   map[logKey]*logEntry
		flushing bool // the flusher was started
		closed   bool
	}
}

type logKey struct {
	addr   netip.Addr // zero: node-cap refusals, and the shared "other" entry
	reason Reason
}

type logEntry struct {
	last     time.Time  // when the last line was logged
	unsent   uint64     // refusals since then
	lastAddr netip.Addr // the last address refused (node-cap entry)
}

// New checks cfg and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RefuseTimeout == 0 {
		cfg.RefuseTimeout = DefaultRefuseTimeout
	}
	if cfg.LogInterval == 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeName != "" {
		log = log.With("node", cfg.NodeName)
	}
	l := &Limiter{cfg: cfg, log: log.With("protocol", cfg.Protocol), stop: make(chan struct{})}
	l.mu.byAddr = make(map[netip.Addr]int)
	l.mu.logged = make(map[logKey]*logEntry)
	return l, nil
}

// Protocol is Config.Protocol.
func (l *Limiter) Protocol() string { return l.cfg.Protocol }

// Caps returns Config.PerIP and Config.PerNode.
func (l *Limiter) Caps() (perIP, perNode int) { return l.cfg.PerIP, l.cfg.PerNode }

// Stats are a Limiter's figures at one moment.
type Stats struct {
	// Open is the number of connections accepted and not yet closed.
	Open int
	// RefusedPerIP and RefusedPerNode count the refusals by each cap
	// since New.
	RefusedPerIP, RefusedPerNode uint64
}

// Stats returns the current figures.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	open := l.mu.open
	l.mu.Unlock()
	return Stats{Open: open, RefusedPerIP: l.refusedPerIP.Load(), RefusedPerNode: l.refusedPerNode.Load()}
}

// clientKey is what PerIP counts: the address without zone, IPv4 for an
// IPv4-mapped address, the /64 network of an IPv6 address.
func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// exempt reports whether a is in Config.Exempt.
func (l *Limiter) exempt(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range l.cfg.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// slot is one admitted connection's share of the counters.
type slot struct {
	key    netip.Addr
	perIP  bool // counted in byAddr
	closed atomic.Bool
}

// acquire admits a connection from addr (invalid: not attributable, so
// only the node cap applies) or says which cap refuses it.
func (l *Limiter) acquire(addr netip.Addr) (*slot, Reason) {
	s := &slot{}
	s.perIP = l.cfg.PerIP > 0 && addr.IsValid() && !l.exempt(addr)
	if s.perIP {
		s.key = clientKey(addr)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.perIP && l.mu.byAddr[s.key] >= l.cfg.PerIP {
		return nil, PerIP
	}
	if l.cfg.PerNode > 0 && l.mu.open >= l.cfg.PerNode {
		return nil, PerNode
	}
	l.mu.open++
	if s.perIP {
		l.mu.byAddr[s.key]++
	}
	return s, ""
}

// release gives back s's share; only its first call counts.
func (l *Limiter) release(s *slot) {
	if s.closed.Swap(true) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.open--
	if s.perIP {
		if n := l.mu.byAddr[s.key]; n > 1 {
			l.mu.byAddr[s.key] = n - 1
		} else {
			delete(l.mu.byAddr, s.key)
		}
	}
}

// refused counts a refusal and logs it: a per-address refusal at most
// once per LogInterval per client address, a node-cap refusal at most once
// per LogInterval whatever the address (a flood from many addresses must
// not become a flood of log lines).
func (l *Limiter) refused(addr netip.Addr, reason Reason) {
	addr = addr.Unmap().WithZone("")
	key := logKey{addr: addr, reason: reason}
	if reason == PerIP {
		l.refusedPerIP.Add(1)
	} else {
		l.refusedPerNode.Add(1)
		key.addr = netip.Addr{}
	}
	now := time.Now()
	l.mu.Lock()
	e := l.mu.logged[key]
	if e == nil {
		if len(l.mu.logged) >= maxLogged {
			l.pruneLogsLocked(now)
		}
		if len(l.mu.logged) >= maxLogged {
			key.addr = netip.Addr{}
			e = l.mu.logged[key]
		}
		if e == nil {
			e = &logEntry{}
			l.mu.logged[key] = e
		}
	}
	e.unsent++
	if reason == PerNode {
		e.lastAddr = addr
	}
	if !l.mu.flushing && !l.mu.closed {
		l.mu.flushing = true
		l.flusher.Add(1)
		go l.flush()
	}
	if !e.last.IsZero() && now.Sub(e.last) < l.cfg.LogInterval {
		l.mu.Unlock()
		return
	}
	count, last := e.unsent, e.lastAddr
	e.unsent = 0
	e.last = now
	l.mu.Unlock()
	l.logRefusals(key, last, count)
}

// logRefusals writes the line for count refusals under key.
func (l *Limiter) logRefusals(key logKey, lastAddr netip.Addr, count uint64) {
	if key.reason == PerNode {
		last := "unknown"
		if lastAddr.IsValid() {
			last = lastAddr.String()
		}
		l.log.Warn("connection refused: too many connections to this node",
			"reason", string(key.reason), "limit", l.cfg.PerNode, "count", count, "interval", l.cfg.LogInterval.String(),
			"last_ip", last)
		return
	}
	ip := "other"
	if key.addr.IsValid() {
		ip = key.addr.String()
	}
	l.log.Warn("connection refused: too many connections from one address",
		"ip", ip, "reason", string(key.reason), "limit", l.cfg.PerIP, "count", count, "interval", l.cfg.LogInterval.String())
}

// flush runs from the first refusal until Close: every LogInterval it logs
// the refusals still unlogged, so that the end of a flood is logged too.
func (l *Limiter) flush() {
	defer l.flusher.Done()
	t := time.NewTicker(l.cfg.LogInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			l.flushLogs(now)
		}
	}
}

// flushLogs logs, for every key whose last line is at least LogInterval
// old, the refusals since, and forgets the keys with none.
func (l *Limiter) flushLogs(now time.Time) {
	type line struct {
		key   logKey
		last  netip.Addr
		count uint64
	}
	var lines []line
	l.mu.Lock()
	for k, e := range l.mu.logged {
		if now.Sub(e.last) < l.cfg.LogInterval {
			continue
		}
		if e.unsent == 0 {
			delete(l.mu.logged, k)
			continue
		}
		lines = append(lines, line{k, e.lastAddr, e.unsent})
		e.unsent = 0
		e.last = now
	}
	l.mu.Unlock()
	for _, ln := range lines {
		l.logRefusals(ln.key, ln.last, ln.count)
	}
}

// Close stops the Limiter's log flusher (refusals still work, and are
// still logged as they happen). It does not close any listener.
func (l *Limiter) Close() {
	l.mu.Lock()
	l.mu.closed = true
	l.mu.Unlock()
	l.closeOnce.Do(func() { close(l.stop) })
	l.flusher.Wait()
}

// pruneLogsLocked forgets the addresses whose last line is older than
// LogInterval (their unsent refusals are in the metrics).
func (l *Limiter) pruneLogsLocked(now time.Time) {
	for k, e := range l.mu.logged {
		if now.Sub(e.last) >= l.cfg.LogInterval {
			delete(l.mu.logged, k)
		}
	}
}

// remoteAddr is c's client IP address, or the zero Addr.
func remoteAddr(c net.Conn) netip.Addr {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	case nil:
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}
