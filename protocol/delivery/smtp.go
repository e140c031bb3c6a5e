package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/storage"
)

// outcome is what one attempt did for one recipient: delivered, failed
// (permanently), or pending (deferred), with the reply that says why.
type outcome struct {
	status string
	reply  string
}

func deferred(reply string) outcome  { return outcome{storage.QueuePending, reply} }
func failed(reply string) outcome    { return outcome{storage.QueueFailed, reply} }
func delivered(reply string) outcome { return outcome{storage.QueueDelivered, reply} }

// deliverEntry delivers the message of e to the pending recipients, one
// domain at a time (one connection per domain for all its recipients),
// and returns each recipient's outcome and a summary of the last error.
func (s *Service) deliverEntry(ctx context.Context, e storage.QueueEntry, pending []string, log *slog.Logger) (map[string]outcome, string) {
	out := make(map[string]outcome, len(pending))
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	data, err := s.cfg.Cluster.FetchBlob(fctx, e.Blob)
	cancel()
	if err != nil {
		reply := "451 4.3.0 message body not available on this node: " + errText(err)
		for _, r := range pending {
			out[r] = deferred(reply)
		}
		log.Warn("delivery: fetch message body", "err", err)
		return out, reply
	}
	var domains []string
	byDomain := map[string][]string{}
	for _, r := range pending {
		d := domainOf(r)
		if _, ok := byDomain[d]; !ok {
			domains = append(domains, d)
		}
		byDomain[d] = append(byDomain[d], r)
	}
	var lastErr string
	for _, d := range domains {
		if ctx.Err() != nil {
			for _, r := range byDomain[d] {
				out[r] = deferred("451 4.4.2 delivery interrupted")
			}
			continue
		}
		res, errSummary := s.deliverDomain(ctx, d, e.From, byDomain[d], data, log.With("domain", d))
		for r, o := range res {
			out[r] = o
		}
		if errSummary != "" {
			lastErr = errSummary
		}
	}
	return out, lastErr
}

// mxHost is one host to try, in order.
type mxHost struct {
	name     string
	implicit bool // no MX record: the domain's own address (RFC 5321 §5.1)
}

// lookupMX returns the hosts to try for domain in preference order (random
// among equal preferences, RFC 5321 §5.1), or a permanent or temporary
// failure reply.
func (s *Service) lookupMX(ctx context.Context, domain string) ([]mxHost, *outcome) {
	if domain == "" {
		o := failed("550 5.1.3 recipient address without a domain")
		return nil, &o
	}
	mxs, err := s.cfg.Resolver.LookupMX(ctx, domain)
	switch {
	case err != nil && mailauth.IsNotFound(err), err == nil && len(mxs) == 0:
		// No MX: the domain itself is the host, if it has an address
		// (RFC 5321 §5.1); the address lookup below tells.
		return []mxHost{{name: domain, implicit: true}}, nil
	case err != nil:
		o := deferred(fmt.Sprintf("451 4.4.3 MX lookup for %s failed: %v", domain, err))
		return nil, &o
	}
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		// Null MX (RFC 7505 §3): the domain accepts no mail.
		o := failed(fmt.Sprintf("556 5.1.10 domain %s accepts no mail (null MX)", domain))
		return nil, &o
	}
	mxs = slices.Clone(mxs)
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	var hosts []mxHost
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			continue
		}
		hosts = append(hosts, mxHost{name: h})
	}
	if len(hosts) == 0 {
		o := failed(fmt.Sprintf("556 5.1.10 domain %s accepts no mail (null MX)", domain))
		return nil, &o
	}
	return hosts, nil
}

