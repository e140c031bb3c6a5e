package storage

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// Message records are decoded for every message of a mailbox on each
// SELECT and each FETCH or SEARCH over many messages. decodeMessage reads
// the exact form encoding/json writes for a Message (fields in order, UTC
// date, flags with no escapes but "\\") in a fraction of json.Unmarshal's
// time; anything else, including anything it is unsure of, goes to
// json.Unmarshal. FuzzDecodeMessage holds the two to the same result.
func decodeMessage(raw []byte, m *Message) error {
	if decodeMessageFast(raw, m) {
		return nil
	}
	*m = Message{}
	return json.Unmarshal(raw, m)
}

// decodeRecord decodes a metadata value into v, Messages the fast way.
func decodeRecord(raw []byte, v any) error {
	if m, ok := v.(*Message); ok {
		return decodeMessage(raw, m)
	}
	return json.Unmarshal(raw, v)
}

// msgScanner walks the canonical encoding; any surprise sets bad.
type msgScanner struct {
	b   []byte
	bad bool
}

func (s *msgScanner) lit(l string) {
	if s.bad || !bytes.HasPrefix(s.b, []byte(l)) {
		s.bad = true
		return
	}
	s.b = s.b[len(l):]
}

// digits returns the leading run of ASCII digits.
func (s *msgScanner) digits() []byte {
	i := 0
	for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
		i++
	}
	if s.bad || i == 0 || (i > 1 && s.b[0] == '0') {
		s.bad = true
		return nil
	}
	d := s.b[:i]
	s.b = s.b[i:]
	return d
}

func (s *msgScanner) uint(bits int) uint64 {
	d := s.digits()
	if s.bad {
		return 0
	}
	v, err := strconv.ParseUint(string(d), 10, bits)
	if err != nil {
		s.bad = true
	}
	return v
}

// str reads a JSON string whose only escape is \\ (the backslash of a
// system flag) and returns it unescaped.
func (s *msgScanner) str() string {
	s.lit(`"`)
	if s.bad {
		return ""
	}
	var out []byte
	for i := 0; i < len(s.b); i++ {
		c := s.b[i]
		switch {
		case c == '"':
			var v string
			if out == nil {
				v = string(s.b[:i])
			} else {
				v = string(out)
			}
			s.b = s.b[i+1:]
			return v
		case c == '\\':
			if i+1 >= len(s.b) || s.b[i+1] != '\\' {
				s.bad = true
				return ""
			}
			if out == nil {
				out = append(make([]byte, 0, len(s.b)), s.b[:i]...)
			}
			out = append(out, '\\')
			i++
		case c < 0x20 || c >= 0x80:
			// Control characters are invalid JSON; non-ASCII needs
			// UTF-8 validation: both are left to encoding/json.
			s.bad = true
			return ""
		default:
			if out != nil {
				out = append(out, c)
			}
		}
	}
	s.bad = true
	return ""
}

func decodeMessageFast(raw []byte, m *Message) bool {
	s := &msgScanner{b: raw}
	var v Message
	s.lit(`{"MailboxID":`)
	v.MailboxID = s.uint(64)
	s.lit(`,"UID":`)
	v.UID = uint32(s.uint(32))
	s.lit(`,"Blob":`)
	if h := s.str(); !s.bad {
		if len(h) != 2*len(v.Blob) {
			return false
		}
		if _, err := hex.Decode(v.Blob[:], []byte(h)); err != nil {
			return false
		}
	}
	s.lit(`,"Size":`)
	size := s.uint(63)
	v.Size = int64(size)
	s.lit(`,"InternalDate":`)
	if d := s.str(); !s.bad {
		if len(d) == 0 || d[len(d)-1] != 'Z' {
			return false
		}
		t, err := time.Parse(time.RFC3339Nano, d)
		if err != nil || t.Format(time.RFC3339Nano) != d {
			return false // not the form encoding/json writes
		}
		v.InternalDate = t
	}
	s.lit(`,"Flags":`)
	switch {
	case s.bad:
	case bytes.HasPrefix(s.b, []byte("null")):
		s.b = s.b[len("null"):]
	default:
		s.lit("[")
		v.Flags = []string{}
		for !s.bad && len(s.b) > 0 && s.b[0] != ']' {
			if len(v.Flags) > 0 {
				s.lit(",")
			}
			v.Flags = append(v.Flags, s.str())
		}
		s.lit("]")
	}
	s.lit(`,"ModSeq":`)
	v.ModSeq = s.uint(64)
	s.lit("}")
	if s.bad || len(s.b) != 0 {
		return false
	}
	*m = v
	return true
}
