package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// ContinueFunc is called when the parser reaches a synchronising literal
// of size octets that is within the limits, before the client may send
// it: it writes "+ ..." and flushes. An error refuses the literal: the
// client then sends nothing more of the command, so the command is over;
// an *Error (say NO [OVERQUOTA]) is returned to the handler as the
// answer to give, any other error (a failed write) as it is.
type ContinueFunc func(size int64) error

// reader states.
const (
	stIdle      = iota // no command in progress (the last one ended or was skipped)
	stLine             // a line of the command is in r.line, parsed up to r.pos
	stPartial          // the rest of an over-long line is still to be read
	stLiteral          // a literal is being streamed; r.litLeft octets unread
	stAfterLit         // a literal was read; the line after it is not
	stAfterLine        // an over-long line was read to its end; a literal it announces (r.tail) is left
	stFailed           // a BYE was given; every read returns r.fatal
)

// litAnn is a literal announced at the end of a line: ~{n+}.
type litAnn struct {
	ok     bool
	start  int // index of "{" or "~" in the line
	n      int64
	sync   bool
	binary bool
}

// Reader reads IMAP commands from a client. It is not safe for
// concurrent use; one per connection.
type Reader struct {
	br   *bufio.Reader
	lim  Limits
	cont ContinueFunc

	cmd     Command
	state   int
	line    []byte
	pos     int
	lit     litAnn
	litLeft int64
	lr      literalReader
	used    int // command text so far, against MaxLine
	args    int
	depth   int
	err     error // the current command's parse error (sticky)
	fatal   error
	tail    []byte // the end of an over-long line, to find a literal there
	plain   bool   // the line is ReadLine's: it announces no literal
	skipped int64  // octets of an over-long line read past MaxLine, against MaxDiscard
}

// NewReader returns a Reader over br. cont may be nil: every synchronising
// literal within the limits is then accepted without a continuation (for
// tests and for a caller that writes "+" itself).
func NewReader(br *bufio.Reader, lim Limits, cont ContinueFunc) *Reader {
	r := &Reader{br: br, lim: lim.withDefaults(), cont: cont}
	r.cmd.r = r
	r.lr.r = r
	return r
}

// ReadCommand skips whatever is left of the previous command and reads the
// next one's tag and name. The Command is valid until the next
// ReadCommand; its methods read the arguments.
//
// An *Error says how to answer: BAD for a line that is not "tag SP name",
// NO [TOOBIG] for a line over MaxLine, BYE when the reader cannot find
// the next command. Other errors are I/O errors; io.EOF means the client
// closed between commands.
func (r *Reader) ReadCommand() (*Command, error) {
	if err := r.resync(); err != nil {
		return nil, err
	}
	r.used, r.args, r.depth, r.err, r.plain = 0, 0, 0, nil, false
	r.cmd.Tag, r.cmd.Name = "", ""
	if err := r.readLine(true); err != nil {
		return nil, err
	}
	c := &r.cmd
	tag := r.take(isTagChar)
	if len(tag) == 0 {
		return nil, r.fail(&Error{Answer: AnswerBAD, Text: "Missing or invalid tag"})
	}
	c.Tag = string(tag)
	if !r.eat(' ') {
		return nil, r.fail(c.bad("Expected a space and a command name after the tag"))
	}
	name := r.take(isAtomChar)
	if len(name) == 0 {
		return nil, r.fail(c.bad("Missing command name"))
	}
	c.Name = upper(name)
	if c.Name == "UID" {
		if !r.eat(' ') {
			return nil, r.fail(c.bad("Expected a command after UID"))
		}
		sub := r.take(isAtomChar)
		if len(sub) == 0 {
			return nil, r.fail(c.bad("Missing command after UID"))
		}
		c.Name = uidName(upper(sub))
	}
	return c, nil
}

