package chaos

// The world outside the cluster for outbound mail: a DNS server that
// answers MX and A for the outside domains, and an SMTP sink, their MX,
// that records every message it takes. The nodes are started with
// --dns-resolver and --smtp-out-port pointed at them, so the outbound
// queue really delivers, retries and bounces during a scenario.
//
// Both listen on 127.0.0.1 and, for the process backend in network
// namespaces, on the host's end of every node's clients link (the only
// host address a node's namespace reaches), each with the same ports. The
// A record of an MX host is the address the query arrived at, so every
// node delivers to the sink through its own link, and the sink knows from
// the address a message arrived at which node delivered it (on 127.0.0.1
// every node shares one address and Node stays "").

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// The outside domains. Their MX is the sink, which answers each
// differently.
const (
	// RemoteDomain (above) is taken at once: 250 after DATA.
	//
	// BounceDomain's MX refuses every recipient with 550 5.1.1: the
	// cluster must bounce the message to its sender, a DSN in the
	// sender's INBOX.
	BounceDomain = "bounce.test"
	// DeferDomain's MX answers 451 4.3.2 to the first attempt for each
	// recipient and takes the next: the cluster must retry.
	DeferDomain = "defer.test"
)

// outsideDomains are the domains the sink serves.
var outsideDomains = []string{RemoteDomain, BounceDomain, DeferDomain}

// isOutside reports whether domain is one of the sink's domains.
func isOutside(domain string) bool {
	for _, d := range outsideDomains {
		if strings.EqualFold(domain, d) {
			return true
		}
	}
	return false
}

// SinkMsg is one message the sink took (after DATA) or one recipient it
// refused (at RCPT, with no DATA).
type SinkMsg struct {
	Time time.Time `json:"time"`
	// Node is the node that delivered it, known from the address it
	// arrived at in network namespaces; "" on 127.0.0.1.
	Node   string   `json:"node,omitempty"`
	Remote string   `json:"remote"` // the delivering client's address
	Helo   string   `json:"helo,omitempty"`
	From   string   `json:"from"`
	Rcpts  []string `json:"rcpts"`
	// ChaosID is the X-Chaos-Id header of a message taken, the local part
	// after "chaos-" of a recipient refused.
	ChaosID  string `json:"chaos_id"`
	BodyHash string `json:"body_hash,omitempty"`
	Reply    string `json:"reply"` // what the sink answered
}

// OutsideOptions configure StartOutside.
type OutsideOptions struct {
	// DropAfterAck, for negative controls: the sink answers 250 to the
	// first DropAfterAck messages and forgets them, as a remote that
	// loses what it acknowledged (the invariant must then fail).
	DropAfterAck int
}

// Outside is a running DNS server and SMTP sink. Safe for concurrent use.
type Outside struct {
	opts     OutsideOptions
	dnsPort  int
	smtpPort int
	smtp     *smtp.Server

	mu struct {
		sync.Mutex
		closed bool
		dns    []*dns.Server
		// The sockets themselves: closing them ends a server whose
		// goroutine has not started serving yet, which its own Shutdown
		// or Close would miss (it then served forever, and Close waited
		// for it: a scenario skipped at once hung the run).
		socks    []io.Closer
		nodeOf   map[string]string // listening IP -> the node that reaches it there
		received []SinkMsg
		refused  []SinkMsg
		tries    map[string]int // DeferDomain recipient -> RCPTs seen
		dropped  int
	}
	wg sync.WaitGroup
}

// StartOutside starts the DNS server (UDP and TCP) and the sink on
// 127.0.0.1, on ports free for both; Listen adds more addresses.
func StartOutside(opts OutsideOptions) (*Outside, error) {
	o := &Outside{opts: opts}
	o.mu.nodeOf = map[string]string{}
	o.mu.tries = map[string]int{}
	o.smtp = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{o: o, c: c}, nil
	}))
	o.smtp.Domain = "mx.outside.test"
	o.smtp.ReadTimeout, o.smtp.WriteTimeout = 30*time.Second, 30*time.Second
	o.smtp.MaxMessageBytes = 64 << 20
	o.smtp.MaxRecipients = 100
	var err error
	for tries := 0; tries < 10; tries++ {
		var ports []int
		if ports, err = launchFreePorts(2); err != nil {
			return nil, err
		}
		o.dnsPort, o.smtpPort = ports[0], ports[1]
		if err = o.Listen("127.0.0.1", ""); err == nil {
			return o, nil
		}
	}
	o.Close()
	return nil, fmt.Errorf("chaos: outside: %w", err)
}

