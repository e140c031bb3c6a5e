package mailauth

import (
	"bytes"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	testMsg,
	"Authentication-Results: mx.example.test; spf=pass\nFrom: a@b\n\nbody\n",
	"Received: x\nAuthentication-Results:\n\tmx.example.test;\n\tspf=pass smtp.mailfrom=a@b;\n dkim=pass\nFrom: a@b\n\nbody\n",
	"Authentication-Results: (c (nested)) \"mx.example.test\" 1; none\n\n",
	"authentication-results : MX.EXAMPLE.TEST.;\nFrom: a@b\nFrom: c@d\nTo: x\nto: y\n\n",
	" leading continuation\nFrom: a@b\n\n",
	"no colon line\nFrom:\n\n",
	"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s;\n h=From:To; bh=x; b=y\nFrom: a@b\n\nbody",
	"",
	"\r\n",
}

// FuzzStripAuthResults: only whole header fields claiming the id go; the
// body stays; stripping twice changes nothing more; no field claiming the
// id is left.
func FuzzStripAuthResults(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "mx.example.test")
		f.Add(crlf(s), "MX.example.test.")
	}
	f.Fuzz(func(t *testing.T, msg []byte, id string) {
		out := StripAuthResults(msg, id)
		if len(out) > len(msg) {
			t.Fatal("output grew")
		}
		inFields, inRest := splitMessage(msg)
		outFields, outRest := splitMessage(out)
		if !bytes.Equal(inRest, outRest) {
			t.Fatalf("body changed: %q -> %q", inRest, outRest)
		}
		// outFields is inFields minus some fields, in order.
		j := 0
		for _, f := range inFields {
			if j < len(outFields) && bytes.Equal(f.raw, outFields[j].raw) {
				j++
				continue
			}
			if !strings.EqualFold(f.name, "Authentication-Results") || normID(authServIDOf(f.value())) != normID(id) {
				t.Fatalf("field %q dropped", f.raw)
			}
		}
		if j != len(outFields) {
			t.Fatalf("fields not a subsequence: %d of %d matched", j, len(outFields))
		}
		if normID(id) != "" {
			for _, f := range outFields {
				if strings.EqualFold(f.name, "Authentication-Results") && normID(authServIDOf(f.value())) == normID(id) {
					t.Fatalf("field %q left", f.raw)
				}
			}
		}
		if again := StripAuthResults(out, id); !bytes.Equal(again, out) {
			t.Fatal("not idempotent")
		}
	})
}

// FuzzHeaderKeys: the h= list names only fields we sign, each as often as
// it occurs, From once more; splitting loses nothing.
func FuzzHeaderKeys(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
		f.Add(crlf(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, rest := splitMessage(msg)
		var joined []byte
		for _, f := range fields {
			joined = append(joined, f.raw...)
		}
		if !bytes.Equal(append(joined, rest...), msg) {
			t.Fatal("splitMessage lost bytes")
		}
		keys := headerKeys(fields)
		got := map[string]int{}
		for _, k := range keys {
			got[strings.ToLower(k)]++
		}
		present := map[string]int{}
		for _, f := range fields {
			present[strings.ToLower(f.name)]++
		}
		for _, name := range signedHeaders {
			n := strings.ToLower(name)
			want := present[n]
			if name == "From" {
				want++
			}
			if got[n] != want {
				t.Fatalf("%s listed %d times, present %d times", name, got[n], present[n])
			}
			delete(got, n)
		}
		if len(got) != 0 {
			t.Fatalf("unexpected names %v", got)
		}
	})
}
