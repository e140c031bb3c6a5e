package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IsTerminal reports whether f is a character device (a terminal), the
// test the standard library allows without golang.org/x/term.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Progress reports how far a workload is: a redrawn bar on a terminal, a
// plain line every second otherwise. The zero value and a nil *Progress
// report nothing.
type Progress struct {
	// W receives the progress; nil = none.
	W io.Writer
	// TTY draws a bar redrawn in place instead of plain lines.
	TTY bool
}

// tracker is one running workload's progress. Add is safe for concurrent
// use; stop ends the reporting goroutine.
type tracker struct {
	done  atomic.Int64
	stopc chan struct{}
	wg    sync.WaitGroup
}

func (t *tracker) Add(n int) {
	if t != nil {
		t.done.Add(int64(n))
	}
}

// start begins reporting label's progress towards total units.
func (p *Progress) start(label string, total int) *tracker {
	t := &tracker{stopc: make(chan struct{})}
	if p == nil || p.W == nil {
		return t
	}
	every := time.Second
	if p.TTY {
		every = 200 * time.Millisecond
	}
	begin := time.Now()
	draw := func(final bool) {
		n := t.done.Load()
		rate := float64(n) / time.Since(begin).Seconds()
		if p.TTY {
			const width = 30
			fill := 0
			if total > 0 {
				fill = int(int64(width) * min(n, int64(total)) / int64(total))
			}
			fmt.Fprintf(p.W, "\r%s [%s%s] %d/%d %.0f/s ", label, strings.Repeat("#", fill), strings.Repeat(".", width-fill), n, total, rate)
			if final {
				fmt.Fprintln(p.W)
			}
			return
		}
		if !final {
			fmt.Fprintf(p.W, "%s: %d/%d, %.0f/s, %s\n", label, n, total, rate, time.Since(begin).Round(time.Second))
		}
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-t.stopc:
				draw(true)
				return
			case <-tick.C:
				draw(false)
			}
		}
	}()
	return t
}

func (t *tracker) stop() {
	close(t.stopc)
	t.wg.Wait()
}
