package wire

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// loopReader returns its text again and again.
type loopReader struct {
	text string
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.text[l.off:])
	l.off = (l.off + n) % len(l.text)
	return n, nil
}

// fetchArgs is what a FETCH handler keeps of its arguments.
type fetchArgs struct {
	set          SeqSet
	items        []string
	headers      []string
	partial      [2]uint32
	changedSince uint64
}

// readFetch is a FETCH handler's parse, without the formatting the
// transcript dispatcher does.
func readFetch(c *Command, a *fetchArgs) error {
	a.items, a.headers = a.items[:0], a.headers[:0]
	c.SP()
	var err error
	if a.set, err = c.SeqSet(); err != nil {
		return err
	}
	c.SP()
	err = c.List(func() error {
		name, err := c.Keyword()
		if err != nil {
			return err
		}
		a.items = append(a.items, name)
		if name == "BODY.PEEK" || name == "BODY" {
			c.Byte('[')
			if spec, _ := c.Keyword(); spec == "HEADER.FIELDS" {
				c.SP()
				c.List(func() error {
					h, err := c.AString()
					a.headers = append(a.headers, h)
					return err
				})
			}
			c.Byte(']')
			if c.TryByte('<') {
				a.partial[0], _ = c.Number()
				c.Byte('.')
				a.partial[1], _ = c.NZNumber()
				return c.Byte('>')
			}
		}
		return c.Err()
	})
	if err != nil {
		return err
	}
	if c.TrySP() {
		err = c.List(func() error {
			if k, err := c.Keyword(); err != nil || k != "CHANGEDSINCE" {
				return c.Fail("Unknown FETCH modifier")
			}
			c.SP()
			a.changedSince, err = c.Number64()
			return err
		})
	}
	if err != nil {
		return err
	}
	return c.End()
}

func BenchmarkReadFetch(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"FETCH", "a12 FETCH 1:50 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]<0.2048>)\r\n"},
		{"UID_FETCH_CHANGEDSINCE", "a13 UID FETCH 300:* (UID FLAGS MODSEQ) (CHANGEDSINCE 12345678901)\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewReader(bufio.NewReader(&loopReader{text: bc.line}), Limits{}, nil)
			var a fetchArgs
			b.SetBytes(int64(len(bc.line)))
			b.ReportAllocs()
			for b.Loop() {
				c, err := r.ReadCommand()
				if err != nil {
					b.Fatal(err)
				}
				if err := readFetch(c, &a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriteFetch(b *testing.B) {
	header := strings.Repeat("From: Alice <alice@example.org>\r\nSubject: lunch?\r\n", 3) + "\r\n"
	flags := []string{`\Seen`, `\Answered`, "$Forwarded"}
	w := NewWriter(io.Discard, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		w.Untagged().Number(12).Atom("FETCH").Open().
			Atom("UID").Number(4827).
			Atom("FLAGS").Flags(flags).
			Atom("RFC822.SIZE").Number(48213).
			Atom("MODSEQ").Open().Number64(12345678901).Close().
			Atom("BODY[HEADER.FIELDS").Open().Atom("FROM").Atom("SUBJECT").Close().Raw("]").
			String(header).
			Close().CRLF()
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}
