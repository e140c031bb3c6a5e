package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// newTestReader reads in and records the continuations asked for.
func newTestReader(in string, lim Limits) (*Reader, *[]int64) {
	var conts []int64
	r := NewReader(bufio.NewReaderSize(strings.NewReader(in), 64), lim, func(n int64) error {
		conts = append(conts, n)
		return nil
	})
	return r, &conts
}

// one parses "a X <args>\r\n" with f and requires End after it.
func one(args string, f func(c *Command) (any, error)) (any, error) {
	r, _ := newTestReader("a X "+args+"\r\n", Limits{})
	c, err := r.ReadCommand()
	if err != nil {
		return nil, err
	}
	if err := c.SP(); err != nil {
		return nil, err
	}
	v, err := f(c)
	if err != nil {
		return nil, err
	}
	return v, c.End()
}

type grammarCase struct {
	args string
	want any    // when ok
	bad  string // substring of the error text, when not
}

func runGrammar(t *testing.T, name string, f func(c *Command) (any, error), cases []grammarCase) {
	t.Helper()
	for _, tc := range cases {
		got, err := one(tc.args, f)
		if tc.bad != "" {
			e := AsError(err)
			if e == nil || !strings.Contains(e.Text, tc.bad) {
				t.Errorf("%s(%q): err %v, want BAD containing %q", name, tc.args, err, tc.bad)
			} else if e.Tag != "a" {
				t.Errorf("%s(%q): error tag %q, want a", name, tc.args, e.Tag)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s(%q): %v", name, tc.args, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s(%q) = %v, want %v", name, tc.args, got, tc.want)
		}
	}
}

func TestAtom(t *testing.T) {
	runGrammar(t, "Atom", func(c *Command) (any, error) { return c.Atom() }, []grammarCase{
		{"INBOX", "INBOX", ""},
		{"foo.bar[1", "foo.bar[1", ""},
		{"$Forwarded", "$Forwarded", ""},
		{"x]", nil, "Unexpected"},
		{`"q"`, nil, "Expected an atom"},
		{"a%", nil, "Unexpected"},
		{"\x01", nil, "Expected an atom"},
		{"caf\xc3\xa9", nil, "Unexpected"},
		{"", nil, "Expected an atom"},
	})
}

func TestKeyword(t *testing.T) {
	runGrammar(t, "Keyword", func(c *Command) (any, error) { return c.Keyword() }, []grammarCase{
		{"body.peek", "BODY.PEEK", ""},
		{"HEADER.FIELDS.NOT", "HEADER.FIELDS.NOT", ""},
		{"x-gm-msgid", "X-GM-MSGID", ""},
		{"BODY[", nil, "Unexpected"},
		{"(", nil, "Expected a keyword"},
	})
}

