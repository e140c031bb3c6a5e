package wire

import (
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// Command is one client command being read: its tag and name, and the
// methods that read its arguments in order (a pull parser). Every method
// returns an *Error with AnswerBAD (Tag set) on a syntax error, or the
// answer a limit asks for; after the first error every method returns it
// again, so a handler may check only the last one. A handler ends with
// End, which requires the CRLF; whatever a handler leaves unread is
// skipped by the next ReadCommand.
type Command struct {
	Tag  string
	Name string // upper case; "UID FETCH" etc. for the UID commands
	r    *Reader
}

func (c *Command) bad(format string, args ...any) *Error {
	e := badf(format, args...)
	e.Tag = c.Tag
	return e
}

// Err returns the command's first error, or nil.
func (c *Command) Err() error { return c.r.err }

// Fail refuses the command with a BAD of the handler's own (an unknown
// keyword, say): it is returned as an *Error and remembered like a parse
// error.
func (c *Command) Fail(format string, args ...any) error {
	return c.r.fail(c.bad(format, args...))
}

func (c *Command) arg() error {
	r := c.r
	r.args++
	if r.args > r.lim.MaxArgs {
		return r.fail(c.bad("Too many arguments"))
	}
	return nil
}

// start readies the parser for the next token.
func (c *Command) start() error {
	if err := c.r.fill(); err != nil {
		return err
	}
	return nil
}

// Peek returns the next byte of the command without consuming it, and
// false at the end of the command (or after an error). A literal reads
// as '{' (or '~').
func (c *Command) Peek() (byte, bool) {
	r := c.r
	if r.fill() != nil || r.pos >= len(r.line) {
		return 0, false
	}
	return r.line[r.pos], true
}

// AtEnd reports whether the command's arguments are all read.
func (c *Command) AtEnd() bool {
	_, more := c.Peek()
	return !more && c.r.err == nil
}

// SP reads the single space between arguments.
func (c *Command) SP() error { return c.Byte(' ') }

// Byte reads the byte b (a delimiter: '[', ']', '<', '.', '>', ':').
func (c *Command) Byte(b byte) error {
	if err := c.start(); err != nil {
		return err
	}
	if !c.r.eat(b) {
		return c.r.fail(c.bad("Expected %q at %s", b, c.where()))
	}
	return nil
}

// TryByte reads b if it is next, and reports whether it was.
func (c *Command) TryByte(b byte) bool {
	if c.start() != nil {
		return false
	}
	return c.r.eat(b)
}

// TrySP reads a space if one is next: whether there are more arguments.
func (c *Command) TrySP() bool { return c.TryByte(' ') }

// where describes the parser's position for an error text.
func (c *Command) where() string {
	r := c.r
	if r.pos >= len(r.line) {
		return "end of line"
	}
	rest := r.line[r.pos:]
	if len(rest) > 12 {
		rest = rest[:12]
	}
	return strconv.Quote(string(rest))
}

// End reads the end of the command: nothing may follow.
func (c *Command) End() error {
	r := c.r
	if err := c.start(); err != nil {
		return err
	}
	if r.pos != len(r.line) || r.atLiteral() {
		return r.fail(c.bad("Unexpected %s after the arguments", c.where()))
	}
	r.state = stIdle
	return nil
}

// token reads a non-empty run of bytes ok accepts.
func (c *Command) token(what string, ok func(byte) bool) ([]byte, error) {
	if err := c.start(); err != nil {
		return nil, err
	}
	b := c.r.take(ok)
	if len(b) == 0 {
		return nil, c.r.fail(c.bad("Expected %s at %s", what, c.where()))
	}
	if err := c.arg(); err != nil {
		return nil, err
	}
	return b, nil
}

// Atom reads an atom (RFC 9051: 1*ATOM-CHAR).
func (c *Command) Atom() (string, error) {
	b, err := c.token("an atom", isAtomChar)
	if err != nil {
		return "", err
	}
	return knownOrString(b), nil
}

// Keyword reads a name made of letters, digits, '.', '-' and '_' (a
// fetch attribute, section part, search key, option name) and returns it
// in upper case. It stops before '[', '<', '(' and the like, which Atom
// would not.
func (c *Command) Keyword() (string, error) {
	b, err := c.token("a keyword", isKeywordChar)
	if err != nil {
		return "", err
	}
	return upper(b), nil
}

// PeekKeyword returns the keyword that comes next, in upper case, without
// consuming it ("" if none): for a choice such as SEARCH's optional
// RETURN and CHARSET before its keys.
func (c *Command) PeekKeyword() string {
	if c.start() != nil {
		return ""
	}
	r := c.r
	i := r.pos
	for i < len(r.line) && isKeywordChar(r.line[i]) {
		i++
	}
	return upper(r.line[r.pos:i])
}

// Flag reads a flag: "\" atom (system or extension flag) or a keyword
// atom. "\*" is not a flag a client may send.
func (c *Command) Flag() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	r := c.r
	start := r.pos
	r.eat('\\')
	if len(r.take(isAtomChar)) == 0 {
		r.pos = start
		return "", r.fail(c.bad("Expected a flag at %s", c.where()))
	}
	if err := c.arg(); err != nil {
		return "", err
	}
	return string(r.line[start:r.pos]), nil
}

