package mailauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

func TestGenerateDKIMKeys(t *testing.T) {
	base := NewSelectorBase(time.Date(2026, 11, 28, 23, 30, 0, 0, time.FixedZone("X", -3600)))
	if base != "rm20261129" {
		t.Fatalf("selector base %q, want the UTC date", base)
	}
	ks := keys(t)
	if len(ks) != 2 || ks[0].Selector != "rm20261128e" || ks[0].Algorithm != AlgEd25519 ||
		ks[1].Selector != "rm20261128r" || ks[1].Algorithm != AlgRSA {
		t.Fatalf("keys %+v", ks)
	}
	for _, k := range ks {
		s, err := k.Signer()
		if err != nil {
			t.Fatal(err)
		}
		txt, err := k.TXTRecord()
		if err != nil {
			t.Fatal(err)
		}
		prefix := "v=DKIM1; k=" + k.Algorithm + "; p="
		if !strings.HasPrefix(txt, prefix) {
			t.Fatalf("record %q", txt)
		}
		p, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(txt, prefix))
		if err != nil {
			t.Fatal(err)
		}
		switch pub := s.Public().(type) {
		case ed25519.PublicKey:
			if !bytes.Equal(p, pub) {
				t.Fatal("ed25519 record is not the raw public key")
			}
		case *rsa.PublicKey:
			if pub.N.BitLen() != 2048 {
				t.Fatalf("rsa key of %d bits", pub.N.BitLen())
			}
			pk, err := x509.ParsePKIXPublicKey(p)
			if err != nil || !pub.Equal(pk) {
				t.Fatalf("rsa record: %v", err)
			}
		}
	}
	// A key of the wrong algorithm, or garbage, is refused.
	bad := ks[0]
	bad.Algorithm = AlgRSA
	if _, err := bad.Signer(); err == nil {
		t.Fatal("ed25519 key accepted as rsa")
	}
	if _, err := (DKIMKey{Selector: "x", Algorithm: AlgRSA, PrivateKeyPEM: []byte("nope")}).Signer(); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, err := GenerateDKIMKeys(""); err == nil {
		t.Fatal("empty selector base accepted")
	}
}

func TestHeaderKeys(t *testing.T) {
	msg := crlf("Received: x\nFrom: a@example.test\nTo: b@example.net\nto: c@example.net\nSubject: s\nX-Mailer: m\nDKIM-Signature: old\nReply-To: r@example.test\n\nbody\n")
	fields, _ := splitMessage(msg)
	got := headerKeys(fields)
	want := []string{"From", "From", "Reply-To", "To", "To", "Subject"}
	if !slices.Equal(got, want) {
		t.Fatalf("header keys %v, want %v", got, want)
	}
	// No From at all: still listed once, so one added later breaks it.
	fields, _ = splitMessage(crlf("Subject: s\n\nbody\n"))
	if got := headerKeys(fields); !slices.Equal(got, []string{"From", "Subject"}) {
		t.Fatalf("header keys %v", got)
	}
}

