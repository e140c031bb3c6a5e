package chaos

import (
	"strings"
	"testing"
)

func TestSelectPairs(t *testing.T) {
	list, err := selectScenarios([]string{"kill-follower+clock-skew", "disk-full", "kill-follower"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "kill-follower disk-full kill-follower+clock-skew" {
		t.Fatalf("selected %q", got)
	}
	pair := list[2]
	if pair.Needs != NeedClock {
		t.Errorf("pair needs %v, want NeedClock", pair.Needs)
	}
	var lo LaunchOptions
	Combine(list[1], list[0]).Launch(&lo)
	if lo.DiskLimitBytes == 0 {
		t.Error("a pair with disk-full launches without the disk limit")
	}
	for _, bad := range []string{"kill-follower+kill-follower", "a+b", "kill-follower+disk-full+clock-skew", "kill-follower+"} {
		if err := CheckScenarioNames([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRandomPairs(t *testing.T) {
	all := Scenarios()
	a, b := randomPairs(all, 6, 42), randomPairs(all, 6, 42)
	if len(a) != 6 {
		t.Fatalf("%d pairs, want 6", len(a))
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			t.Fatalf("pair %d: %s, then %s with the same seed", i, a[i].Name, b[i].Name)
		}
		x, y, _ := strings.Cut(a[i].Name, pairSep)
		if x == y || x == "" || y == "" {
			t.Errorf("pair %q", a[i].Name)
		}
	}
	if got := randomPairs(all[:1], 3, 1); got != nil {
		t.Errorf("pairs from one scenario: %v", got)
	}
}
