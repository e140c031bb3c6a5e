package pop3

import (
	"testing"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// TestThreeNodes: UIDL is the same through any node; a QUIT that cannot
// reach a quorum answers -ERR [SYS/TEMP] and deletes nothing.
func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	c := clustertest.New(t, 3, nil)
	leader := c.Leader()
	if leader == nil {
		t.Fatal("no leader")
	}
	const user = "three@example.test"
	// Deliver through the leader: the followers then hold no connection
	// to it that a later Propose could find dead.
	addUser(t, leader.Node, user, testMsgs...)
	c.WaitConverged()

	vars := map[string]string{"U": user, "P": testPassword}
	uidl := func(e *env) []string {
		cl := dial(t, e.addr)
		cl.run(`
			S: +OK*
			C: USER {U}
			S: +OK*
			C: PASS {P}
			S: +OK Maildrop has 3 messages*
			C: UIDL
			S: +OK*`, vars)
		var out []string
		for {
			l, err := cl.line()
			if err != nil {
				t.Fatal(err)
			}
			if l == "." {
				break
			}
			out = append(out, l)
		}
		cl.run(`
			C: QUIT
			S: +OK*`, vars)
		return out
	}
	e2 := startServer(t, c.Nodes[1].Node, nil)
	e3 := startServer(t, c.Nodes[2].Node, nil)
	u2, u3 := uidl(e2), uidl(e3)
	if len(u2) != 3 || len(u2) != len(u3) {
		t.Fatalf("UIDL via n2 %q, via n3 %q", u2, u3)
	}
	for i := range u2 {
		if u2[i] != u3[i] {
			t.Fatalf("UIDL via n2 %q, via n3 %q", u2, u3)
		}
	}

	// The POP3 node is a follower; stop the other two (the leader among
	// them), then QUIT with a message marked.
	var pop *clustertest.Node
	var e *env
	for i, n := range c.Nodes[1:] {
		if n != leader {
			pop, e = n, []*env{e2, e3}[i]
			break
		}
	}
	cl := dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*
		C: DELE 1
		S: +OK*`, vars)
	var stopped []*clustertest.Node
	for _, n := range c.Nodes {
		if n != pop {
			c.Stop(n)
			stopped = append(stopped, n)
		}
	}
	cl.run(`
		C: QUIT
		S: -ERR [SYS/TEMP] *
		X:`, vars)
	for _, n := range stopped {
		c.Start(n)
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if got, _ := inbox(t, n.Store, user); len(got) != 3 {
			t.Fatalf("%s: INBOX has %d messages after a QUIT without quorum, want 3", n.Name, len(got))
		}
	}
	// With the quorum back, the same QUIT deletes.
	cl = dial(t, e.addr)
	cl.run(`
		S: +OK*
		C: USER {U}
		S: +OK*
		C: PASS {P}
		S: +OK*
		C: DELE 1
		S: +OK*
		C: QUIT
		S: +OK Raftmail POP3 server signing off (1 messages deleted)
		X:`, vars)
	c.WaitConverged()
	for _, n := range c.Nodes {
		if got, _ := inbox(t, n.Store, user); len(got) != 2 {
			t.Fatalf("%s: INBOX has %d messages after DELE+QUIT, want 2", n.Name, len(got))
		}
	}
}