// ReadLine reads one line that is not a command: an AUTHENTICATE
// response, IDLE's DONE. It must be called between commands (after End
// or a refused command). The line is returned without its CRLF; literals
// are not interpreted. A line over MaxLine is NO [TOOBIG] (skipped).
func (r *Reader) ReadLine() (string, error) {
	if err := r.resync(); err != nil {
		return "", err
	}
	r.used, r.lit, r.err, r.cmd.Tag = 0, litAnn{}, nil, ""
	r.plain = true // an over-long line's end is text, not a literal
	if err := r.readLine(true); err != nil {
		if e := AsError(err); e != nil {
			e.Tag = "" // the line is not a command: no tag
		}
		return "", err
	}
	r.lit = litAnn{} // the line's end is text, not a literal
	r.state = stIdle
	return string(r.line), nil
}

// upper returns b in upper case, without an allocation for the common
// command and keyword names.
func upper(b []byte) string {
	for _, c := range b {
		if 'a' <= c && c <= 'z' {
			return strings.ToUpper(string(b))
		}
	}
	return knownOrString(b)
}

// known names returned without allocating.
var knownNames = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{"FETCH", "UID", "STORE", "SEARCH", "SELECT", "EXAMINE",
		"LOGIN", "LOGOUT", "NOOP", "IDLE", "APPEND", "COPY", "MOVE", "EXPUNGE", "CLOSE",
		"LIST", "LSUB", "STATUS", "CAPABILITY", "ENABLE", "ID", "SORT", "THREAD",
		"FLAGS", "BODY", "BODY.PEEK", "BODYSTRUCTURE", "ENVELOPE", "INTERNALDATE",
		"RFC822.SIZE", "MODSEQ", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT",
		"MIME", "CHANGEDSINCE", "VANISHED", "BINARY", "BINARY.PEEK", "BINARY.SIZE",
		"ALL", "FAST", "FULL", "NIL", "AUTHENTICATE", "STARTTLS", "CREATE", "DELETE",
		"RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "NAMESPACE", "UNSELECT", "CHECK"} {
		m[s] = s
	}
	return m
}()

// uidNames are the "UID x" names, made once.
var uidNames = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"} {
		m[s] = "UID " + s
	}
	return m
}()

func uidName(sub string) string {
	if n, ok := uidNames[sub]; ok {
		return n
	}
	return "UID " + sub
}

func knownOrString(b []byte) string {
	if s, ok := knownNames[string(b)]; ok { // no allocation for the lookup
		return s
	}
	return string(b)
}

// fail records err as the current command's error and returns it.
func (r *Reader) fail(err error) error {
	if e := AsError(err); e != nil {
		if e.Tag == "" && r.cmd.Tag != "" {
			// A copy: e may be a caller's shared value.
			cp := *e
			cp.Tag = r.cmd.Tag
			e, err = &cp, &cp
		}
		if e.Answer == AnswerBYE {
			r.state, r.fatal = stFailed, e
		}
	}
	if r.err == nil {
		r.err = err
	}
	return err
}

// readLine reads the next line of the command into r.line, without its
// CRLF (a bare LF is accepted), and finds a literal announced at its end.
func (r *Reader) readLine(first bool) error {
	r.line, r.pos, r.lit = r.line[:0], 0, litAnn{}
	room := r.lim.MaxLine - r.used
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(r.line)+len(chunk) > room+2 {
			// Over the limit: keep what fits (for the tag), remember the
			// end, and skip the rest when resynchronising.
			// The tail spans the read before: "{12" may end one read
			// and "+}" start the next.
			r.tail = append(r.tail[:0], r.line[max(0, len(r.line)-32):]...)
			r.setTail(chunk)
			keep := max(0, min(len(chunk), room-len(r.line)))
			r.line = append(r.line, chunk[:keep]...)
			r.skipped = int64(len(chunk) - keep)
			switch err {
			case nil: // the line ends in this chunk
				r.state = stAfterLine
			case bufio.ErrBufferFull:
				r.state = stPartial
			default:
				if err != io.EOF {
					return r.ioFail(err)
				}
				// Answer as if more were to come: the same answer
				// whatever the reads' sizes; the next read ends it.
				r.state = stPartial
			}
			if first {
				r.pos = 0
				r.cmd.Tag = string(r.take(isTagChar))
			}
			return r.fail(&Error{Answer: AnswerNO, Code: "TOOBIG", Text: "Command line too long"})
		}
		r.line = append(r.line, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && (len(r.line) > 0 || !first) {
				err = io.ErrUnexpectedEOF
			}
			r.state = stFailed
			r.fatal = err
			return err
		}
	}
	r.line = r.line[:len(r.line)-1]
	if n := len(r.line); n > 0 && r.line[n-1] == '\r' {
		r.line = r.line[:n-1]
	}
	if len(r.line) > room { // by the octet a bare LF saved
		r.tail = append(r.tail[:0], r.line[max(0, len(r.line)-32):]...)
		r.skipped = int64(len(r.line) - room)
		r.line = r.line[:room]
		r.state = stAfterLine
		if first {
			r.pos = 0
			r.cmd.Tag = string(r.take(isTagChar))
		}
		return r.fail(&Error{Answer: AnswerNO, Code: "TOOBIG", Text: "Command line too long"})
	}
	r.used += len(r.line)
	r.lit = findLiteral(r.line)
	r.state = stLine
	return nil
}

