package main

// End-to-end tests of what a node trusts and refuses: its configuration
// file, its data directory's permissions, the Authentication-Results of a
// freshly joined node, and the From header on submission.

import (
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EConfigTypo: `serve --config` with a misspelt key exits non-zero
// naming the key, the file and the nearest key, and starts nothing. On the
// old code the key was ignored and the node served on the defaults.
func TestE2EConfigTypo(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "node")
	conf := filepath.Join(root, "config.toml")
	if err := os.WriteFile(conf, []byte("smtp_adr = \"127.0.0.1:2525\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "", "serve", "--data-dir", dir, "--config", conf)
	assertFailure(t, res, "unknown key smtp_adr in "+conf+": did you mean smtp_addr?")
	assertNotInitialized(t, dir)
}

// TestE2EJoinedNode runs a node's first serve after `join` and checks
// what it trusts:
//
//   - its Authentication-Results name the cluster (given at init) and it
//     strips forged ones claiming that name. On the old code the first
//     run stamped the host name, because the cluster name was read from
//     the local store before the replicated settings had reached it, and
//     let the forged header through;
//   - submission refuses a From header of someone else;
//   - every directory and file in both nodes' data directories, Raft
//     snapshots and the Pebble store included, is the owner's alone. On
//     the old code store/ was 0755 with 0644 files;
//   - a node whose data directory group or others can read refuses to
//     start, saying which path, its mode and the chmod to run.
func TestE2EJoinedNode(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	const clusterName = "example.test"
	n1, n2 := newNode(t, "node1"), newNode(t, "node2")
	snapshots := []string{"--snapshot-threshold", "2", "--snapshot-interval", "200ms"}
	n1.serveFlags, n2.serveFlags = snapshots, snapshots
	mustCLI(t, "", append([]string{"init", "--cluster-name", clusterName}, n1.nodeFlags()...)...)
	n1.start()
	var created struct {
		Token string `json:"token"`
	}
	mustCLIJSON(t, &created, append([]string{"token", "create", "--ttl", "10m", "--json"}, n1.adminFlags()...)...)
	if res := n2.join(created.Token, n1.clusterAddr); res.exitCode != 0 {
		t.Fatalf("join node2: %s", res)
	}
	n2.start() // its first run after join
	waitHealthy(t, n1, 2)

	bob := mailUser{"bob@example.test", "bob-Pass-0002"}
	cliVia(t, n1, "", "domain", "add", "example.test")
	cliVia(t, n1, bob.password+"\n", "user", "add", bob.addr, "--password-stdin")
	cliVia(t, n1, "", "alias", "add", "postmaster@example.test", bob.addr)
	waitFor(t, clusterTimeout, "bob on node2", func() (bool, string) {
		return hasUsersAndAlias(t, n2, []string{bob.addr}, "postmaster@example.test", bob.addr)
	})

	t.Run("authserv_id_on_first_run", func(t *testing.T) {
		msg := newTestMsg("mallory@outside.test", bob.addr, "forged-ar")
		msg.header = "Authentication-Results: " + clusterName + "; dkim=pass header.d=example.test; dmarc=pass header.from=example.test\r\n" +
			"Authentication-Results: EXAMPLE.TEST.; spf=pass smtp.mailfrom=example.test\r\n" +
			"Authentication-Results: other.example; spf=pass smtp.mailfrom=outside.test\r\n"
		mustSend(t, n2, smtpRequest{from: msg.from, to: []string{bob.addr}, msg: msg})
		got, _ := waitIMAPMessage(t, n2, bob, "INBOX", msg.subject)
		m, err := mail.ReadMessage(strings.NewReader(got.Raw))
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, got.Raw)
		}
		ars := m.Header["Authentication-Results"]
		t.Logf("Authentication-Results read back through node2: %q", ars)
		var ours, other int
		for _, ar := range ars {
			id, _, _ := strings.Cut(ar, ";")
			switch strings.TrimSuffix(strings.ToLower(strings.TrimSpace(id)), ".") {
			case clusterName:
				ours++
				if strings.Contains(ar, "=pass") {
					t.Errorf("a forged result claiming %s survived: %q", clusterName, ar)
				}
			case "other.example":
				other++
			default:
				t.Errorf("Authentication-Results with authserv-id %q, want %q (the cluster name): %q", id, clusterName, ar)
			}
		}
		if ours != 1 || other != 1 {
			t.Errorf("want one Authentication-Results of %s (ours) and the other.example one kept; got %q", clusterName, ars)
		}
	})

	// Submission through the joined node with Python's smtplib: the From
	// header must be bob's (or an alias of his), like MAIL FROM. The old
	// code checked MAIL FROM only.
	t.Run("submission_from_header", func(t *testing.T) {
		for _, tc := range []struct {
			from string
			code int
		}{{"alice@example.test", 550}, {"postmaster@example.test", 250}} {
			msg := newTestMsg(tc.from, bob.addr, "from-header")
			res, err := sendSMTP(t, n2, smtpRequest{submission: true, user: &bob, from: bob.addr, to: []string{bob.addr}, msg: msg})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("From: %s, MAIL FROM:<%s>: DATA %+v", tc.from, bob.addr, res.Data)
			if res.Data == nil || res.Data.Code != tc.code || (tc.code == 550 && !strings.HasPrefix(res.Data.Text, "5.7.1 From header address rejected")) {
				t.Errorf("From: %s: DATA %+v, want %d", tc.from, res.Data, tc.code)
			}
		}
	})

	t.Run("private_data_dirs", func(t *testing.T) {
		for _, n := range []*node{n1, n2} {
			waitFor(t, clusterTimeout, "a Raft snapshot on "+n.name, func() (bool, string) {
				ents, err := os.ReadDir(filepath.Join(n.dir, "raft", "snapshots"))
				return err == nil && len(ents) > 0, fmt.Sprintf("%d entries, %v", len(ents), err)
			})
			var open []string
			files := 0
			err := filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				info, err := d.Info()
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				if err != nil {
					return err
				}
				files++
				if info.Mode().Perm()&0o077 != 0 {
					open = append(open, fmt.Sprintf("%s %v", strings.TrimPrefix(path, n.dir), info.Mode()))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d entries in %s", n.name, files, n.dir)
			if len(open) > 0 {
				t.Errorf("%s: open to group or others: %v", n.name, open)
			}
		}
	})

	t.Run("group_readable_dir_refused", func(t *testing.T) {
		n2.stopProcess(n2.cmd, n2.done)
		for _, tc := range []struct{ path, mode string }{
			{n2.dir, "the directory itself is mode 0755"},
			{filepath.Join(n2.dir, "cluster", "node.key"), "node.key is mode 0644"},
		} {
			if err := os.Chmod(tc.path, map[bool]os.FileMode{true: 0o755, false: 0o644}[tc.path == n2.dir]); err != nil {
				t.Fatal(err)
			}
			res := runCLI(t, "", append(append([]string{"serve"}, n2.nodeFlags()...), fastTimings...)...)
			assertFailure(t, res, "data directory "+n2.dir+" is open to group or others", tc.mode, "chmod -R go-rwx "+n2.dir)
			if err := os.Chmod(tc.path, map[bool]os.FileMode{true: 0o700, false: 0o600}[tc.path == n2.dir]); err != nil {
				t.Fatal(err)
			}
		}
		n2.start()
		waitHealthy(t, n1, 2)
	})
}
