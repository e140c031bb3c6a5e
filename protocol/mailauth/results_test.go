package mailauth

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

// checkZone serves example.test with SPF, both DKIM keys and DMARC.
func checkZone(t *testing.T) *dnstest.Server {
	d := dmarcZone(t)
	d.Add(t,
		`example.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`quar.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
	)
	publishKeys(t, d, "example.test", keys(t))
	return d
}

func TestCheck(t *testing.T) {
	d := checkZone(t)
	c := &Checker{Resolver: NewResolver(d.Addr), AuthServID: "mx.raftmail.test"}
	ctx := context.Background()
	signed, err := SignDKIM(crlf(testMsg), "example.test", keys(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(signed, []byte("this is a test"), []byte("this is a trap"), 1)

	for _, tc := range []struct {
		name        string
		ip          string
		mailFrom    string
		msg         []byte
		disposition string
		want        []string // substrings of the header, in order
	}{
		{"all pass", "127.0.0.1", "alice@example.test", signed, "none", []string{
			"Authentication-Results: mx.raftmail.test;\r\n",
			"\tspf=pass smtp.mailfrom=alice@example.test;\r\n",
			"\tdkim=pass header.d=example.test header.s=rm20261128e header.a=ed25519-sha256",
			"\tdkim=pass header.d=example.test header.s=rm20261128r header.a=rsa-sha256",
			"\tdmarc=pass (p=reject dis=none) header.from=example.test\r\n",
		}},
		{"SPF fails, DKIM passes", "127.0.0.2", "alice@example.test", signed, "none", []string{
			"spf=fail smtp.mailfrom=alice@example.test;", "dkim=pass", "dmarc=pass",
		}},
		{"DKIM fails (tampered), SPF passes", "127.0.0.1", "alice@example.test", tampered, "none", []string{
			"spf=pass", `dkim=fail reason="body hash did not verify"`, "dmarc=pass",
		}},
		{"both fail: reject", "127.0.0.2", "alice@example.test", tampered, "reject", []string{
			"spf=fail", "dkim=fail", "dkim=fail", "dmarc=fail (p=reject dis=reject) header.from=example.test",
		}},
		{"unsigned, SPF fails", "127.0.0.2", "alice@example.test", crlf(testMsg), "reject", []string{
			"spf=fail", "dkim=none;", "dmarc=fail",
		}},
		{"null sender", "127.0.0.2", "", crlf(testMsg), "reject", []string{
			"spf=none smtp.helo=client.test;", "dkim=none", "dmarc=fail",
		}},
		{"quarantine", "127.0.0.1", "bob@example.test", fromMsg("a@quar.test"), "quarantine", []string{
			"spf=pass", "dkim=none", "dmarc=fail (p=quarantine dis=quarantine) header.from=quar.test",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := c.Check(ctx, net.ParseIP(tc.ip), "client.test", tc.mailFrom, tc.msg)
			h := res.Header()
			rest := h
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("header lacks %q (in order):\n%s", w, h)
				}
				rest = rest[i+len(w):]
			}
			if res.Disposition() != tc.disposition {
				t.Fatalf("disposition %s, want %s\n%s", res.Disposition(), tc.disposition, h)
			}
			checkFolded(t, h)
		})
	}

	// DNS down for everything: temperrors, and never a reject.
	d.ServFail("example.test", true)
	d.ServFail("_dmarc.example.test", true)
	res := c.Check(ctx, net.ParseIP("127.0.0.2"), "client.test", "alice@example.test", crlf(testMsg))
	if res.SPF.Result != "temperror" || res.DMARC.Result != "temperror" || res.Disposition() != "none" {
		t.Fatalf("DNS down: %s", res.Header())
	}
}

// checkFolded checks a header field is CRLF-terminated lines, each
// continuation starting with white space, none over 78 characters unless
// a single word makes it so.
func checkFolded(t *testing.T, h string) {
	t.Helper()
	if !strings.HasSuffix(h, "\r\n") {
		t.Fatalf("header does not end in CRLF: %q", h)
	}
	lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("bare CR or LF in %q", l)
		}
		if i > 0 && l[0] != ' ' && l[0] != '\t' {
			t.Fatalf("continuation line %q does not start with white space", l)
		}
		if len(l) > maxLine && strings.Count(strings.TrimSpace(l), " ") > 0 {
			t.Fatalf("line of %d characters: %q", len(l), l)
		}
	}
}

