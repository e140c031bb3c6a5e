package mailauth

import (
	"context"
	"net"
	"testing"

	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

func TestCheckSPF(t *testing.T) {
	d := dnstest.Start(t)
	d.Add(t,
		`example.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`example.test. 300 IN TXT "some other text"`,
		`soft.test. 300 IN TXT "v=spf1 ip4:10.0.0.1 ~all"`,
		`neutral.test. 300 IN TXT "v=spf1 ?all"`,
		`viamx.test. 300 IN TXT "v=spf1 mx include:example.test -all"`,
		"viamx.test. 300 IN MX 10 mx.viamx.test.",
		"mx.viamx.test. 300 IN A 127.0.0.9",
		`double.test. 300 IN TXT "v=spf1 -all"`,
		`double.test. 300 IN TXT "v=spf1 +all"`,
		`helo.example.test. 300 IN TXT "v=spf1 ip4:127.0.0.3 -all"`,
		"nospf.test. 300 IN A 127.0.0.1",
	)
	d.ServFail("broken.test", true)
	r := NewResolver(d.Addr)
	ctx := context.Background()
	lo := net.ParseIP("127.0.0.1")
	for _, tc := range []struct {
		name           string
		ip             net.IP
		helo, mailFrom string
		want, domain   string
	}{
		{"pass", lo, "client.test", "alice@example.test", "pass", "example.test"},
		{"fail", net.ParseIP("127.0.0.2"), "client.test", "alice@example.test", "fail", "example.test"},
		{"softfail", lo, "client.test", "bob@soft.test", "softfail", "soft.test"},
		{"neutral", lo, "client.test", "bob@neutral.test", "neutral", "neutral.test"},
		{"mx mechanism", net.ParseIP("127.0.0.9"), "client.test", "x@viamx.test", "pass", "viamx.test"},
		{"include", lo, "client.test", "x@VIAMX.test", "pass", "viamx.test"},
		{"no record", lo, "client.test", "x@nospf.test", "none", "nospf.test"},
		{"no domain", lo, "client.test", "x@nowhere.test", "none", "nowhere.test"},
		{"servfail", lo, "client.test", "x@broken.test", "temperror", "broken.test"},
		{"two records", lo, "client.test", "x@double.test", "permerror", "double.test"},
		{"null sender uses HELO: pass", net.ParseIP("127.0.0.3"), "helo.example.test", "", "pass", "helo.example.test"},
		{"null sender uses HELO: fail", lo, "helo.example.test", "", "fail", "helo.example.test"},
		{"null sender, address literal HELO", lo, "[127.0.0.1]", "", "none", "[127.0.0.1]"},
		{"ipv6 client", net.ParseIP("::1"), "client.test", "alice@example.test", "fail", "example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckSPF(ctx, r, tc.ip, tc.helo, tc.mailFrom)
			if res.Result != tc.want || res.Domain != tc.domain {
				t.Fatalf("got %s for %s (%v), want %s for %s", res.Result, res.Domain, res.Err, tc.want, tc.domain)
			}
		})
	}

	// A context that is over gives temperror, not a verdict.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if res := CheckSPF(cctx, r, lo, "client.test", "alice@example.test"); res.Result != "temperror" {
		t.Fatalf("cancelled: %s (%v)", res.Result, res.Err)
	}
}
