package smtp

import (
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// A node below its free-space floor answers 452 4.3.1 at MAIL (and after
// DATA when the body does not fit), never silence and never 250; once
// space is back it accepts again without a restart.
func TestInsufficientStorage(t *testing.T) {
	e := newEnv(t)
	e.addUser(t, "user@example.test", "user-password")
	const floor = 64 << 20
	fs := e.c.RestartWithDisk(e.c.Nodes[0], floor/2, floor)
	e.node, e.st = e.c.Nodes[0].Node, e.c.Nodes[0].Store
	clustertest.WaitFor(t, 10*time.Second, "a leader after the restart", e.node.IsLeader)
	_, mx := e.server(t, ModeMX, nil)

	c := dial(t, mx)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<someone@remote.example>", "452 4.3.1 Insufficient system storage")
	c.cmd("MAIL FROM:<> SIZE=100", "452 4.3.1 ")
	c.cmd("RCPT TO:<user@example.test>", "502 5.5.1 ") // no transaction was started

	// Space comes back: just enough to count as recovered (the floor and
	// 5 % of it), so 3.2 MiB can be taken.
	fs.SetAvail(floor + floor/20)
	clustertest.WaitFor(t, 10*time.Second, "the floor cleared", func() bool { return !e.st.Space().Below })
	c.cmd("MAIL FROM:<someone@remote.example> SIZE=10000000", "452 4.3.1 ") // declared too big for what is left
	c.cmd("MAIL FROM:<someone@remote.example>", "250 ")
	c.cmd("RCPT TO:<user@example.test>", "250 ")
	// A body larger than what is left above the floor: refused after DATA.
	if r := c.sendData(testMsg + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4<<20/80)); !strings.HasPrefix(r, "452 4.3.1 ") {
		t.Fatalf("DATA of a body that does not fit: %q, want 452 4.3.1", r)
	}
	c.cmd("MAIL FROM:<someone@remote.example>", "250 ")
	c.cmd("RCPT TO:<user@example.test>", "250 ")
	if r := c.sendData(testMsg); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA of a small body: %q", r)
	}
	c.cmd("QUIT", "221 ")
	if n := e.st.Space().Refusals; n != 4 {
		t.Errorf("refusals counted: %d, want 4", n)
	}
}
