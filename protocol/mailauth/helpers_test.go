package mailauth

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

// testKeys is one dual key pair for the whole test binary: RSA-2048
// generation is slow under -race.
var testKeys = sync.OnceValues(func() ([]DKIMKey, error) { return GenerateDKIMKeys("rm20261128") })

func keys(t testing.TB) []DKIMKey {
	t.Helper()
	k, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// txtRR returns a TXT record in zone syntax, split into 255-byte
// character-strings as a long DKIM record must be.
func txtRR(name, txt string) string {
	var parts []string
	for len(txt) > 255 {
		parts = append(parts, txt[:255])
		txt = txt[255:]
	}
	parts = append(parts, txt)
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	return fmt.Sprintf("%s 300 IN TXT %s", name, strings.Join(parts, " "))
}

// publishKeys adds the DKIM records of keys for domain.
func publishKeys(t testing.TB, d *dnstest.Server, domain string, keys []DKIMKey) {
	t.Helper()
	for _, k := range keys {
		txt, err := k.TXTRecord()
		if err != nil {
			t.Fatal(err)
		}
		d.Add(t, txtRR(k.Selector+"._domainkey."+domain+".", txt))
	}
}

// crlf turns "\n" into "\r\n".
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

const testMsg = `From: Alice <alice@example.test>
To: Bob <bob@example.net>
Subject: Hello there
Date: Sat, 28 Nov 2026 10:00:00 +0000
Message-ID: <1234@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello Bob,

this is a test.
`

// pythonDKIM returns a python3 interpreter that has python3-dkim and
// dnspython (Debian's python3-dkim), or skips the test.
func pythonDKIM(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if _, err := exec.LookPath(p); err != nil {
			continue
		}
		if exec.Command(p, "-c", "import dkim, dns.resolver, nacl").Run() == nil {
			return p
		}
	}
	t.Skip("python3 with python3-dkim (and dnspython, nacl) not installed")
	return ""
}
