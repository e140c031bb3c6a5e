package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(w *Writer)
		want  string
		err   bool
	}{
		{"status", func(w *Writer) { w.Status("a1", "OK", "", "LOGIN completed") }, "a1 OK LOGIN completed\r\n", false},
		{"untagged code", func(w *Writer) { w.Status("", "OK", "UIDVALIDITY 3857529045", "UIDs valid") }, "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n", false},
		{"code with a list", func(w *Writer) {
			w.Untagged().Atom("OK").OpenCode("PERMANENTFLAGS").Flags([]string{`\Deleted`, `\Seen`, `\*`}).CloseCode().Text("Limited").CRLF()
		}, "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n", false},
		{"continuation", func(w *Writer) { w.Continuation("Ready for literal data") }, "+ Ready for literal data\r\n", false},
		{"empty challenge", func(w *Writer) { w.Continuation("") }, "+ \r\n", false},
		{"negative literal", func(w *Writer) { w.Untagged().Literal(strings.NewReader(""), -1, false) }, "", true},
		{"text sanitised", func(w *Writer) { w.Status("a", "NO", "", "bad\r\n* OK injected") }, "a NO bad  * OK injected\r\n", false},
		{"empty text", func(w *Writer) { w.Status("a", "OK", "", "") }, "a OK .\r\n", false},
		{"fetch", func(w *Writer) {
			w.Untagged().Number(12).Atom("FETCH").Open().Atom("UID").Number(7).Atom("FLAGS").Flags(nil).
				Atom("MODSEQ").Open().Number64(1<<63-1).Close().
				Atom("BODY[HEADER.FIELDS").Open().AString("FROM").Close().Raw("]").String("From: a\r\n\r\n").
				Atom("ENVELOPE").Open().NString("", false).NString("x\"y\\", true).Close().Close().CRLF()
		}, "* 12 FETCH (UID 7 FLAGS () MODSEQ (9223372036854775807) BODY[HEADER.FIELDS (FROM)] {11}\r\nFrom: a\r\n\r\n ENVELOPE (NIL \"x\\\"y\\\\\"))\r\n", false},
		{"quoting by content", func(w *Writer) {
			w.Untagged().AString("INBOX").AString("a b").AString("").AString("NIL").AString("nil").AString("a]").
				String("caf\xc3\xa9").String(strings.Repeat("z", 3)).CRLF()
		}, "* INBOX \"a b\" \"\" \"NIL\" \"nil\" a] {5}\r\ncaf\xc3\xa9 \"zzz\"\r\n", false},
		{"long string is a literal", func(w *Writer) { w.QuotedMax = 4; w.Untagged().String("12345").CRLF() }, "* {5}\r\n12345\r\n", false},
		{"binary", func(w *Writer) { w.Untagged().BinaryString("a\x00b").BinaryString("ab").CRLF() }, "* ~{3}\r\na\x00b \"ab\"\r\n", false},
		{"NUL without binary", func(w *Writer) { w.Untagged().String("a\x00b") }, "", true},
		{"atom with space", func(w *Writer) { w.Untagged().Atom("a b") }, "", true},
		{"atom with CR", func(w *Writer) { w.Untagged().Atom("a\r") }, "", true},
		{"bad tag", func(w *Writer) { w.Tagged("a+b") }, "", true},
		{"raw with LF", func(w *Writer) { w.Untagged().Raw("\n") }, "", true},
		{"seqset", func(w *Writer) {
			w.Untagged().Atom("VANISHED").SeqSet(SeqSet{Ranges: []SeqRange{{1, 3}, {7, 7}, {9, 0}}}).CRLF()
		}, "* VANISHED 1:3,7,9:*\r\n", false},
		{"literal stream", func(w *Writer) {
			w.Untagged().Number(1).Atom("FETCH").Open().Atom("BINARY[]").Literal(strings.NewReader("a\x00bc"), 4, true).Close().CRLF()
		}, "* 1 FETCH (BINARY[] ~{4}\r\na\x00bc)\r\n", false},
		{"short literal stream", func(w *Writer) { w.Untagged().Literal(strings.NewReader("ab"), 4, false) }, "", true},
	} {
		var out bytes.Buffer
		w := NewWriter(&out, 0)
		tc.write(w)
		err := w.Flush()
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error; wrote %q", tc.name, out.String())
			}
			if tc.name != "short literal stream" && !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil || out.String() != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, out.String(), err, tc.want)
		}
	}
}

func TestWriterUTF8(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, 0)
	w.UTF8 = true
	w.Untagged().String("café").String("caf\xe9").CRLF().Flush()
	if want := "* \"café\" {4}\r\ncaf\xe9\r\n"; out.String() != want {
		t.Fatalf("%q, want %q", out.String(), want)
	}
}

func TestWriterBuffersUntilFlush(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, 4096)
	w.Status("", "OK", "", "x")
	if out.Len() != 0 || w.Buffered() == 0 {
		t.Fatal("written before Flush")
	}
	w.Flush()
	if out.Len() == 0 {
		t.Fatal("Flush wrote nothing")
	}
}

// item is one value of a round trip: written by the Writer as a command
// argument and read back by the Reader.
type item struct {
	kind int
	s    string
	ok   bool
	n    uint64
	list []string
	set  SeqSet
}