// deliverDomain delivers to the recipients of one domain: MX hosts in
// order, each of their addresses in turn, until one host has taken a
// transaction (whatever it answered to each recipient). Recipients no host
// answered for are deferred.
func (s *Service) deliverDomain(ctx context.Context, domain, from string, rcpts []string, data []byte, log *slog.Logger) (map[string]outcome, string) {
	all := func(o outcome) map[string]outcome {
		out := make(map[string]outcome, len(rcpts))
		for _, r := range rcpts {
			out[r] = o
		}
		return out
	}
	hosts, fail := s.lookupMX(ctx, domain)
	if fail != nil {
		log.Info("delivery: MX lookup", "reply", fail.reply)
		return all(*fail), fail.reply
	}
	last := fmt.Sprintf("451 4.4.1 no MX host of %s could be reached", domain)
	for _, h := range hosts {
		ips, err := s.cfg.Resolver.LookupIPAddr(ctx, h.name)
		if err != nil || len(ips) == 0 {
			if h.implicit && (err == nil || mailauth.IsNotFound(err)) {
				// Neither MX nor address: the domain does not exist
				// for mail.
				o := failed(fmt.Sprintf("550 5.1.2 domain %s has no MX and no address", domain))
				return all(o), o.reply
			}
			last = fmt.Sprintf("451 4.4.3 address lookup for %s failed: %v", h.name, err)
			log.Info("delivery: address lookup", "host", h.name, "err", err)
			continue
		}
		for _, ip := range ips {
			if ctx.Err() != nil {
				return all(deferred("451 4.4.2 delivery interrupted")), "delivery interrupted"
			}
			res, err := s.deliverHost(ctx, h.name, ip.IP, from, rcpts, data, log)
			if err == nil {
				return res, summary(res)
			}
			last = fmt.Sprintf("451 4.4.1 %s[%s]: %v", h.name, ip.IP, err)
			log.Info("delivery: host failed, trying the next", "host", h.name, "ip", ip.IP.String(), "err", err)
		}
	}
	return all(deferred(last)), last
}

// summary is the LastError of an attempt: the first reply that was not a
// success.
func summary(res map[string]outcome) string {
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if res[k].status != storage.QueueDelivered {
			return k + ": " + res[k].reply
		}
	}
	return ""
}

// hostError means the host did not take the transaction (connection
// failed, greeting or EHLO or MAIL refused temporarily, TLS required but
// missing): try the next host.
type hostError struct{ err error }

func (e *hostError) Error() string { return e.err.Error() }
func (e *hostError) Unwrap() error { return e.err }

// deliverHost runs one SMTP transaction at host/ip: EHLO with our
// hostname, STARTTLS when offered (retrying in plain text once if the TLS
// handshake fails and TLS is not required), MAIL, RCPT per recipient, DATA
// once for every accepted recipient. A nil error means the host answered
// for every recipient (res says what); an error means try another host.
func (s *Service) deliverHost(ctx context.Context, host string, ip net.IP, from string, rcpts []string, data []byte, log *slog.Logger) (map[string]outcome, error) {
	res, err := s.transaction(ctx, host, ip, from, rcpts, data, true, log)
	var te *tlsError
	if errors.As(err, &te) && !s.cfg.RequireTLS {
		log.Info("delivery: STARTTLS failed, retrying without TLS", "host", host, "err", err)
		return s.transaction(ctx, host, ip, from, rcpts, data, false, log)
	}
	return res, err
}

type tlsError struct{ err error }

