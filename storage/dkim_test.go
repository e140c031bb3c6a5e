package storage

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeKey is a PEM private key block. Apply checks only the shape, so the
// bytes need not be a real key.
func fakeKey(seed string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("key " + seed)})
}

func dkimPair(base string) []DKIMSelector {
	return []DKIMSelector{
		{Selector: base + "e", Algorithm: DKIMEd25519, PrivateKeyPEM: fakeKey(base + "e")},
		{Selector: base + "r", Algorithm: DKIMRSA, PrivateKeyPEM: fakeKey(base + "r")},
	}
}

// selectorStates describes a domain's selectors as "name:state" in order.
func selectorStates(tb testing.TB, s *Store, domain string) []string {
	tb.Helper()
	d, err := s.Domain(domain)
	if err != nil {
		tb.Fatalf("Domain(%q): %v", domain, err)
	}
	var out []string
	for _, sel := range d.DKIM {
		st := "published"
		switch {
		case sel.Retired:
			st = "retired"
			if sel.PrivateKeyPEM != nil {
				tb.Errorf("retired selector %s kept its private key", sel.Selector)
			}
		case sel.Signing:
			st = "signing"
		}
		out = append(out, sel.Selector+":"+st)
	}
	return out
}

func signingNames(tb testing.TB, s *Store, domain string) []string {
	tb.Helper()
	keys, err := s.DKIMKeys(domain)
	if err != nil {
		tb.Fatalf("DKIMKeys(%q): %v", domain, err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.Selector)
	}
	return out
}

