package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// blockedInShutdown stands for a shutdown step that never ends.
func blockedInShutdown(release <-chan struct{}) { <-release }

// A shutdown that does not finish within its bound, or is interrupted by
// a second signal, is given up with an error naming the step it was at
// and where it is stuck.
func TestStopWithinGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		signal  bool
		want    string
	}{
		{"timeout", 50 * time.Millisecond, false, "shutdown did not finish within 50ms"},
		{"second signal", time.Hour, true, "stopped by a second terminated during shutdown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			release := make(chan struct{})
			defer close(release)
			var step shutdownStep
			sig := make(chan os.Signal, 1)
			if tc.signal {
				sig <- syscall.SIGTERM
			}
			err := stopWithin(func(time.Duration) {
				step.set("mail listeners")
				blockedInShutdown(release)
			}, &step, log, tc.timeout, sig)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("stopWithin: %v, want %q", err, tc.want)
			}
			if tc.signal {
				return // the step may not have been set yet
			}
			if !strings.Contains(err.Error(), "at: mail listeners") {
				t.Errorf("error does not name the step: %v", err)
			}
			if !strings.Contains(logs.String(), "main.blockedInShutdown") {
				t.Errorf("the log does not say where the shutdown is stuck:\n%s", logs.String())
			}
		})
	}
	if err := stopWithin(func(time.Duration) {}, new(shutdownStep), slog.New(slog.DiscardHandler), time.Hour, nil); err != nil {
		t.Fatalf("a shutdown that finishes: %v", err)
	}
}

// fatal says goodbye within its bound and exits with exitStorageFailed,
// once, however many goroutines report a failure.
func TestLifecycleFatalExits(t *testing.T) {
	lc := newLifecycle(slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	var codes []int
	exited := make(chan struct{})
	lc.exit = func(code int) {
		mu.Lock()
		codes = append(codes, code)
		mu.Unlock()
		close(exited)
	}
	for range 3 {
		go lc.fatal(errors.New("storage: store failed: injected"))
	}
	select {
	case <-exited:
	case <-time.After(time.Minute): // hang guard
		t.Fatal("fatal did not exit")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(codes) != 1 || codes[0] != exitStorageFailed {
		t.Fatalf("exit codes %v, want one %d", codes, exitStorageFailed)
	}
}
