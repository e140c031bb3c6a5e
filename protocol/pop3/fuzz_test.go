package pop3

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// Real POP3 commands, as clients send them.
var seedCommands = []string{
	"CAPA", "STLS", "USER u@example.test", "PASS secret pass 123", "AUTH",
	"AUTH PLAIN", "AUTH PLAIN AHVAZXhhbXBsZS50ZXN0AHNlY3JldA==", "AUTH LOGIN dUBleGFtcGxlLnRlc3Q=",
	"STAT", "LIST", "LIST 1", "UIDL", "UIDL 2", "RETR 1", "TOP 1 10", "DELE 3",
	"NOOP", "RSET", "QUIT", "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
	"list 1", "top  2  0", "", " ", "\x00", "XTND XMIT",
}

// FuzzParseCommand checks the command-line parser never panics and keeps
// its invariants.
func FuzzParseCommand(f *testing.F) {
	for _, s := range seedCommands {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if cmd.name == "" || cmd.name != strings.ToUpper(cmd.name) || len(cmd.name) > maxKeyword {
			t.Fatalf("bad keyword %q from %q", cmd.name, line)
		}
		for _, a := range cmd.args {
			if a == "" || strings.Contains(a, " ") {
				t.Fatalf("bad argument %q from %q", a, line)
			}
		}
		if !strings.HasSuffix(line, cmd.rest) {
			t.Fatalf("rest %q is not the tail of %q", cmd.rest, line)
		}
		if len(cmd.args) > 0 {
			if _, err := parseMsgNum(cmd.args[0], 10); err == nil && strings.Trim(cmd.args[0], "0123456789") != "" {
				t.Fatalf("message number %q accepted", cmd.args[0])
			}
		}
	})
}

// FuzzDecodePlain checks the AUTH PLAIN decoder on base64 text and on raw
// decoded messages.
func FuzzDecodePlain(f *testing.F) {
	f.Add("AHVAZXhhbXBsZS50ZXN0AHNlY3JldA==")
	f.Add("dUBleGFtcGxlLnRlc3QAdUBleGFtcGxlLnRlc3QAcA==")
	f.Add("=")
	f.Add("*")
	f.Add("AAA=")
	f.Add("\x00u\x00p")
	f.Fuzz(func(t *testing.T, s string) {
		for _, in := range []string{s, base64.StdEncoding.EncodeToString([]byte(s))} {
			authz, user, pass, err := decodePlain(in)
			if err != nil {
				continue
			}
			if user == "" || pass == "" {
				t.Fatalf("empty user or password accepted from %q", in)
			}
			if strings.ContainsRune(authz+user+pass, 0) {
				t.Fatalf("NUL in a field from %q", in)
			}
			if len(user) > maxPlainField || len(pass) > maxPlainField || len(authz) > maxPlainField {
				t.Fatalf("oversized field accepted from %q", in)
			}
		}
	})
}

// FuzzReadLine checks the bounded line reader and the message writer.
func FuzzReadLine(f *testing.F) {
	f.Add("STAT\r\nLIST\nRETR 1\r\n", 64)
	f.Add(strings.Repeat("x", 300)+"\r\n", 100)
	f.Fuzz(func(t *testing.T, in string, max int) {
		max = 64 + (max&0xfff)%1024
		r := bufio.NewReaderSize(strings.NewReader(in), 16)
		for i := 0; i < 1000; i++ {
			line, err := readLine(r, max)
			if err != nil {
				break
			}
			if len(line)+1 > max || strings.Contains(line, "\n") {
				t.Fatalf("line %q over %d or holds LF", line, max)
			}
		}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeMessageFrom(w, strings.NewReader(in), -1); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		out := buf.Bytes()
		if !bytes.HasSuffix(out, []byte(".\r\n")) {
			t.Fatalf("no terminator in %q", out)
		}
		body := out[:len(out)-3]
		for _, l := range bytes.Split(body, []byte("\r\n")) {
			if bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("bare LF in output %q", out)
			}
			if len(l) == 1 && l[0] == '.' {
				t.Fatalf("unstuffed terminator line in %q", out)
			}
		}
	})
}

// FuzzWriteMessageFrom: the streaming writer puts the same bytes on the
// wire as writeMessage, whatever the reads and buffer sizes.
func FuzzWriteMessageFrom(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.dot\r\n", "a\nb\n\nc\n", "no end", "\r\n\r\n", "x\r", "\r", ".\r\n.",
		"H: 1\r\n\r\n" + strings.Repeat("long line ", 10) + "\r\r\n.\r\n",
	} {
		f.Add([]byte(s), int16(-1), uint8(0))
		f.Add([]byte(s), int16(1), uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, lines int16, chunk uint8) {
		bodyLines := int(lines)
		if bodyLines < -1 {
			bodyLines = -1
		}
		var want, got bytes.Buffer
		ww := bufio.NewWriter(&want)
		_ = writeMessage(ww, msg, bodyLines)
		ww.Flush()
		var r io.Reader = bytes.NewReader(msg)
		if chunk%2 == 1 {
			r = iotest.OneByteReader(r)
		}
		gw := bufio.NewWriter(&got)
		if err := writeMessageFromSize(gw, r, bodyLines, 16+int(chunk%8)); err != nil {
			t.Fatal(err)
		}
		gw.Flush()
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("msg %q lines %d:\nwant %q\ngot  %q", msg, bodyLines, want.Bytes(), got.Bytes())
		}
	})
}
