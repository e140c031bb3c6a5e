package imap

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// readUntil reads lines until one contains want, failing after the raw
// client's read deadline.
func (c *raw) readUntil(want string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.Contains(l, want) {
			return out
		}
	}
}

// TestClusterAcrossNodes: an IDLE client on node 3 sees a delivery made
// through node 1 (EXISTS), a flag set through node 2 (FETCH), a MOVE and
// an EXPUNGE made through node 1 (EXPUNGE); every node's store agrees;
// malformed MIME delivered elsewhere gets a BODYSTRUCTURE; a node cut off
// from the majority serves reads and refuses writes with NO [UNAVAILABLE].
func TestClusterAcrossNodes(t *testing.T) {
	e := newEnv(t, envOptions{nodes: 3})
	idler := dialRaw(t, e.plain[2])
	idler.startTLS(e.clientTLS)
	idler.login()
	idler.expect("SELECT INBOX", "OK")
	idler.send("i IDLE")
	if l := idler.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}

	e.deliver(0, "INBOX", simpleMsg)
	idler.readUntil("* 1 EXISTS")

	c2 := e.client(1, nil)
	must(c2.Select("INBOX", nil).Wait())(t)
	must(c2.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect())(t)
	if l := idler.readUntil("* 1 FETCH"); !strings.Contains(l[len(l)-1], `\Flagged`) {
		t.Fatalf("flag change from node 2: %q", l)
	}

	e.deliver(1, "INBOX", multipartMsg)
	idler.readUntil("* 2 EXISTS")
	c1 := e.client(0, nil)
	must(c1.Select("INBOX", nil).Wait())(t)
	mv := must(c1.Move(imap.SeqSetNum(1), "Archive").Wait())(t)
	if mv.DestUIDs.String() != "1" {
		t.Fatalf("MOVE: %+v", mv)
	}
	idler.readUntil("* 1 EXPUNGE")
	must(c1.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect())(t)
	must(c1.Expunge().Collect())(t)
	idler.readUntil("* 1 EXPUNGE")
	idler.send("DONE")
	idler.until("i")
	if lines := idler.expect("FETCH 1:* FLAGS", "OK"); contains(lines, "* 1 FETCH") {
		t.Fatalf("INBOX should be empty on node 3: %q", lines)
	}

	e.c.WaitConverged()
	for _, n := range e.c.Nodes {
		inbox, err := n.Store.Mailbox(testUser, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		archive, err := n.Store.Mailbox(testUser, "Archive")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := n.Store.Messages(archive.ID)
		if err != nil {
			t.Fatal(err)
		}
		if inbox.Messages != 0 || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, `\Flagged`) {
			t.Fatalf("%s: INBOX %d messages, Archive %+v", n.Name, inbox.Messages, msgs)
		}
	}

	// Malformed MIME delivered through node 1, fetched on node 3.
	e.deliver(0, "INBOX", brokenMsg)
	clustertest.WaitFor(t, 10*time.Second, "EXISTS on node 3", func() bool {
		return contains(idler.expect("NOOP", "OK"), "* 1 EXISTS")
	})
	lines := idler.expect("FETCH 1 (BODYSTRUCTURE BODY[])", "OK")
	if !contains(lines, "BODYSTRUCTURE (") {
		t.Fatalf("BODYSTRUCTURE of malformed MIME: %q", lines)
	}

	// Cut a follower off: stop the two other nodes.
	var keep int
	for i, n := range e.c.Nodes {
		if !n.Node.IsLeader() {
			keep = i
			break
		}
	}
	m := dialRaw(t, e.plain[keep])
	m.startTLS(e.clientTLS)
	m.login()
	m.expect("SELECT INBOX", "OK")
	for i, n := range e.c.Nodes {
		if i != keep {
			e.c.Stop(n)
		}
	}
	if lines := m.expect("FETCH 1 (FLAGS UID)", "OK"); !contains(lines, "* 1 FETCH") {
		t.Fatalf("read on a minority node: %q", lines)
	}
	m.expect("SEARCH ALL", "OK")
	m.expect("STATUS Archive (MESSAGES SIZE)", "OK")
	m.expect(`STORE 1 +FLAGS (\Seen)`, "NO [UNAVAILABLE]")
	m.expect("CREATE Elsewhere", "NO [UNAVAILABLE]")
	if _, err := e.c.Nodes[keep].Store.Mailbox(testUser, "Elsewhere"); err == nil {
		t.Fatal("a refused CREATE happened")
	}
}