func TestDKIMCommands(t *testing.T) {
	type tc struct {
		name    string
		prep    func(h *harness) // after the base setup (example.test without keys)
		typ     CommandType
		payload any
		want    error
		wantMsg string // in the error message
		check   func(t *testing.T, h *harness)
	}
	rotated := func(h *harness) { // a1 stopped signing, b1 signs
		h.ok(CmdDKIMRotate, DKIMRotate{Domain: "example.test", New: dkimPair("a1")})
		h.ok(CmdDKIMRotate, DKIMRotate{Domain: "example.test", New: dkimPair("b1")})
	}
	cases := []tc{
		{name: "domain add with keys", typ: CmdDomainAdd, payload: DomainAdd{Name: "Keys.Test", DKIM: dkimPair("S1")},
			check: func(t *testing.T, h *harness) {
				d, err := h.s.Domain("keys.test")
				if err != nil {
					t.Fatal(err)
				}
				if len(d.DKIM) != 2 || d.DKIM[0].Algorithm != DKIMEd25519 || d.DKIM[1].Algorithm != DKIMRSA {
					t.Fatalf("DKIM = %+v", d.DKIM)
				}
				for _, s := range d.DKIM {
					if !s.Created.Equal(d.Created) || !bytes.Equal(s.PrivateKeyPEM, fakeKey(strings.ToUpper(s.Selector[:2])+s.Selector[2:])) {
						t.Errorf("selector %+v: want created %v and its key", s, d.Created)
					}
				}
				if got := signingNames(t, h.s, "keys.test"); !slices.Equal(got, []string{"s1e", "s1r"}) {
					t.Fatalf("signing %q", got)
				}
			}},
		{name: "domain add without keys (old payload)", typ: CmdDomainAdd, payload: struct{ Name string }{"old.test"},
			check: func(t *testing.T, h *harness) {
				raw, ok := rawValue(t, h.s, domainKey("old.test"))
				if !ok || strings.Contains(string(raw), "DKIM") {
					t.Fatalf("stored %s: want no DKIM field", raw)
				}
				if got := signingNames(t, h.s, "old.test"); len(got) != 0 {
					t.Fatalf("signing %q", got)
				}
			}},
		{name: "domain add exists with keys", typ: CmdDomainAdd, payload: DomainAdd{Name: "example.test", DKIM: dkimPair("s1")}, want: ErrExists},
		{name: "domain add bad algorithm", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{{Selector: "s", Algorithm: "dsa", PrivateKeyPEM: fakeKey("s")}}}, want: ErrInvalid},
		{name: "domain add bad key", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{{Selector: "s", Algorithm: DKIMRSA, PrivateKeyPEM: []byte("not pem")}}}, want: ErrInvalid},
		{name: "domain add public key", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{{Selector: "s", Algorithm: DKIMRSA,
				PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")})}}}, want: ErrInvalid},
		{name: "domain add trailing data after key", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{{Selector: "s", Algorithm: DKIMRSA, PrivateKeyPEM: append(fakeKey("s"), fakeKey("t")...)}}}, want: ErrInvalid},
		{name: "domain add bad selector", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{{Selector: "a.b", Algorithm: DKIMRSA, PrivateKeyPEM: fakeKey("s")}}}, want: ErrInvalid},
		{name: "domain add selector with hyphen at end", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{{Selector: "a-", Algorithm: DKIMRSA, PrivateKeyPEM: fakeKey("s")}}}, want: ErrInvalid},
		{name: "domain add duplicate selector", typ: CmdDomainAdd,
			payload: DomainAdd{Name: "k.test", DKIM: []DKIMSelector{
				{Selector: "s", Algorithm: DKIMRSA, PrivateKeyPEM: fakeKey("s")},
				{Selector: "S", Algorithm: DKIMEd25519, PrivateKeyPEM: fakeKey("s")}}}, want: ErrExists},
		{name: "rotate gives a domain without keys its first ones", typ: CmdDKIMRotate, payload: DKIMRotate{Domain: "EXAMPLE.test", New: dkimPair("a1")},
			check: func(t *testing.T, h *harness) {
				if got := selectorStates(t, h.s, "example.test"); !slices.Equal(got, []string{"a1e:signing", "a1r:signing"}) {
					t.Fatalf("selectors %q", got)
				}
			}},
		{name: "rotate", prep: func(h *harness) { h.ok(CmdDKIMRotate, DKIMRotate{Domain: "example.test", New: dkimPair("a1")}) },
			typ: CmdDKIMRotate, payload: DKIMRotate{Domain: "example.test", New: dkimPair("b1")},
			check: func(t *testing.T, h *harness) {
				want := []string{"a1e:published", "a1r:published", "b1e:signing", "b1r:signing"}
				if got := selectorStates(t, h.s, "example.test"); !slices.Equal(got, want) {
					t.Fatalf("selectors %q, want %q", got, want)
				}
				if got := signingNames(t, h.s, "example.test"); !slices.Equal(got, []string{"b1e", "b1r"}) {
					t.Fatalf("signing %q", got)
				}
				d, _ := h.s.Domain("example.test")
				if len(d.DKIMPublished()) != 4 {
					t.Fatalf("published %d selectors, want 4", len(d.DKIMPublished()))
				}
			}},
		{name: "rotate missing domain", typ: CmdDKIMRotate, payload: DKIMRotate{Domain: "nope.test", New: dkimPair("a1")}, want: ErrNotFound},
		{name: "rotate nothing new", typ: CmdDKIMRotate, payload: DKIMRotate{Domain: "example.test"}, want: ErrInvalid},
		{name: "rotate reuses a selector", prep: rotated,
			typ: CmdDKIMRotate, payload: DKIMRotate{Domain: "example.test", New: dkimPair("a1")}, want: ErrExists},
		{name: "rotate reuses a retired selector", prep: func(h *harness) {
			rotated(h)
			h.ok(CmdDKIMRetire, DKIMRetire{Domain: "example.test", Selector: "a1e"})
		}, typ: CmdDKIMRotate, payload: DKIMRotate{Domain: "example.test", New: dkimPair("a1")}, want: ErrExists},
		{name: "rotate bad key", prep: rotated, typ: CmdDKIMRotate,
			payload: DKIMRotate{Domain: "example.test", New: []DKIMSelector{{Selector: "c1e", Algorithm: DKIMEd25519}}}, want: ErrInvalid},
		{name: "retire", prep: rotated, typ: CmdDKIMRetire, payload: DKIMRetire{Domain: "example.test", Selector: "A1E"},
			check: func(t *testing.T, h *harness) {
				want := []string{"a1e:retired", "a1r:published", "b1e:signing", "b1r:signing"}
				if got := selectorStates(t, h.s, "example.test"); !slices.Equal(got, want) {
					t.Fatalf("selectors %q, want %q", got, want)
				}
				d, _ := h.s.Domain("example.test")
				var pub []string
				for _, s := range d.DKIMPublished() {
					pub = append(pub, s.Selector)
				}
				if !slices.Equal(pub, []string{"a1r", "b1e", "b1r"}) {
					t.Fatalf("published %q", pub)
				}
			}},
		{name: "retire signing", prep: rotated, typ: CmdDKIMRetire, payload: DKIMRetire{Domain: "example.test", Selector: "b1r"},
			want: ErrInvalid, wantMsg: "still signs new mail: rotate to new keys first"},
		{name: "retire twice", prep: func(h *harness) {
			rotated(h)
			h.ok(CmdDKIMRetire, DKIMRetire{Domain: "example.test", Selector: "a1e"})
		}, typ: CmdDKIMRetire, payload: DKIMRetire{Domain: "example.test", Selector: "a1e"}, want: ErrInvalid, wantMsg: "already retired"},
		{name: "retire missing selector", prep: rotated, typ: CmdDKIMRetire, payload: DKIMRetire{Domain: "example.test", Selector: "zz"}, want: ErrNotFound},
		{name: "retire missing domain", typ: CmdDKIMRetire, payload: DKIMRetire{Domain: "nope.test", Selector: "a1e"}, want: ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.setup()
			if c.prep != nil {
				c.prep(h)
			}
			before := dumpState(t, h.s)
			r := h.apply(c.typ, c.payload)
			wantErr(t, r, c.want)
			if c.want != nil && !slices.Equal(before, dumpState(t, h.s)) {
				t.Fatalf("failed command changed state")
			}
			if c.wantMsg != "" && !strings.Contains(r.Msg, c.wantMsg) {
				t.Fatalf("error %q does not say %q", r.Msg, c.wantMsg)
			}
			if c.check != nil {
				c.check(t, h)
			}
		})
	}
}

