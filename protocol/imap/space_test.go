package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// Below the node's free-space floor APPEND answers as Dovecot does on a
// full disk, NO [OVERQUOTA], whatever the literal's form; the session goes
// on, and APPEND works again once space is back.
func TestAppendInsufficientStorage(t *testing.T) {
	const floor = 64 << 20
	var disk *clustertest.DiskFS
	e := newEnv(t, envOptions{prepare: func(c *clustertest.Cluster) {
		disk = c.RestartWithDisk(c.Nodes[0], floor/2, floor)
		clustertest.WaitFor(t, 10*time.Second, "a leader after the restart", c.Nodes[0].Node.IsLeader)
	}})
	c := dialRaw(t, e.plain[0])
	c.startTLS(e.clientTLS)
	c.login()
	msg := "Subject: full\r\n\r\nbody\r\n"
	c.send(fmt.Sprintf("a1 APPEND INBOX {%d}", len(msg)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.send(msg)
	if got := c.until("a1"); !contains(got, "TAG NO [OVERQUOTA] Not enough disk space") {
		t.Fatalf("APPEND below the floor: %q", got)
	}
	c.send(fmt.Sprintf("a2 APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	if got := c.until("a2"); !contains(got, "TAG NO [OVERQUOTA] ") {
		t.Fatalf("APPEND with LITERAL+ below the floor: %q", got)
	}
	c.expect("NOOP", "OK")

	disk.SetAvail(2 * floor)
	clustertest.WaitFor(t, 10*time.Second, "the floor cleared", func() bool { return !e.c.Nodes[0].Store.Space().Below })
	c.send(fmt.Sprintf("a3 APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	if got := c.until("a3"); !contains(got, "TAG OK [APPENDUID ") {
		t.Fatalf("APPEND after space came back: %q", got)
	}
}
