package mailauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// DMARC dispositions: what the receiver does with a message (RFC 7489
// §6.3 p=).
const (
	DispositionNone       = "none"
	DispositionQuarantine = "quarantine"
	DispositionReject     = "reject"
)

// maxFromDomains bounds how many distinct From domains one message may
// have DMARC evaluated for; beyond that it is a permerror.
const maxFromDomains = 5

// DMARCResult is the DMARC evaluation of a message (RFC 7489).
type DMARCResult struct {
	// Result is "pass", "fail", "none" (no policy), "temperror" (DNS
	// trouble, here or in SPF/DKIM) or "permerror" (malformed record, no
	// usable From).
	Result string
	// FromDomain is the RFC5322.From domain evaluated.
	FromDomain string
	// OrgDomain is its organizational domain (public suffix + 1).
	OrgDomain string
	// Policy is the policy that applies ("none", "quarantine", "reject"):
	// p=, or sp= for a subdomain whose record came from its
	// organizational domain; "" without a record.
	Policy string
	// Percent is pct= (100 if absent); Sampled reports whether the
	// message fell within it.
	Percent int
	Sampled bool
	// Disposition is what to do with the message: DispositionNone,
	// DispositionQuarantine or DispositionReject. Only a fail has
	// anything but none.
	Disposition string
	// Err says why the result is an error, for logs.
	Err error
}

// OrgDomain returns the organizational domain of a domain name (RFC 7489
// §3.2): the public suffix plus one label, from golang.org/x/net's copy
// of the Public Suffix List; the name itself if that fails (the name is a
// public suffix).
func OrgDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned reports whether identifier domain id aligns with the From
// domain under mode (RFC 7489 §3.1): strict is equal, relaxed is the same
// organizational domain.
func aligned(from, id string, mode dmarc.AlignmentMode) bool {
	from = strings.ToLower(strings.TrimSuffix(from, "."))
	id = strings.ToLower(strings.TrimSuffix(id, "."))
	if from == "" || id == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return from == id
	}
	return OrgDomain(from) == OrgDomain(id)
}

// EvaluateDMARC evaluates DMARC for msg given the SPF and DKIM results,
// looking the policy up through r within ctx.
func EvaluateDMARC(ctx context.Context, r Resolver, msg []byte, spfRes SPFResult, dkimRes []DKIMResult) DMARCResult {
	hdr, body := SplitHeader(msg)
	return evaluateDMARC(ctx, r, hdr, func() io.Reader { return bytes.NewReader(body) }, spfRes, dkimRes)
}

func evaluateDMARC(ctx context.Context, r Resolver, header []byte, body func() io.Reader, spfRes SPFResult, dkimRes []DKIMResult) DMARCResult {
	fields, rest := splitMessage(header)
	domains, nfrom := fromDomains(fields)
	switch {
	case nfrom == 0 || len(domains) == 0:
		return DMARCResult{Result: "permerror", Disposition: DispositionNone, Err: errors.New("mailauth: dmarc: no From domain")}
	case len(domains) > maxFromDomains:
		return DMARCResult{Result: "permerror", FromDomain: domains[0], Disposition: DispositionNone, Err: errors.New("mailauth: dmarc: too many From domains")}
	}
	// RFC 7489 §6.6.1: several From domains are each evaluated; the
	// message gets the harshest outcome, so that adding an address does
	// not escape a policy.
	bucket := sampleBucket(fields, rest, body)
	var worst DMARCResult
	for i, d := range domains {
		res := evaluateDomain(ctx, r, d, bucket, spfRes, dkimRes)
		if i == 0 || severity(res) > severity(worst) {
			worst = res
		}
	}
	return worst
}

func severity(r DMARCResult) int {
	switch r.Disposition {
	case DispositionReject:
		return 3
	case DispositionQuarantine:
		return 2
	}
	if r.Result == "fail" {
		return 1
	}
	return 0
}

