package storage

import (
	"fmt"
	"strings"
)

// Handlers for join token uses and the record of node certificates (the
// cluster's revocation list). cluster/DESIGN.md, "Certificates", says why.

func (t *tx) tokenUse() (any, error) {
	var p TokenUse
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if err := checkNodeCert(p.Cert); err != nil {
		return nil, err
	}
	var tok JoinToken
	if !t.getJSON(tokenKey(p.ID), &tok) {
		return nil, fmt.Errorf("join token %q: %w", p.ID, ErrNotFound)
	}
	switch {
	case tok.Revoked:
		return nil, fmt.Errorf("join token %s was revoked: create a new one with `raftmail token create`: %w", tok.ID, ErrInvalid)
	case !tok.Expires.IsZero() && t.cmd.Time.After(tok.Expires):
		return nil, fmt.Errorf("join token %s expired at %s: create a new one with `raftmail token create`: %w",
			tok.ID, tok.Expires.UTC().Format("2006-01-02T15:04:05Z"), ErrInvalid)
	case tok.Uses() >= tok.Limit():
		return nil, fmt.Errorf("join token %s has been used already (%d of %d uses, by %s): create a new one with `raftmail token create` (--uses N for a token that admits N nodes): %w",
			tok.ID, tok.Uses(), tok.Limit(), strings.Join(tok.UsedBy, ", "), ErrInvalid)
	}
	if t.exists(certKey(p.Cert.Serial)) {
		return nil, fmt.Errorf("certificate %s: %w", p.Cert.Serial, ErrExists)
	}
	tok.UsedBy = append(tok.UsedBy, p.Cert.Node)
	t.setJSON(tokenKey(tok.ID), tok)
	c := p.Cert
	c.Token = tok.ID
	t.pruneCerts()
	t.setJSON(certKey(c.Serial), c)
	return nil, nil
}

func (t *tx) certAdd() (any, error) {
	var p CertAdd
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if err := checkNodeCert(p.Cert); err != nil {
		return nil, err
	}
	if t.exists(certKey(p.Cert.Serial)) {
		return nil, nil
	}
	c := p.Cert
	c.Token = ""
	if p.Renews != "" {
		var prev NodeCert
		if t.getJSON(certKey(p.Renews), &prev) {
			if prev.Revoked {
				return nil, fmt.Errorf("certificate %s of node %s was revoked (at %s): it cannot be renewed; the node must join again with a new token: %w",
					prev.Serial, prev.Node, prev.RevokedAt.UTC().Format("2006-01-02T15:04:05Z"), ErrInvalid)
			}
			if prev.Node != c.Node {
				return nil, fmt.Errorf("certificate %s belongs to node %s, not %s: %w", prev.Serial, prev.Node, c.Node, ErrInvalid)
			}
			c.Token = prev.Token
		}
	}
	t.pruneCerts()
	t.setJSON(certKey(c.Serial), c)
	return nil, nil
}

func (t *tx) certRevoke() (any, error) {
	var p CertRevoke
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if p.Node == "" && p.Token == "" {
		return nil, fmt.Errorf("certificate revocation names neither a node nor a token: %w", ErrInvalid)
	}
	var tok JoinToken
	if p.Token != "" && !t.getJSON(tokenKey(p.Token), &tok) {
		return nil, fmt.Errorf("join token %q: %w", p.Token, ErrNotFound)
	}
	var res CertRevokeResult
	for _, e := range t.scan(metaKey(tCert)) {
		var c NodeCert
		t.unmarshal(e.v, &c)
		if c.Revoked || !(p.Node != "" && c.Node == p.Node || p.Token != "" && c.Token == p.Token) {
			continue
		}
		c.Revoked, c.RevokedAt = true, t.cmd.Time
		t.setJSON(e.k, c)
		res.Serials = append(res.Serials, c.Serial)
	}
	if p.Token != "" && !tok.Revoked {
		tok.Revoked = true
		t.setJSON(tokenKey(tok.ID), tok)
	}
	return res, nil
}

// pruneCerts drops the records of certificates that expired before the
// command's time: nothing accepts them any more, revoked or not.
func (t *tx) pruneCerts() {
	for _, e := range t.scan(metaKey(tCert)) {
		var c NodeCert
		t.unmarshal(e.v, &c)
		if c.NotAfter.Before(t.cmd.Time) {
			t.del(e.k)
		}
	}
}

func checkNodeCert(c NodeCert) error {
	if err := normID("certificate serial", c.Serial); err != nil {
		return err
	}
	for i := 0; i < len(c.Serial); i++ {
		if b := c.Serial[i]; !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f') {
			return fmt.Errorf("certificate serial %q: want lowercase hex: %w", c.Serial, ErrInvalid)
		}
	}
	if err := normID("certificate node", c.Node); err != nil {
		return err
	}
	if c.NotAfter.IsZero() {
		return fmt.Errorf("certificate %s: no expiry: %w", c.Serial, ErrInvalid)
	}
	return nil
}
