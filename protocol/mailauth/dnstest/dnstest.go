// Package dnstest runs a real DNS server on loopback for tests: MX, A,
// AAAA, TXT and PTR records from a table, over UDP and TCP, with
// miekg/dns. Point mailauth.NewResolver at Server.Addr.
//
// Only tests import it.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server serves the records it holds; Set and Remove change them while it
// runs. Names are case-insensitive; a name without a trailing dot is made
// absolute.
type Server struct {
	// Addr is host:port of the server (the same port for UDP and TCP).
	Addr string

	udp, tcp *dns.Server
	mu       struct {
		sync.Mutex
		rrs      map[string][]dns.RR // lower-case FQDN -> records
		servfail map[string]bool
	}
}

// Start runs a server on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{}
	s.mu.rrs = make(map[string][]dns.RR)
	s.mu.servfail = make(map[string]bool)
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatal(err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	t.Cleanup(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
	return s
}

// Add adds records in zone-file syntax, one per string, for example
// "example.test. 300 IN MX 10 mx1.example.test." or
// `example.test. TXT "v=spf1 ip4:127.0.0.1 -all"`.
func (s *Server) Add(t testing.TB, records ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("dnstest: record %q: %v", r, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.mu.rrs[name] = append(s.mu.rrs[name], rr)
	}
}

// Remove drops every record of name (all types).
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.rrs, strings.ToLower(dns.Fqdn(name)))
}

// ServFail makes every query for name fail with SERVFAIL (a temporary
// error) until cleared with ok=false.
func (s *Server) ServFail(name string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.servfail[strings.ToLower(dns.Fqdn(name))] = fail
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	rrs, known := s.mu.rrs[name]
	fail := s.mu.servfail[name]
	s.mu.Unlock()
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case !known:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || (rr.Header().Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME) {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	_ = w.WriteMsg(m)
}
