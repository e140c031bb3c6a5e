package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// Writer writes IMAP responses (or, in tests, commands) through a buffer
// the caller flushes: nothing reaches the client before Flush or before
// the buffer fills, so a handler writes a whole response and the session
// flushes once it has no more pipelined input to answer.
//
// Items are separated by a space automatically: after an item the next
// one is preceded by SP, except right after "(" or "[" and after Raw.
// The first error is sticky: later calls do nothing and Flush and Err
// return it.
type Writer struct {
	bw    *bufio.Writer
	err   error
	space bool // the next item needs a leading SP
	// QuotedMax is the longest string written quoted; longer ones (and
	// any with CR, LF or 8-bit bytes) are written as literals. Default 1024.
	QuotedMax int
	// UTF8 allows valid UTF-8 in quoted strings (IMAP4rev2 or
	// UTF8=ACCEPT enabled); otherwise 8-bit text is a literal.
	UTF8 bool
}

// ErrInvalid is the sticky error of an item that cannot be written as
// asked: a control character in an atom or text, NUL in a string that is
// not binary.
var ErrInvalid = errors.New("imap: value not representable in the requested syntax")

// NewWriter returns a Writer with a buffer of size bytes (4096 if <= 0).
func NewWriter(w io.Writer, size int) *Writer {
	if size <= 0 {
		size = 4096
	}
	return &Writer{bw: bufio.NewWriterSize(w, size), QuotedMax: 1024}
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	w.err = w.bw.Flush()
	return w.err
}

// Err returns the first error.
func (w *Writer) Err() error { return w.err }

// Buffered returns how many bytes wait for Flush.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

func (w *Writer) sep() {
	if w.space {
		w.bw.WriteByte(' ')
	}
	w.space = true
}

func (w *Writer) fail(err error) *Writer {
	if w.err == nil {
		w.err = err
	}
	return w
}

// Untagged starts "* ".
func (w *Writer) Untagged() *Writer {
	if w.err == nil {
		w.bw.WriteString("* ")
		w.space = false
	}
	return w
}

// Tagged starts "tag ".
func (w *Writer) Tagged(tag string) *Writer {
	if w.err == nil {
		if tag == "" || !allBytes(tag, isTagChar) {
			return w.fail(fmt.Errorf("%w: tag %q", ErrInvalid, tag))
		}
		w.bw.WriteString(tag)
		w.bw.WriteByte(' ')
		w.space = false
	}
	return w
}

// Continuation writes a whole "+ text" line. text may be empty: "+ " is
// AUTHENTICATE's empty challenge.
func (w *Writer) Continuation(text string) *Writer {
	if w.err == nil {
		w.bw.WriteString("+ ")
		w.space = false
		if text != "" {
			w.text(text)
		}
		w.CRLF()
	}
	return w
}

// Status writes a whole status line: "tag OK [code] text" (tag "" is
// untagged "*"). code may be "" or hold its arguments ("APPENDUID 1 2");
// use OpenCode for a code with strings.
func (w *Writer) Status(tag, status, code, text string) *Writer {
	if tag == "" {
		w.Untagged()
	} else {
		w.Tagged(tag)
	}
	w.Atom(status)
	if code != "" {
		w.OpenCode(code).CloseCode()
	}
	return w.Text(text).CRLF()
}

// OpenCode starts a response code: "[name".
func (w *Writer) OpenCode(name string) *Writer {
	if w.err == nil {
		w.sep()
		w.bw.WriteByte('[')
		w.space = false
		w.atom(name, func(b byte) bool { return !isCTL(b) && b != ']' && b != '[' && b < 0x80 })
		w.space = true
	}
	return w
}

// CloseCode ends a response code: "]".
func (w *Writer) CloseCode() *Writer {
	if w.err == nil {
		w.bw.WriteByte(']')
		w.space = true
	}
	return w
}

// Atom writes s as it is (a keyword, a flag, "BODY[HEADER]"): it must be
// non-empty and hold no CTL, SP or 8-bit byte.
func (w *Writer) Atom(s string) *Writer {
	if w.err == nil {
		w.sep()
		w.atom(s, func(b byte) bool { return !isCTL(b) && b != ' ' && b < 0x80 })
	}
	return w
}

func (w *Writer) atom(s string, ok func(byte) bool) {
	if s == "" || !allBytes(s, ok) {
		w.fail(fmt.Errorf("%w: atom %q", ErrInvalid, s))
		return
	}
	w.bw.WriteString(s)
}

// Raw writes s with no separator before it (a "]" or "<0>" after an
// atom); it must hold no CR, LF or NUL.
func (w *Writer) Raw(s string) *Writer {
	if w.err == nil {
		for i := 0; i < len(s); i++ {
			if s[i] == '\r' || s[i] == '\n' || s[i] == 0 {
				return w.fail(fmt.Errorf("%w: raw %q", ErrInvalid, s))
			}
		}
		w.bw.WriteString(s)
		w.space = true
	}
	return w
}

// Number writes a number.
func (w *Writer) Number(n uint32) *Writer { return w.Number64(uint64(n)) }

// Number64 writes a number64.
func (w *Writer) Number64(n uint64) *Writer {
	if w.err == nil {
		w.sep()
		// AvailableBuffer: formatting in place costs no allocation.
		w.bw.Write(strconv.AppendUint(w.bw.AvailableBuffer(), n, 10))
	}
	return w
}

