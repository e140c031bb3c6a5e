package wire

import (
	"fmt"
	"io"
	"strings"
)

// A miniature dispatcher: each handler reads its command's arguments
// with the pull parser and describes them, so transcript tests can check
// what a server's handlers would see. It is also how a real handler is
// meant to look.

type handler func(c *Command, out *strings.Builder) error

var handlers = map[string]handler{
	"NOOP":       func(c *Command, out *strings.Builder) error { return nil },
	"LOGIN":      hLogin,
	"SELECT":     hSelect,
	"EXAMINE":    hSelect,
	"FETCH":      hFetch,
	"UID FETCH":  hFetch,
	"STORE":      hStore,
	"UID STORE":  hStore,
	"SEARCH":     hSearch,
	"UID SEARCH": hSearch,
	"APPEND":     hAppend,
	"ENABLE":     hEnable,
	"ID":         hID,
	"SORT":       hSort,
	"UID SORT":   hSort,
	"THREAD":     hThread,
	"UID THREAD": hThread,
	"LIST":       hList,
}

// dispatch reads one command and runs its handler; it returns the
// description, or the answer a server would give.
func dispatch(r *Reader) (string, error) {
	c, err := r.ReadCommand()
	if err != nil {
		return "", err
	}
	h, ok := handlers[c.Name]
	if !ok {
		return "", c.Fail("Unknown command %s", c.Name)
	}
	var out strings.Builder
	out.WriteString(c.Tag + " " + c.Name)
	if err := h(c, &out); err != nil {
		return "", err
	}
	if err := c.End(); err != nil {
		return "", err
	}
	return out.String(), nil
}

func hLogin(c *Command, out *strings.Builder) error {
	c.SP()
	u, _ := c.AString()
	c.SP()
	p, err := c.AString()
	fmt.Fprintf(out, " user=%q pass=%q", u, p)
	return err
}

func hSelect(c *Command, out *strings.Builder) error {
	c.SP()
	mbox, err := c.AString()
	fmt.Fprintf(out, " %q", mbox)
	if err != nil || !c.TrySP() {
		return err
	}
	return c.List(func() error {
		name, err := c.Keyword()
		if err != nil {
			return err
		}
		out.WriteString(" " + name)
		switch name {
		case "CONDSTORE":
			return nil
		case "QRESYNC": // (uidvalidity modseq [known-uids] [(seqs uids)])
			c.SP()
			return c.Paren(func() error {
				v, _ := c.NZNumber()
				c.SP()
				m, err := c.Number64()
				fmt.Fprintf(out, " uidvalidity=%d modseq=%d", v, m)
				if err != nil || !c.TrySP() {
					return err
				}
				if p, _ := c.Peek(); p != '(' {
					s, err := c.SeqSet()
					fmt.Fprintf(out, " known=%s", s)
					if err != nil || !c.TrySP() {
						return err
					}
				}
				return c.Paren(func() error {
					seqs, _ := c.SeqSet()
					c.SP()
					uids, err := c.SeqSet()
					fmt.Fprintf(out, " map=%s/%s", seqs, uids)
					return err
				})
			})
		}
		if strings.HasPrefix(name, "X-") { // RFC 4466: an extension's parameter, read generically
			if !c.HasExtValue() {
				return nil
			}
			c.SP()
			v, err := c.ExtValue()
			out.WriteString("=" + v.String())
			return err
		}
		return c.Fail("Unknown SELECT parameter %s", name)
	})
}

func hFetch(c *Command, out *strings.Builder) error {
	c.SP()
	set, err := c.SeqSet()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, " %s", set)
	c.SP()
	if p, _ := c.Peek(); p == '(' {
		err = c.List(func() error { return fetchAtt(c, out) })
	} else {
		err = fetchAtt(c, out)
	}
	if err != nil || !c.TrySP() {
		return err
	}
	return c.List(func() error { // RFC 4466 fetch-modifiers
		name, err := c.Keyword()
		out.WriteString(" " + name)
		switch {
		case err != nil:
			return err
		case name == "CHANGEDSINCE":
			c.SP()
			m, err := c.Number64()
			fmt.Fprintf(out, "=%d", m)
			return err
		case name == "VANISHED":
			return nil
		}
		return c.Fail("Unknown FETCH modifier %s", name)
	})
}

