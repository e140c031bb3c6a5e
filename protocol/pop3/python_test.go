package pop3

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// TestPythonPoplib drives the server with Python's poplib over implicit
// TLS: stat, uidl, retr, dele, quit.
func TestPythonPoplib(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	c := clustertest.New(t, 1, nil)
	node := c.Nodes[0].Node
	e := startServer(t, node, func(cfg *Config) { cfg.AllowInsecureAuth = false })
	const user = "py@example.test"
	addUser(t, node, user, testMsgs...)
	msgs, v := inbox(t, node.Store(), user)
	host, port, _ := strings.Cut(e.tls, ":")
	script := fmt.Sprintf(`
import poplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3_SSL(%q, %s, context=ctx, timeout=20)
p.user(%q)
p.pass_(%q)
n, size = p.stat()
print("stat", n, size)
resp, lines, _ = p.uidl()
for l in lines:
    print("uidl", l.decode())
resp, lines, octets = p.retr(2)
print("retr", repr(b"\r\n".join(lines).decode()))
print("dele", p.dele(1).decode())
print("quit", p.quit().decode())
`, host, port, user, testPassword)
	out, err := exec.Command("python3", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	total := len(testMsgs[0]) + len(testMsgs[1]) + len(testMsgs[2])
	body := strings.TrimSuffix(testMsgs[1], "\r\n")
	want := []string{
		fmt.Sprintf("stat 3 %d", total),
		fmt.Sprintf("uidl 1 %d.%d", v, msgs[0].UID),
		fmt.Sprintf("uidl 2 %d.%d", v, msgs[1].UID),
		fmt.Sprintf("uidl 3 %d.%d", v, msgs[2].UID),
		"retr " + pyRepr(body),
		"dele +OK Message 1 deleted",
		"quit +OK Raftmail POP3 server signing off (1 messages deleted)",
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("python poplib said:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if left, _ := inbox(t, node.Store(), user); len(left) != 2 || left[0].UID != msgs[1].UID {
		t.Fatalf("after poplib dele+quit: %+v", left)
	}
}

// pyRepr is Python's repr of a str holding only printable ASCII, CR, LF.
func pyRepr(s string) string {
	s = strings.NewReplacer(`\`, `\\`, "\r", `\r`, "\n", `\n`, "'", `\'`).Replace(s)
	return "'" + s + "'"
}
