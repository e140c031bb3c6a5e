package wire

import "strings"

// ExtValue is an RFC 4466 tagged-ext-val read without knowing the
// extension: a parameter a dispatcher passes on, or one it must read to
// refuse precisely.
type ExtValue struct {
	// Simple is a tagged-ext-simple (sequence-set, number or number64) as
	// sent, or, inside a list, an astring.
	Simple string
	// List holds the elements of a parenthesised value; IsList tells
	// "()" from an empty Simple.
	List   []ExtValue
	IsList bool
}

// String formats v in IMAP syntax (astrings quoted when they must be).
func (v ExtValue) String() string {
	if !v.IsList {
		if v.Simple != "" && (allBytes(v.Simple, isAStringChar) || allBytes(v.Simple, isSimpleChar)) {
			return v.Simple
		}
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v.Simple) + `"`
	}
	parts := make([]string, len(v.List))
	for i, e := range v.List {
		parts[i] = e.String()
	}
	return "(" + strings.Join(parts, " ") + ")"
}

// ExtValue reads a tagged-ext-val: tagged-ext-simple, or "(" [tagged-ext-comp] ")"
// where tagged-ext-comp is astrings and nested lists.
func (c *Command) ExtValue() (ExtValue, error) {
	if p, _ := c.Peek(); p == '(' {
		return c.extList()
	}
	if err := c.start(); err != nil {
		return ExtValue{}, err
	}
	b, err := c.token("a number or sequence set", isSimpleChar)
	if err != nil {
		return ExtValue{}, err
	}
	return ExtValue{Simple: string(b)}, nil
}

// HasExtValue reports whether SP and a tagged-ext-val come next: after an
// RFC 4466 parameter name, whether the parameter has a value or the next
// name follows (a value starts with "(", a digit, "*" or "$"; a name
// with a letter).
func (c *Command) HasExtValue() bool {
	if c.start() != nil {
		return false
	}
	r := c.r
	if r.pos+1 >= len(r.line) || r.line[r.pos] != ' ' {
		return false
	}
	b := r.line[r.pos+1]
	return b == '(' || isSimpleChar(b)
}

func (c *Command) extList() (ExtValue, error) {
	v := ExtValue{IsList: true}
	err := c.List(func() error {
		if p, _ := c.Peek(); p == '(' {
			e, err := c.extList()
			v.List = append(v.List, e)
			return err
		}
		s, err := c.AString()
		v.List = append(v.List, ExtValue{Simple: s})
		return err
	})
	return v, err
}

// isSimpleChar: the characters of a tagged-ext-simple.
func isSimpleChar(b byte) bool {
	return isDigit(b) || b == ':' || b == ',' || b == '*' || b == '$'
}