// TestSignVerify signs with both keys, then verifies against the loopback
// DNS server with go-msgauth (through VerifyDKIM) and with Debian's
// python3-dkim, an independent implementation.
func TestSignVerify(t *testing.T) {
	ks := keys(t)
	d := dnstest.Start(t)
	publishKeys(t, d, "example.test", ks)
	r := NewResolver(d.Addr)
	ctx := context.Background()

	signed, err := SignDKIM(crlf(testMsg), "example.test", ks, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(signed, crlf(testMsg)) {
		t.Fatal("the message changed under the signatures")
	}
	fields, _ := splitMessage(signed)
	if len(fields) < 2 || fields[0].name != "DKIM-Signature" || fields[1].name != "DKIM-Signature" {
		t.Fatalf("signatures not prepended:\n%s", signed)
	}
	for i, f := range fields[:2] {
		tags := parseTags(f.value())
		if tags["c"] != "relaxed/relaxed" || tags["d"] != "example.test" || tags["s"] != ks[i].Selector {
			t.Fatalf("signature %d tags %v", i, tags)
		}
		if tags["h"] != "From:From:To:Subject:Date:Message-ID:MIME-Version:Content-Type" {
			t.Fatalf("signature %d h=%s", i, tags["h"])
		}
		if tags["x"] == "" {
			t.Fatalf("signature %d has no expiry", i)
		}
	}

	res, err := VerifyDKIM(ctx, r, signed, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("results %+v", res)
	}
	for i, v := range res {
		if v.Result != "pass" || v.Domain != "example.test" || v.Selector != ks[i].Selector || v.Err != nil {
			t.Fatalf("signature %d: %+v", i, v)
		}
	}
	if res[0].Algorithm != "ed25519-sha256" || res[1].Algorithm != "rsa-sha256" {
		t.Fatalf("algorithms %q %q", res[0].Algorithm, res[1].Algorithm)
	}

	pythonVerify(t, d.Addr, signed, []bool{true, true})

	// A changed body fails both, with both verifiers.
	tampered := bytes.Replace(signed, []byte("this is a test"), []byte("this is a trap"), 1)
	res, err = VerifyDKIM(ctx, r, tampered, 0)
	if err != nil || len(res) != 2 || res[0].Result != "fail" || res[1].Result != "fail" {
		t.Fatalf("tampered body: %+v %v", res, err)
	}
	pythonVerify(t, d.Addr, tampered, []bool{false, false})

	// An added From breaks them too (From is oversigned).
	i := bytes.Index(signed, []byte("From: Alice"))
	extra := slices.Concat(signed[:i], []byte("From: mallory@evil.test\r\n"), signed[i:])
	res, err = VerifyDKIM(ctx, r, extra, 0)
	if err != nil || len(res) != 2 || res[0].Result == "pass" || res[1].Result == "pass" {
		t.Fatalf("added From: %+v %v", res, err)
	}

	// Relaxed canonicalization: refolding and re-spacing headers and
	// trailing white space on body lines do not matter.
	relaxed := bytes.Replace(signed, []byte("Subject: Hello there"), []byte("subject:   Hello\r\n\tthere  "), 1)
	relaxed = bytes.Replace(relaxed, []byte("Hello Bob,"), []byte("Hello Bob,   "), 1)
	res, err = VerifyDKIM(ctx, r, relaxed, 0)
	if err != nil || len(res) != 2 || res[0].Result != "pass" || res[1].Result != "pass" {
		t.Fatalf("relaxed: %+v %v", res, err)
	}

	// No key published: permerror. DNS failing: temperror.
	d.Remove(ks[0].Selector + "._domainkey.example.test")
	d.ServFail(ks[1].Selector+"._domainkey.example.test", true)
	res, err = VerifyDKIM(ctx, r, signed, 0)
	if err != nil || len(res) != 2 || res[0].Result != "permerror" || res[1].Result != "temperror" {
		t.Fatalf("missing/broken keys: %+v %v", res, err)
	}

	// Only maxSignatures are verified.
	res, err = VerifyDKIM(ctx, r, signed, 1)
	if err != nil || len(res) != 1 {
		t.Fatalf("max 1: %+v %v", res, err)
	}
	// No signature: no results.
	res, err = VerifyDKIM(ctx, r, crlf(testMsg), 0)
	if err != nil || len(res) != 0 {
		t.Fatalf("unsigned: %+v %v", res, err)
	}
}

// TestSignVerifyGoMsgauthDirect checks the signatures with go-msgauth's
// own API too, keys handed over directly.
func TestSignVerifyGoMsgauthDirect(t *testing.T) {
	ks := keys(t)
	txt := map[string]string{}
	for _, k := range ks {
		rec, err := k.TXTRecord()
		if err != nil {
			t.Fatal(err)
		}
		txt[k.Selector+"._domainkey.example.test"] = rec
	}
	signed, err := SignDKIM(crlf(testMsg), "example.test", ks, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return []string{txt[name]}, nil },
	})
	if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		t.Fatalf("%+v %v", vs, err)
	}
	if bytes.Contains(signed, []byte(" x=")) {
		t.Fatal("zero now still set an expiry")
	}
}

// pythonScript verifies every DKIM signature of the message on stdin
// with python3-dkim, asking the DNS server given as argv[1] (host:port)
// for keys, and prints one line per signature: "pass" or "fail".
const pythonScript = `
import sys, dkim, dns.resolver
host, port = sys.argv[1].rsplit(':', 1)
res = dns.resolver.Resolver(configure=False)
res.nameservers = [host]
res.port = int(port)
def txt(name, timeout=5):
    try:
        a = res.resolve(name.decode(), 'TXT', lifetime=timeout)
    except dns.exception.DNSException:
        return None
    for r in a:
        return b''.join(r.strings)
    return None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = sum(1 for line in msg.split(b'\r\n\r\n', 1)[0].split(b'\r\n') if line.lower().startswith(b'dkim-signature:'))
for i in range(n):
    try:
        ok = d.verify(idx=i, dnsfunc=txt)
    except Exception as e:
        print('error', e, file=sys.stderr)
        ok = False
    print('pass' if ok else 'fail')
`

func pythonVerify(t *testing.T, dnsAddr string, msg []byte, want []bool) {
	t.Helper()
	py := pythonDKIM(t)
	cmd := exec.Command(py, "-c", pythonScript, dnsAddr)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3-dkim: %v\n%s", err, stderr.String())
	}
	got := strings.Fields(string(out))
	if len(got) != len(want) {
		t.Fatalf("python3-dkim verified %d signatures (%q), want %d\n%s", len(got), got, len(want), stderr.String())
	}
	for i, w := range want {
		if (got[i] == "pass") != w {
			t.Fatalf("python3-dkim signature %d: %s, want pass=%v\n%s", i, got[i], w, stderr.String())
		}
	}
}