// NIL writes NIL.
func (w *Writer) NIL() *Writer { return w.Atom("NIL") }

// Open writes "(".
func (w *Writer) Open() *Writer {
	if w.err == nil {
		w.sep()
		w.bw.WriteByte('(')
		w.space = false
	}
	return w
}

// Close writes ")".
func (w *Writer) Close() *Writer {
	if w.err == nil {
		w.bw.WriteByte(')')
		w.space = true
	}
	return w
}

// Text writes human-readable text to the end of the line, with CR, LF
// and other controls turned into spaces: a server message must never
// end a line early.
func (w *Writer) Text(s string) *Writer {
	if w.err == nil {
		w.sep()
		w.text(s)
	}
	return w
}

func (w *Writer) text(s string) {
	if s == "" {
		s = "."
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if isCTL(b) {
			b = ' '
		}
		w.bw.WriteByte(b)
	}
}

// CRLF ends the line.
func (w *Writer) CRLF() *Writer {
	if w.err == nil {
		w.bw.WriteString("\r\n")
		w.space = false
	}
	return w
}

// stringForm says how a string is written.
type stringForm int

const (
	formQuoted stringForm = iota
	formLiteral
	formLiteral8
	formInvalid
)

func (w *Writer) formOf(s string, binary bool) stringForm {
	max := w.QuotedMax
	if max <= 0 {
		max = 1024
	}
	form := formQuoted
	if len(s) > max {
		form = formLiteral
	}
	eight := false
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == 0:
			if !binary {
				return formInvalid
			}
			return formLiteral8
		case b == '\r' || b == '\n':
			form = formLiteral
		case b >= 0x80:
			eight = true
		}
	}
	if eight && (!w.UTF8 || !utf8.ValidString(s)) {
		form = formLiteral
	}
	return form
}

// String writes s as a quoted string, or as a literal when it holds CR,
// LF or 8-bit text (UTF-8 is quoted if UTF8 is set) or is longer than
// QuotedMax. NUL cannot be written: ErrInvalid.
func (w *Writer) String(s string) *Writer { return w.str(s, false) }

// BinaryString is String, except that NUL is written as a literal8
// (~{n}), for BINARY[] (RFC 3516).
func (w *Writer) BinaryString(s string) *Writer { return w.str(s, true) }

func (w *Writer) str(s string, binary bool) *Writer {
	if w.err != nil {
		return w
	}
	switch w.formOf(s, binary) {
	case formInvalid:
		return w.fail(fmt.Errorf("%w: NUL in a string", ErrInvalid))
	case formQuoted:
		w.sep()
		w.bw.WriteByte('"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				w.bw.WriteByte('\\')
			}
			w.bw.WriteByte(s[i])
		}
		w.bw.WriteByte('"')
	case formLiteral:
		w.literalHeader(int64(len(s)), false)
		w.bw.WriteString(s)
	case formLiteral8:
		w.literalHeader(int64(len(s)), true)
		w.bw.WriteString(s)
	}
	return w
}

// AString writes s as an atom when it is one (1*ASTRING-CHAR, not NIL),
// else as String.
func (w *Writer) AString(s string) *Writer {
	if s != "" && allBytes(s, isAStringChar) && !upperEq([]byte(s), "NIL") {
		if w.err == nil {
			w.sep()
			w.bw.WriteString(s)
		}
		return w
	}
	return w.String(s)
}

// NString writes s as String, or NIL when !ok.
func (w *Writer) NString(s string, ok bool) *Writer {
	if !ok {
		return w.NIL()
	}
	return w.String(s)
}

func (w *Writer) literalHeader(n int64, binary bool) {
	w.sep()
	if binary {
		w.bw.WriteByte('~')
	}
	w.bw.WriteByte('{')
	w.bw.Write(strconv.AppendInt(w.bw.AvailableBuffer(), n, 10))
	w.bw.WriteString("}\r\n")
}

// Literal writes a literal of exactly size octets copied from r ("~{n}"
// when binary), without holding it in memory. A short r is an error: the
// response is then broken and the connection must be closed. Literal
// does not check a non-binary literal for NUL; the caller knows its data.
func (w *Writer) Literal(r io.Reader, size int64, binary bool) *Writer {
	if w.err != nil {
		return w
	}
	if size < 0 {
		return w.fail(fmt.Errorf("%w: literal of %d octets", ErrInvalid, size))
	}
	w.literalHeader(size, binary)
	n, err := io.Copy(w.bw, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("imap: literal of %d octets ended after %d", size, n)
	}
	if err != nil {
		return w.fail(err)
	}
	return w
}

// Flags writes a parenthesised list of flags (atoms).
func (w *Writer) Flags(flags []string) *Writer {
	w.Open()
	for _, f := range flags {
		w.Atom(f)
	}
	return w.Close()
}

// SeqSet writes a sequence set.
func (w *Writer) SeqSet(s SeqSet) *Writer {
	if len(s.Ranges) == 0 && !s.Saved {
		return w.fail(fmt.Errorf("%w: empty sequence set", ErrInvalid))
	}
	return w.Atom(s.String())
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}
