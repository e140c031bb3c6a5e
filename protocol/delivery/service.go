package delivery

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

// Service is the outbound MTA of one node: the scheduler (acting while the
// node leads) and the worker (delivering what this node holds a lease on).
// Start it on every node.
type Service struct {
	cfg  Config
	log  *slog.Logger
	node string

	ctx    context.Context // cancelled by Stop: aborts deliveries in flight
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		// leading counts scheduler runs in progress (leader tasks:
		// their goroutines belong to the cluster's leader loop); Stop
		// waits for them.
		leading  sync.WaitGroup
		started  bool
		stopped  bool
		inflight map[string]bool      // queue IDs being delivered here
		done     map[string]time.Time // queue ID -> LeaseUntil of a finished attempt
		rr       int                  // scheduler's round-robin position
	}
}

// New checks cfg and returns a Service; Start runs it.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Service{cfg: cfg, node: cfg.Cluster.Name(), stop: make(chan struct{})}
	s.log = cfg.Logger.With("node", s.node)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.inflight = make(map[string]bool)
	s.mu.done = make(map[string]time.Time)
	return s, nil
}

// Start starts the scheduler and worker loops.
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return
	}
	s.mu.started = true
	s.wg.Add(1)
	go s.workerLoop()
	s.cfg.Cluster.RunAsLeader("delivery-scheduler", s.schedule)
}

// Stop stops both loops, aborts deliveries in flight (their leases expire
// and another node retries them: a remote may see a duplicate, never a
// loss) and waits for every goroutine. Safe to call more than once.
func (s *Service) Stop() {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return
	}
	s.mu.stopped = true
	s.mu.Unlock()
	close(s.stop)
	s.cancel()
	s.wg.Wait()
	s.mu.leading.Wait()
}

// schedule is the scheduler, a leader task: while this node leads (and
// the service runs) it leases due entries to live nodes every
// PollInterval. The cluster starts it after a Barrier, so it decides on
// the state every earlier leader committed.
func (s *Service) schedule(ctx context.Context) {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return
	}
	s.mu.leading.Add(1)
	s.mu.Unlock()
	defer s.mu.leading.Done()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.scheduleOnce()
	}
}

// scheduleOnce leases every due, unheld, unleased entry (up to
// MaxLeasesPerTick), round-robin over the live nodes. Apply re-checks all
// of it (CmdQueueLease), so a stale view costs a refused lease, never a
// double one.
func (s *Service) scheduleOnce() {
	entries, err := s.cfg.Store.QueueEntries()
	if err != nil {
		s.log.Error("delivery: read queue", "err", err)
		return
	}
	nodes := s.cfg.Cluster.LiveNodes()
	if len(nodes) == 0 {
		nodes = []string{s.node}
	}
	now := s.cfg.Now()
	leased := 0
	for _, e := range entries {
		if leased >= s.cfg.MaxLeasesPerTick {
			return
		}
		if e.Hold || e.NextAttempt.After(now) || (e.LeaseNode != "" && e.LeaseUntil.After(now)) {
			continue
		}
		s.mu.Lock()
		node := nodes[s.mu.rr%len(nodes)]
		s.mu.rr++
		s.mu.Unlock()
		res, err := s.propose(storage.CmdQueueLease, storage.QueueLease{ID: e.ID, Node: node, Until: now.Add(s.cfg.LeaseDuration)}, now)
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			if !errors.Is(err, storage.ErrExists) && !errors.Is(err, storage.ErrInvalid) && !errors.Is(err, storage.ErrNotFound) {
				s.log.Warn("delivery: lease failed", "queue_id", e.ID, "peer", node, "err", err)
				return // no quorum or leadership lost: next tick
			}
			continue
		}
		leased++
		s.log.Debug("delivery: leased", "queue_id", e.ID, "peer", node)
	}
}

// propose commits one command stamped with the service's clock.
func (s *Service) propose(t storage.CommandType, payload any, now time.Time) (storage.Result, error) {
	cmd, err := storage.NewCommand(t, payload)
	if err != nil {
		return storage.Result{}, err
	}
	cmd.Time = now.UTC()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	_, res, err := s.cfg.Cluster.Propose(ctx, cmd)
	return res, err
}

// workerLoop starts a delivery for every entry leased to this node.
func (s *Service) workerLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.workOnce()
	}
}

func (s *Service) workOnce() {
	entries, err := s.cfg.Store.QueueEntries()
	if err != nil {
		s.log.Error("delivery: read queue", "err", err)
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.ID] = true
		if e.LeaseNode != s.node || !e.LeaseUntil.After(now) || s.mu.inflight[e.ID] {
			continue
		}
		if until, ok := s.mu.done[e.ID]; ok && until.Equal(e.LeaseUntil) {
			// Attempted under this lease already; its result did not
			// commit. Wait for the lease to expire rather than send again.
			continue
		}
		if len(s.mu.inflight) >= s.cfg.MaxConcurrent {
			break
		}
		s.mu.inflight[e.ID] = true
		s.wg.Add(1)
		go func(e storage.QueueEntry) {
			defer s.wg.Done()
			until := s.attempt(e)
			s.mu.Lock()
			delete(s.mu.inflight, e.ID)
			s.mu.done[e.ID] = until
			s.mu.Unlock()
		}(e)
	}
	for id := range s.mu.done {
		if !present[id] {
			delete(s.mu.done, id)
		}
	}
}

