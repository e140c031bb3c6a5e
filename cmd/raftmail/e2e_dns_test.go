package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

// loadZone publishes in srv every record of a `dns records` zone file,
// including the PTR records it prints as comments.
func loadZone(t *testing.T, srv *dnstest.Server, zone string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(zone, "\n") {
		if rest, ok := strings.CutPrefix(line, "; "); ok && strings.Contains(rest, "\tIN\tPTR\t") {
			line = rest
		}
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		srv.Add(t, line)
		n++
	}
	return n
}

// `domain add` makes DKIM keys; `dns records`, published, makes `dns check`
// pass; a missing DKIM record fails it with the fix; rotation and
// retirement show in `dkim list` and `dns records`.
func TestE2EDKIMAndDNS(t *testing.T) {
	n := newCluster(t, 1)[0]
	out := n.cli("domain", "add", "example.test")
	if !strings.Contains(out, "with DKIM selectors") || !strings.Contains(out, "raftmail dns records example.test") {
		t.Fatalf("domain add said:\n%s", out)
	}
	var sels []ops.DKIMSelectorInfo
	mustCLIJSON(t, &sels, append([]string{"dkim", "list", "example.test", "--json"}, n.adminFlags()...)...)
	if len(sels) != 2 || sels[0].State != ops.DKIMSigning || sels[1].Algorithm != "rsa" {
		t.Fatalf("dkim list: %+v", sels)
	}
	if out := n.cli("dkim", "list", "example.test"); !strings.Contains(out, sels[1].Name+"\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=") {
		t.Fatalf("dkim list does not show the RSA record:\n%s", out)
	}

	zone := n.cli("dns", "records", "example.test")
	for _, want := range []string{
		"example.test.\t3600\tIN\tMX\t10 localhost.",
		"localhost.\t3600\tIN\tA\t127.0.0.1",
		"example.test.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"",
		"_dmarc.example.test.\t3600\tIN\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test\"",
		"_smtp._tls.example.test.\t3600\tIN\tTXT\t\"v=TLSRPTv1; rua=mailto:postmaster@example.test\"",
		"_mta-sts.example.test.\t3600\tIN\tTXT\t\"v=STSv1; id=",
		"; 1.0.0.127.in-addr.arpa.\t3600\tIN\tPTR\tlocalhost.",
		"https://mta-sts.example.test/.well-known/mta-sts.txt",
		`WARNING: node node1's host name "localhost" is not a public DNS name`,
	} {
		if !strings.Contains(zone, want) {
			t.Errorf("dns records lacks %q:\n%s", want, zone)
		}
	}
	srv := dnstest.Start(t)
	if got := loadZone(t, srv, zone); got != 9 { // MX, A, SPF, 2 DKIM, DMARC, MTA-STS, TLS-RPT, PTR
		t.Fatalf("zone has %d records, want 9:\n%s", got, zone)
	}
	check := n.cli("dns", "check", "example.test", "--resolver", srv.Addr)
	t.Logf("dns records:\n%s\ndns check:\n%s", zone, check)
	if strings.Contains(check, "FAIL") || !strings.Contains(check, "PASS  DKIM") {
		t.Fatalf("dns check after publishing everything:\n%s", check)
	}

	srv.Remove(sels[1].Name)
	res := n.tryCLI("", "dns", "check", "example.test", "--resolver", srv.Addr)
	t.Logf("dns check without the RSA key:\n%s%s", res.stdout, res.stderr)
	assertFailure(t, res, "1 record(s) missing or wrong")
	if !strings.Contains(res.stdout, "FAIL  DKIM: "+sels[1].Name+" has no DKIM record: add `"+sels[1].Name+"\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=") {
		t.Fatalf("dns check does not say how to fix the missing DKIM record:\n%s", res.stdout)
	}
	assertFailure(t, n.tryCLI("", "dns", "check", "example.test", "--resolver", "nonsense"), "--resolver", "HOST:PORT")

	rot := n.cli("dkim", "rotate", "example.test")
	if !strings.Contains(rot, "raftmail dkim retire example.test "+sels[0].Selector) {
		t.Fatalf("dkim rotate said:\n%s", rot)
	}
	assertFailure(t, n.tryCLI("", "dkim", "retire", "example.test", "nope"), "not found")
	var after []ops.DKIMSelectorInfo
	mustCLIJSON(t, &after, append([]string{"dkim", "list", "example.test", "--json"}, n.adminFlags()...)...)
	if len(after) != 4 || after[2].State != ops.DKIMSigning {
		t.Fatalf("after rotate: %+v", after)
	}
	assertFailure(t, n.tryCLI("", "dkim", "retire", "example.test", after[2].Selector), "still signs new mail")
	if out := n.cli("dkim", "retire", "example.test", sels[0].Selector); !strings.Contains(out, "Remove its DNS record") {
		t.Fatalf("dkim retire said:\n%s", out)
	}
	var plan ops.DNSPlan
	mustCLIJSON(t, &plan, append([]string{"dns", "records", "example.test", "--json"}, n.adminFlags()...)...)
	var dkim []string
	for _, r := range plan.Records {
		if r.Purpose == ops.PurposeDKIM {
			dkim = append(dkim, strings.SplitN(r.Name, ".", 2)[0])
		}
	}
	if want := []string{sels[1].Selector, after[2].Selector, after[3].Selector}; strings.Join(dkim, ",") != strings.Join(want, ",") {
		t.Fatalf("DKIM records for %q, want %q", dkim, want)
	}

	// Usage mistakes and help.
	assertFailure(t, n.tryCLI("", "dkim", "retire", "example.test"), "expected a domain name and a selector")
	assertFailure(t, n.tryCLI("", "dns", "records"), "expected a domain name")
	assertFailure(t, n.tryCLI("", "dkim", "list", "nope.test"), "not found")
	for _, args := range [][]string{{"dkim", "--help"}, {"dkim", "rotate", "--help"}, {"dns", "check", "--help"}} {
		if out := mustCLI(t, "", args...); !strings.Contains(out, "Usage:") {
			t.Errorf("%v: no usage:\n%s", args, out)
		}
	}
	var raw json.RawMessage
	mustCLIJSON(t, &raw, append([]string{"domain", "list", "--json"}, n.adminFlags()...)...)
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Fatalf("domain list shows private keys:\n%s", raw)
	}
}
