package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// countingReader counts what the Reader consumed, to prove progress.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

var fuzzLimits = Limits{MaxLine: 256, MaxLiteral: 512, MaxNonSync: 64, MaxDiscard: 2048, MaxArgs: 48, MaxDepth: 6}

func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a001 LOGIN SMITH SESAME\r\n",
		"a LOGIN {4}\r\nfred {6+}\r\nsecret\r\n",
		"A654 FETCH 2:4 (FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>)\r\n",
		"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
		"A02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:6,8:15 41:46,48:55)))\r\n",
		"A003 STORE 2:4 +FLAGS.SILENT (\\Deleted)\r\n",
		"A285 SEARCH OR (FROM alice SUBJECT \"hi\") NOT (OR SEEN (DELETED UID 1:5,7))\r\n",
		"A003 APPEND saved (\\Seen) \" 1-Jul-2002 22:35:42 -0700\" {3}\r\none ~{2+}\r\na\x00\r\n",
		"A003 APPEND Drafts CATENATE (URL \"/x\" TEXT {4}\r\n\r\n\r\n)\r\n",
		"a023 ID (\"name\" \"sodr\" \"os\" NIL)\r\n",
		"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\nA285 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n",
		"a X " + strings.Repeat("z", 300) + " {5+}\r\nhello\r\nb NOOP\r\n",
		"a X {99999999999999999999}\r\n",
		"a X {100+}\r\nshort",
		"((((((((((\r\n",
		"a SEARCH ((((((((ALL))))))))\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The same answers however the input is cut into reads.
		small := fuzzTranscript(t, data, 16, false)
		large := fuzzTranscript(t, data, 4096, false)
		if small != large {
			t.Fatalf("16-byte buffer:\n%s\n4096-byte buffer:\n%s", small, large)
		}
		if one := fuzzTranscript(t, data, 16, true); one != small {
			t.Fatalf("whole reads:\n%s\none byte at a time:\n%s", small, one)
		}
	})
}

// fuzzTranscript dispatches every command of data, with a continuation
// that refuses every literal whose size is a multiple of 7, and describes
// the outcome; it fails t on a lack of progress, an unbounded buffer or a
// reader that goes on after a BYE.
func fuzzTranscript(t *testing.T, data []byte, bufSize int, oneByte bool) string {
	var src io.Reader = bytes.NewReader(data)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	cr := &countingReader{r: src}
	var out strings.Builder
	r := NewReader(bufio.NewReaderSize(cr, bufSize), fuzzLimits, func(n int64) error {
		fmt.Fprintf(&out, "+%d\n", n)
		if n%7 == 0 {
			return &Error{Answer: AnswerNO, Code: "OVERQUOTA", Text: "no"}
		}
		return nil
	})
	var fatal error
	for i := 0; ; i++ {
		if i > len(data)+2 {
			t.Fatalf("no progress after %d commands of %d bytes", i, len(data))
		}
		d, err := dispatch(r)
		if cap(r.line) > 4*fuzzLimits.MaxLine+64 {
			t.Fatalf("line buffer grew to %d", cap(r.line))
		}
		if fatal != nil {
			if err != fatal {
				t.Fatalf("after %v, the reader said %v", fatal, err)
			}
			return out.String()
		}
		if e := AsError(err); e != nil {
			fmt.Fprintf(&out, "%s %s [%s] %s\n", e.Tag, e.Answer, e.Code, e.Text)
			if e.Fatal() {
				fatal = err
			}
			continue
		}
		if err != nil {
			// EOF or a cut literal: the error text may name how far a
			// read got, which depends on the cuts.
			fmt.Fprintf(&out, "end %v\n", err == io.EOF)
			return out.String()
		}
		out.WriteString(d + "\n")
	}
}

func FuzzWriteRead(f *testing.F) {
	f.Add("INBOX", []byte("a\x00b"), uint64(7), true)
	f.Add("a b\r\n\"\\", []byte(""), uint64(1<<63-1), false)
	f.Add("NIL", []byte("\xff\xfe"), uint64(0), true)
	f.Add("caf\xc3\xa9", []byte("x"), uint64(42), false)
	f.Fuzz(func(t *testing.T, s string, b []byte, n uint64, utf8 bool) {
		if strings.IndexByte(s, 0) >= 0 {
			// A string with NUL is refused by the writer.
			var buf bytes.Buffer
			w := NewWriter(&buf, 0)
			if w.Untagged().String(s).Flush() == nil {
				t.Fatalf("NUL written in %q", buf.String())
			}
			s = strings.ReplaceAll(s, "\x00", "")
		}
		n >>= 1
		items := []item{
			{kind: kAString, s: s},
			{kind: kString, s: s},
			{kind: kNString, s: s, ok: true},
			{kind: kBinary, s: string(b)},
			{kind: kNumber64, n: n},
			{kind: kList, list: []string{s, s}},
		}
		if err := roundTrip(items, utf8); err != nil {
			t.Fatal(err)
		}
	})
}
