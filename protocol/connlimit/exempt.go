package connlimit

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultExempt is the default --conn-limit-exempt: loopback, whose
// clients (a local webmail, a proxy, a monitoring check) are the
// operator's own.
const DefaultExempt = "127.0.0.0/8,::1"

// ParseExempt reads a list of networks separated by commas or white space:
// CIDR prefixes ("10.0.0.0/8", "2001:db8::/32") or single addresses
// ("::1", "192.0.2.7", taken as /32 or /128). "" and "none" are the empty
// list. Host bits are cleared ("10.1.2.3/8" is 10.0.0.0/8), an IPv4-mapped
// prefix is taken as the IPv4 one, and zones are dropped.
func ParseExempt(s string) ([]netip.Prefix, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	if len(fields) == 1 && strings.EqualFold(fields[0], "none") {
		return nil, nil
	}
	var out []netip.Prefix
	for _, f := range fields {
		p, err := parsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("connlimit: exempt network %q: want a CIDR prefix such as 10.0.0.0/8 or an address such as ::1", f)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// FormatExempt writes prefixes in the form ParseExempt reads; nil is "".
func FormatExempt(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