func TestHeaderValues(t *testing.T) {
	r := &Results{
		AuthServID: "mx.example.test",
		SPF:        SPFResult{Result: "softfail", MailFrom: `"odd local"@example.test`},
		DKIM: []DKIMResult{{
			Result: "permerror", Domain: "example.test", Selector: "s1", Algorithm: "rsa-sha256",
			Signature: "ab/c+d=efghij", Err: errors.New(`dkim: bad "key"` + "\r\nX-Injected: yes"),
		}},
		DMARC: DMARCResult{Result: "none"},
	}
	h := r.Header()
	for _, w := range []string{
		`spf=softfail smtp.mailfrom="\"odd local\"@example.test"`,
		`dkim=permerror reason="bad \"key\"X-Injected: yes"`,
		`header.b="ab/c+d=e"`,
		"dmarc=none\r\n",
	} {
		if !strings.Contains(strings.ReplaceAll(h, "\r\n\t ", " "), w) {
			t.Errorf("header lacks %q:\n%s", w, h)
		}
	}
	checkFolded(t, h)
	if r.Disposition() != "none" {
		t.Fatalf("disposition %q", r.Disposition())
	}
	// A header that does not parse as one field would show here.
	fields, rest := splitMessage([]byte(h + "\r\nbody"))
	if len(fields) != 1 || fields[0].name != "Authentication-Results" || string(rest) != "\r\nbody" {
		t.Fatalf("header is not one field: %q", h)
	}
}

func TestStripAuthResults(t *testing.T) {
	const id = "mx.example.test"
	for _, tc := range []struct{ name, in, want string }{
		{"ours removed",
			"Authentication-Results: mx.example.test; spf=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"others kept",
			"Authentication-Results: mx.other.test; spf=pass\nFrom: a@b\n\nbody\n",
			"Authentication-Results: mx.other.test; spf=pass\nFrom: a@b\n\nbody\n"},
		{"case-insensitive name and id",
			"authentication-results: MX.Example.TEST; dkim=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"trailing dot",
			"Authentication-Results: mx.example.test.; dkim=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"folded, continuation removed too",
			"Received: x\nAuthentication-Results:\n\tmx.example.test;\n\tspf=pass smtp.mailfrom=a@b;\n dkim=pass\nFrom: a@b\n\nbody\n",
			"Received: x\nFrom: a@b\n\nbody\n"},
		{"comment and version",
			"Authentication-Results: (forged) mx.example.test 1; spf=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"quoted id",
			"Authentication-Results: \"mx.example.test\"; spf=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"folded before colon",
			"Authentication-Results\n : mx.example.test; spf=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"space before colon",
			"Authentication-Results : mx.example.test; spf=pass\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"several, mixed",
			"Authentication-Results: mx.example.test; spf=pass\nAuthentication-Results: other.test; spf=fail\nAuthentication-Results: mx.example.test;\n  dkim=pass\nFrom: a@b\n\nbody\n",
			"Authentication-Results: other.test; spf=fail\nFrom: a@b\n\nbody\n"},
		{"prefix of our id is not ours",
			"Authentication-Results: mx.example.test.evil; spf=pass\nAuthentication-Results: x.mx.example.test; spf=pass\n\nbody\n",
			"Authentication-Results: mx.example.test.evil; spf=pass\nAuthentication-Results: x.mx.example.test; spf=pass\n\nbody\n"},
		{"no semicolon",
			"Authentication-Results: mx.example.test\nFrom: a@b\n\nbody\n",
			"From: a@b\n\nbody\n"},
		{"in the body is kept",
			"From: a@b\n\nAuthentication-Results: mx.example.test; spf=pass\n",
			"From: a@b\n\nAuthentication-Results: mx.example.test; spf=pass\n"},
		{"ARC is not ours to strip",
			"ARC-Authentication-Results: i=1; mx.example.test; spf=pass\n\nbody\n",
			"ARC-Authentication-Results: i=1; mx.example.test; spf=pass\n\nbody\n"},
		{"header only, no body",
			"From: a@b\nAuthentication-Results: mx.example.test; spf=pass\n",
			"From: a@b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, conv := range []func(string) []byte{crlf, func(s string) []byte { return []byte(s) }} {
				got := StripAuthResults(conv(tc.in), id)
				if !bytes.Equal(got, conv(tc.want)) {
					t.Fatalf("got\n%q\nwant\n%q", got, conv(tc.want))
				}
			}
		})
	}
	in := crlf("Authentication-Results: x; spf=pass\n\nbody\n")
	if got := StripAuthResults(in, ""); !bytes.Equal(got, in) {
		t.Fatal("an empty authserv-id stripped something")
	}
}
