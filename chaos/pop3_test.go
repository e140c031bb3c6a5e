package chaos

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestParseUIDL(t *testing.T) {
	got, err := parseUIDL([]byte("1 17.3\r\n2 17.12\r\n"))
	if err != nil || len(got) != 2 || got[1] != (pop3Msg{num: 2, uv: 17, uid: 12}) {
		t.Fatalf("parseUIDL: %+v, %v", got, err)
	}
	for _, bad := range []string{"1 abc\r\n", "x 1.2\r\n", "1 1.99999999999\r\n", "1\r\n"} {
		if _, err := parseUIDL([]byte(bad)); err == nil {
			t.Errorf("parseUIDL(%q) accepted", bad)
		}
	}
}

// TestPOP3MultiLine: a multi-line reply is read up to its lone dot, with
// the dot-stuffing undone.
func TestPOP3MultiLine(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		_, _ = b.Write([]byte("Subject: x\r\n\r\n..\r\n.leading\r\nplain\r\n.\r\n"))
		b.Close()
	}()
	c := &pop3Conn{conn: a, r: bufio.NewReader(a), timeout: 5 * time.Second}
	got, err := c.multi()
	if want := "Subject: x\r\n\r\n.\r\nleading\r\nplain\r\n"; err != nil || string(got) != want {
		t.Fatalf("multi: %q, %v; want %q", got, err, want)
	}
}

func FuzzParseUIDL(f *testing.F) {
	f.Add([]byte("1 17.3\r\n2 17.12\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseUIDL(b)
	})
}
