package main

// End-to-end test of a full disk: three real nodes, the third with its
// data directory on a size-limited tmpfs (mounting one needs root; CI runs
// as root and sets RAFTMAIL_REQUIRE_PEERS=1, elsewhere the test skips).
//
// Run it alone with: go test -race -count=1 -run TestE2EDiskFull ./cmd/raftmail/

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
)

// needPeer skips a test that needs what this machine lacks, or fails it
// when RAFTMAIL_REQUIRE_PEERS=1 (CI, where everything must run).
func needPeer(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("RAFTMAIL_REQUIRE_PEERS") == "1" {
		t.Fatalf("RAFTMAIL_REQUIRE_PEERS=1, but %s", why)
	}
	t.Skip(why)
}

// mountSmallFS mounts a tmpfs of size bytes on dir until the test ends.
func mountSmallFS(t *testing.T, dir string, size int64) {
	t.Helper()
	if os.Geteuid() != 0 {
		needPeer(t, "mounting a size-limited tmpfs for a node's data needs root")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		needPeer(t, fmt.Sprintf("mount a tmpfs on %s: %v", dir, err))
	}
	// Registered after newNode's cleanup and before start's, so it runs
	// once the node has stopped.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Logf("unmount %s: %v; detaching it", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// fillerName is the file that fills a node's file system.
const fillerName = "filler"

// fillFS writes a file into dir's file system until leave bytes remain
// available (statfs f_bavail), or until ENOSPC when leave is 0.
func fillFS(t *testing.T, dir string, leave int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	todo := int64(st.Bavail)*st.Bsize - leave
	f, err := os.OpenFile(filepath.Join(dir, fillerName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for todo > 0 || leave == 0 {
		n := min(int64(len(buf)), todo)
		if leave == 0 {
			n = int64(len(buf))
		}
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
		todo -= n
	}
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %s: %d KiB available", dir, int64(st.Bavail)*st.Bsize>>10)
}

func freeFS(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, fillerName)); err != nil {
		t.Fatal(err)
	}
}

// health is GET /healthz of n.
func (n *node) health() (int, ops.Health, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + n.adminAddr + "/healthz")
	if err != nil {
		return 0, ops.Health{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, ops.Health{}, err
	}
	var h ops.Health
	if err := json.Unmarshal(b, &h); err != nil {
		return resp.StatusCode, h, fmt.Errorf("healthz body: %v: %s", err, b)
	}
	return resp.StatusCode, h, nil
}

// diskMsg is message k of the disk test, with a body of size bytes.
func diskMsg(to string, k, size int) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: disk test %d\r\nMessage-ID: <disk.%d.%d@sender.example>\r\n\r\n",
		benchSender, to, k, k, time.Now().UnixNano()) + string(benchBody(size)))
}

// smtpCode is the SMTP reply code in err, or 0 for another error (a broken
// connection).
func smtpCode(err error) (int, string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	return 0, fmt.Sprint(err)
}

// inboxCount is the number of messages in u's INBOX through n's plain
// loopback IMAP listener.
func inboxCount(n *node, user, pass string) (int, error) {
	cl, err := imapclient.DialInsecure(n.imapAddr, nil)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := cl.Login(user, pass).Wait(); err != nil {
		return 0, err
	}
	st, err := cl.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0, err
	}
	return int(*st.NumMessages), nil
}

// appendTo tries IMAP APPEND of msg to u's INBOX through n.
func appendTo(n *node, user, pass string, msg []byte) error {
	cl, err := imapclient.DialInsecure(n.imapAddr, nil)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Login(user, pass).Wait(); err != nil {
		return err
	}
	cmd := cl.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write(msg); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err = cmd.Wait()
	return err
}

// statusOf finds name in a status listing.
func statusOf(st []cluster.NodeStatus, name string) (cluster.NodeStatus, bool) {
	for _, s := range st {
		if s.Name == name {
			return s, true
		}
	}
	return cluster.NodeStatus{}, false
}

