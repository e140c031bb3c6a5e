package mailauth

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// field is one header field of a raw message, as it came: name, colon,
// value, folded continuation lines and the line ending(s).
type field struct {
	raw  []byte
	name string // as written, without surrounding whitespace; "" if the line has no colon
}

// value is the field's unfolded value: everything after the colon with
// line breaks removed and surrounding whitespace trimmed.
func (f field) value() string {
	i := bytes.IndexByte(f.raw, ':')
	if i < 0 {
		return ""
	}
	v := string(f.raw[i+1:])
	v = strings.ReplaceAll(v, "\r\n", "")
	v = strings.ReplaceAll(v, "\n", "")
	return strings.TrimSpace(v)
}

// splitMessage splits msg into its header fields and the rest, which starts
// with the blank line that ends the header (or is empty when there is
// none). Lines may end in CRLF or LF. A line starting with space or tab
// continues the field before it; such a line at the very start is a field
// of its own, without a name. Nothing is lost: concatenating the fields'
// raw bytes and rest gives msg back.
func splitMessage(msg []byte) (fields []field, rest []byte) {
	for len(msg) > 0 {
		if msg[0] == '\n' || msg[0] == '\r' && len(msg) > 1 && msg[1] == '\n' {
			return fields, msg
		}
		// One field: a line, then continuation lines.
		end := lineEnd(msg, 0)
		for end < len(msg) && (msg[end] == ' ' || msg[end] == '\t') {
			end = lineEnd(msg, end)
		}
		raw := msg[:end]
		name := ""
		if raw[0] != ' ' && raw[0] != '\t' {
			// The name ends at the first colon, white space (even a
			// fold, obsolete syntax) allowed before it.
			if i := bytes.IndexByte(raw, ':'); i > 0 {
				if n := strings.TrimSpace(string(raw[:i])); !strings.ContainsAny(n, " \t\r\n") {
					name = n
				}
			}
		}
		fields = append(fields, field{raw: raw, name: name})
		msg = msg[end:]
	}
	return fields, nil
}

// lineEnd returns the index just past the LF ending the line that starts
// at i, or len(b).
func lineEnd(b []byte, i int) int {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return len(b)
	}
	return i + j + 1
}

// StripAuthResults returns msg without the Authentication-Results header
// fields whose authserv-id is authServID (compared case-insensitively, a
// trailing dot ignored): RFC 8601 §5, a receiver removes any such field
// that arrives from outside before adding its own, so that nobody can
// forge our verdict. Fields of other authserv-ids, and everything else, are
// kept byte for byte. Folded fields are removed whole.
func StripAuthResults(msg []byte, authServID string) []byte {
	want := normID(authServID)
	if want == "" {
		return msg
	}
	fields, rest := splitMessage(msg)
	drop := false
	for _, f := range fields {
		if strings.EqualFold(f.name, "Authentication-Results") && normID(authServIDOf(f.value())) == want {
			drop = true
			break
		}
	}
	if !drop {
		return msg
	}
	out := make([]byte, 0, len(msg))
	for _, f := range fields {
		if strings.EqualFold(f.name, "Authentication-Results") && normID(authServIDOf(f.value())) == want {
			continue
		}
		out = append(out, f.raw...)
	}
	return append(out, rest...)
}

func normID(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// authServIDOf returns the authserv-id at the start of an
// Authentication-Results value (RFC 8601 §2.2: [CFWS] value, a token or a
// quoted-string), or "" if there is none.
func authServIDOf(v string) string {
	v = skipCFWS(v)
	if v == "" {
		return ""
	}
	if v[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return "" // unterminated
	}
	end := strings.IndexAny(v, " \t;()\"")
	if end < 0 {
		end = len(v)
	}
	return v[:end]
}

// skipCFWS skips white space and (nested) comments at the start of s.
func skipCFWS(s string) string {
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case depth > 0 && c == '\\':
			i++
		case c == '(':
			depth++
		case depth > 0 && c == ')':
			depth--
		case depth > 0 || c == ' ' || c == '\t' || c == '\r' || c == '\n':
		default:
			return s[i:]
		}
	}
	return ""
}

