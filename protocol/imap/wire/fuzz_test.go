package wire

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
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
		cr := &countingReader{r: bytes.NewReader(data)}
		r := NewReader(bufio.NewReaderSize(cr, 16), fuzzLimits, nil)
		var fatal error
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatalf("no progress after %d commands of %d bytes", i, len(data))
			}
			before := cr.n
			_, err := dispatch(r)
			if cap(r.line) > 4*fuzzLimits.MaxLine+64 {
				t.Fatalf("line buffer grew to %d", cap(r.line))
			}
			if fatal != nil {
				if err != fatal {
					t.Fatalf("after %v, the reader said %v", fatal, err)
				}
				return
			}
			if e := AsError(err); e != nil {
				if e.Fatal() {
					fatal = err
				}
				continue
			}
			if err != nil {
				return // EOF or a cut literal
			}
			_ = before
		}
	})
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
