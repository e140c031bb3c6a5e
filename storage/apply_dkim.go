package storage

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"strings"
)

// DKIM keys. The proposer (the admin API) generates the keys and carries
// them in the command; Apply only checks and stores them, so every node
// signs with the same keys. A domain's selectors are kept in the order they
// were added; a selector name is never reused, even after it is retired,
// because resolvers and verifiers cache the key published under it.

// DKIM algorithms a selector may have.
const (
	DKIMEd25519 = "ed25519"
	DKIMRSA     = "rsa"
)

// maxDKIMKeyPEM bounds a stored private key (an RSA-4096 PKCS#8 PEM is
// about 3.3 KB).
const maxDKIMKeyPEM = 16 << 10

// maxDKIMSelectorLen is the longest selector: one DNS label.
const maxDKIMSelectorLen = 63

// domainAddDKIM is the CmdDomainAdd handler: domainAdd, plus the initial
// DKIM selectors the payload may carry (payloads written before DKIM have
// none and behave exactly as before).
func (t *tx) domainAddDKIM() (any, error) {
	var p DomainAdd
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	sels, err := t.newSelectors(p.DKIM, nil)
	if err != nil {
		return nil, fmt.Errorf("domain %q: %w", p.Name, err)
	}
	if _, err := t.domainAdd(); err != nil || len(sels) == 0 {
		return nil, err
	}
	name, err := normDomain(p.Name) // cannot fail: domainAdd checked it
	if err != nil {
		return nil, err
	}
	var d Domain
	if !t.getJSON(domainKey(name), &d) {
		panic(fmt.Sprintf("storage: apply index %d: domain %q vanished after domain add", t.index, name))
	}
	d.DKIM = sels
	t.setJSON(domainKey(name), d)
	return nil, nil
}

func (t *tx) dkimRotate() (any, error) {
	var p DKIMRotate
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	d, err := t.domain(p.Domain)
	if err != nil {
		return nil, err
	}
	if len(p.New) == 0 {
		return nil, fmt.Errorf("dkim rotate %q: no new selectors: %w", d.Name, ErrInvalid)
	}
	sels, err := t.newSelectors(p.New, d.DKIM)
	if err != nil {
		return nil, fmt.Errorf("dkim rotate %q: %w", d.Name, err)
	}
	for i := range d.DKIM {
		d.DKIM[i].Signing = false
	}
	d.DKIM = append(d.DKIM, sels...)
	t.setJSON(domainKey(d.Name), d)
	return nil, nil
}

func (t *tx) dkimRetire() (any, error) {
	var p DKIMRetire
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	d, err := t.domain(p.Domain)
	if err != nil {
		return nil, err
	}
	sel := strings.ToLower(p.Selector)
	i := -1
	for j, s := range d.DKIM {
		if s.Selector == sel {
			i = j
		}
	}
	switch {
	case i < 0:
		return nil, fmt.Errorf("dkim selector %q of domain %q: %w", p.Selector, d.Name, ErrNotFound)
	case d.DKIM[i].Retired:
		return nil, fmt.Errorf("dkim selector %q of domain %q is already retired: %w", sel, d.Name, ErrInvalid)
	case d.DKIM[i].Signing:
		return nil, fmt.Errorf("dkim selector %q of domain %q still signs new mail: rotate to new keys first, and retire it once mail signed with it has been delivered (a few days): %w", sel, d.Name, ErrInvalid)
	}
	d.DKIM[i].Retired = true
	d.DKIM[i].PrivateKeyPEM = nil
	t.setJSON(domainKey(d.Name), d)
	return nil, nil
}

// domain reads a domain by name (normalised).
func (t *tx) domain(name string) (Domain, error) {
	n, err := normDomain(name)
	if err != nil {
		return Domain{}, err
	}
	var d Domain
	if !t.getJSON(domainKey(n), &d) {
		return d, fmt.Errorf("domain %q: %w", n, ErrNotFound)
	}
	return d, nil
}

// newSelectors checks selectors to add next to existing ones and returns
// them as stored: lower-case names, signing, created at the command's time.
func (t *tx) newSelectors(in, existing []DKIMSelector) ([]DKIMSelector, error) {
	taken := make(map[string]bool, len(existing)+len(in))
	for _, s := range existing {
		taken[s.Selector] = true
	}
	var out []DKIMSelector
	for _, s := range in {
		name := strings.ToLower(s.Selector)
		if err := checkSelectorName(s.Selector); err != nil {
			return nil, err
		}
		if taken[name] {
			return nil, fmt.Errorf("dkim selector %q exists (selector names are never reused): %w", name, ErrExists)
		}
		taken[name] = true
		if s.Algorithm != DKIMEd25519 && s.Algorithm != DKIMRSA {
			return nil, fmt.Errorf("dkim selector %q: algorithm %q: want %q or %q: %w", name, s.Algorithm, DKIMEd25519, DKIMRSA, ErrInvalid)
		}
		if err := checkKeyPEM(s.PrivateKeyPEM); err != nil {
			return nil, fmt.Errorf("dkim selector %q: %w", name, err)
		}
		out = append(out, DKIMSelector{
			Selector:      name,
			Algorithm:     s.Algorithm,
			PrivateKeyPEM: s.PrivateKeyPEM,
			Created:       t.cmd.Time,
			Signing:       true,
		})
	}
	return out, nil
}

// checkSelectorName accepts one DNS label of letters, digits and inner
// hyphens.
func checkSelectorName(s string) error {
	if s == "" || len(s) > maxDKIMSelectorLen || s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("dkim selector %q: want 1 to %d letters, digits or inner hyphens: %w", s, maxDKIMSelectorLen, ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("dkim selector %q: bad character %q: %w", s, c, ErrInvalid)
		}
	}
	return nil
}

// checkKeyPEM checks the shape of a private key: one PEM block of a
// private key and nothing else. It does not parse the key: what a crypto
// library accepts can change between Go versions, and Apply must decide
// the same way on every node.
func checkKeyPEM(b []byte) error {
	if len(b) == 0 || len(b) > maxDKIMKeyPEM {
		return fmt.Errorf("private key: empty or larger than %d bytes: %w", maxDKIMKeyPEM, ErrInvalid)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || !strings.HasSuffix(blk.Type, "PRIVATE KEY") || len(blk.Bytes) == 0 || len(bytes.TrimSpace(rest)) != 0 {
		return fmt.Errorf("private key: want one PEM block of a private key: %w", ErrInvalid)
	}
	return nil
}

// DKIMKeys returns the selectors a domain's mail is signed with now, in the
// order they were added (normally one ed25519 and one RSA key). It is
// empty, not an error, for a domain without DKIM keys.
func (s *Store) DKIMKeys(domain string) ([]DKIMSelector, error) {
	d, err := s.Domain(domain)
	if err != nil {
		return nil, err
	}
	var out []DKIMSelector
	for _, sel := range d.DKIM {
		if sel.Signing && !sel.Retired {
			out = append(out, sel)
		}
	}
	return out, nil
}

// DKIMPublished returns the selectors whose public keys must be in DNS:
// every selector not retired (signing ones and those that stopped signing
// after a rotation).
func (d Domain) DKIMPublished() []DKIMSelector {
	var out []DKIMSelector
	for _, s := range d.DKIM {
		if !s.Retired {
			out = append(out, s)
		}
	}
	return out
}
