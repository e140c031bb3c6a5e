package smtp

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Address is an envelope address split at its last '@'. Domain is
// lower-cased (ASCII letters only: a U-label keeps its other characters);
// Local keeps its case, since RFC 5321 §2.4 makes it the business of the
// receiving host.
type Address struct {
	Local  string
	Domain string
}

// String is local@domain.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Key is the form used to look the address up in storage and to spot
// duplicates: all lower case, as storage keeps accounts and aliases.
func (a Address) Key() string { return strings.ToLower(a.Local) + "@" + a.Domain }

// ASCII reports whether the address needs no SMTPUTF8 (RFC 6531).
func (a Address) ASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// Limits from RFC 5321 §4.5.3.1: 64 octets of local part, 255 of domain;
// the whole path fits 256 octets with its brackets, so 254 for the address.
const (
	maxLocalLen   = 64
	maxDomainLen  = 255
	maxAddressLen = 254
)

var (
	errAddrEmpty   = errors.New("empty address")
	errAddrNoAt    = errors.New("no @ in address")
	errAddrLength  = errors.New("address too long")
	errAddrLocal   = errors.New("bad local part")
	errAddrDomain  = errors.New("bad domain")
	errAddrLiteral = errors.New("address literals are not supported")
)

// ParseAddress checks and normalises an envelope address as go-smtp hands
// it over (no angle brackets, quotes of a quoted local part removed). It
// accepts UTF-8 (RFC 6531); whether that is allowed in a transaction is the
// caller's decision ([Address.ASCII]).
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, errAddrEmpty
	}
	if len(s) > maxAddressLen {
		return Address{}, errAddrLength
	}
	if !utf8.ValidString(s) {
		return Address{}, errAddrLocal
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return Address{}, errAddrNoAt
	}
	local, domain := s[:i], s[i+1:]
	if local == "" || len(local) > maxLocalLen {
		return Address{}, errAddrLocal
	}
	for _, r := range local {
		if r < 0x21 || r == 0x7f {
			// Controls and spaces would need quoting in headers and in
			// the onward transaction; storage refuses them too.
			return Address{}, errAddrLocal
		}
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// normalizeDomain lower-cases an ASCII domain and checks it is made of
// dot-separated labels of letters, digits, '-' and '_' (or, for a U-label,
// any non-ASCII letter). Address literals ([192.0.2.1]) are refused: no
// account lives at one and the outbound queue does not deliver to them.
func normalizeDomain(domain string) (string, error) {
	if domain == "" || len(domain) > maxDomainLen {
		return "", errAddrDomain
	}
	if domain[0] == '[' {
		return "", errAddrLiteral
	}
	d := strings.TrimSuffix(asciiLower(domain), ".")
	if d == "" {
		return "", errAddrDomain
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", errAddrDomain
		}
		for _, r := range label {
			switch {
			case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-', r == '_':
			case r >= 0x80 && r != utf8.RuneError:
			default:
				return "", errAddrDomain
			}
		}
	}
	return d, nil
}

// asciiLower lower-cases ASCII letters only, leaving UTF-8 intact.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