func evaluateDomain(ctx context.Context, r Resolver, from string, bucket int, spfRes SPFResult, dkimRes []DKIMResult) DMARCResult {
	res := DMARCResult{FromDomain: from, OrgDomain: OrgDomain(from), Disposition: DispositionNone}
	rec, atOrg, err := lookupDMARC(ctx, r, from, res.OrgDomain)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		res.Result = "none"
		return res
	case isDNSError(err):
		// No definite answer from DNS: temporary, whatever it was.
		res.Result, res.Err = "temperror", err
		return res
	case err != nil:
		res.Result, res.Err = "permerror", err
		return res
	}
	res.Policy = string(rec.Policy)
	if atOrg && from != res.OrgDomain && rec.SubdomainPolicy != "" {
		res.Policy = string(rec.SubdomainPolicy)
	}
	res.Percent = 100
	if rec.Percent != nil {
		res.Percent = *rec.Percent
	}

	pass := spfRes.Result == "pass" && aligned(from, spfRes.Domain, rec.SPFAlignment)
	for _, d := range dkimRes {
		if d.Result == "pass" && aligned(from, d.Domain, rec.DKIMAlignment) {
			pass = true
		}
	}
	if pass {
		res.Result = "pass"
		return res
	}
	// RFC 7489 §6.6.2 / §11.4: a fail that may be due to a DNS failure
	// in SPF or DKIM is a temperror, and a temperror never rejects.
	temp := spfRes.Result == "temperror"
	for _, d := range dkimRes {
		if d.Result == "temperror" {
			temp = true
		}
	}
	if temp {
		res.Result, res.Err = "temperror", errors.New("mailauth: dmarc: SPF or DKIM lookups failed")
		return res
	}
	res.Result = "fail"
	// pct= (RFC 7489 §6.6.4): a message outside the sample gets the next
	// policy down. bucket is from the message itself, so every node and
	// every retry decides the same.
	res.Sampled = bucket < res.Percent
	res.Disposition = res.Policy
	if !res.Sampled {
		switch res.Policy {
		case DispositionReject:
			res.Disposition = DispositionQuarantine
		case DispositionQuarantine:
			res.Disposition = DispositionNone
		}
	}
	return res
}

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

// lookupDMARC finds the policy for from (RFC 7489 §6.6.3): at
// _dmarc.<from>, else at _dmarc.<org>. atOrg reports the second.
// dmarc.ErrNoPolicy means there is none.
func lookupDMARC(ctx context.Context, r Resolver, from, org string) (rec *dmarc.Record, atOrg bool, err error) {
	rec, err = lookupDMARCAt(ctx, r, from)
	if !errors.Is(err, dmarc.ErrNoPolicy) || org == from {
		return rec, false, err
	}
	rec, err = lookupDMARCAt(ctx, r, org)
	return rec, true, err
}

func lookupDMARCAt(ctx context.Context, r Resolver, domain string) (*dmarc.Record, error) {
	txts, err := r.LookupTXT(ctx, "_dmarc."+domain)
	if IsNotFound(err) {
		return nil, dmarc.ErrNoPolicy
	}
	if err != nil {
		// Not a definite answer: temporary, whatever the error.
		return nil, dnsErrors{r}.fix("_dmarc."+domain, err)
	}
	var recs []string
	for _, t := range txts {
		if isDMARC1(t) {
			recs = append(recs, t)
		}
	}
	// RFC 7489 §6.6.3: none, or more than one, is no policy.
	if len(recs) != 1 {
		return nil, dmarc.ErrNoPolicy
	}
	rec, err := dmarc.Parse(recs[0])
	if err != nil {
		return nil, fmt.Errorf("mailauth: dmarc record of %s: %w", domain, err)
	}
	return rec, nil
}

// isDMARC1 reports whether a TXT record starts with the version tag
// "v=DMARC1" (white space allowed around '=').
func isDMARC1(t string) bool {
	t = strings.TrimLeft(t, " \t")
	if !strings.HasPrefix(t, "v") {
		return false
	}
	t = strings.TrimLeft(t[1:], " \t")
	if !strings.HasPrefix(t, "=") {
		return false
	}
	t = strings.TrimLeft(t[1:], " \t")
	if !strings.HasPrefix(t, "DMARC1") {
		return false
	}
	t = strings.TrimLeft(t[len("DMARC1"):], " \t")
	return t == "" || t[0] == ';'
}