// attempt makes one delivery attempt of e under this node's lease and
// proposes the result. It returns the lease's end as last renewed.
func (s *Service) attempt(e storage.QueueEntry) time.Time {
	log := s.log.With("queue_id", e.ID)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	lease := newLeaseKeeper(s, e, log)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		lease.run(ctx)
	}()
	defer func() {
		cancel()
		<-renewDone
	}()

	var pending []string
	for _, r := range e.Recipients {
		if r.Status == storage.QueuePending {
			pending = append(pending, r.Address)
		}
	}
	if len(pending) > 0 {
		outcomes, lastErr := s.deliverEntry(ctx, e, pending, log)
		if s.ctx.Err() != nil {
			// Stopping: record nothing; the lease expires and another
			// node tries again.
			return lease.until()
		}
		var ok bool
		if e, ok = s.record(e, outcomes, lastErr, log); !ok {
			return lease.until()
		}
	}
	s.finish(ctx, e, log)
	return lease.until()
}

// record proposes the outcome of an attempt and returns the entry as
// committed.
func (s *Service) record(e storage.QueueEntry, outcomes map[string]outcome, lastErr string, log *slog.Logger) (storage.QueueEntry, bool) {
	now := s.cfg.Now()
	expired := now.Sub(e.Created) >= s.cfg.MaxQueueLifetime
	res := storage.QueueResult{ID: e.ID, Node: s.node, LastError: lastErr}
	deferred := false
	for _, r := range e.Recipients {
		o, ok := outcomes[r.Address]
		if !ok || r.Status != storage.QueuePending {
			continue
		}
		u := storage.QueueRecipient{Address: r.Address, Status: o.status, LastReply: o.reply, Attempts: r.Attempts + 1}
		if o.status == storage.QueuePending {
			if expired {
				u.Status = storage.QueueFailed
				u.LastReply = expiredPrefix + o.reply
			} else {
				deferred = true
			}
		}
		res.Recipients = append(res.Recipients, u)
	}
	res.NextAttempt = now
	if deferred {
		res.NextAttempt = now.Add(s.cfg.backoff(e.Attempts + 1))
	}
	r, err := s.propose(storage.CmdQueueResult, res, now)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			log.Info("delivery: entry removed during the attempt")
		} else {
			log.Error("delivery: result not recorded; the entry is retried once the lease expires", "err", err)
		}
		return e, false
	}
	var q storage.QueueEntry
	if err := r.Decode(&q); err != nil {
		log.Error("delivery: decode result", "err", err)
		return e, false
	}
	for _, u := range res.Recipients {
		log.Info("delivery: recipient", "rcpt", u.Address, "status", u.Status, "reply", u.LastReply, "attempts", u.Attempts)
	}
	if deferred {
		log.Info("delivery: deferred", "next_attempt", q.NextAttempt.Format(time.RFC3339), "attempts", q.Attempts)
	}
	return q, true
}

// finish removes an entry with no pending recipient, after bouncing its
// failed recipients to the sender (unless the sender is null). If the
// bounce cannot be committed the entry stays, and the next attempt
// finishes it.
func (s *Service) finish(ctx context.Context, e storage.QueueEntry, log *slog.Logger) {
	var failed []storage.QueueRecipient
	for _, r := range e.Recipients {
		switch r.Status {
		case storage.QueuePending:
			return
		case storage.QueueFailed:
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		if err := s.bounce(ctx, e, failed, log); err != nil {
			log.Error("delivery: bounce not sent; retried at the next attempt", "err", err)
			return
		}
	}
	res, err := s.propose(storage.CmdQueueRemove, storage.QueueRemove{ID: e.ID}, s.cfg.Now())
	if err == nil {
		err = res.Err()
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		log.Error("delivery: remove finished entry", "err", err)
		return
	}
	log.Info("delivery: done", "recipients", len(e.Recipients), "failed", len(failed))
}

// expiredPrefix starts the LastReply of a recipient that failed because
// the queue lifetime ran out.
const expiredPrefix = "delivery time expired; last error: "

// leaseKeeper renews this node's lease on an entry while an attempt runs.
type leaseKeeper struct {
	s   *Service
	id  string
	log *slog.Logger
	mu  sync.Mutex
	end time.Time
}

func newLeaseKeeper(s *Service, e storage.QueueEntry, log *slog.Logger) *leaseKeeper {
	return &leaseKeeper{s: s, id: e.ID, log: log, end: e.LeaseUntil}
}

func (l *leaseKeeper) until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

func (l *leaseKeeper) run(ctx context.Context) {
	every := l.s.cfg.LeaseDuration / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := l.s.cfg.Now()
		until := now.Add(l.s.cfg.LeaseDuration)
		res, err := l.s.propose(storage.CmdQueueLease, storage.QueueLease{ID: l.id, Node: l.s.node, Until: until, Renew: true}, now)
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("delivery: lease renewal failed; another node may deliver this entry too", "err", err)
			}
			continue
		}
		l.mu.Lock()
		l.end = until.UTC()
		l.mu.Unlock()
	}
}

// domainOf returns the lower-cased domain of an address.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprint(err)
}
