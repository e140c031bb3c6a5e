package wire

import (
	"bufio"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// expectNext reads the next command and requires its tag and name.
func expectNext(t *testing.T, r *Reader, tag, name string) *Command {
	t.Helper()
	c, err := r.ReadCommand()
	if err != nil {
		t.Fatalf("next command: %v, want %s %s", err, tag, name)
	}
	if c.Tag != tag || c.Name != name {
		t.Fatalf("next command %s %s, want %s %s", c.Tag, c.Name, tag, name)
	}
	return c
}

func wantErr(t *testing.T, err error, ans Answer, code, tag, text string) {
	t.Helper()
	e := AsError(err)
	if e == nil {
		t.Fatalf("err %v, want %s [%s] %q", err, ans, code, text)
	}
	if e.Answer != ans || e.Code != code || e.Tag != tag || !strings.Contains(e.Text, text) {
		t.Fatalf("err %+v, want %s [%s] tag %q text %q", e, ans, code, tag, text)
	}
}

func TestSyncLiteralContinuation(t *testing.T) {
	r, conts := newTestReader("a LOGIN {4}\r\nfred {6}\r\nsecret\r\nb NOOP\r\n", Limits{})
	c := expectNext(t, r, "a", "LOGIN")
	c.SP()
	u, _ := c.AString()
	c.SP()
	p, _ := c.AString()
	if err := c.End(); err != nil || u != "fred" || p != "secret" {
		t.Fatalf("%q %q %v", u, p, err)
	}
	if len(*conts) != 2 || (*conts)[0] != 4 || (*conts)[1] != 6 {
		t.Fatalf("continuations %v", *conts)
	}
	expectNext(t, r, "b", "NOOP")
	if r.Buffered() != 0 {
		t.Fatalf("Buffered %d after the last command", r.Buffered())
	}
}

func TestSyncLiteralTooBig(t *testing.T) {
	// The client waits for "+", gets NO [TOOBIG], sends its next command.
	r, conts := newTestReader("a APPEND INBOX {2000}\r\nb NOOP\r\n", Limits{MaxLiteral: 1000})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	_, err := c.Literal(0)
	wantErr(t, err, AnswerNO, "TOOBIG", "a", "too large")
	if len(*conts) != 0 {
		t.Fatal("continuation sent for a refused literal")
	}
	expectNext(t, r, "b", "NOOP")
}

func TestContinueRefused(t *testing.T) {
	in := "a APPEND INBOX {20}\r\nb NOOP\r\n"
	r := NewReader(bufio.NewReader(strings.NewReader(in)), Limits{}, func(int64) error {
		return &Error{Answer: AnswerNO, Code: "OVERQUOTA", Text: "Quota exceeded"}
	})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	_, err := c.Literal(0)
	wantErr(t, err, AnswerNO, "OVERQUOTA", "a", "Quota")
	expectNext(t, r, "b", "NOOP")

	// A failed write of the continuation is an I/O error: the reader stops.
	boom := errors.New("broken pipe")
	r = NewReader(bufio.NewReader(strings.NewReader(in)), Limits{}, func(int64) error { return boom })
	c = expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	if _, err := c.Literal(0); err != boom {
		t.Fatalf("%v", err)
	}
	if _, err := r.ReadCommand(); err != boom {
		t.Fatalf("after a write failure: %v", err)
	}
}

func TestNonSyncOverLiteralMinus(t *testing.T) {
	big := strings.Repeat("x", 5000)
	in := "a APPEND INBOX {5000+}\r\n" + big + " {3+}\r\nabc\r\nb NOOP\r\n"
	r, _ := newTestReader(in, Limits{})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	_, err := c.Literal(0)
	wantErr(t, err, AnswerBAD, "TOOBIG", "a", "LITERAL-")
	expectNext(t, r, "b", "NOOP")

	// With LITERAL+ it is accepted and streamed.
	r, conts := newTestReader(in, Limits{MaxNonSync: -1})
	c = expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	l, err := c.Literal(0)
	if err != nil || l.Size != 5000 || !l.NonSync {
		t.Fatalf("%+v %v", l, err)
	}
	got, _ := io.ReadAll(l)
	if string(got) != big {
		t.Fatalf("read %d octets", len(got))
	}
	c.SP()
	if s, err := c.String(); err != nil || s != "abc" {
		t.Fatalf("%q %v", s, err)
	}
	if err := c.End(); err != nil {
		t.Fatal(err)
	}
	if len(*conts) != 0 {
		t.Fatal("continuation for a non-synchronising literal")
	}
	expectNext(t, r, "b", "NOOP")
}

func TestNonSyncTooBigSkipped(t *testing.T) {
	// Over MaxLiteral but within MaxDiscard: NO, skipped; beyond MaxDiscard: BYE.
	in := "a APPEND INBOX {3000+}\r\n" + strings.Repeat("y", 3000) + "\r\nb NOOP\r\n"
	r, _ := newTestReader(in, Limits{MaxLiteral: 1000, MaxNonSync: -1})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	_, err := c.Literal(0)
	wantErr(t, err, AnswerNO, "TOOBIG", "a", "too large")
	expectNext(t, r, "b", "NOOP")

	r, _ = newTestReader(in, Limits{MaxLiteral: 1000, MaxNonSync: -1, MaxDiscard: 2000})
	defer func() {
		// Over LITERAL-'s bound and MaxDiscard: BYE at once, not BAD then BYE.
		r, _ := newTestReader("a X {5000+}\r\n", Limits{MaxDiscard: 2000})
		c := expectNext(t, r, "a", "X")
		c.SP()
		_, err := c.String()
		wantErr(t, err, AnswerBYE, "TOOBIG", "a", "LITERAL-")
	}()
	c = expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	_, err = c.Literal(0)
	wantErr(t, err, AnswerBYE, "TOOBIG", "a", "too large")
	if _, err := r.ReadCommand(); AsError(err) == nil || !AsError(err).Fatal() {
		t.Fatalf("after BYE: %v", err)
	}
}

func TestLineTooLong(t *testing.T) {
	long := "a1 SEARCH " + strings.Repeat("ALL ", 400) + "ALL\r\n"
	r, _ := newTestReader(long+"b NOOP\r\n", Limits{MaxLine: 100})
	_, err := r.ReadCommand()
	wantErr(t, err, AnswerNO, "TOOBIG", "a1", "too long")
	expectNext(t, r, "b", "NOOP")

	// The over-long line announces a non-synchronising literal: skipped too.
	long = "a2 X " + strings.Repeat("z", 300) + " {5+}\r\nhello more {2+}\r\nxy\r\n"
	r, _ = newTestReader(long+"b NOOP\r\n", Limits{MaxLine: 100})
	_, err = r.ReadCommand()
	wantErr(t, err, AnswerNO, "TOOBIG", "a2", "too long")
	expectNext(t, r, "b", "NOOP")

	// A synchronising one is not sent: the client waits for "+".
	long = "a3 X " + strings.Repeat("z", 300) + " {5}\r\n"
	r, _ = newTestReader(long+"b NOOP\r\n", Limits{MaxLine: 100})
	_, err = r.ReadCommand()
	wantErr(t, err, AnswerNO, "TOOBIG", "a3", "too long")
	expectNext(t, r, "b", "NOOP")

	// Beyond MaxDiscard: BYE, and every later read says so.
	r, _ = newTestReader("a4 X "+strings.Repeat("z", 5000)+"\r\nb NOOP\r\n", Limits{MaxLine: 100, MaxDiscard: 1000})
	_, err = r.ReadCommand()
	wantErr(t, err, AnswerNO, "TOOBIG", "a4", "too long")
	_, err = r.ReadCommand()
	wantErr(t, err, AnswerBYE, "", "", "skip")
	_, err = r.ReadCommand()
	wantErr(t, err, AnswerBYE, "", "", "skip")

	// A line after a literal counts against the same budget.
	r, _ = newTestReader("a5 X {3}\r\nabc "+strings.Repeat("q", 200)+"\r\nb NOOP\r\n", Limits{MaxLine: 100})
	c := expectNext(t, r, "a5", "X")
	c.SP()
	c.String()
	err = c.SP()
	wantErr(t, err, AnswerNO, "TOOBIG", "a5", "too long")
	expectNext(t, r, "b", "NOOP")

	// A buffered literal counts too.
	r, conts := newTestReader("a6 LOGIN {500}\r\nb NOOP\r\n", Limits{MaxLine: 100})
	c = expectNext(t, r, "a6", "LOGIN")
	c.SP()
	_, err = c.AString()
	wantErr(t, err, AnswerNO, "TOOBIG", "a6", "too large")
	if len(*conts) != 0 {
		t.Fatal("continuation for a refused literal")
	}
	expectNext(t, r, "b", "NOOP")
}

func TestTooManyArgs(t *testing.T) {
	r, _ := newTestReader("a SEARCH "+strings.Repeat("1 ", 20)+"1\r\nb NOOP\r\n", Limits{MaxArgs: 10})
	c := expectNext(t, r, "a", "SEARCH")
	var err error
	for err == nil {
		if err = c.SP(); err == nil {
			_, err = c.Number()
		}
	}
	wantErr(t, err, AnswerBAD, "", "a", "Too many")
	expectNext(t, r, "b", "NOOP")
}

func TestResyncAfterBad(t *testing.T) {
	// BAD on the first line; the client had sent non-synchronising
	// literals with further lines: all skipped.
	in := "a FOO bar {3+}\r\nabc baz {4+}\r\nwxyz\r\nb NOOP\r\n"
	r, _ := newTestReader(in, Limits{})
	c := expectNext(t, r, "a", "FOO")
	c.SP()
	_, err := c.Number()
	wantErr(t, err, AnswerBAD, "", "a", "Expected a number")
	if _, err2 := c.AString(); err2 != err {
		t.Fatalf("error not sticky: %v", err2)
	}
	expectNext(t, r, "b", "NOOP")

	// BAD before a synchronising literal: the client sends nothing more.
	r, conts := newTestReader("a FOO bar {3}\r\nb NOOP\r\n", Limits{})
	c = expectNext(t, r, "a", "FOO")
	c.SP()
	c.Number()
	expectNext(t, r, "b", "NOOP")
	if len(*conts) != 0 {
		t.Fatal("continuation sent")
	}

	// BAD after a literal was read: the rest of its command is skipped.
	r, _ = newTestReader("a FOO {3}\r\nabc x {2+}\r\nxy\r\nb NOOP\r\n", Limits{})
	c = expectNext(t, r, "a", "FOO")
	c.SP()
	c.String()
	c.SP()
	_, err = c.Number()
	wantErr(t, err, AnswerBAD, "", "a", "Expected a number")
	expectNext(t, r, "b", "NOOP")

	// A literal that does not end its line is no literal.
	r, _ = newTestReader("a FOO {3} x\r\nb NOOP\r\n", Limits{})
	c = expectNext(t, r, "a", "FOO")
	c.SP()
	_, err = c.String()
	wantErr(t, err, AnswerBAD, "", "a", "Expected a quoted")
	expectNext(t, r, "b", "NOOP")

	// A handler that stops early: End was never called.
	r, _ = newTestReader("a FOO x y z\r\nb NOOP\r\n", Limits{})
	expectNext(t, r, "a", "FOO")
	expectNext(t, r, "b", "NOOP")

	// Trailing garbage.
	r, _ = newTestReader("a NOOP x\r\nb NOOP\r\n", Limits{})
	c = expectNext(t, r, "a", "NOOP")
	wantErr(t, c.End(), AnswerBAD, "", "a", "Unexpected")
	expectNext(t, r, "b", "NOOP")
}

func TestStreamedLiteral(t *testing.T) {
	msg := "Subject: hi\r\n\r\nbody\r\n"
	in := "a APPEND INBOX {" + itoa(len(msg)) + "}\r\n" + msg + "\r\nb APPEND INBOX ~{3}\r\na\x00b\r\nc APPEND INBOX {3}\r\na\x00b\r\nd NOOP\r\n"
	r, _ := newTestReader(in, Limits{})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	l, err := c.Literal(0)
	if err != nil || l.Size != int64(len(msg)) || l.Binary {
		t.Fatalf("%+v %v", l, err)
	}
	// Read only part: the rest is skipped by End.
	buf := make([]byte, 4)
	io.ReadFull(l, buf)
	if err := c.End(); err != nil {
		t.Fatal(err)
	}

	c = expectNext(t, r, "b", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	l, err = c.Literal(0)
	if err != nil || !l.Binary {
		t.Fatalf("%+v %v", l, err)
	}
	if got, err := io.ReadAll(l); err != nil || string(got) != "a\x00b" {
		t.Fatalf("%q %v", got, err)
	}
	if err := c.End(); err != nil {
		t.Fatal(err)
	}

	c = expectNext(t, r, "c", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	l, _ = c.Literal(0)
	_, err = io.ReadAll(l)
	wantErr(t, err, AnswerBAD, "", "c", "NUL")
	expectNext(t, r, "d", "NOOP")
}

func TestReadLine(t *testing.T) {
	r, _ := newTestReader("a AUTHENTICATE PLAIN\r\nAGZyZWQAc2VjcmV0\r\n"+strings.Repeat("x", 200)+"\r\nDONE\r\n", Limits{MaxLine: 100})
	c := expectNext(t, r, "a", "AUTHENTICATE")
	c.SP()
	c.Atom()
	c.End()
	if s, err := r.ReadLine(); err != nil || s != "AGZyZWQAc2VjcmV0" {
		t.Fatalf("%q %v", s, err)
	}
	_, err := r.ReadLine()
	wantErr(t, err, AnswerNO, "TOOBIG", "", "too long")
	// An over-long line that ends like a literal announces none.
	r, _ = newTestReader(strings.Repeat("x", 200)+"{4+}\r\nDONE\r\n", Limits{MaxLine: 100})
	_, err = r.ReadLine()
	wantErr(t, err, AnswerNO, "TOOBIG", "", "too long")
	if s, err := r.ReadLine(); err != nil || s != "DONE" {
		t.Fatalf("%q %v", s, err)
	}
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestLineLimitExact(t *testing.T) {
	for _, eol := range []string{"\r\n", "\n"} {
		ok := "a X " + strings.Repeat("y", 16) // 20 octets
		r, _ := newTestReader(ok+eol+ok+"y"+eol+"b NOOP"+eol, Limits{MaxLine: 20})
		c := expectNext(t, r, "a", "X")
		c.SP()
		if _, err := c.Atom(); err != nil {
			t.Fatalf("%q: %v", eol, err)
		}
		_, err := r.ReadCommand()
		wantErr(t, err, AnswerNO, "TOOBIG", "a", "too long")
		expectNext(t, r, "b", "NOOP")
	}
}

func TestSharedErrorNotModified(t *testing.T) {
	shared := &Error{Answer: AnswerNO, Code: "OVERQUOTA", Text: "Quota exceeded"}
	r := NewReader(bufio.NewReader(strings.NewReader("a7 APPEND INBOX {20}\r\n")), Limits{}, func(int64) error { return shared })
	c := expectNext(t, r, "a7", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	_, err := c.Literal(0)
	wantErr(t, err, AnswerNO, "OVERQUOTA", "a7", "Quota")
	if shared.Tag != "" {
		t.Fatal("the caller's error was given a tag")
	}
}

// The transcripts give the same result when the client's bytes arrive one
// at a time.
func TestTranscriptOneByteAtATime(t *testing.T) {
	in := "a LOGIN {4}\r\nfred \"x\"\r\nb APPEND INBOX (\\Seen) {5+}\r\nhello\r\n" +
		"c FETCH 1 (BODY.PEEK[HEADER.FIELDS (A {1+}\r\nB)]<0.1>)\r\nd X " + strings.Repeat("q", 200) + " {3+}\r\nabc\r\ne NOOP\r\n"
	want := []string{`a LOGIN user="fred" pass="x"`, `b APPEND "INBOX" flags=(\Seen) msg+="hello"`,
		`c FETCH 1 BODY.PEEK[HEADER.FIELDS (A B)]<0.1>`, "d NO [TOOBIG]", "e NOOP"}
	r := NewReader(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16), Limits{MaxLine: 100}, nil)
	var got []string
	for {
		d, err := dispatch(r)
		if err == io.EOF {
			break
		}
		if e := AsError(err); e != nil {
			code := ""
			if e.Code != "" {
				code = " [" + e.Code + "]"
			}
			d = e.Tag + " " + e.Answer.String() + code
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// byteRepeater yields the same byte forever.
type byteRepeater byte

func (b byteRepeater) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// A streamed literal is never held in memory: 16 MiB pass through with
// allocations of a few KiB.
func TestStreamedLiteralNotBuffered(t *testing.T) {
	const size = 16 << 20
	in := io.MultiReader(strings.NewReader("a APPEND INBOX {16777216}\r\n"),
		io.LimitReader(byteRepeater('x'), size), strings.NewReader("\r\nb NOOP\r\n"))
	r := NewReader(bufio.NewReader(in), Limits{}, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	l, err := c.Literal(0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{l}, make([]byte, 32<<10))
	if err != nil || n != size {
		t.Fatalf("%d %v", n, err)
	}
	if err := c.End(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 256<<10 {
		t.Fatalf("streaming %d octets allocated %d", size, d)
	}
	expectNext(t, r, "b", "NOOP")
}

func TestCutLiteral(t *testing.T) {
	// The client goes away inside a literal: an I/O error, for good.
	r, _ := newTestReader("a APPEND INBOX {10}\r\nabc", Limits{})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	l, _ := c.Literal(0)
	if _, err := io.ReadAll(l); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v", err)
	}
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after: %v", err)
	}

	r, _ = newTestReader("a LOGIN {10}\r\nabc", Limits{})
	c = expectNext(t, r, "a", "LOGIN")
	c.SP()
	if _, err := c.AString(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v", err)
	}

	// Unread and cut: the skip fails the same way.
	r, _ = newTestReader("a APPEND INBOX {10}\r\nabc", Limits{})
	c = expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	c.Literal(0)
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%v", err)
	}
}

func TestLiteralCallerBound(t *testing.T) {
	r, _ := newTestReader("a APPEND INBOX {20}\r\nb NOOP\r\n", Limits{})
	c := expectNext(t, r, "a", "APPEND")
	c.SP()
	c.AString()
	c.SP()
	if !c.IsLiteral() || c.AtEnd() || c.Depth() != 0 {
		t.Fatal("literal not seen")
	}
	_, err := c.Literal(10)
	wantErr(t, err, AnswerNO, "TOOBIG", "a", "too large")
	if c.Err() != err {
		t.Fatal("Err is not the first error")
	}
	if got := AsError(err).Error(); got != "imap: NO [TOOBIG] Literal too large" {
		t.Fatalf("%q", got)
	}
	c = expectNext(t, r, "b", "NOOP")
	if !c.AtEnd() {
		t.Fatal("NOOP has arguments?")
	}
}