// Errors of FromAddresses.
var (
	ErrNoFrom   = errors.New("mailauth: no From address")
	ErrManyFrom = errors.New("mailauth: more than one From header field")
	ErrBadFrom  = errors.New("mailauth: From header field does not parse")
)

// FromAddresses returns the addresses of the From header field of a
// message given as its header block (RFC 5322 §3.6.2, with RFC 6532's
// UTF-8): each addr-spec in order, a quoted local part unquoted (as
// go-smtp hands envelope addresses over), display names, comments and
// group names dropped, the members of a group kept. The field must be
// there once (§3.6) and name at least one address: no field, or only an
// empty group, is ErrNoFrom; a second field ErrManyFrom; a field that does
// not parse, ErrBadFrom. Unlike the DMARC reading of From, nothing is
// guessed from a malformed field: the caller is deciding what a sender
// may claim.
func FromAddresses(header []byte) ([]string, error) {
	fields, _ := splitMessage(header)
	var value string
	n := 0
	for _, f := range fields {
		if strings.EqualFold(f.name, "From") {
			n++
			value = f.value()
		}
	}
	switch {
	case n == 0:
		return nil, ErrNoFrom
	case n > 1:
		return nil, ErrManyFrom
	}
	list, err := fromParser.ParseList(value)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFrom, err)
	}
	if len(list) == 0 {
		return nil, ErrNoFrom
	}
	addrs := make([]string, len(list))
	for i, a := range list {
		addrs[i] = a.Address
	}
	return addrs, nil
}

// fromParser reads address lists; an encoded word in a charset Go does
// not know is kept as its bytes (only display names are encoded, and
// those are dropped).
var fromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}}

// fromDomains returns the distinct domains (lower case, in order) of the
// addresses in the message's From fields, and how many From fields there
// are. An address that does not parse contributes what follows its last
// '@', so a malformed From cannot escape DMARC by being malformed.
func fromDomains(fields []field) (domains []string, nfrom int) {
	p := fromParser
	add := func(d string) {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" {
			return
		}
		for _, x := range domains {
			if x == d {
				return
			}
		}
		domains = append(domains, d)
	}
	for _, f := range fields {
		if !strings.EqualFold(f.name, "From") {
			continue
		}
		nfrom++
		v := f.value()
		list, err := p.ParseList(v)
		if err == nil {
			for _, a := range list {
				add(domainOf(a.Address))
			}
			continue
		}
		// Crude fallback: <...> if present, then what follows the last '@'.
		if i := strings.LastIndexByte(v, '<'); i >= 0 {
			v = v[i+1:]
			if j := strings.IndexByte(v, '>'); j >= 0 {
				v = v[:j]
			}
		}
		add(strings.Trim(domainOf(v), " \t<>\"'"))
	}
	return domains, nfrom
}

// domainOf returns what follows the last '@' of addr, or "" without one.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}

// sampleBucket maps the message to 0..99, the same for every copy of the
// same message: from its Message-ID when it has one, else from its body.
// DMARC pct= sampling (RFC 7489 §6.6.4) compares it with pct, so a
// message is treated the same on every node and on every retry.
func sampleBucket(fields []field, rest []byte, body func() io.Reader) int {
	h := sha256.New()
	id := ""
	for _, f := range fields {
		if strings.EqualFold(f.name, "Message-ID") {
			id = f.value()
			break
		}
	}
	if id != "" {
		h.Write([]byte("id:"))
		h.Write([]byte(id))
	} else {
		h.Write([]byte("body:"))
		h.Write(rest)
		_, _ = io.Copy(h, body())
	}
	return int(binary.BigEndian.Uint64(h.Sum(nil)) % 100)
}
