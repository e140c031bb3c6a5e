package storage

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Input normalisation used by Apply. Every function is pure, so every node
// normalises the same way.

const (
	maxAddrLen        = 254
	maxDomainLen      = 253
	maxMailboxNameLen = 1000
	maxIDLen          = 255
	maxFlagLen        = 255
)

func normDomain(s string) (string, error) {
	d := strings.ToLower(s)
	if d == "" || len(d) > maxDomainLen || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return "", fmt.Errorf("domain %q: %w", s, ErrInvalid)
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("domain %q: bad character %q: %w", s, c, ErrInvalid)
		}
	}
	return d, nil
}

// normAddr lower-cases an address and checks it is local@domain.
func normAddr(s string) (string, error) {
	a := strings.ToLower(s)
	if len(a) > maxAddrLen || !utf8.ValidString(a) {
		return "", fmt.Errorf("address %q: %w", s, ErrInvalid)
	}
	for i := 0; i < len(a); i++ {
		if a[i] <= ' ' || a[i] == 0x7f {
			return "", fmt.Errorf("address %q: control or space character: %w", s, ErrInvalid)
		}
	}
	local, domain := splitAddr(a)
	if local == "" || !strings.Contains(a, "@") {
		return "", fmt.Errorf("address %q: want local@domain: %w", s, ErrInvalid)
	}
	d, err := normDomain(domain)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", s, err)
	}
	return local + "@" + d, nil
}

func normID(what, s string) error {
	if s == "" || len(s) > maxIDLen {
		return fmt.Errorf("%s %q: empty or longer than %d bytes: %w", what, s, maxIDLen, ErrInvalid)
	}
	return nil
}

const inbox = "INBOX"

// normMailbox checks a mailbox name ('/' separates levels) and spells any
// case of a leading "INBOX" level as INBOX.
func normMailbox(s string) (string, error) {
	if s == "" || len(s) > maxMailboxNameLen || !utf8.ValidString(s) {
		return "", fmt.Errorf("mailbox name %q: %w", s, ErrInvalid)
	}
	if s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//") {
		return "", fmt.Errorf("mailbox name %q: empty level: %w", s, ErrInvalid)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '*' || r == '%' {
			return "", fmt.Errorf("mailbox name %q: bad character %q: %w", s, r, ErrInvalid)
		}
	}
	first, rest, _ := strings.Cut(s, "/")
	if strings.EqualFold(first, inbox) {
		if rest == "" {
			return inbox, nil
		}
		return inbox + "/" + rest, nil
	}
	return s, nil
}

var specialUses = []string{`\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`}

func normSpecialUse(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	for _, u := range specialUses {
		if strings.EqualFold(s, u) {
			return u, nil
		}
	}
	return "", fmt.Errorf("special-use %q: %w", s, ErrInvalid)
}

var systemFlags = []string{`\Answered`, `\Deleted`, `\Draft`, `\Flagged`, `\Seen`}

// normFlags returns flags sorted and de-duplicated, with system flags in
// their canonical case. \Recent cannot be stored (RFC 3501 2.3.2).
func normFlags(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, f := range in {
		if f == "" || len(f) > maxFlagLen {
			return nil, fmt.Errorf("flag %q: %w", f, ErrInvalid)
		}
		if f[0] == '\\' {
			i := slices.IndexFunc(systemFlags, func(s string) bool { return strings.EqualFold(s, f) })
			if i < 0 {
				return nil, fmt.Errorf("flag %q: not a storable system flag: %w", f, ErrInvalid)
			}
			out = append(out, systemFlags[i])
			continue
		}
		for i := 0; i < len(f); i++ {
			c := f[i]
			if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
				return nil, fmt.Errorf("flag %q: bad character %q: %w", f, c, ErrInvalid)
			}
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// sortedUIDs returns uids sorted and de-duplicated, without changing uids.
func sortedUIDs(uids []uint32) []uint32 {
	out := slices.Clone(uids)
	slices.Sort(out)
	return slices.Compact(out)
}
