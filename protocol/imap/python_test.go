package imap

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPythonImaplib: a real client (Python's imaplib) logs in over implicit
// TLS, selects INBOX, fetches a message and stores a flag.
func TestPythonImaplib(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	e := newEnv(t, envOptions{})
	p := e.deliver(0, "INBOX", simpleMsg)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, e.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.implicit[0])
	script := `
import imaplib, ssl, sys
host, port, ca, user, pw = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
typ, _ = m.login(user, pw)
assert typ == 'OK', typ
typ, data = m.select('INBOX')
assert typ == 'OK' and data[0] == b'1', (typ, data)
typ, data = m.fetch('1', '(RFC822)')
assert typ == 'OK', typ
body = data[0][1]
assert b'Subject: Hello there' in body, body
typ, data = m.store('1', '+FLAGS', '(\\Flagged)')
assert typ == 'OK', (typ, data)
typ, data = m.fetch('1', '(FLAGS)')
print(data[0].decode())
m.logout()
`
	out, err := exec.Command("python3", "-c", script, host, port, ca, testUser, testPass).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `\Flagged`) || !strings.Contains(string(out), `\Seen`) {
		t.Fatalf("python output: %s", out)
	}
	m, err := e.c.Nodes[0].Store.Message(p.MailboxID, p.UID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.Flags, `\Flagged`) || !slices.Contains(m.Flags, `\Seen`) {
		t.Fatalf("store flags: %v", m.Flags)
	}
}
