package mailauth

import (
	"context"
	"errors"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
)

// SPFResult is the SPF check of a message (RFC 7208).
type SPFResult struct {
	// Result is "none", "neutral", "pass", "fail", "softfail",
	// "temperror" or "permerror".
	Result string
	// Domain is the domain checked: MAIL FROM's, or the HELO name for
	// the null sender.
	Domain string
	// MailFrom is the reverse-path ("" for the null sender), HELO the
	// client's HELO/EHLO name.
	MailFrom, HELO string
	// Err says why the result is what it is (from the SPF library; may
	// be set on pass too); for logs only.
	Err error
}

// CheckSPF evaluates the SPF record of MAIL FROM's domain for a client at
// ip, or of the HELO name when mailFrom is "" (the null sender, RFC 7208
// §2.4), with every DNS lookup through r within ctx.
func CheckSPF(ctx context.Context, r Resolver, ip net.IP, helo, mailFrom string) SPFResult {
	res := SPFResult{MailFrom: mailFrom, HELO: helo}
	sender := mailFrom
	domain := domainOf(mailFrom)
	if mailFrom == "" || domain == "" {
		// RFC 7208 §4.3: "postmaster@" + the HELO name stands in for
		// a null sender (and for a local part alone).
		domain = helo
		sender = "postmaster@" + helo
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	res.Domain = domain
	if domain == "" || strings.HasPrefix(domain, "[") || net.ParseIP(domain) != nil {
		// No name to check (an address literal HELO): RFC 7208 §4.3.
		res.Result = string(spf.None)
		return res
	}
	result, err := spf.CheckHostWithSender(ip, helo, sender,
		spf.WithContext(ctx), spf.WithResolver(dnsErrors{r}))
	res.Result, res.Err = string(result), err
	return res
}

// dnsErrors passes lookups to a Resolver and makes every error a
// *net.DNSError, unwrapped: the SPF and DKIM libraries only recognise
// "not found" and "temporary" by type assertion on that type. An error
// that is neither (a Resolver of the caller's making, a cancelled
// context) counts as temporary: failing to get an answer never becomes a
// verdict against the sender.
type dnsErrors struct{ r Resolver }

func (d dnsErrors) fix(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	return &net.DNSError{Err: err.Error(), Name: name, IsTimeout: timeout, IsTemporary: true}
}

func (d dnsErrors) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := d.r.LookupTXT(ctx, name)
	return v, d.fix(name, err)
}

func (d dnsErrors) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := d.r.LookupMX(ctx, name)
	return v, d.fix(name, err)
}

func (d dnsErrors) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := d.r.LookupIPAddr(ctx, host)
	return v, d.fix(host, err)
}

func (d dnsErrors) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := d.r.LookupAddr(ctx, addr)
	return v, d.fix(addr, err)
}