const (
	kAString = iota
	kString
	kNString
	kNumber
	kNumber64
	kList
	kSeqSet
	kBinary
	kKinds
)

func randString(rng *rand.Rand, binary bool) string {
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "\r", "\n", "\r\n", "(", ")", "{", "}", "]", "%", "*", "+", "~", "é", "\xff", "\x7f", "\x01", "NIL"}
	if binary {
		alphabet = append(alphabet, "\x00")
	}
	var b strings.Builder
	for range rng.IntN(12) {
		b.WriteString(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

func randItem(rng *rand.Rand) item {
	it := item{kind: rng.IntN(kKinds)}
	switch it.kind {
	case kAString, kString:
		it.s = randString(rng, false)
	case kBinary:
		it.s = randString(rng, true)
	case kNString:
		if it.ok = rng.IntN(2) == 0; it.ok {
			it.s = randString(rng, false)
		}
	case kNumber:
		it.n = uint64(rng.Uint32())
	case kNumber64:
		it.n = rng.Uint64() >> 1
	case kList:
		for range rng.IntN(4) {
			it.list = append(it.list, randString(rng, false))
		}
	case kSeqSet:
		if rng.IntN(10) == 0 {
			it.set.Saved = true
		}
		for range 1 + rng.IntN(3) {
			if it.set.Saved {
				break
			}
			it.set.Ranges = append(it.set.Ranges, SeqRange{rng.Uint32N(5), rng.Uint32N(5)})
			if r := &it.set.Ranges[len(it.set.Ranges)-1]; r.Start == 0 || r.Stop == 0 {
				r.Start, r.Stop = 0, 0 // "*:n" round-trips, but keep sets canonical
			}
		}
	}
	return it
}

func writeItem(w *Writer, it item) {
	switch it.kind {
	case kAString:
		w.AString(it.s)
	case kString:
		w.String(it.s)
	case kBinary:
		w.BinaryString(it.s)
	case kNString:
		w.NString(it.s, it.ok)
	case kNumber, kNumber64:
		w.Number64(it.n)
	case kList:
		w.Open()
		for _, s := range it.list {
			w.AString(s)
		}
		w.Close()
	case kSeqSet:
		w.SeqSet(it.set)
	}
}

func readItem(c *Command, it item) (item, error) {
	got := item{kind: it.kind}
	var err error
	switch it.kind {
	case kAString:
		got.s, err = c.AString()
	case kString:
		got.s, err = c.String()
	case kBinary:
		if !c.IsLiteral() {
			got.s, err = c.String()
			break
		}
		var l Literal
		if l, err = c.Literal(0); err == nil {
			var b []byte
			b, err = io.ReadAll(l)
			got.s = string(b)
		}
	case kNString:
		got.s, got.ok, err = c.NString()
	case kNumber:
		var n uint32
		n, err = c.Number()
		got.n = uint64(n)
	case kNumber64:
		got.n, err = c.Number64()
	case kList:
		err = c.List(func() error {
			s, err := c.AString()
			got.list = append(got.list, s)
			return err
		})
	case kSeqSet:
		got.set, err = c.SeqSet()
	}
	return got, err
}

// roundTrip writes a command with the items and reads it back.
func roundTrip(items []item, utf8 bool) error {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	w.UTF8 = utf8
	w.Tagged("t1").Atom("X")
	for _, it := range items {
		writeItem(w, it)
	}
	w.CRLF()
	if err := w.Flush(); err != nil {
		return err
	}
	r := NewReader(bufio.NewReader(&buf), Limits{MaxNonSync: -1}, nil)
	c, err := r.ReadCommand()
	if err != nil {
		return fmt.Errorf("reading %q: %w", buf.String(), err)
	}
	for i, it := range items {
		if err := c.SP(); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		got, err := readItem(c, it)
		if err != nil {
			return fmt.Errorf("item %d (%+v): %w", i, it, err)
		}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", it) {
			return fmt.Errorf("item %d: read %+v, wrote %+v", i, got, it)
		}
	}
	if err := c.End(); err != nil {
		return err
	}
	if _, err := r.ReadCommand(); err != io.EOF {
		return fmt.Errorf("after the command: %v", err)
	}
	return nil
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range 3000 {
		var items []item
		for range 1 + rng.IntN(6) {
			items = append(items, randItem(rng))
		}
		if err := roundTrip(items, i%2 == 0); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
}

func TestRoundTripDateTime(t *testing.T) {
	for _, d := range []time.Time{
		time.Date(1994, 7, 5, 2, 57, 12, 0, time.FixedZone("", -7*3600)),
		time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		var buf bytes.Buffer
		w := NewWriter(&buf, 0)
		w.Tagged("t").Atom("APPEND").String(d.Format("_2-Jan-2006 15:04:05 -0700")).CRLF().Flush()
		r := NewReader(bufio.NewReader(&buf), Limits{}, nil)
		c, _ := r.ReadCommand()
		c.SP()
		got, err := c.DateTime()
		if err != nil || !got.Equal(d) {
			t.Fatalf("%v: %v %v", d, got, err)
		}
	}
}
