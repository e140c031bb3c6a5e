package pop3

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		line string
		want command
		err  error
	}{
		{"STAT", command{name: "STAT"}, nil},
		{"stat", command{name: "STAT"}, nil},
		{"LIST 1", command{name: "LIST", args: []string{"1"}, rest: "1"}, nil},
		{"TOP  1   2 ", command{name: "TOP", args: []string{"1", "2"}, rest: " 1   2 "}, nil},
		{"PASS secret pass 123", command{name: "PASS", args: []string{"secret", "pass", "123"}, rest: "secret pass 123"}, nil},
		{"PASS pässwörd", command{name: "PASS", args: []string{"pässwörd"}, rest: "pässwörd"}, nil},
		{"AUTH PLAIN AGEAYg==", command{name: "AUTH", args: []string{"PLAIN", "AGEAYg=="}, rest: "PLAIN AGEAYg=="}, nil},
		{"", command{}, errEmptyLine},
		{" STAT", command{}, errBadKeyword},
		{"ST4T", command{}, errBadKeyword},
		{strings.Repeat("A", 17), command{}, errBadKeyword},
		{"STAT\x00", command{}, errBadChar},
		{"USER a\rb", command{}, errBadChar},
		{"USER \x7f", command{}, errBadChar},
	}
	for _, tc := range cases {
		got, err := parseCommand(tc.line)
		if !errors.Is(err, tc.err) || err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v, %v", tc.line, got, err, tc.want, tc.err)
		}
	}
}

func TestParseMsgNum(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want int
		ok   bool
	}{
		{"1", 3, 1, true}, {"3", 3, 3, true}, {"03", 3, 3, true},
		{"0", 3, 0, false}, {"4", 3, 0, false}, {"", 3, 0, false}, {"-1", 3, 0, false},
		{"+1", 3, 0, false}, {"1x", 3, 0, false}, {"9999999999", 3, 0, false}, {"1", 0, 0, false},
	} {
		got, err := parseMsgNum(tc.s, tc.n)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMsgNum(%q, %d) = %d, %v", tc.s, tc.n, got, err)
		}
	}
}

func TestDecodePlain(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		in                string
		authz, user, pass string
		err               error
	}{
		{b64("\x00u@example.test\x00pw"), "", "u@example.test", "pw", nil},
		{b64("u@example.test\x00u@example.test\x00p w"), "u@example.test", "u@example.test", "p w", nil},
		{b64("\x00\x00pw"), "", "", "", errBadPlain},
		{b64("\x00u\x00"), "", "", "", errBadPlain},
		{b64("u\x00pw"), "", "", "", errBadPlain},
		{b64("a\x00u\x00p\x00x"), "", "", "", errBadPlain},
		{"=", "", "", "", errBadPlain},
		{"not base64!", "", "", "", errBadBase64},
		{b64("\x00" + strings.Repeat("u", 2000) + "\x00pw"), "", "", "", errPlainTooLong},
	} {
		a, u, p, err := decodePlain(tc.in)
		if !errors.Is(err, tc.err) || a != tc.authz || u != tc.user || p != tc.pass {
			t.Errorf("decodePlain(%q) = %q %q %q %v", tc.in, a, u, p, err)
		}
	}
}

func TestReadLine(t *testing.T) {
	in := "STAT\r\nLIST 1\nUIDL\r\r\n" + strings.Repeat("x", 100) + "\r\nNOOP\r\nlast"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	want := []struct {
		line string
		err  error
	}{{"STAT", nil}, {"LIST 1", nil}, {"UIDL\r", nil}, {"", errLineTooLong}, {"NOOP", nil}}
	for _, w := range want {
		got, err := readLine(r, 64)
		if got != w.line || !errors.Is(err, w.err) {
			t.Fatalf("readLine = %q, %v; want %q, %v", got, err, w.line, w.err)
		}
	}
	if _, err := readLine(r, 64); err == nil {
		t.Fatal("unterminated last line accepted")
	}
	r = bufio.NewReaderSize(strings.NewReader(strings.Repeat("y", 64*64+100)), 16)
	if _, err := readLine(r, 64); !errors.Is(err, errLineFlood) {
		t.Fatalf("endless line: %v, want errLineFlood", err)
	}
}

func TestWriteMessage(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		lines int
		want  string
	}{
		{"A: b\r\n\r\n.x\r\ny\r\n", -1, "A: b\r\n\r\n..x\r\ny\r\n.\r\n"},
		{"A: b\n\n.\nno final newline", -1, "A: b\r\n\r\n..\r\nno final newline\r\n.\r\n"},
		{"A: b\r\n\r\n1\r\n2\r\n3\r\n", 2, "A: b\r\n\r\n1\r\n2\r\n.\r\n"},
		{"A: b\r\n\r\n1\r\n", 0, "A: b\r\n\r\n.\r\n"},
		{"A: b\r\nC: d\r\n", 0, "A: b\r\nC: d\r\n.\r\n"},
		{"", -1, ".\r\n"},
		{"\r\n\r\n", 1, "\r\n\r\n.\r\n"},
	} {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeMessageFrom(w, strings.NewReader(tc.msg), tc.lines); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("writeMessageFrom(%q, %d) = %q, want %q", tc.msg, tc.lines, buf.String(), tc.want)
		}
		buf.Reset()
		if err := writeMessage(w, []byte(tc.msg), tc.lines); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if buf.String() != tc.want {
			t.Errorf("writeMessage(%q, %d) = %q, want %q", tc.msg, tc.lines, buf.String(), tc.want)
		}
	}
}

// writeMessage is the whole-message form of writeMessageFrom, kept as the
// oracle the streaming writer is fuzzed against (FuzzWriteMessageFrom). It
// writes a message body for RETR or TOP (RFC 1939 section 3):
// every line ends in CRLF (a bare LF becomes CRLF, a missing final line end
// is added), lines starting with "." get another ".", and the terminating
// ".\r\n" follows. bodyLines < 0 sends the whole message; otherwise the
// header, the blank line after it, and at most bodyLines lines of the body
// (TOP). A message without a blank line is all header.
func writeMessage(w *bufio.Writer, msg []byte, bodyLines int) error {
	inBody := false
	sent := 0
	for len(msg) > 0 {
		if inBody && bodyLines >= 0 && sent >= bodyLines {
			break
		}
		var line []byte
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			line, msg = msg, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if inBody {
			sent++
		} else if len(line) == 0 {
			inBody = true
		}
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}
