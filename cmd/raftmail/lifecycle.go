package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

// Exit statuses of `raftmail serve` besides 0 (stopped in order) and 1
// (an error, a shutdown that did not finish in time, a second signal).
const (
	// exitStorageFailed: a durable write failed (Pebble, the Raft term);
	// the node stopped rather than go on (sysexits EX_IOERR).
	exitStorageFailed = 74
	// exitDeparted: the node was removed from the cluster while it ran
	// (`raftmail remove`), or will not start because its data directory
	// belongs to a node that left or was removed. Restarting does not
	// help: join again with a new token. (systemd:
	// RestartPreventExitStatus=3.)
	exitDeparted = 3
)

// exitError is an error that ends the process with a given status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// fatalGoodbye bounds how long a node that must stop at once spends
// telling its mail clients (SMTP 421, IMAP BYE, POP3 -ERR).
const fatalGoodbye = 2 * time.Second

// lifecycle is how a running node stops when it cannot go on: a failed
// store or Raft state calls fatal (storage.Config.OnFatal,
// cluster.Config.OnFatal), which says goodbye to clients, within
// fatalGoodbye, and exits with exitStorageFailed. The ordered shutdown
// is runtime.shutdown; serve bounds it.
type lifecycle struct {
	log  *slog.Logger
	exit func(code int) // os.Exit

	// stopReq receives the one request for an ordered shutdown that does
	// not come from a signal: the node left or was removed.
	stopReq chan stopRequest

	once     sync.Once
	stopOnce sync.Once
	mu       struct {
		sync.Mutex
		mail *mailServers
	}
}

// stopRequest asks serve for its ordered shutdown, then to exit with err
// (nil: status 0).
type stopRequest struct {
	why string
	err error
}

func newLifecycle(log *slog.Logger) *lifecycle {
	return &lifecycle{log: log, exit: os.Exit, stopReq: make(chan stopRequest, 1)}
}

// requestStop asks for the ordered shutdown; the first request wins.
func (lc *lifecycle) requestStop(r stopRequest) {
	lc.stopOnce.Do(func() { lc.stopReq <- r })
}

// removed is cluster.Config.OnRemoved: the node stops serving through the
// ordered shutdown and exits with exitDeparted.
func (lc *lifecycle) removed(d *cluster.Departure) {
	lc.requestStop(stopRequest{why: "removed from the cluster", err: &exitError{code: exitDeparted, err: d}})
}

// setMail names the mail servers to say goodbye to.
func (lc *lifecycle) setMail(ms *mailServers) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.mu.mail = ms
}

// fatal stops the process: it never returns. Called more than once, the
// first call wins.
func (lc *lifecycle) fatal(err error) {
	lc.once.Do(func() {
		lc.log.Error("FATAL: the node cannot go on and stops now; restart it once the cause is fixed",
			"err", err, "exit_status", exitStorageFailed)
		lc.mu.Lock()
		ms := lc.mu.mail
		lc.mu.Unlock()
		if ms != nil {
			ctx, cancel := context.WithTimeout(context.Background(), fatalGoodbye)
			done := make(chan struct{})
			go func() {
				defer close(done)
				ms.shutdown(ctx)
			}()
			select {
			case <-done:
			case <-time.After(fatalGoodbye + 500*time.Millisecond):
				lc.log.Warn("mail clients not all told before the exit")
			}
			cancel()
		}
		lc.exit(exitStorageFailed)
	})
	select {} // another caller is exiting the process
}

// shutdownStep names what the ordered shutdown is waiting for, for the
// log when it takes too long.
type shutdownStep struct{ v atomic.Value }

func (s *shutdownStep) set(what string) { s.v.Store(what) }

func (s *shutdownStep) String() string {
	if v, ok := s.v.Load().(string); ok {
		return v
	}
	return "starting"
}

// stuckSummary lists where Raftmail's goroutines are, innermost Raftmail
// function first, most frequent first: what a shutdown that does not end
// is waiting for.
func stuckSummary(limit int) string {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	counts := map[string]int{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		lines := strings.Split(string(g), "\n")
		state := ""
		if len(lines) > 0 {
			if i, j := strings.IndexByte(lines[0], '['), strings.LastIndexByte(lines[0], ']'); i >= 0 && j > i {
				state = lines[0][i+1 : j]
				if k := strings.IndexByte(state, ','); k >= 0 {
					state = state[:k]
				}
			}
		}
		for _, l := range lines[1:] {
			// Frames of Raftmail's packages and of this command
			// (package main, or its import path in a test binary).
			l = strings.Replace(l, "github.com/raftmail/raftmail/cmd/raftmail.", "main.", 1)
			fn, ok := strings.CutPrefix(l, "github.com/raftmail/raftmail/")
			if !ok && !strings.HasPrefix(l, "main.") {
				continue
			}
			if i := strings.LastIndexByte(fn, '('); i > 0 {
				fn = fn[:i]
			}
			if fn == "main.stuckSummary" || fn == "main.stopWithin" {
				break // the watchdog itself, not what is stuck
			}
			counts[fn+" ["+state+"]"]++
			break
		}
	}
	type entry struct {
		what string
		n    int
	}
	var es []entry
	for w, n := range counts {
		es = append(es, entry{w, n})
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].n != es[j].n {
			return es[i].n > es[j].n
		}
		return es[i].what < es[j].what
	})
	var parts []string
	for i, e := range es {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more", len(es)-limit))
			break
		}
		parts = append(parts, fmt.Sprintf("%s x%d", e.what, e.n))
	}
	return strings.Join(parts, "; ")
}