// rawValue reads a stored metadata value as it is on disk.
func rawValue(tb testing.TB, s *Store, key []byte) ([]byte, bool) {
	tb.Helper()
	v, c, err := s.db.Get(key)
	if err != nil {
		return nil, false
	}
	defer c.Close()
	return append([]byte(nil), v...), true
}

// Domains stored before DKIM existed decode with no selectors, and a domain
// without selectors is stored exactly as before.
func TestDomainJSONCompatible(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	old := `{"Name":"old.test","Created":"2024-05-06T07:08:09Z"}`
	var d Domain
	if err := json.Unmarshal([]byte(old), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "old.test" || !d.Created.Equal(created) || d.DKIM != nil {
		t.Fatalf("decoded %+v", d)
	}
	b, err := json.Marshal(Domain{Name: "old.test", Created: created})
	if err != nil || string(b) != old {
		t.Fatalf("encoded %s, %v; want %s", b, err, old)
	}
	var p DomainAdd
	if err := json.Unmarshal([]byte(`{"Name":"x.test"}`), &p); err != nil || p.Name != "x.test" || p.DKIM != nil {
		t.Fatalf("old DomainAdd payload: %+v, %v", p, err)
	}
}

// The same DKIM log gives the same state on another node, and DKIMKeys of
// an unknown domain is ErrNotFound.
func TestDKIMDeterministic(t *testing.T) {
	h := newHarness(t)
	h.ok(CmdDomainAdd, DomainAdd{Name: "a.test", DKIM: dkimPair("x1")})
	h.ok(CmdDKIMRotate, DKIMRotate{Domain: "a.test", New: dkimPair("x2")})
	h.ok(CmdDKIMRetire, DKIMRetire{Domain: "a.test", Selector: "x1r"})
	h.apply(CmdDKIMRetire, DKIMRetire{Domain: "a.test", Selector: "x2r"}) // refused
	other := openStore(t, Config{})
	for _, e := range h.log {
		other.Apply(e)
	}
	h2, _, err := other.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	if h2 != h.hash() {
		t.Fatal("state hashes differ after replaying the same log")
	}
	if _, err := h.s.DKIMKeys("nope.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DKIMKeys(unknown) = %v, want ErrNotFound", err)
	}
}
