package smtp

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var addressSeeds = []string{
	"user@example.test", "User@Example.TEST", "first.last+tag@sub.example.com",
	"postmaster@example.org", "\"quoted local\"@example.com", "jöran@exämple.se",
	"x@localhost", "a@b.c.", "@example.com", "user@", "user", "u@[192.0.2.1]",
	"u@-bad.example", "u@bad-.example", "u@a..b", "a@b@c.example", "\x00@x.y",
	"u@EXAMPLE.com.", strings.Repeat("a", 64) + "@example.com",
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, local, domain string
		ok                bool
	}{
		{"user@example.test", "user", "example.test", true},
		{"User@Example.TEST", "User", "example.test", true},
		{"first.last+tag@Sub.Example.com.", "first.last+tag", "sub.example.com", true},
		{"a@b@c.example", "a@b", "c.example", true},
		{"jöran@EXÄMPLE.se", "jöran", "exÄmple.se", true},
		{"user", "", "", false},
		{"@example.com", "", "", false},
		{"user@", "", "", false},
		{"u@[192.0.2.1]", "", "", false},
		{"u@-bad.example", "", "", false},
		{"u@a..b", "", "", false},
		{"has space@example.com", "", "", false},
		{strings.Repeat("a", 65) + "@example.com", "", "", false},
	}
	for _, tc := range tests {
		a, err := ParseAddress(tc.in)
		if (err == nil) != tc.ok || a.Local != tc.local || a.Domain != tc.domain {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %q %q ok=%v", tc.in, a, err, tc.local, tc.domain, tc.ok)
		}
	}
	if k := (Address{Local: "User", Domain: "example.test"}).Key(); k != "user@example.test" {
		t.Errorf("Key = %q", k)
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range addressSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		if a.Local == "" || a.Domain == "" || len(a.String()) > maxAddressLen+1 {
			t.Fatalf("%q: accepted %+v", s, a)
		}
		if strings.ContainsAny(a.Domain, "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]@ \r\n") || !utf8.ValidString(a.String()) {
			t.Fatalf("%q: domain %q not normalised", s, a.Domain)
		}
		if strings.ContainsAny(a.Local, " \r\n\t\x00") {
			t.Fatalf("%q: local part %q has spaces or controls", s, a.Local)
		}
		// Normalising is idempotent.
		b, err := ParseAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("%q: reparse of %q = %+v, %v", s, a.String(), b, err)
		}
	})
}

// FuzzBareLF checks the chunked bare-LF detector against the obvious
// whole-buffer check, for any split point.
func FuzzBareLF(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), 5)
	f.Add([]byte("line\n.\nMAIL FROM:<x@y>\r\n"), 4)
	f.Add([]byte("a\r\nb\r"), 5)
	f.Add([]byte("\n"), 0)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		want := false
		for i, c := range b {
			if c == '\n' && (i == 0 || b[i-1] != '\r') {
				want = true
				break
			}
		}
		if split < 0 {
			split = -split
		}
		if len(b) > 0 {
			split %= len(b) + 1
		} else {
			split = 0
		}
		prevCR := false
		got := bareLF(b[:split], &prevCR) || bareLF(b[split:], &prevCR)
		if got != want {
			t.Fatalf("bareLF(%q split %d) = %v, want %v", b, split, got, want)
		}
	})
}

// FuzzReceived checks that nothing a client chooses (HELO name, recipient)
// can break out of the Received header.
func FuzzReceived(f *testing.F) {
	f.Add("client.example", "user@example.test")
	f.Add("[192.0.2.1]", "")
	f.Add("evil\r\nBcc: x@y", "a\r\nb@c")
	f.Add("(comment) ;", "\"q>\"@x.y")
	f.Fuzz(func(t *testing.T, helo, rcpt string) {
		var buf bytes.Buffer
		writeReceived(&buf, receivedInfo{helo: helo, ip: "192.0.2.1", hostname: "mx.example", node: "n1",
			proto: "ESMTP", queueID: "ABCDEFGHIJKLMNOP", rcpt: rcpt, date: time.Unix(0, 0)})
		h := buf.String()
		if !strings.HasPrefix(h, "Received: from ") || !strings.HasSuffix(h, "\r\n") {
			t.Fatalf("header %q", h)
		}
		for i, line := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
			if i > 0 && !strings.HasPrefix(line, "\t") {
				t.Fatalf("line %d is not a continuation: %q", i, h)
			}
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("stray CR or LF: %q", h)
			}
		}
	})
}

func TestQueueID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id, err := newQueueID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) < 12 || strings.ToUpper(id) != id || seen[id] {
			t.Fatalf("queue id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}