func TestFlag(t *testing.T) {
	runGrammar(t, "Flag", func(c *Command) (any, error) { return c.Flag() }, []grammarCase{
		{`\Seen`, `\Seen`, ""},
		{`$Junk`, `$Junk`, ""},
		{`\*`, nil, "Expected a flag"},
		{`\`, nil, "Expected a flag"},
	})
}

func TestNumbers(t *testing.T) {
	runGrammar(t, "Number", func(c *Command) (any, error) { return c.Number() }, []grammarCase{
		{"0", uint32(0), ""},
		{"007", uint32(7), ""},
		{"4294967295", uint32(4294967295), ""},
		{"4294967296", nil, "out of range"},
		{"99999999999999999999999999", nil, "out of range"},
		{"-1", nil, "Expected a number"},
		{"1a", nil, "Unexpected"},
	})
	runGrammar(t, "NZNumber", func(c *Command) (any, error) { return c.NZNumber() }, []grammarCase{
		{"1", uint32(1), ""},
		{"0", nil, "non-zero"},
	})
	runGrammar(t, "Number64", func(c *Command) (any, error) { return c.Number64() }, []grammarCase{
		{"9223372036854775807", uint64(9223372036854775807), ""},
		{"9223372036854775808", nil, "out of range"},
		{"18446744073709551616", nil, "out of range"},
	})
	runGrammar(t, "NZNumber64", func(c *Command) (any, error) { return c.NZNumber64() }, []grammarCase{
		{"12121230045", uint64(12121230045), ""},
		{"0", nil, "non-zero"},
	})
}

func TestQuotedAndStrings(t *testing.T) {
	runGrammar(t, "Quoted", func(c *Command) (any, error) { return c.Quoted() }, []grammarCase{
		{`""`, "", ""},
		{`"a b"`, "a b", ""},
		{`"say \"hi\" \\o/"`, `say "hi" \o/`, ""},
		{`"caf` + "\xc3\xa9" + `"`, "café", ""},
		{`"bad \n"`, nil, "may be escaped"},
		{`"bad ` + "\xff" + `"`, nil, "UTF-8"},
		{`"open`, nil, "Unterminated"},
		{"\"a\x00b\"", nil, "Invalid character"},
		{"\"a\rb\"", nil, "Invalid character"},
		{`atom`, nil, "Expected a quoted"},
	})
	runGrammar(t, "String", func(c *Command) (any, error) { return c.String() }, []grammarCase{
		{`"x"`, "x", ""},
		{"{5}\r\nhello", "hello", ""},
		{"{5+}\r\nhe\r\no", "he\r\no", ""},
		{"{0}\r\n", "", ""},
		{"~{3}\r\nabc", nil, "literal8"},
		{"{3}\r\na\x00c", nil, "NUL"},
		{"x", nil, "Expected a quoted"},
	})
	runGrammar(t, "AString", func(c *Command) (any, error) { return c.AString() }, []grammarCase{
		{"INBOX", "INBOX", ""},
		{"a]b", "a]b", ""},
		{`"a b"`, "a b", ""},
		{"{3}\r\na b", "a b", ""},
		{"(x)", nil, "Expected an atom or string"},
	})
	runGrammar(t, "NString", func(c *Command) (any, error) {
		s, ok, err := c.NString()
		return fmt.Sprintf("%q,%v", s, ok), err
	}, []grammarCase{
		{"NIL", `"",false`, ""},
		{"nil", `"",false`, ""},
		{`"NIL"`, `"NIL",true`, ""},
		{"{2}\r\nab", `"ab",true`, ""},
		{"NILS", nil, "Expected a quoted"},
	})
	runGrammar(t, "ListMailbox", func(c *Command) (any, error) { return c.ListMailbox() }, []grammarCase{
		{"%", "%", ""},
		{"INBOX.*", "INBOX.*", ""},
		{`"~/Mail/%"`, "~/Mail/%", ""},
	})
}

func TestSeqSetGrammar(t *testing.T) {
	runGrammar(t, "SeqSet", func(c *Command) (any, error) { return c.SeqSet() }, []grammarCase{
		{"1", "1", ""},
		{"1:*", "1:*", ""},
		{"*", "*", ""},
		{"2,4:7,9,12:*", "2,4:7,9,12:*", ""},
		{"7:2", "7:2", ""},
		{"$", "$", ""},
		{"0", nil, "out of range"},
		{"1:0", nil, "out of range"},
		{"4294967296", nil, "out of range"},
		{"1,", nil, "Expected a sequence number"},
		{"1:", nil, "Expected a sequence number"},
		{"$,1", nil, "Unexpected"},
		{",", nil, "Expected a sequence number"},
	})
	s := SeqSet{Ranges: []SeqRange{{5, 3}, {10, 0}}}
	for n, want := range map[uint32]bool{2: false, 3: true, 4: true, 5: true, 9: false, 10: true, 20: true} {
		if got := s.Contains(n, 20); got != want {
			t.Errorf("Contains(%d) = %v", n, got)
		}
	}
	if (SeqSet{Ranges: []SeqRange{{0, 0}}}).Contains(7, 7) != true {
		t.Error("* should contain the largest number")
	}
}

func TestListAndParen(t *testing.T) {
	list := func(c *Command) (any, error) {
		var got []string
		err := c.List(func() error {
			s, err := c.AString()
			got = append(got, s)
			return err
		})
		return got, err
	}
	runGrammar(t, "List", list, []grammarCase{
		{"()", "[]", ""},
		{"(a)", "[a]", ""},
		{`(a "b c" {1}` + "\r\nd)", "[a b c d]", ""},
		{"(a  b)", nil, "Expected an atom or string"},
		{"(a", nil, `Expected ')'`},
		{"a)", nil, `Expected '('`},
		{"( a)", nil, "Expected an atom or string"},
	})
	var nest func(c *Command) error
	nest = func(c *Command) error {
		if p, _ := c.Peek(); p == '(' {
			return c.Paren(func() error { return nest(c) })
		}
		_, err := c.Atom()
		return err
	}
	deep := strings.Repeat("(", 33) + "x" + strings.Repeat(")", 33)
	if _, err := one(deep, func(c *Command) (any, error) { return nil, nest(c) }); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("33 levels: %v", err)
	}
	ok := strings.Repeat("(", 32) + "x" + strings.Repeat(")", 32)
	if _, err := one(ok, func(c *Command) (any, error) { return nil, nest(c) }); err != nil {
		t.Errorf("32 levels: %v", err)
	}
}

