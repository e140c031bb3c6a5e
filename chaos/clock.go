package chaos

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
)

// Clock faults. Go reads the time through the vDSO, not libc, so
// faketime cannot skew a raftmail process; a binary built with the
// chaos_clock tag reads an offset from the file named by
// RAFTMAIL_CHAOS_CLOCK_FILE instead (internal/wallclock), and that offset
// moves everything Raftmail decides by the wall clock: the time of the
// replicated commands it proposes (queue leases, retries), join-token
// and certificate validity, certificate renewal, login throttling. Raft's
// own timers, timeouts and the monotonic clock are not moved, as a real
// wall-clock step does not move them either.

// clockSkew is how far the clock-skew scenario moves two clocks: far
// more than any lease or retry interval, far less than the de-dup window
// (24 h) and certificate lifetimes.
const clockSkew = 10 * time.Minute

func clockScenario() Scenario {
	return Scenario{
		Name:  "clock-skew",
		Doc:   fmt.Sprintf("the leader's wall clock jumps %s ahead and a follower's %s behind under load, both jump back at the heal (needs a binary built with -tags chaos_clock, as `make chaos` builds)", clockSkew, clockSkew),
		Needs: NeedClock,
		Fault: func(ctx context.Context, c Cluster, e *Env) (Fault, error) {
			leader, err := e.Leader(ctx)
			if err != nil {
				return Fault{}, err
			}
			follower, err := e.Follower(ctx)
			if err != nil {
				return Fault{}, err
			}
			f := Fault{Name: "clock skew", Target: leader + "," + follower, Start: time.Now(), Skew: clockSkew}
			heal := func() error {
				return errors.Join(c.SkewClock(leader, 0), c.SkewClock(follower, 0))
			}
			if err := c.SkewClock(leader, clockSkew); err != nil {
				return f, err
			}
			if err := c.SkewClock(follower, -clockSkew); err != nil {
				_ = heal()
				return f, err
			}
			for _, n := range []struct {
				name string
				d    time.Duration
			}{{leader, clockSkew}, {follower, -clockSkew}} {
				if err := e.clockShows(ctx, n.name, n.d); err != nil {
					_ = heal()
					return f, err
				}
			}
			f.Effect = time.Now()
			if err := wait(ctx, e.Hold); err != nil {
				_ = heal()
				return f, err
			}
			if err := heal(); err != nil {
				return f, err
			}
			f.Heal = time.Now()
			return f, nil
		},
	}
}

// clockShows waits (up to 5s) until node's status reports a time off by
// about d from this process's clock: proof that the skew took effect.
func (e *Env) clockShows(ctx context.Context, node string, d time.Duration) error {
	n := e.Node(node)
	deadline := time.Now().Add(5 * time.Second)
	var last time.Duration
	for time.Now().Before(deadline) {
		before := time.Now()
		sts, err := statusOf(ctx, n, 2*time.Second)
		if st, ok := self(n, sts); err == nil && ok {
			last = st.Time.Sub(before)
			if (last - d).Abs() < 2*time.Second {
				return nil
			}
		}
		if err := wait(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("chaos: %s's clock is off by %s, want about %s: the skew did not take effect", node, last.Round(time.Millisecond), d)
}

// binaryTagged reports whether the Go binary at path was built with the
// build tag tag, from its embedded build information.
func binaryTagged(path, tag string) (bool, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return false, err
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), tag) {
			return true, nil
		}
	}
	return false, nil
}

// clockSupport says why a binary cannot have its clock skewed, or nil.
func clockSupport(bin string) error {
	ok, err := binaryTagged(bin, "chaos_clock")
	switch {
	case err != nil:
		return fmt.Errorf("clock faults: cannot read the build information of %s (%v): %w", bin, err, ErrNotSupported)
	case !ok:
		return fmt.Errorf("clock faults need a binary built with -tags chaos_clock (make chaos builds bin/raftmail-chaos): %w", ErrNotSupported)
	}
	return nil
}

// clockEnv is the environment entry that points n's process at its
// clock file.
func (c *procCluster) clockEnv(n *procNode) string {
	return wallclock.ClockFileEnv + "=" + c.clockFile(n)
}

func (c *procCluster) clockFile(n *procNode) string {
	return filepath.Join(c.dir, n.info.Name+".clock")
}

// SkewClock sets node's wall-clock offset (0: none); a running node
// reads it within 50ms, a node started later at once.
func (c *procCluster) SkewClock(node string, d time.Duration) error {
	if err := clockSupport(c.bin); err != nil {
		return err
	}
	n, err := c.node(node)
	if err != nil {
		return err
	}
	path := c.clockFile(n)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("chaos: skew %s's clock: %w", node, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("chaos: skew %s's clock: %w", node, err)
	}
	c.logf("chaos: %s's wall clock offset is now %s", node, d)
	return nil
}

// SkewClock is not supported by the Docker backend: the image's binary
// is a release build.
func (c *dockerCluster) SkewClock(node string, d time.Duration) error {
	return fmt.Errorf("clock faults run on the process backend only: %w", ErrNotSupported)
}