func (r *Reader) setTail(chunk []byte) {
	const keep = 32
	r.tail = append(r.tail, chunk...)
	if len(r.tail) > keep {
		r.tail = append(r.tail[:0], r.tail[len(r.tail)-keep:]...)
	}
}

// findLiteral parses "{n}", "{n+}", "~{n}" or "~{n+}" at the end of line.
func findLiteral(line []byte) litAnn {
	n := len(line)
	if n < 3 || line[n-1] != '}' {
		return litAnn{}
	}
	i := n - 2
	a := litAnn{sync: true}
	if line[i] == '+' {
		a.sync = false
		i--
	}
	end := i + 1
	for i >= 0 && '0' <= line[i] && line[i] <= '9' {
		i--
	}
	if i < 0 || line[i] != '{' || i+1 == end || end-(i+1) > 19 {
		return litAnn{}
	}
	var v uint64
	for _, c := range line[i+1 : end] {
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<63-1 {
		return litAnn{}
	}
	a.n, a.start, a.ok = int64(v), i, true
	if i > 0 && line[i-1] == '~' {
		a.binary, a.start = true, i-1
	}
	return a
}

// resync skips what the client sent of the current command that its
// handler did not read: the rest of the line, the non-synchronising
// literals it announces and the lines after them. A synchronising literal
// ends the skipping: the client waits for a "+" it will not get.
func (r *Reader) resync() error {
	budget := r.lim.MaxDiscard - r.skipped
	r.skipped = 0
	if budget < 0 {
		return r.bye()
	}
	for {
		switch r.state {
		case stIdle:
			return nil
		case stFailed:
			return r.fatal
		case stLine:
			if !r.lit.ok || r.lit.sync {
				r.state = stIdle
				continue
			}
			if err := r.discard(r.lit.n, &budget); err != nil {
				return err
			}
			r.state = stAfterLit
		case stLiteral:
			// An accepted literal: its size was checked when it was.
			if _, err := r.br.Discard(int(r.litLeft)); err != nil {
				return r.ioFail(err)
			}
			r.litLeft = 0
			r.state = stAfterLit
		case stAfterLit:
			r.tail = r.tail[:0]
			r.state = stPartial
		case stPartial:
			for {
				chunk, err := r.br.ReadSlice('\n')
				budget -= int64(len(chunk))
				if budget < 0 {
					return r.bye()
				}
				r.setTail(chunk)
				if err == nil {
					break
				}
				if err != bufio.ErrBufferFull {
					return r.ioFail(err)
				}
			}
			r.state = stAfterLine
		case stAfterLine:
			t := bytes.TrimSuffix(bytes.TrimSuffix(r.tail, []byte("\n")), []byte("\r"))
			a := findLiteral(t)
			r.tail = r.tail[:0]
			if !a.ok || a.sync || r.plain {
				r.state = stIdle
				continue
			}
			if err := r.discard(a.n, &budget); err != nil {
				return err
			}
			r.state = stAfterLit
		}
	}
}

func (r *Reader) discard(n int64, budget *int64) error {
	*budget -= n
	if *budget < 0 {
		return r.bye()
	}
	if _, err := r.br.Discard(int(n)); err != nil {
		return r.ioFail(err)
	}
	return nil
}

func (r *Reader) bye() error {
	e := &Error{Answer: AnswerBYE, Text: "Too much input to skip after a refused command"}
	r.state, r.fatal = stFailed, e
	return e
}

func (r *Reader) ioFail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	r.state, r.fatal = stFailed, err
	return err
}

