package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/chaos"
)

// TestChaosCheckCmd: `raftmail chaos check` reads recorded histories back
// and checks them again: a summary line per history, the failing
// invariants' examples, exit status 1 when one fails; a usage error without
// a file, a clear error for one that cannot be read.
func TestChaosCheckCmd(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// A send acknowledged to alice, and nothing in any mailbox: a lost
	// message.
	h := chaos.History{Scenario: "kill-follower", Seed: 7, Start: start, End: start.Add(10 * time.Second),
		Ops: []chaos.Op{{ID: 1, Kind: chaos.OpSend, Node: "n1", Client: 1, Start: start.Add(time.Second), End: start.Add(2 * time.Second),
			Outcome: chaos.OK, Code: 250, ChaosID: "c1", Rcpt: "alice@chaos.test", Via: "mx"}},
		Final: []chaos.NodeState{{Node: "n1", Reachable: true, Mailboxes: []chaos.MailboxState{{Account: "alice@chaos.test", Name: "INBOX", UIDValidity: 1, UIDNext: 1}}}},
	}
	path := filepath.Join(dir, "kill-follower.history.jsonl")
	if err := chaos.WriteFile(path, h); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		c := newChaosCmd()
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(append([]string{"check"}, args...))
		err := c.Execute()
		return out.String(), err
	}
	out, err := run(path)
	if err == nil || !strings.Contains(err.Error(), "1 of 1 histories failed") {
		t.Fatalf("a lost message: err %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "FAIL kill-follower seed=7") || !strings.Contains(out, "no-lost-ack: ") || !strings.Contains(out, "c1") {
		t.Fatalf("output:\n%s", out)
	}
	if _, err := run(); err == nil {
		t.Fatal("no file: no error")
	}
	if _, err := run(filepath.Join(dir, "absent.jsonl")); err == nil || !strings.Contains(err.Error(), "absent.jsonl") {
		t.Fatalf("absent file: %v", err)
	}
}
