package mailauth

import (
	"context"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

func TestResolverAgainstLoopbackDNS(t *testing.T) {
	d := dnstest.Start(t)
	d.Add(t,
		"example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 127.0.0.2",
		`example.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		"2.0.0.127.in-addr.arpa. 300 IN PTR mx1.example.test.",
	)
	d.ServFail("broken.test", true)
	r := NewResolver(d.Addr)
	ctx := context.Background()
	mx, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mx) != 2 || mx[0].Host != "mx1.example.test." || mx[0].Pref != 10 {
		t.Fatalf("MX: %v %v", mx, err)
	}
	ips, err := r.LookupIPAddr(ctx, "mx1.example.test")
	if err != nil || len(ips) != 1 || ips[0].IP.String() != "127.0.0.2" {
		t.Fatalf("A: %v %v", ips, err)
	}
	txt, err := r.LookupTXT(ctx, "example.test")
	if err != nil || len(txt) != 1 || txt[0] != "v=spf1 ip4:127.0.0.0/8 -all" {
		t.Fatalf("TXT: %v %v", txt, err)
	}
	names, err := r.LookupAddr(ctx, "127.0.0.2")
	if err != nil || len(names) != 1 || names[0] != "mx1.example.test." {
		t.Fatalf("PTR: %v %v", names, err)
	}
	_, err = r.LookupTXT(ctx, "nowhere.test")
	if !IsNotFound(err) || IsTemporary(err) {
		t.Fatalf("NXDOMAIN: %v (not found %v, temporary %v)", err, IsNotFound(err), IsTemporary(err))
	}
	if !strings.Contains(err.Error(), d.Addr) {
		t.Errorf("the error does not name the server asked (%s): %v", d.Addr, err)
	}
	if _, err := r.LookupTXT(ctx, "broken.test"); IsNotFound(err) || !IsTemporary(err) {
		t.Fatalf("SERVFAIL: %v (not found %v, temporary %v)", err, IsNotFound(err), IsTemporary(err))
	}
}