func fetchAtt(c *Command, out *strings.Builder) error {
	name, err := c.Keyword()
	if err != nil {
		return err
	}
	out.WriteString(" " + name)
	switch name {
	case "ALL", "FAST", "FULL", "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER",
		"RFC822.SIZE", "RFC822.TEXT", "BODYSTRUCTURE", "UID", "MODSEQ":
		return nil
	case "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		if name == "BODY" {
			if p, _ := c.Peek(); p != '[' {
				return nil
			}
		}
		if err := c.Byte('['); err != nil {
			return err
		}
		out.WriteString("[")
		if p, _ := c.Peek(); p != ']' {
			spec, err := c.Keyword()
			if err != nil {
				return err
			}
			out.WriteString(spec)
			if strings.HasSuffix(spec, "HEADER.FIELDS") || strings.HasSuffix(spec, "HEADER.FIELDS.NOT") {
				c.SP()
				out.WriteString(" (")
				n := 0
				err := c.List(func() error {
					h, err := c.AString()
					if n++; n > 1 {
						out.WriteString(" ")
					}
					out.WriteString(h)
					return err
				})
				out.WriteString(")")
				if err != nil {
					return err
				}
			}
		}
		if err := c.Byte(']'); err != nil {
			return err
		}
		out.WriteString("]")
		if name != "BINARY.SIZE" && c.TryByte('<') {
			off, _ := c.Number()
			c.Byte('.')
			n, _ := c.NZNumber()
			fmt.Fprintf(out, "<%d.%d>", off, n)
			return c.Byte('>')
		}
		return nil
	}
	return c.Fail("Unknown FETCH item %s", name)
}

func hStore(c *Command, out *strings.Builder) error {
	c.SP()
	set, _ := c.SeqSet()
	fmt.Fprintf(out, " %s", set)
	c.SP()
	if p, _ := c.Peek(); p == '(' { // RFC 7162 UNCHANGEDSINCE
		c.List(func() error {
			k, _ := c.Keyword()
			c.SP()
			m, err := c.Number64()
			fmt.Fprintf(out, " %s=%d", k, m)
			return err
		})
		c.SP()
	}
	op := ""
	if c.TryByte('+') {
		op = "+"
	} else if c.TryByte('-') {
		op = "-"
	}
	item, err := c.Keyword()
	if err != nil {
		return err
	}
	if item != "FLAGS" && item != "FLAGS.SILENT" {
		return c.Fail("Expected FLAGS or FLAGS.SILENT")
	}
	out.WriteString(" " + op + item)
	c.SP()
	flag := func() error {
		f, err := c.Flag()
		out.WriteString(" " + f)
		return err
	}
	if p, _ := c.Peek(); p == '(' {
		return c.List(flag)
	}
	for {
		if err := flag(); err != nil || !c.TrySP() {
			return err
		}
	}
}

func hSearch(c *Command, out *strings.Builder) error {
	c.SP()
	if !searchReturn(c, out) {
		return c.Err()
	}
	return searchKeys(c, out)
}

// searchReturn reads an optional ESEARCH RETURN (...) and CHARSET; it
// reports whether search keys follow.
func searchReturn(c *Command, out *strings.Builder) bool {
	switch c.PeekKeyword() {
	case "RETURN":
		c.Keyword()
		c.SP()
		out.WriteString(" RETURN(")
		c.List(func() error {
			o, err := c.Keyword()
			out.WriteString(" " + o)
			return err
		})
		out.WriteString(" )")
		if c.SP() != nil {
			return false
		}
		return searchReturn(c, out)
	case "CHARSET":
		c.Keyword()
		c.SP()
		cs, err := c.AString()
		fmt.Fprintf(out, " CHARSET=%s", cs)
		return err == nil && c.SP() == nil
	}
	return true
}

// searchKeys reads search-key *(SP search-key).
func searchKeys(c *Command, out *strings.Builder) error {
	for {
		if err := searchKey(c, out); err != nil {
			return err
		}
		if p, _ := c.Peek(); p != ' ' {
			return nil
		}
		c.SP()
	}
}

func searchKey(c *Command, out *strings.Builder) error {
	p, _ := c.Peek()
	switch {
	case p == '(':
		out.WriteString(" (")
		err := c.Paren(func() error { return searchKeys(c, out) })
		out.WriteString(" )")
		return err
	case p == '*' || p == '$' || isDigit(p):
		s, err := c.SeqSet()
		fmt.Fprintf(out, " %s", s)
		return err
	}
	k, err := c.Keyword()
	if err != nil {
		return err
	}
	out.WriteString(" " + k)
	arg := func(f func() error) error {
		if err := c.SP(); err != nil {
			return err
		}
		return f()
	}
	astring := func() error {
		s, err := c.AString()
		fmt.Fprintf(out, "=%q", s)
		return err
	}
	date := func() error {
		d, err := c.Date()
		fmt.Fprintf(out, "=%s", d.Format("2006-01-02"))
		return err
	}
	switch k {
	case "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
		"UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		return nil
	case "BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO":
		return arg(astring)
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		return arg(date)
	case "KEYWORD", "UNKEYWORD":
		return arg(func() error { f, err := c.Flag(); out.WriteString("=" + f); return err })
	case "LARGER", "SMALLER":
		return arg(func() error { n, err := c.Number(); fmt.Fprintf(out, "=%d", n); return err })
	case "UID":
		return arg(func() error { s, err := c.SeqSet(); fmt.Fprintf(out, "=%s", s); return err })
	case "HEADER":
		if err := arg(astring); err != nil {
			return err
		}
		return arg(astring)
	case "NOT":
		return arg(func() error { return searchKey(c, out) })
	case "OR":
		if err := arg(func() error { return searchKey(c, out) }); err != nil {
			return err
		}
		return arg(func() error { return searchKey(c, out) })
	case "MODSEQ": // RFC 7162: [entry-name entry-type-req] mod-sequence-valzer
		if err := c.SP(); err != nil {
			return err
		}
		if p, _ := c.Peek(); p == '"' {
			name, _ := c.Quoted()
			c.SP()
			typ, _ := c.Keyword()
			fmt.Fprintf(out, " entry=%q/%s", name, typ)
			c.SP()
		}
		m, err := c.Number64()
		fmt.Fprintf(out, "=%d", m)
		return err
	}
	return c.Fail("Unknown search key %s", k)
}

