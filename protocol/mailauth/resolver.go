package mailauth

import (
	"context"
	"errors"
	"net"
	"time"
)

// Resolver is every DNS lookup the mail service makes: MX and address
// lookups for delivery, TXT for SPF, DKIM and DMARC, PTR for SPF and the
// DNS checks. *net.Resolver satisfies it, and so does what NewResolver
// returns; it is also blitiri.com.ar/go/spf's DNSResolver.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// NewResolver returns a resolver that asks server (host:port, UDP with TCP
// fallback) for everything; "" means the system's resolver configuration.
func NewResolver(server string) Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &serverResolver{server: server, r: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}}
}

// serverResolver asks one server. Go's resolver names the system's
// server in its errors even when Dial goes elsewhere, so the errors are
// corrected to name the server actually asked.
type serverResolver struct {
	server string
	r      *net.Resolver
}

func (s *serverResolver) fix(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		de.Server = s.server
	}
	return err
}

func (s *serverResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := s.r.LookupTXT(ctx, name)
	return v, s.fix(err)
}

func (s *serverResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := s.r.LookupMX(ctx, name)
	return v, s.fix(err)
}

func (s *serverResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := s.r.LookupIPAddr(ctx, host)
	return v, s.fix(err)
}

func (s *serverResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := s.r.LookupAddr(ctx, addr)
	return v, s.fix(err)
}

// IsNotFound reports whether err means the name or record does not exist
// (NXDOMAIN or no data): a permanent answer, not a failure to get one.
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// IsTemporary reports whether err is a DNS failure worth retrying later
// (timeout, SERVFAIL), as opposed to a definite answer.
func IsTemporary(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		return !de.IsNotFound && (de.IsTemporary || de.IsTimeout)
	}
	return false
}
