package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/raftmail/raftmail/protocol/auth"
)

// throttleFile keeps the node's login throttle table (protocol/auth State)
// between runs, so a restart forgets no lock. It is node-local: nothing
// in it is replicated by Raft.
const throttleFile = "throttle.state"

// throttleSaveEvery is how often the table is saved when it changed.
const throttleSaveEvery = 10 * time.Second

// startThrottle loads the saved throttle table into checker, hands the
// checker what the other nodes send over gossip, and saves the table every
// throttleSaveEvery while it changes. The function it returns stops the
// saving and saves a last time.
func startThrottle(cfg *nodeConfig, rt *runtime, checker *auth.Checker, log *slog.Logger) func() {
	path := cfg.path(throttleFile)
	switch b, err := os.ReadFile(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Warn("login throttling: cannot read the saved table; starting empty", "path", path, "err", err)
	default:
		if err := checker.Merge(b); err != nil {
			log.Warn("login throttling: ignoring an unreadable saved table", "path", path, "err", err)
		}
	}
	if rt.gossip != nil {
		rt.gossip.SetHandler(checker)
	}
	saved := ^uint64(0)
	save := func() {
		n := checker.Changes()
		if n == saved {
			return
		}
		if err := writeSecret(path, checker.State(0)); err != nil {
			log.Warn("login throttling: save the table", "path", path, "err", err)
			return
		}
		saved = n
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(throttleSaveEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				save()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			wg.Wait()
			save()
		})
	}
}