// Number reads a number (0 to 4294967295).
func (c *Command) Number() (uint32, error) {
	v, err := c.number(1<<32 - 1)
	return uint32(v), err
}

// NZNumber reads a non-zero number.
func (c *Command) NZNumber() (uint32, error) {
	v, err := c.Number()
	if err == nil && v == 0 {
		return 0, c.r.fail(c.bad("Expected a non-zero number"))
	}
	return v, err
}

// Number64 reads a number64 (0 to 2^63-1: a MODSEQ, RFC 9051 and RFC 7162).
func (c *Command) Number64() (uint64, error) { return c.number(1<<63 - 1) }

// NZNumber64 reads a non-zero number64 (mod-sequence-value, RFC 7162).
func (c *Command) NZNumber64() (uint64, error) {
	v, err := c.Number64()
	if err == nil && v == 0 {
		return 0, c.r.fail(c.bad("Expected a non-zero number"))
	}
	return v, err
}

func (c *Command) number(max uint64) (uint64, error) {
	b, err := c.token("a number", isDigit)
	if err != nil {
		return 0, err
	}
	v, ok := parseNumber(b, max)
	if !ok {
		return 0, c.r.fail(c.bad("Number %.24s out of range", b))
	}
	return v, nil
}

func parseNumber(b []byte, max uint64) (uint64, bool) {
	var v uint64
	for _, d := range b {
		if v > (max-uint64(d-'0'))/10 {
			return 0, false
		}
		v = v*10 + uint64(d-'0')
	}
	return v, true
}

// Quoted reads a quoted string. Inside, only \" and \\ are escapes; UTF-8
// is accepted (RFC 9051 QUOTED-CHAR), other 8-bit bytes, CR, LF and NUL
// are not.
func (c *Command) Quoted() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	s, err := c.quoted()
	if err != nil {
		return "", err
	}
	return s, c.arg()
}

func (c *Command) quoted() (string, error) {
	r := c.r
	if !r.eat('"') {
		return "", r.fail(c.bad("Expected a quoted string at %s", c.where()))
	}
	start := r.pos
	plain := true // no escapes: the string is a slice of the line
	for i := r.pos; i < len(r.line); i++ {
		switch ch := r.line[i]; {
		case ch == '"':
			var s string
			if plain {
				s = string(r.line[start:i])
			} else {
				s = unescape(r.line[start:i])
			}
			if !utf8.ValidString(s) {
				return "", r.fail(c.bad("Invalid UTF-8 in a quoted string"))
			}
			r.pos = i + 1
			return s, nil
		case ch == '\\':
			if i+1 >= len(r.line) || (r.line[i+1] != '"' && r.line[i+1] != '\\') {
				return "", r.fail(c.bad(`Only \" and \\ may be escaped in a quoted string`))
			}
			plain = false
			i++
		case ch == 0 || ch == '\r' || ch == '\n':
			return "", r.fail(c.bad("Invalid character in a quoted string"))
		}
	}
	return "", r.fail(c.bad("Unterminated quoted string"))
}

func unescape(b []byte) string {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' {
			i++
		}
		out = append(out, b[i])
	}
	return string(out)
}

// String reads a string: quoted or a literal ({n}, {n+}; not literal8),
// the literal read whole against MaxLine.
func (c *Command) String() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	var s string
	var err error
	if c.r.atLiteral() {
		s, err = c.literalString()
	} else {
		s, err = c.quoted()
	}
	if err != nil {
		return "", err
	}
	return s, c.arg()
}

