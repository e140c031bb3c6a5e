package storage

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// A single-use token admits one node: the second use is refused by the
// state machine, whatever the proposers checked before.
func TestTokenUses(t *testing.T) {
	h := newHarness(t)
	later := t0.Add(24 * time.Hour)
	h.ok(CmdTokenAdd, JoinToken{ID: "once", Expires: later})
	h.ok(CmdTokenAdd, JoinToken{ID: "twice", Expires: later, MaxUses: 2})
	h.ok(CmdTokenAdd, JoinToken{ID: "short", Expires: t0.Add(time.Second)})
	cert := func(serial, node string) NodeCert { return NodeCert{Serial: serial, Node: node, NotAfter: later} }

	h.ok(CmdTokenUse, TokenUse{ID: "once", Cert: cert("a1", "a")})
	r := h.apply(CmdTokenUse, TokenUse{ID: "once", Cert: cert("b1", "b")})
	wantErr(t, r, ErrInvalid)
	if !strings.Contains(r.Msg, "used already (1 of 1 uses, by a)") {
		t.Errorf("second use: %q", r.Msg)
	}
	h.ok(CmdTokenUse, TokenUse{ID: "twice", Cert: cert("b1", "b")})
	h.ok(CmdTokenUse, TokenUse{ID: "twice", Cert: cert("c1", "c")})
	wantErr(t, h.apply(CmdTokenUse, TokenUse{ID: "twice", Cert: cert("d1", "d")}), ErrInvalid)
	wantErr(t, h.apply(CmdTokenUse, TokenUse{ID: "short", Cert: cert("d1", "d")}), ErrInvalid) // expired by command time
	wantErr(t, h.apply(CmdTokenUse, TokenUse{ID: "nope", Cert: cert("d1", "d")}), ErrNotFound)
	wantErr(t, h.apply(CmdTokenUse, TokenUse{ID: "twice", Cert: cert("A1", "d")}), ErrInvalid) // not lowercase hex

	tok, err := h.s.Token("twice")
	if err != nil || !slices.Equal(tok.UsedBy, []string{"b", "c"}) {
		t.Fatalf("token twice: %+v, %v", tok, err)
	}
	certs, err := h.s.NodeCerts()
	if err != nil || len(certs) != 3 || certs[0].Token != "once" || certs[1].Token != "twice" {
		t.Fatalf("NodeCerts = %+v, %v", certs, err)
	}
}

// Revoking a token revokes the certificates it led to, renewals included;
// a revoked certificate cannot be renewed; expired records are dropped.
func TestCertRevoke(t *testing.T) {
	h := newHarness(t)
	later := t0.Add(24 * time.Hour)
	h.ok(CmdTokenAdd, JoinToken{ID: "t1", Expires: later, MaxUses: 2})
	h.ok(CmdTokenUse, TokenUse{ID: "t1", Cert: NodeCert{Serial: "b1", Node: "b", NotAfter: later}})
	h.ok(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "b2", Node: "b", NotAfter: later}, Renews: "b1"})
	h.ok(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "a1", Node: "a", NotAfter: later}})
	h.ok(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "a1", Node: "a", NotAfter: later}}) // again: no change
	wantErr(t, h.apply(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "c1", Node: "c", NotAfter: later}, Renews: "a1"}), ErrInvalid)

	var res CertRevokeResult
	if err := h.ok(CmdCertRevoke, CertRevoke{Token: "t1"}).Decode(&res); err != nil || !slices.Equal(res.Serials, []string{"b1", "b2"}) {
		t.Fatalf("revoke token t1: %+v, %v", res, err)
	}
	if tok, _ := h.s.Token("t1"); !tok.Revoked {
		t.Error("token t1 not revoked")
	}
	r := h.apply(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "b3", Node: "b", NotAfter: later}, Renews: "b2"})
	wantErr(t, r, ErrInvalid)
	if !strings.Contains(r.Msg, "cannot be renewed") {
		t.Errorf("renewal of a revoked certificate: %q", r.Msg)
	}
	if err := h.ok(CmdCertRevoke, CertRevoke{Node: "a"}).Decode(&res); err != nil || !slices.Equal(res.Serials, []string{"a1"}) {
		t.Fatalf("revoke node a: %+v, %v", res, err)
	}
	wantErr(t, h.apply(CmdCertRevoke, CertRevoke{}), ErrInvalid)
	wantErr(t, h.apply(CmdCertRevoke, CertRevoke{Token: "nope"}), ErrNotFound)

	// A day later every record above has expired: the next one recorded
	// drops them.
	h.skew += 48 * time.Hour
	h.ok(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "d1", Node: "d", NotAfter: t0.Add(72 * time.Hour)}})
	certs, err := h.s.NodeCerts()
	if err != nil || len(certs) != 1 || certs[0].Serial != "d1" {
		t.Fatalf("after expiry: %+v, %v", certs, err)
	}
	if errors.Is(h.apply(CmdCertAdd, CertAdd{Cert: NodeCert{Serial: "e1", Node: "e"}}).Err(), ErrInvalid) == false {
		t.Error("a certificate without expiry was recorded")
	}
}