// fill makes the next line of the command available after a literal.
func (r *Reader) fill() error {
	if r.err != nil {
		return r.err
	}
	switch r.state {
	case stLine:
		return nil
	case stLiteral:
		if _, err := r.br.Discard(int(r.litLeft)); err != nil {
			return r.ioFail(err)
		}
		r.litLeft = 0
		r.state = stAfterLit
		fallthrough
	case stAfterLit:
		return r.readLine(false)
	case stFailed:
		return r.fatal
	}
	return r.fail(r.cmd.bad("Command already ended"))
}

// take consumes the longest run of bytes of r.line that ok accepts.
func (r *Reader) take(ok func(byte) bool) []byte {
	i := r.pos
	for i < len(r.line) && ok(r.line[i]) {
		i++
	}
	b := r.line[r.pos:i]
	r.pos = i
	return b
}

func (r *Reader) eat(c byte) bool {
	if r.pos < len(r.line) && r.line[r.pos] == c {
		r.pos++
		return true
	}
	return false
}

// atLiteral reports whether the parser stands at the announced literal.
func (r *Reader) atLiteral() bool { return r.lit.ok && r.pos == r.lit.start }

// openLiteral checks the literal at the parser against max and the
// non-synchronising bound, asks for the continuation, and makes it the
// current literal. buffered is true when it is read into a string, so it
// counts against MaxLine.
func (r *Reader) openLiteral(max int64, buffered bool) (litAnn, error) {
	a := r.lit
	r.pos = len(r.line)
	tooBig := a.n > max
	if buffered && a.n > int64(r.lim.MaxLine-r.used) {
		tooBig = true
	}
	if !a.sync {
		// The client sent it without waiting: a refused one is skipped by
		// resync, or, if that is too much to read, the connection closed.
		var refuse *Error
		if r.lim.MaxNonSync >= 0 && a.n > r.lim.MaxNonSync {
			// RFC 7888 section 4 (LITERAL-).
			refuse = &Error{Answer: AnswerBAD, Code: "TOOBIG", Text: "Non-synchronizing literal too large; use {n} (LITERAL-)"}
		} else if tooBig {
			refuse = &Error{Answer: AnswerNO, Code: "TOOBIG", Text: "Literal too large"}
		}
		if refuse != nil {
			if a.n > r.lim.MaxDiscard {
				refuse.Answer = AnswerBYE
			}
			return a, r.fail(refuse)
		}
	} else {
		if tooBig {
			r.state = stIdle // the client sends nothing more
			return a, r.fail(&Error{Answer: AnswerNO, Code: "TOOBIG", Text: "Literal too large"})
		}
		if r.cont != nil {
			if err := r.cont(a.n); err != nil {
				r.state = stIdle
				if e := AsError(err); e == nil {
					return a, r.ioFail(err)
				}
				return a, r.fail(err)
			}
		}
	}
	if buffered {
		r.used += int(a.n)
	}
	r.litLeft = a.n
	r.state = stLiteral
	return a, nil
}

// literalReader streams the current literal.
type literalReader struct {
	r      *Reader
	binary bool
	err    error
}

func (l *literalReader) Read(p []byte) (int, error) {
	r := l.r
	if l.err != nil {
		return 0, l.err
	}
	if r.state != stLiteral || r.litLeft == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.litLeft {
		p = p[:r.litLeft]
	}
	n, err := r.br.Read(p)
	r.litLeft -= int64(n)
	if !l.binary && bytes.IndexByte(p[:n], 0) >= 0 {
		l.err = r.fail(r.cmd.bad("NUL in a literal; send it as literal8 (~{n})"))
		return n, l.err
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		l.err = r.ioFail(err)
		return n, l.err
	}
	return n, nil
}

// Buffered returns how many bytes of client input are already read and
// waiting: a session flushes its responses when it is zero (no
// pipelined command to answer first).
func (r *Reader) Buffered() int { return r.br.Buffered() }
