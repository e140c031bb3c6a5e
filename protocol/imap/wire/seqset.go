package wire

import (
	"strconv"
	"strings"
)

// SeqRange is a range of a sequence set; 0 stands for "*" (the largest
// number in use). A single number n is {n, n}. Start may exceed Stop
// (RFC 9051: "4:2" is "2:4").
type SeqRange struct{ Start, Stop uint32 }

// SeqSet is a sequence-set (message sequence numbers or UIDs).
type SeqSet struct {
	Ranges []SeqRange
	// Saved is "$", the saved search result (RFC 5182); Ranges is empty.
	Saved bool
}

// Contains reports whether n is in the set, "*" being star.
func (s SeqSet) Contains(n, star uint32) bool {
	for _, r := range s.Ranges {
		lo, hi := r.Start, r.Stop
		if lo == 0 {
			lo = star
		}
		if hi == 0 {
			hi = star
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo <= n && n <= hi {
			return true
		}
	}
	return false
}

// String formats the set in IMAP syntax.
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var b strings.Builder
	num := func(n uint32) {
		if n == 0 {
			b.WriteByte('*')
		} else {
			b.WriteString(strconv.FormatUint(uint64(n), 10))
		}
	}
	for i, r := range s.Ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		num(r.Start)
		if r.Stop != r.Start {
			b.WriteByte(':')
			num(r.Stop)
		}
	}
	return b.String()
}

// SeqSet reads a sequence-set, or "$" (RFC 5182).
func (c *Command) SeqSet() (SeqSet, error) {
	if err := c.start(); err != nil {
		return SeqSet{}, err
	}
	if err := c.arg(); err != nil {
		return SeqSet{}, err
	}
	r := c.r
	if r.eat('$') {
		return SeqSet{Saved: true}, nil
	}
	var s SeqSet
	for {
		lo, err := c.seqNumber()
		if err != nil {
			return SeqSet{}, err
		}
		hi := lo
		if r.eat(':') {
			if hi, err = c.seqNumber(); err != nil {
				return SeqSet{}, err
			}
		}
		s.Ranges = append(s.Ranges, SeqRange{lo, hi})
		if !r.eat(',') {
			return s, nil
		}
	}
}

func (c *Command) seqNumber() (uint32, error) {
	r := c.r
	if r.eat('*') {
		return 0, nil
	}
	b := r.take(isDigit)
	if len(b) == 0 {
		return 0, r.fail(c.bad("Expected a sequence number or * at %s", c.where()))
	}
	v, ok := parseNumber(b, 1<<32-1)
	if !ok || v == 0 {
		return 0, r.fail(c.bad("Sequence number %.24s out of range (1 to 4294967295)", b))
	}
	return uint32(v), nil
}