func TestE2EDiskFull(t *testing.T) {
	nodes := []*node{newNode(t, "node1"), newNode(t, "node2"), newNode(t, "node3")}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	// 512 MiB: the default floor (1GiB,5%) is 25.6 MiB ("26 MiB").
	mountSmallFS(t, n3.dir, 512<<20)
	formCluster(t, nodes)

	const user, pass = "full@example.test", "full-Pass-0001"
	cliVia(t, n1, "", "domain", "add", "example.test")
	cliVia(t, n1, pass+"\n", "user", "add", user, "--password-stdin")
	waitConverged := func(what string) {
		t.Helper()
		waitFor(t, clusterTimeout, what, func() (bool, string) {
			st, err := n1.status()
			if err != nil {
				return false, err.Error()
			}
			if len(st) != 3 {
				return false, summary(st)
			}
			for _, s := range st {
				if !s.Reachable || s.AppliedIndex != st[0].AppliedIndex || s.StateHash != st[0].StateHash {
					return false, summary(st)
				}
			}
			return true, ""
		})
	}
	waitConverged("the user on every node")

	acked := 0 // messages answered 250: every node must end up with all of them
	send := func(via *node, size int) error {
		t.Helper()
		mx, err := tryDialMX(via.smtpAddr)
		if err != nil {
			return err
		}
		defer mx.close()
		if _, err := mx.send(user, diskMsg(user, acked, size)); err != nil {
			return err
		}
		acked++
		return nil
	}
	mustSendVia := func(via *node) {
		t.Helper()
		if err := send(via, 10<<10); err != nil {
			_, text := smtpCode(err)
			t.Fatalf("message through %s: %s", via.name, text)
		}
	}
	for _, n := range nodes {
		mustSendVia(n)
	}

	// 1. The disk of node3 fills to under its floor (something else wrote
	// to it; 12 MiB are left, under the 25.6 MiB floor: the headroom the
	// floor keeps for what cannot be refused, the Raft log with the bodies
	// of small messages, applied entries, Pebble's flushes).
	fillFS(t, n3.dir, 12<<20)
	var h ops.Health
	waitFor(t, clusterTimeout, "node3's /healthz to report the disk", func() (bool, string) {
		code, hh, err := n3.health()
		if err != nil {
			return false, err.Error()
		}
		h = hh
		return code == http.StatusServiceUnavailable && len(h.Problems) > 0, fmt.Sprintf("%d %+v", code, hh)
	})
	t.Logf("node3 /healthz: 503 %q", h.Problems)
	if len(h.Problems) != 1 || !strings.HasPrefix(h.Problems[0], "disk: ") || !strings.Contains(h.Problems[0], "floor 26 MiB") {
		t.Errorf("node3's health problems %q, want the disk and its floor", h.Problems)
	}

	// SMTP to node3: 452 at MAIL, at once (never silence, never 250).
	mx, err := tryDialMX(n3.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = mx.c.Mail(benchSender, nil)
	code, text := smtpCode(err)
	t.Logf("node3 answered MAIL with %q after %s", text, time.Since(start).Round(time.Microsecond))
	if code != 452 || !strings.HasPrefix(text, "452 4.3.1 ") {
		t.Errorf("MAIL on node3 below its floor: %q, want 452 4.3.1", text)
	}
	mx.close()
	// IMAP APPEND to node3: NO [OVERQUOTA].
	err = appendTo(n3, user, pass, diskMsg(user, 9999, 1<<10))
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeOverQuota {
		t.Errorf("APPEND on node3 below its floor: %v, want NO [OVERQUOTA]", err)
	} else {
		t.Logf("node3 answered APPEND with NO [%s] %s", ie.Code, ie.Text)
	}

	// The other two go on accepting; node3 refuses their blob copies but
	// applies every entry (metadata is never refused).
	for i := range 20 {
		if err := send(nodes[i%2], 64<<10); err != nil {
			_, text := smtpCode(err)
			t.Fatalf("message through %s: %s", nodes[i%2].name, text)
		}
	}
	waitFor(t, clusterTimeout, "node3 to apply what the others accepted", func() (bool, string) {
		st, err := n1.status()
		if err != nil {
			return false, err.Error()
		}
		s3, ok := statusOf(st, n3.name)
		s1, _ := statusOf(st, n1.name)
		return ok && s3.AppliedIndex == s1.AppliedIndex && s3.StateHash == s1.StateHash, summary(st)
	})
	st, err := n1.status()
	if err != nil {
		t.Fatal(err)
	}
	s3, _ := statusOf(st, n3.name)
	t.Logf("node3 below its floor: applied %d, %d blobs it did not take", s3.AppliedIndex, s3.MissingBlobs)
	if s3.MissingBlobs == 0 {
		t.Error("node3 took blob copies below its floor")
	}

	// 2. Space comes back: node3 recovers without a restart.
	freeFS(t, n3.dir)
	waitFor(t, clusterTimeout, "node3's /healthz to be 200 again", func() (bool, string) {
		code, hh, err := n3.health()
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("%d %+v", code, hh)
	})
	for range 5 {
		mustSendVia(n3)
	}
	if !n3.running() {
		t.Fatal("node3 is not running")
	}
	log3, err := os.ReadFile(n3.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log3), "free space below the floor"); n != 1 {
		t.Errorf("node3 logged crossing its floor %d times, want once", n)
	}
	if n := strings.Count(string(log3), "free space back above the floor"); n != 1 {
		t.Errorf("node3 logged its recovery %d times, want once", n)
	}

	// 3. No floor, a disk full to the last byte: Pebble's WAL write fails
	// and the process must exit with exitStorageFailed (not hang, not
	// panic, not go on), and come back once space is freed.
	n3.stopProcess(n3.cmd, n3.done) // SIGTERM: must exit 0 in time
	n3.serveFlags = []string{"--min-free-space", "0"}
	n3.start()
	waitHealthy(t, n1, 3)
	fillFS(t, n3.dir, 0)
	stopped := false
	for i := 0; i < 60 && !stopped; i++ {
		err := send(n3, 1<<20)
		if err != nil {
			_, text := smtpCode(err)
			t.Logf("1 MiB message %d through node3 on a full disk: %s", i, text)
		}
		select {
		case <-n3.done:
			stopped = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !stopped {
		select {
		case <-n3.done:
		case <-time.After(30 * time.Second): // hang guard
			t.Fatalf("node3 still runs on a full disk without a floor:\n%s", tail(n3.logPath, 20))
		}
	}
	if code := n3.cmd.ProcessState.ExitCode(); code != exitStorageFailed {
		t.Fatalf("node3 exited with status %d on a failed store, want %d:\n%s", code, exitStorageFailed, tail(n3.logPath, 20))
	}
	t.Logf("node3 exited with status %d:\n%s", exitStorageFailed, tail(n3.logPath, 4))
	mustSendVia(n1) // the other two still take mail
	mustSendVia(n2)

	freeFS(t, n3.dir)
	n3.serveFlags = nil
	n3.start()
	waitHealthy(t, n1, 3)
	mustSendVia(n3)

	// Nothing acknowledged is lost and nothing refused appears, on every
	// node; node3 has every blob again.
	waitConverged("every node to agree after the full disk")
	for _, n := range nodes {
		waitFor(t, clusterTimeout, fmt.Sprintf("%d messages through %s", acked, n.name), func() (bool, string) {
			got, err := inboxCount(n, user, pass)
			if err != nil {
				return false, err.Error()
			}
			if got > acked {
				t.Fatalf("%d messages through %s, but only %d were acknowledged", got, n.name, acked)
			}
			return got == acked, fmt.Sprintf("%d of %d", got, acked)
		})
	}
	waitFor(t, clusterTimeout, "node3 to hold every blob", func() (bool, string) {
		st, err := n1.status()
		if err != nil {
			return false, err.Error()
		}
		s3, ok := statusOf(st, n3.name)
		return ok && s3.MissingBlobs == 0, summary(st)
	})
	t.Logf("%d acknowledged messages on every node", acked)
}