// Listen adds the DNS server and the sink on ip (the same ports as on
// 127.0.0.1); node, if not "", is the node that reaches them there.
func (o *Outside) Listen(ip, node string) error {
	o.mu.Lock()
	if _, ok := o.mu.nodeOf[ip]; ok {
		// Listening there already (a launch tried again on the same
		// addresses): the node may be another.
		o.mu.nodeOf[ip] = node
		o.mu.Unlock()
		return nil
	}
	o.mu.Unlock()
	hp := func(port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	pc, err := net.ListenPacket("udp", hp(o.dnsPort))
	if err != nil {
		return fmt.Errorf("chaos: outside: DNS on %s: %w", ip, err)
	}
	tl, err := net.Listen("tcp", hp(o.dnsPort))
	if err != nil {
		pc.Close()
		return fmt.Errorf("chaos: outside: DNS on %s: %w", ip, err)
	}
	sl, err := net.Listen("tcp", hp(o.smtpPort))
	if err != nil {
		pc.Close()
		tl.Close()
		return fmt.Errorf("chaos: outside: SMTP on %s: %w", ip, err)
	}
	h := dns.HandlerFunc(o.serveDNS)
	udp := &dns.Server{PacketConn: pc, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	tcp := &dns.Server{Listener: tl, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	o.mu.Lock()
	if o.mu.closed {
		o.mu.Unlock()
		pc.Close()
		tl.Close()
		sl.Close()
		return errors.New("chaos: outside: closed")
	}
	o.mu.dns = append(o.mu.dns, udp, tcp)
	o.mu.socks = append(o.mu.socks, pc, tl, sl)
	o.mu.nodeOf[ip] = node
	o.wg.Add(3)
	o.mu.Unlock()
	go func() { defer o.wg.Done(); _ = udp.ActivateAndServe() }()
	go func() { defer o.wg.Done(); _ = tcp.ActivateAndServe() }()
	go func() { defer o.wg.Done(); _ = o.smtp.Serve(sl) }()
	return nil
}

// Resolver is the DNS server's address on ip, for --dns-resolver.
func (o *Outside) Resolver(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(o.dnsPort))
}

// SMTPPort is the sink's port, for --smtp-out-port.
func (o *Outside) SMTPPort() int { return o.smtpPort }

// Received returns what the sink took and refused so far, in order, and
// how many messages it dropped after a 250 (DropAfterAck).
func (o *Outside) Received() (received, refused []SinkMsg, dropped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]SinkMsg(nil), o.mu.received...), append([]SinkMsg(nil), o.mu.refused...), o.mu.dropped
}

// Close stops every listener and waits for the servers.
func (o *Outside) Close() {
	o.mu.Lock()
	if o.mu.closed {
		o.mu.Unlock()
		return
	}
	o.mu.closed = true
	servers, socks := o.mu.dns, o.mu.socks
	o.mu.Unlock()
	_ = o.smtp.Close()
	for _, s := range servers {
		_ = s.Shutdown()
	}
	for _, c := range socks {
		_ = c.Close()
	}
	o.wg.Wait()
}

// serveDNS answers MX for an outside domain with its MX host, and A for
// that host with the address the query arrived at; other names are
// NXDOMAIN, so SPF, DKIM and DMARC lookups of inbound mail end at once.
func (o *Outside) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	switch {
	case isOutside(name):
		if q.Qtype == dns.TypeMX {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 10, Mx: "mx." + name + "."})
		}
	case strings.HasPrefix(name, "mx.") && isOutside(strings.TrimPrefix(name, "mx.")):
		if q.Qtype == dns.TypeA {
			if ip := localIP(w.LocalAddr()); ip != nil && ip.To4() != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip.To4()})
			}
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func localIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.TCPAddr:
		return a.IP
	}
	return nil
}

// sinkSession is one SMTP session at the sink.
type sinkSession struct {
	o     *Outside
	c     *smtp.Conn
	from  string
	rcpts []string
}

func (s *sinkSession) msg(reply string) SinkMsg {
	m := SinkMsg{Time: time.Now(), From: s.from, Rcpts: append([]string(nil), s.rcpts...), Reply: reply, Helo: s.c.Hostname()}
	conn := s.c.Conn()
	m.Remote = conn.RemoteAddr().String()
	if ip := localIP(conn.LocalAddr()); ip != nil {
		s.o.mu.Lock()
		m.Node = s.o.mu.nodeOf[ip.String()]
		s.o.mu.Unlock()
	}
	return m
}

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, nil
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	local, domain, _ := strings.Cut(to, "@")
	refuse := func(code int, enh smtp.EnhancedCode, text string) error {
		m := s.msg(fmt.Sprintf("%d %d.%d.%d %s", code, enh[0], enh[1], enh[2], text))
		m.Rcpts, m.ChaosID = []string{to}, strings.TrimPrefix(local, "chaos-")
		s.o.mu.Lock()
		s.o.mu.refused = append(s.o.mu.refused, m)
		s.o.mu.Unlock()
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
	}
	switch {
	case strings.EqualFold(domain, BounceDomain):
		return refuse(550, smtp.EnhancedCode{5, 1, 1}, "no such user here")
	case strings.EqualFold(domain, DeferDomain):
		s.o.mu.Lock()
		s.o.mu.tries[strings.ToLower(to)]++
		first := s.o.mu.tries[strings.ToLower(to)] == 1
		s.o.mu.Unlock()
		if first {
			return refuse(451, smtp.EnhancedCode{4, 3, 2}, "try again later")
		}
	case !isOutside(domain):
		return refuse(550, smtp.EnhancedCode{5, 7, 1}, "relaying denied")
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return err
	}
	m := s.msg("250 2.0.0 taken")
	m.ChaosID, m.BodyHash = ChaosIDOf(b.Bytes()), BodyHash(b.Bytes())
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	if s.o.mu.dropped < s.o.opts.DropAfterAck {
		s.o.mu.dropped++
		return nil
	}
	s.o.mu.received = append(s.o.mu.received, m)
	return nil
}

func (s *sinkSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *sinkSession) Logout() error { return nil }