func TestDates(t *testing.T) {
	runGrammar(t, "DateTime", func(c *Command) (any, error) {
		d, err := c.DateTime()
		return d.Format(time.RFC3339), err
	}, []grammarCase{
		{`"17-Jul-1996 02:44:25 -0700"`, "1996-07-17T02:44:25-07:00", ""},
		{`" 7-Feb-1994 21:52:25 -0800"`, "1994-02-07T21:52:25-08:00", ""},
		{`"07-feb-1994 21:52:25 +0100"`, "1994-02-07T21:52:25+01:00", ""},
		{`"31-Feb-1994 21:52:25 +0100"`, nil, "Invalid date-time"},
		{`"7-Feb-1994 21:52:25 +0100"`, nil, "Invalid date-time"},
		{`"17-Jul-1996 24:44:25 -0700"`, nil, "Invalid date-time"},
		{`"17-Jux-1996 02:44:25 -0700"`, nil, "Invalid date-time"},
		{`17-Jul-1996`, nil, "Expected a quoted"},
	})
	runGrammar(t, "Date", func(c *Command) (any, error) {
		d, err := c.Date()
		return d.Format("2006-01-02"), err
	}, []grammarCase{
		{"1-Feb-1994", "1994-02-01", ""},
		{"01-Feb-1994", "1994-02-01", ""},
		{`"1-Feb-1994"`, "1994-02-01", ""},
		{"1-Feb-94", nil, "Invalid date"},
		{"30-Feb-1994", nil, "Invalid date"},
	})
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct{ in, tag, name, bad string }{
		{"a1 NOOP\r\n", "a1", "NOOP", ""},
		{"a1 noop\n", "a1", "NOOP", ""},
		{"x.y UID fetch 1 FLAGS\r\n", "x.y", "UID FETCH", ""},
		{"+ NOOP\r\n", "", "", "tag"},
		{"a1\r\n", "a1", "", "Expected a space"},
		{"a1 \r\n", "a1", "", "Missing command"},
		{"a1 UID\r\n", "a1", "", "after UID"},
		{"* NOOP\r\n", "", "", "tag"},
	} {
		r, _ := newTestReader(tc.in, Limits{})
		c, err := r.ReadCommand()
		if tc.bad != "" {
			e := AsError(err)
			if e == nil || e.Answer != AnswerBAD || !strings.Contains(e.Text, tc.bad) || e.Tag != tc.tag {
				t.Errorf("%q: %#v", tc.in, err)
			}
			continue
		}
		if err != nil || c.Tag != tc.tag || c.Name != tc.name {
			t.Errorf("%q: %v %+v", tc.in, err, c)
		}
	}
	r, _ := newTestReader("", Limits{})
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Errorf("empty input: %v, want io.EOF", err)
	}
	r, _ = newTestReader("a1 NOOP", Limits{})
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut line: %v, want unexpected EOF", err)
	}
}

func TestExtValue(t *testing.T) {
	runGrammar(t, "ExtValue", func(c *Command) (any, error) {
		v, err := c.ExtValue()
		return v.String(), err
	}, []grammarCase{
		{"1:5,7:*", "1:5,7:*", ""},
		{"12345678901", "12345678901", ""},
		{"$", "$", ""},
		{"()", "()", ""},
		{`(a (b "c d") {2}` + "\r\nef)", `(a (b "c d") ef)`, ""},
		{"((((()))))", "((((()))))", ""},
		{"abc", nil, "Expected a number or sequence set"},
		{"(a", nil, `Expected ')'`},
	})
}