func (e *tlsError) Error() string { return "STARTTLS: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

func (s *Service) transaction(ctx context.Context, host string, ip net.IP, from string, rcpts []string, data []byte, useTLS bool, log *slog.Logger) (map[string]outcome, error) {
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(s.cfg.Port))
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &hostError{err}
	}
	// Abort a blocked exchange when the service stops.
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stopWatch()
	defer conn.Close()
	c := s.newClient(conn)
	if err := c.Hello(s.cfg.Hostname); err != nil {
		return nil, &hostError{err}
	}
	if ok, _ := c.Extension("STARTTLS"); ok && useTLS {
		tc := &tls.Config{ServerName: host, InsecureSkipVerify: !s.cfg.VerifyTLS, MinVersion: tls.VersionTLS12}
		tlsConn, err := startTLS(conn, tc, s.cfg.CommandTimeout)
		if err != nil {
			return nil, &tlsError{err}
		}
		// EHLO again over TLS (RFC 3207 §4.2), with our hostname.
		c = s.newClient(&greetedConn{Conn: tlsConn})
		if err := c.Hello(s.cfg.Hostname); err != nil {
			return nil, &tlsError{err}
		}
	} else if s.cfg.RequireTLS {
		_ = c.Quit()
		return nil, &hostError{errors.New("TLS required but STARTTLS not offered (4.7.10)")}
	}
	_, tlsOn := c.TLSConnectionState()
	log = log.With("host", host, "ip", ip.String(), "tls", tlsOn)

	out := make(map[string]outcome, len(rcpts))
	opts := &gosmtp.MailOptions{Size: int64(len(data))}
	if err := c.Mail(from, opts); err != nil {
		var se *gosmtp.SMTPError
		if errors.As(err, &se) && se.Code/100 == 5 {
			// The sender is refused here: no other MX will think
			// otherwise.
			for _, r := range rcpts {
				out[r] = failed(replyText(se, "MAIL FROM"))
			}
			_ = c.Quit()
			return out, nil
		}
		return nil, &hostError{err}
	}
	var accepted []string
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		if err == nil {
			accepted = append(accepted, r)
			continue
		}
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			// Connection lost: what was not answered is deferred.
			for _, r2 := range rcpts {
				if _, ok := out[r2]; !ok {
					out[r2] = deferred("451 4.4.2 connection lost: " + err.Error())
				}
			}
			return out, nil
		}
		if se.Code/100 == 5 {
			out[r] = failed(replyText(se, "RCPT TO"))
		} else {
			out[r] = deferred(replyText(se, "RCPT TO"))
		}
	}
	if len(accepted) == 0 {
		_ = c.Quit()
		return out, nil
	}
	dataOutcome := func(err error, stage string) {
		var se *gosmtp.SMTPError
		o := deferred("451 4.4.2 connection lost during " + stage + ": " + errText(err))
		if errors.As(err, &se) {
			if se.Code/100 == 5 {
				o = failed(replyText(se, stage))
			} else {
				o = deferred(replyText(se, stage))
			}
		}
		for _, r := range accepted {
			out[r] = o
		}
	}
	w, err := c.Data()
	if err != nil {
		dataOutcome(err, "DATA")
		return out, nil
	}
	if _, err := w.Write(data); err != nil {
		dataOutcome(err, "end of DATA")
		return out, nil
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		dataOutcome(err, "end of DATA")
		return out, nil
	}
	for _, r := range accepted {
		out[r] = delivered("250 " + resp.StatusText)
	}
	_ = c.Quit()
	log.Debug("delivery: transaction", "accepted", len(accepted), "of", len(rcpts))
	return out, nil
}

// replyText renders a server reply as "CODE X.Y.Z text (in reply to
// STAGE)".
func replyText(se *gosmtp.SMTPError, stage string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%03d", se.Code)
	if se.EnhancedCode != (gosmtp.EnhancedCode{}) && se.EnhancedCode != gosmtp.NoEnhancedCode {
		fmt.Fprintf(&b, " %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if msg := strings.Join(strings.Fields(se.Message), " "); msg != "" {
		b.WriteString(" ")
		b.WriteString(msg)
	}
	fmt.Fprintf(&b, " (in reply to %s)", stage)
	return b.String()
}

func (s *Service) newClient(conn net.Conn) *gosmtp.Client {
	c := gosmtp.NewClient(conn)
	c.CommandTimeout = s.cfg.CommandTimeout
	c.SubmissionTimeout = s.cfg.DataTimeout
	return c
}

// startTLS sends STARTTLS on conn, right after an EHLO exchange, and
// returns the TLS connection after the handshake. go-smtp v0.25.1's client
// has no exported STARTTLS on an open session, and its NewClientStartTLS
// says "EHLO localhost"; this keeps our hostname in both EHLOs. Nothing is
// buffered on conn at this point: the server says nothing between its EHLO
// reply and our next command, nor between its 220 and our ClientHello.
func startTLS(conn net.Conn, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return nil, err
	}
	line, err := readLine(conn)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "220") {
		return nil, fmt.Errorf("server refused STARTTLS: %s", line)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return tc, nil
}

// readLine reads one reply line byte by byte, so that nothing after it is
// consumed. Multi-line replies ("220-...") are read to their last line.
func readLine(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 4096 {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] != '\n' {
			line = append(line, b[0])
			continue
		}
		l := strings.TrimRight(string(line), "\r")
		if len(l) >= 4 && l[3] == '-' {
			line = line[:0]
			continue
		}
		return l, nil
	}
	return "", errors.New("reply line too long")
}

// greetedConn replays a 220 greeting before the real data, so a go-smtp
// client made on a connection that just switched to TLS (where the server
// sends no new greeting) reads one and goes straight to EHLO.
type greetedConn struct {
	net.Conn
	sent int
}

const fakeGreeting = "220 TLS established\r\n"

func (c *greetedConn) Read(b []byte) (int, error) {
	if c.sent < len(fakeGreeting) {
		n := copy(b, fakeGreeting[c.sent:])
		c.sent += n
		return n, nil
	}
	return c.Conn.Read(b)
}