func (c *Command) literalString() (string, error) {
	r := c.r
	if r.lit.binary {
		r.pos = len(r.line)
		return "", r.fail(c.bad("literal8 (~{n}) is not allowed here"))
	}
	a, err := r.openLiteral(int64(r.lim.MaxLine), true)
	if err != nil {
		return "", err
	}
	buf := make([]byte, a.n)
	r.lr.binary, r.lr.err = false, nil
	if _, err := io.ReadFull(&r.lr, buf); err != nil {
		return "", err
	}
	r.state = stAfterLit
	return string(buf), nil
}

// AString reads an astring: 1*ASTRING-CHAR, or a string.
func (c *Command) AString() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	r := c.r
	if r.pos < len(r.line) && (r.line[r.pos] == '"' || r.atLiteral()) {
		return c.String()
	}
	b, err := c.token("an atom or string", isAStringChar)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// NString reads an nstring: NIL (ok false) or a string.
func (c *Command) NString() (s string, ok bool, err error) {
	if err := c.start(); err != nil {
		return "", false, err
	}
	r := c.r
	if rest := r.line[r.pos:]; len(rest) >= 3 && upperEq(rest[:3], "NIL") && (len(rest) == 3 || !isAtomChar(rest[3])) {
		r.pos += 3
		return "", false, c.arg()
	}
	s, err = c.String()
	return s, err == nil, err
}

func upperEq(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		ch := b[i]
		if 'a' <= ch && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		if ch != s[i] {
			return false
		}
	}
	return true
}

// ListMailbox reads LIST's mailbox pattern: 1*list-char (atom characters,
// '%', '*', ']') or a string.
func (c *Command) ListMailbox() (string, error) {
	if err := c.start(); err != nil {
		return "", err
	}
	r := c.r
	if r.pos < len(r.line) && (r.line[r.pos] == '"' || r.atLiteral()) {
		return c.String()
	}
	b, err := c.token("a mailbox pattern", isListChar)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Literal is a literal streamed to the handler: exactly Size octets, to
// be read before the next call on the Command (what is left unread is
// skipped). Binary is true for literal8 (~{n}, RFC 3516), which may hold
// NUL; a plain literal holding NUL fails the read with BAD.
type Literal struct {
	io.Reader
	Size   int64
	Binary bool
	// NonSync is true for {n+}: the client did not wait for "+".
	NonSync bool
}

// Literal reads a literal announced here, of at most max octets
// (Limits.MaxLiteral when max <= 0), without buffering it: APPEND's
// message. Over max: NO [TOOBIG] (the client never sends a synchronising
// literal it was refused; a non-synchronising one is skipped).
func (c *Command) Literal(max int64) (Literal, error) {
	if err := c.start(); err != nil {
		return Literal{}, err
	}
	r := c.r
	if !r.atLiteral() {
		return Literal{}, r.fail(c.bad("Expected a literal at %s", c.where()))
	}
	if err := c.arg(); err != nil {
		return Literal{}, err
	}
	if max <= 0 {
		max = r.lim.MaxLiteral
	}
	a, err := r.openLiteral(max, false)
	if err != nil {
		return Literal{}, err
	}
	r.lr.binary, r.lr.err = a.binary, nil
	return Literal{Reader: &r.lr, Size: a.n, Binary: a.binary, NonSync: !a.sync}, nil
}

// IsLiteral reports whether a literal is next.
func (c *Command) IsLiteral() bool {
	return c.start() == nil && c.r.atLiteral()
}

// List reads a parenthesised list, "(" [elem *(SP elem)] ")", calling elem
// for each element. An empty list calls elem never.
func (c *Command) List(elem func() error) error {
	return c.Paren(func() error {
		if c.TryByte(')') {
			c.r.pos-- // Paren reads it
			return nil
		}
		for {
			if err := elem(); err != nil {
				return err
			}
			if !c.TrySP() {
				return c.r.err
			}
		}
	})
}

// Paren reads "(" inner ")", with inner reading what is between (a
// search key group, a section's header list). It bounds the nesting.
func (c *Command) Paren(inner func() error) error {
	if err := c.Byte('('); err != nil {
		return err
	}
	r := c.r
	r.depth++
	if r.depth > r.lim.MaxDepth {
		return r.fail(c.bad("Lists nested too deeply"))
	}
	if err := c.arg(); err != nil {
		return err
	}
	if err := inner(); err != nil {
		return r.fail(err)
	}
	r.depth--
	return c.Byte(')')
}

// Depth is the current list nesting, for handlers that recurse themselves.
func (c *Command) Depth() int { return c.r.depth }

var months = [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}

// DateTime reads a date-time: "dd-Mon-yyyy hh:mm:ss +zzzz", the day
// possibly space-padded (APPEND's internal date).
func (c *Command) DateTime() (time.Time, error) {
	if err := c.start(); err != nil {
		return time.Time{}, err
	}
	s, err := c.quoted()
	if err != nil {
		return time.Time{}, err
	}
	if err := c.arg(); err != nil {
		return time.Time{}, err
	}
	t, ok := parseDateTime(s)
	if !ok {
		return time.Time{}, c.r.fail(c.bad("Invalid date-time %q; expected \"dd-Mon-yyyy hh:mm:ss +zzzz\"", s))
	}
	return t, nil
}

func parseDateTime(s string) (time.Time, bool) {
	// " d-Mon-yyyy hh:mm:ss +zzzz" or "dd-...": 26 bytes.
	if len(s) != 26 || s[2] != '-' || s[6] != '-' || s[11] != ' ' || s[14] != ':' || s[17] != ':' || s[20] != ' ' {
		return time.Time{}, false
	}
	day := s[0:2]
	if day[0] == ' ' {
		day = day[1:]
	}
	d, ok1 := atoi(day)
	mon, ok2 := month(s[3:6])
	y, ok3 := atoi(s[7:11])
	hh, ok4 := atoi(s[12:14])
	mm, ok5 := atoi(s[15:17])
	ss, ok6 := atoi(s[18:20])
	zh, ok7 := atoi(s[22:24])
	zm, ok8 := atoi(s[24:26])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8) || (s[21] != '+' && s[21] != '-') {
		return time.Time{}, false
	}
	if d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59 {
		return time.Time{}, false
	}
	off := (zh*60 + zm) * 60
	if s[21] == '-' {
		off = -off
	}
	t := time.Date(y, mon, d, hh, mm, ss, 0, time.FixedZone("", off))
	if t.Day() != d { // 31-Feb
		return time.Time{}, false
	}
	return t, true
}