func hAppend(c *Command, out *strings.Builder) error {
	c.SP()
	mbox, err := c.AString()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, " %q", mbox)
	for { // MULTIAPPEND (RFC 3502): the message part repeats
		if err := c.SP(); err != nil {
			return err
		}
		if p, _ := c.Peek(); p == '(' {
			out.WriteString(" flags=(")
			n := 0
			err := c.List(func() error {
				f, err := c.Flag()
				if n++; n > 1 {
					out.WriteString(" ")
				}
				out.WriteString(f)
				return err
			})
			out.WriteString(")")
			if err != nil || c.SP() != nil {
				return c.Err()
			}
		}
		if p, _ := c.Peek(); p == '"' {
			d, err := c.DateTime()
			fmt.Fprintf(out, " date=%s", d.Format("2006-01-02T15:04:05-0700"))
			if err != nil || c.SP() != nil {
				return c.Err()
			}
		}
		if c.IsLiteral() {
			if err := appendLiteral(c, out, "msg"); err != nil {
				return err
			}
		} else { // CATENATE (RFC 4469)
			k, err := c.Keyword()
			if err != nil {
				return err
			}
			if k != "CATENATE" {
				return c.Fail("Expected a literal or CATENATE")
			}
			c.SP()
			out.WriteString(" CATENATE")
			err = c.List(func() error {
				part, err := c.Keyword()
				if err != nil {
					return err
				}
				c.SP()
				switch part {
				case "TEXT":
					return appendLiteral(c, out, "text")
				case "URL":
					u, err := c.AString()
					fmt.Fprintf(out, " url=%q", u)
					return err
				}
				return c.Fail("Expected TEXT or URL")
			})
			if err != nil {
				return err
			}
		}
		if p, _ := c.Peek(); p != ' ' {
			return nil
		}
	}
}

func appendLiteral(c *Command, out *strings.Builder, what string) error {
	l, err := c.Literal(0)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(l)
	kind := ""
	if l.Binary {
		kind += "~"
	}
	if l.NonSync {
		kind += "+"
	}
	fmt.Fprintf(out, " %s%s=%q", what, kind, data)
	return err
}

func hEnable(c *Command, out *strings.Builder) error {
	for c.TrySP() {
		a, err := c.Atom()
		if err != nil {
			return err
		}
		out.WriteString(" " + a)
	}
	return nil
}

func hID(c *Command, out *strings.Builder) error {
	c.SP()
	if p, _ := c.Peek(); p != '(' {
		if _, ok, err := c.NString(); err != nil || ok {
			return c.Fail("Expected NIL or a list")
		}
		out.WriteString(" NIL")
		return nil
	}
	return c.List(func() error {
		k, _ := c.String()
		c.SP()
		v, ok, err := c.NString()
		if ok {
			fmt.Fprintf(out, " %q=%q", k, v)
		} else {
			fmt.Fprintf(out, " %q=NIL", k)
		}
		return err
	})
}

func hSort(c *Command, out *strings.Builder) error {
	c.SP()
	out.WriteString(" by(")
	err := c.List(func() error {
		k, err := c.Keyword()
		out.WriteString(" " + k)
		if k == "REVERSE" {
			c.SP()
			k, err = c.Keyword()
			out.WriteString(" " + k)
		}
		return err
	})
	out.WriteString(" )")
	if err != nil {
		return err
	}
	c.SP()
	cs, err := c.AString()
	fmt.Fprintf(out, " charset=%s", cs)
	if err != nil {
		return err
	}
	c.SP()
	return searchKeys(c, out)
}

func hThread(c *Command, out *strings.Builder) error {
	c.SP()
	alg, _ := c.Atom()
	c.SP()
	cs, err := c.AString()
	fmt.Fprintf(out, " %s charset=%s", strings.ToUpper(alg), cs)
	if err != nil {
		return err
	}
	c.SP()
	return searchKeys(c, out)
}

func hList(c *Command, out *strings.Builder) error {
	c.SP()
	ref, _ := c.AString()
	c.SP()
	pat, err := c.ListMailbox()
	fmt.Fprintf(out, " %q %q", ref, pat)
	return err
}
