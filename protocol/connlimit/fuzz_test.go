package connlimit

import (
	"net/netip"
	"testing"
)

func TestParseExempt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // FormatExempt of the result; "!" = an error
	}{
		{DefaultExempt, "127.0.0.0/8,::1/128"},
		{"", ""},
		{"none", ""},
		{" NONE ", ""},
		{"10.0.0.0/8, 192.168.0.0/16\t2001:db8::/32", "10.0.0.0/8,192.168.0.0/16,2001:db8::/32"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"fe80::1%eth0", "fe80::1/128"},
		{",,127.0.0.1,,", "127.0.0.1/32"},
		{"none,10.0.0.0/8", "!"},
		{"10.0.0.0/33", "!"},
		{"::ffff:0.0.0.0/95", "!"},
		{"localhost", "!"},
		{"10.0.0.0/8;", "!"},
		{"fe80::%eth0/64", "!"},
	} {
		ps, err := ParseExempt(tc.in)
		got := FormatExempt(ps)
		if err != nil {
			got = "!"
		}
		if got != tc.want {
			t.Errorf("ParseExempt(%q) = %q (err %v), want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseExempt: whatever the input, ParseExempt does not panic; what
// it accepts is valid, masked, unmapped, and reads back the same from
// FormatExempt; every prefix contains its own address and nothing
// exempts an address the prefixes do not contain.
func FuzzParseExempt(f *testing.F) {
	for _, s := range []string{
		DefaultExempt, "", "none", "10.0.0.0/8, 192.168.0.0/16 2001:db8::/32",
		"10.1.2.3/8", "::ffff:10.0.0.0/104", "fe80::1%eth0", "127.0.0.1",
		"0.0.0.0/0,::/0", "none,10.0.0.0/8", "10.0.0.0/33", "1.2.3.4/-1",
	} {
		f.Add(s, "127.0.0.1")
		f.Add(s, "2001:db8::1")
	}
	f.Fuzz(func(t *testing.T, s, addr string) {
		ps, err := ParseExempt(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParseExempt(%q) gave %v", s, p)
			}
			if !p.Contains(p.Addr()) {
				t.Fatalf("%v does not contain its address", p)
			}
		}
		again, err := ParseExempt(FormatExempt(ps))
		if err != nil || FormatExempt(again) != FormatExempt(ps) {
			t.Fatalf("ParseExempt(%q) = %v, read back as %v (%v)", s, ps, again, err)
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		l, err := New(Config{Protocol: "fuzz", Exempt: ps})
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for _, p := range ps {
			in = in || p.Contains(a.Unmap().WithZone(""))
		}
		if l.exempt(a) != in {
			t.Fatalf("exempt(%v) = %v with %v", a, l.exempt(a), ps)
		}
	})
}