// Date reads a SEARCH date: d-Mon-yyyy or dd-Mon-yyyy, bare or quoted.
func (c *Command) Date() (time.Time, error) {
	if err := c.start(); err != nil {
		return time.Time{}, err
	}
	r := c.r
	var s string
	if r.pos < len(r.line) && r.line[r.pos] == '"' {
		q, err := c.quoted()
		if err != nil {
			return time.Time{}, err
		}
		s = q
	} else {
		b := r.take(func(b byte) bool { return isDigit(b) || isAlpha(b) || b == '-' })
		s = string(b)
	}
	if err := c.arg(); err != nil {
		return time.Time{}, err
	}
	t, ok := parseDate(s)
	if !ok {
		return time.Time{}, r.fail(c.bad("Invalid date %q; expected d-Mon-yyyy", s))
	}
	return t, nil
}

func parseDate(s string) (time.Time, bool) {
	i := 1
	if len(s) == 11 {
		i = 2
	}
	if len(s) != 10+i-1 || s[i] != '-' || s[i+4] != '-' {
		return time.Time{}, false
	}
	d, ok1 := atoi(s[:i])
	mon, ok2 := month(s[i+1 : i+4])
	y, ok3 := atoi(s[i+5:])
	if !(ok1 && ok2 && ok3) || d < 1 || d > 31 {
		return time.Time{}, false
	}
	t := time.Date(y, mon, d, 0, 0, 0, 0, time.UTC)
	return t, t.Day() == d
}

func atoi(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func month(s string) (time.Month, bool) {
	for i, m := range months {
		if upperEq([]byte(s), m) {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

// Character classes of RFC 9051's grammar.

func isCTL(b byte) bool   { return b < 0x20 || b == 0x7f }
func isDigit(b byte) bool { return '0' <= b && b <= '9' }
func isAlpha(b byte) bool { return 'A' <= b&^0x20 && b&^0x20 <= 'Z' }

// isAtomChar: any CHAR except atom-specials: ( ) { SP CTL % * " \ ].
func isAtomChar(b byte) bool {
	if b >= 0x80 || isCTL(b) {
		return false
	}
	switch b {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

func isAStringChar(b byte) bool { return isAtomChar(b) || b == ']' }
func isTagChar(b byte) bool     { return isAStringChar(b) && b != '+' }
func isListChar(b byte) bool    { return isAStringChar(b) || b == '%' || b == '*' }
func isKeywordChar(b byte) bool {
	return isDigit(b) || isAlpha(b) || b == '.' || b == '-' || b == '_'
}
