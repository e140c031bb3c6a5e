package mailauth

import (
	"context"
	"fmt"
	"testing"

	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":            "example.com",
		"mail.Example.COM.":      "example.com",
		"a.b.example.co.uk":      "example.co.uk",
		"example.test":           "example.test",
		"x.y.example.test":       "example.test",
		"co.uk":                  "co.uk",
		"foo.blogspot.com":       "foo.blogspot.com", // a private suffix
		"deep.foo.blogspot.com":  "foo.blogspot.com",
		"com":                    "com",
		"mail.example.org":       "example.org",
		"a.xn--p1ai":             "a.xn--p1ai",
		"mx.sub.example.com.au.": "example.com.au",
	} {
		if got := OrgDomain(in); got != want {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func dmarcZone(t *testing.T) *dnstest.Server {
	d := dnstest.Start(t)
	d.Add(t,
		`_dmarc.example.test. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"`,
		`_dmarc.strict.test. 300 IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`,
		`_dmarc.quar.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
		`_dmarc.none.test. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.sub.test. 300 IN TXT "v=DMARC1; p=none; sp=reject"`,
		`_dmarc.own.sub.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
		`_dmarc.pct0.test. 300 IN TXT "v=DMARC1; p=reject; pct=0"`,
		`_dmarc.pct0q.test. 300 IN TXT "v=DMARC1; p=quarantine; pct=0"`,
		`_dmarc.pct100.test. 300 IN TXT "v=DMARC1; p=reject; pct=100"`,
		`_dmarc.bad.test. 300 IN TXT "v=DMARC1; p=bogus"`,
		`_dmarc.spf.test. 300 IN TXT "v=spf1 -all"`,
		`_dmarc.two.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.two.test. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.spaced.test. 300 IN TXT "v = DMARC1 ; p = reject"`,
	)
	d.ServFail("_dmarc.tmp.test", true)
	return d
}

func fromMsg(from string) []byte {
	return crlf(fmt.Sprintf("From: %s\nTo: bob@example.net\nSubject: s\nMessage-ID: <m1@x>\n\nbody\n", from))
}

func TestEvaluateDMARC(t *testing.T) {
	r := NewResolver(dmarcZone(t).Addr)
	ctx := context.Background()
	spfPass := func(domain string) SPFResult { return SPFResult{Result: "pass", Domain: domain} }
	spfFail := func(domain string) SPFResult { return SPFResult{Result: "fail", Domain: domain} }
	dkimRes := func(result, domain string) []DKIMResult { return []DKIMResult{{Result: result, Domain: domain}} }
	for _, tc := range []struct {
		name           string
		from           string
		spf            SPFResult
		dkim           []DKIMResult
		result, policy string
		disposition    string
	}{
		{"aligned DKIM", "a@example.test", spfFail("other.test"), dkimRes("pass", "example.test"), "pass", "reject", "none"},
		{"aligned SPF", "a@example.test", spfPass("example.test"), nil, "pass", "reject", "none"},
		{"relaxed DKIM subdomain", "a@example.test", spfFail("x.test"), dkimRes("pass", "mail.example.test"), "pass", "reject", "none"},
		{"relaxed SPF subdomain", "Alice <a@example.test>", spfPass("bounce.example.test"), nil, "pass", "reject", "none"},
		{"relaxed From subdomain", "a@news.example.test", spfFail("x.test"), dkimRes("pass", "example.test"), "pass", "reject", "none"},
		{"strict DKIM subdomain", "a@strict.test", spfFail("x.test"), dkimRes("pass", "mail.strict.test"), "fail", "reject", "reject"},
		{"strict SPF subdomain", "a@strict.test", spfPass("bounce.strict.test"), nil, "fail", "reject", "reject"},
		{"strict exact", "a@strict.test", spfPass("strict.test"), nil, "pass", "reject", "none"},
		{"SPF passes unaligned", "a@example.test", spfPass("other.test"), nil, "fail", "reject", "reject"},
		{"SPF aligned but failed", "a@example.test", spfFail("example.test"), nil, "fail", "reject", "reject"},
		{"DKIM unaligned", "a@example.test", spfFail("x.test"), dkimRes("pass", "other.test"), "fail", "reject", "reject"},
		{"DKIM aligned but failed", "a@example.test", spfFail("x.test"), dkimRes("fail", "example.test"), "fail", "reject", "reject"},
		{"second signature aligned", "a@example.test", spfFail("x.test"), []DKIMResult{{Result: "pass", Domain: "esp.test"}, {Result: "pass", Domain: "example.test"}}, "pass", "reject", "none"},
		{"quarantine", "a@quar.test", spfFail("x.test"), nil, "fail", "quarantine", "quarantine"},
		{"p=none", "a@none.test", spfFail("x.test"), nil, "fail", "none", "none"},
		{"org fallback uses p", "a@mail.example.test", spfFail("x.test"), nil, "fail", "reject", "reject"},
		{"org domain itself uses p", "a@sub.test", spfFail("x.test"), nil, "fail", "none", "none"},
		{"sp for subdomain", "a@deep.sub.test", spfFail("x.test"), nil, "fail", "reject", "reject"},
		{"own record beats sp", "a@own.sub.test", spfFail("x.test"), nil, "fail", "quarantine", "quarantine"},
		{"pct=0 reject becomes quarantine", "a@pct0.test", spfFail("x.test"), nil, "fail", "reject", "quarantine"},
		{"pct=0 quarantine becomes none", "a@pct0q.test", spfFail("x.test"), nil, "fail", "quarantine", "none"},
		{"pct=100", "a@pct100.test", spfFail("x.test"), nil, "fail", "reject", "reject"},
		{"no record", "a@nodmarc.test", spfFail("x.test"), nil, "none", "", "none"},
		{"not a DMARC record", "a@spf.test", spfFail("x.test"), nil, "none", "", "none"},
		{"two records", "a@two.test", spfFail("x.test"), nil, "none", "", "none"},
		{"spaced version", "a@spaced.test", spfFail("x.test"), nil, "fail", "reject", "reject"},
		{"bad record", "a@bad.test", spfFail("x.test"), nil, "permerror", "", "none"},
		{"record lookup fails", "a@tmp.test", spfFail("x.test"), nil, "temperror", "", "none"},
		{"SPF temperror never rejects", "a@example.test", SPFResult{Result: "temperror", Domain: "example.test"}, nil, "temperror", "reject", "none"},
		{"DKIM temperror never rejects", "a@example.test", spfFail("x.test"), dkimRes("temperror", "example.test"), "temperror", "reject", "none"},
		{"two From domains, harshest wins", "a@none.test, b@example.test", spfFail("x.test"), nil, "fail", "reject", "reject"},
		{"malformed From still evaluated", "<<a@example.test", spfFail("x.test"), nil, "fail", "reject", "reject"},
		{"encoded name", "=?utf-8?q?=C3=A9?= <a@example.test>", spfPass("example.test"), nil, "pass", "reject", "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := EvaluateDMARC(ctx, r, fromMsg(tc.from), tc.spf, tc.dkim)
			if res.Result != tc.result || res.Policy != tc.policy || res.Disposition != tc.disposition {
				t.Fatalf("got %s p=%q dis=%s (%v), want %s p=%q dis=%s",
					res.Result, res.Policy, res.Disposition, res.Err, tc.result, tc.policy, tc.disposition)
			}
		})
	}

	// No From at all, or two From fields with different domains.
	if res := EvaluateDMARC(ctx, r, crlf("To: b@x.test\n\nbody\n"), spfFail("x.test"), nil); res.Result != "permerror" || res.Disposition != "none" {
		t.Fatalf("no From: %+v", res)
	}
	two := crlf("From: a@none.test\nFrom: b@example.test\n\nbody\n")
	if res := EvaluateDMARC(ctx, r, two, spfFail("x.test"), nil); res.Disposition != "reject" || res.FromDomain != "example.test" {
		t.Fatalf("two From fields: %+v", res)
	}
}

// TestDMARCSampling checks pct= sampling is a function of the message:
// the same message always gets the same disposition, and about pct% of
// different messages get the policy.
func TestDMARCSampling(t *testing.T) {
	d := dmarcZone(t)
	d.Add(t, `_dmarc.pct50.test. 300 IN TXT "v=DMARC1; p=reject; pct=50"`)
	r := NewResolver(d.Addr)
	ctx := context.Background()
	rejected := 0
	const n = 200
	for i := range n {
		msg := crlf(fmt.Sprintf("From: a@pct50.test\nMessage-ID: <%d@pct50.test>\n\nbody\n", i))
		res := EvaluateDMARC(ctx, r, msg, SPFResult{Result: "fail"}, nil)
		again := EvaluateDMARC(ctx, r, msg, SPFResult{Result: "fail"}, nil)
		if res.Disposition != again.Disposition || res.Sampled != again.Sampled {
			t.Fatalf("message %d: %s then %s", i, res.Disposition, again.Disposition)
		}
		switch res.Disposition {
		case "reject":
			rejected++
		case "quarantine":
		default:
			t.Fatalf("message %d: disposition %s", i, res.Disposition)
		}
	}
	if rejected < n/4 || rejected > 3*n/4 {
		t.Fatalf("%d of %d rejected at pct=50", rejected, n)
	}
	// Without a Message-ID the body decides.
	a := EvaluateDMARC(ctx, r, crlf("From: a@pct50.test\n\nbody one\n"), SPFResult{Result: "fail"}, nil)
	b := EvaluateDMARC(ctx, r, crlf("From: a@pct50.test\n\nbody one\n"), SPFResult{Result: "fail"}, nil)
	if a.Sampled != b.Sampled {
		t.Fatal("same body sampled differently")
	}
}
