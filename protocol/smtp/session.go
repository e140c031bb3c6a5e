package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// session is one SMTP connection's state between EHLO (or STARTTLS, which
// starts a new session) and the end of the connection.
type session struct {
	srv  *Server
	gc   *gosmtp.Conn
	conn *conn // the accepted connection, below TLS
	log  *slog.Logger
	tls  bool
	ip   string

	account string // authenticated account, "" if none

	// The current transaction; reset by Reset.
	hasFrom  bool
	from     string // reverse-path as given; "" is the null sender
	helo     string // HELO/EHLO name at MAIL time
	utf8     bool   // MAIL ... SMTPUTF8
	declared int64  // MAIL ... SIZE=
	rcpts    int    // accepted RCPT commands
	first    string // the first accepted recipient, as given
	local    []string
	remote   []string
}

var (
	_ gosmtp.Session     = (*session)(nil)
	_ gosmtp.AuthSession = (*session)(nil)
)

func (s *Server) newSession(gc *gosmtp.Conn) (gosmtp.Session, error) {
	nc := gc.Conn()
	_, isTLS := nc.(*tls.Conn)
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok {
		return nil, errors.New("smtp: connection not accepted through Serve")
	}
	ip := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP.String()
	} else if h, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		ip = h
	}
	sess := &session{
		srv:  s,
		gc:   gc,
		conn: c,
		tls:  isTLS,
		ip:   ip,
		log:  s.log.With("cid", c.id),
	}
	sess.log.Debug("smtp session", "ip", ip, "helo", gc.Hostname(), "tls", isTLS)
	return sess, nil
}

// Reset discards the current transaction.
func (ss *session) Reset() {
	ss.hasFrom, ss.from, ss.helo, ss.utf8, ss.declared = false, "", "", false, 0
	ss.rcpts, ss.first, ss.local, ss.remote = 0, "", nil, nil
}

// Logout ends the session.
func (ss *session) Logout() error { return nil }

// AuthMechanisms lists AUTH mechanisms for EHLO: none on MX, and on
// submission none until TLS is up (RFC 4954 §4; RFC 8314).
func (ss *session) AuthMechanisms() []string {
	if ss.srv.cfg.Mode != ModeSubmission || !ss.tls {
		return nil
	}
	return []string{sasl.Plain, auth.LoginMechanism}
}

// Auth starts an AUTH exchange.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.srv.cfg.Mode != ModeSubmission {
		return nil, replyAuthNotEnabled
	}
	if !ss.tls {
		return nil, replyNeedTLS
	}
	if ss.hasFrom {
		return nil, replyAuthInTransaction
	}
	switch mech {
	case sasl.Plain:
		return saslServer{sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				// No authorization identities other than oneself.
				ss.log.Info("AUTH PLAIN with a foreign authorization identity refused", "user", username)
				return replyAuthFailed
			}
			return ss.login(username, password)
		})}, nil
	case auth.LoginMechanism:
		return saslServer{auth.NewLoginServer(ss.login)}, nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

func (ss *session) login(username, password string) error {
	ctx, cancel := context.WithTimeout(ss.srv.ctx, time.Minute)
	defer cancel()
	acct, err := ss.srv.cfg.Auth.Authenticate(ctx, ss.ip, username, password)
	switch {
	case err == nil:
		ss.account = acct.Address
		ss.log = ss.log.With("user", acct.Address)
		ss.log.Info("smtp login", "ip", ss.ip)
		return nil
	case errors.Is(err, auth.ErrFailed):
		return replyAuthFailed
	case errors.Is(err, auth.ErrLocked):
		return replyAuthLocked
	}
	ss.log.Error("smtp login: credential check failed", "err", err)
	return replyAuthTemp
}

// saslServer maps errors of a SASL mechanism that are not already SMTP
// replies (malformed responses) to 501 5.5.2, since go-smtp writes any
// other error's text verbatim.
type saslServer struct{ sasl.Server }

func (s saslServer) Next(response []byte) ([]byte, bool, error) {
	ch, done, err := s.Server.Next(response)
	if err != nil {
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			err = replyAuthSyntax
		} else {
			err = se // go-smtp needs the bare *SMTPError
		}
	}
	return ch, done, err
}

// Mail starts a transaction.
func (ss *session) Mail(from string, opts *gosmtp.MailOptions) error {
	sub := ss.srv.cfg.Mode == ModeSubmission
	if sub && ss.account == "" {
		return replyAuthRequired
	}
	utf8 := opts != nil && opts.UTF8
	if from != "" {
		a, err := ParseAddress(from)
		if err != nil {
			return replyBadSender
		}
		if !a.ASCII() && !utf8 {
			return replyNeedUTF8
		}
		if sub && ss.srv.cfg.SenderCheck.envelope() {
			ok, err := ss.mayUseSender(a)
			if err != nil {
				ss.log.Error("smtp: look up sender", "err", err)
				return replyTempFail
			}
			if !ok {
				ss.log.Info("smtp: sender not owned by user", "from", from)
				return replySenderNotOwned
			}
		}
	} else if sub && ss.srv.cfg.SenderCheck.envelope() {
		return replySenderNotOwned
	}
	if err := ss.srv.cfg.Store.CheckSpace(declaredSize(opts)); err != nil {
		return storageRefusal(err)
	}
	ss.Reset()
	ss.hasFrom, ss.from, ss.utf8 = true, from, utf8
	ss.helo = ss.gc.Hostname()
	if opts != nil {
		ss.declared = opts.Size
	}
	return nil
}

// Rcpt adds a recipient.
func (ss *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if ss.rcpts >= ss.srv.cfg.MaxRecipients {
		return replyTooManyRcpts
	}
	a, err := ParseAddress(to)
	if err != nil {
		return replyBadRcpt
	}
	if !a.ASCII() && !ss.utf8 {
		return replyNeedUTF8
	}
	st := ss.srv.cfg.Store
	_, err = st.Domain(a.Domain)
	switch {
	case err == nil:
		targets, err := st.ResolveRecipient(a.Key())
		if errors.Is(err, storage.ErrNotFound) {
			return replyUnknownUser
		}
		if err != nil {
			ss.log.Error("smtp: resolve recipient", "err", err)
			return replyTempFail
		}
		for _, t := range targets {
			full, err := ss.mailboxFull(t)
			if err != nil {
				ss.log.Error("smtp: read account", "err", err)
				return replyTempFail
			}
			if full {
				return replyMailboxFull
			}
		}
		for _, t := range targets {
			if !slices.Contains(ss.local, t) {
				ss.local = append(ss.local, t)
			}
		}
	case errors.Is(err, storage.ErrNotFound):
		// Not ours. Only an authenticated submission may relay, and MX
		// never authenticates.
		if ss.srv.cfg.Mode != ModeSubmission || ss.account == "" {
			ss.log.Info("smtp: relay denied", "ip", ss.ip, "rcpt", to)
			return replyRelayDenied
		}
		r := a.String()
		if !slices.Contains(ss.remote, r) {
			ss.remote = append(ss.remote, r)
		}
	default:
		ss.log.Error("smtp: look up domain", "err", err)
		return replyTempFail
	}
	ss.rcpts++
	if ss.rcpts == 1 {
		ss.first = a.String()
	}
	return nil
}

// mailboxFull reports whether account is already at or over its quota,
// so that RCPT can refuse at once rather than after the data.
func (ss *session) mailboxFull(account string) (bool, error) {
	a, err := ss.srv.cfg.Store.Account(account)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil // removed meanwhile; Deliver will tell
	}
	if err != nil {
		return false, err
	}
	return a.QuotaBytes > 0 && a.UsedBytes >= a.QuotaBytes, nil
}

// errConnClosed is returned by Data after it closed the connection without
// a reply; go-smtp's attempt to write one fails on the closed connection.
var errConnClosed = errors.New("smtp: connection closed: outcome of the commit unknown")

// Data receives the message and commits it (DESIGN.md "Accepting a
// message"): stream it into a spool within the size limit, build the
// Received header, check or sign it (mailauth.go), then the accept
// pipeline stores the body on a majority and proposes one Deliver; only
// then 250.
func (ss *session) Data(r io.Reader) error {
	ss.conn.setBusy(true)
	defer ss.conn.setBusy(false)
	cfg := &ss.srv.cfg

	queueID, err := newQueueID()
	if err != nil {
		ss.log.Error("smtp: queue id", "err", err)
		return replyTempFail
	}
	log := ss.log.With("queue_id", queueID)

	sp := cfg.Accept.NewSpool(cfg.MaxMessageBytes, ss.declared, ss.account == "")
	defer sp.Close()
	extend := func() { _ = ss.conn.SetReadDeadline(time.Now().Add(cfg.ReadTimeout)) }
	if err := readMessage(sp, r, extend); err != nil {
		switch {
		case errors.Is(err, accept.ErrTooBig), errors.Is(err, gosmtp.ErrDataTooLarge):
			log.Info("smtp: message too big", "limit", cfg.MaxMessageBytes)
			return replyTooBig
		case errors.Is(err, errBareLF):
			log.Info("smtp: bare LF in message data refused")
			return replyBareLF
		case errors.Is(err, accept.ErrBusy):
			log.Warn("smtp: unauthenticated mail in flight over the node's budget: try later", "ip", ss.ip, "bytes", sp.Size())
			return replyBusy
		}
		log.Info("smtp: message not received", "err", err, "bytes", sp.Size())
		return replyTempFail
	}
	if ss.conn.readFailed.Load() {
		// go-smtp v0.25.1 ends a BDAT chunk cut short by the end of the
		// connection as if it were complete, and the message with it
		// when that chunk was LAST. A read error on the connection
		// before the message ended means the client went away: store
		// nothing.
		log.Info("smtp: connection ended inside the message, nothing stored", "bytes", sp.Size())
		return replyTempFail
	}
	hdr, err := sp.Header()
	if err != nil {
		log.Info("smtp: message refused", "err", err)
		return replyHeaderTooLong
	}
	if cfg.Mode == ModeSubmission {
		if r := ss.checkHeaderFrom(hdr, log); r != nil {
			return r
		}
	}
	var received bytes.Buffer
	writeReceived(&received, receivedInfo{
		helo:     ss.helo,
		ip:       ss.ip,
		hostname: cfg.Hostname,
		node:     cfg.NodeName,
		proto:    ss.protocol(),
		queueID:  queueID,
		rcpt:     ss.single(),
		date:     time.Now(),
	})
	msg := accept.Message{Prefix: received.Bytes(), Header: hdr, Spool: sp, BodyOffset: int64(len(hdr))}
	// SPF/DKIM/DMARC on MX, DKIM signing on submission (mailauth.go).
	junk, aerr := ss.mailAuth(&msg, log)
	if aerr != nil {
		return aerr
	}

	ctx, cancel := context.WithTimeout(ss.srv.ctx, cfg.CommitTimeout)
	defer cancel()
	var d storage.Deliver
	build := func(st accept.Stored) (storage.Deliver, error) {
		d = storage.Deliver{QueueID: queueID, Blob: st.Hash, Size: st.Size}
		for _, a := range ss.local {
			d.Targets = append(d.Targets, storage.DeliverTarget{Account: a, Mailbox: ss.targetMailbox(a, junk)})
		}
		if len(ss.remote) > 0 {
			q := &storage.QueueEntry{ID: queueID, Blob: st.Hash, Size: st.Size, From: ss.from}
			for _, rc := range ss.remote {
				q.Recipients = append(q.Recipients, storage.QueueRecipient{Address: rc, Status: "pending"})
			}
			d.Remote = q
		}
		return d, nil
	}
	if ackEarly {
		// Only with -tags chaos_ack_early, the chaos suite's negative
		// control: 250 before the commit (ackearly_chaos.go).
		st, out, err := cfg.Accept.Store(ctx, msg)
		if out != accept.Accepted {
			log.Warn("smtp: store blob failed", "err", err)
			return replyTempFail
		}
		d, _ := build(st)
		cmd, err := storage.NewCommand(storage.CmdDeliver, d)
		if err != nil {
			return replyTempFail
		}
		ss.commitLater(cmd, log)
		return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + queueID}
	}
	_, out, err := cfg.Accept.Commit(ctx, msg, build)
	switch out {
	case accept.Accepted:
		log.Info("smtp: message accepted", "from", ss.from, "local", len(d.Targets), "remote", len(ss.remote), "size", d.Size)
		return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + queueID}
	case accept.Unknown:
		// RFC 5321 §4.2.5 / DESIGN.md "The promise": the message may be
		// delivered, so neither 250 nor 4xx is true. Close without a
		// reply; the client will retry and a duplicate is possible, a
		// loss is not.
		log.Error("smtp: deliver outcome unknown, closing connection without reply", "err", err)
		_ = ss.conn.Conn.Close()
		return errConnClosed
	case accept.OverQuota:
		log.Info("smtp: refused, over quota", "err", err)
		return replyMailboxFull
	case accept.NoSpace:
		log.Warn("smtp: refused, no disk space for the message", "err", err)
		return replyNoStorage
	case accept.Refused:
		log.Error("smtp: deliver refused", "err", err)
		return replyTempFail
	}
	log.Warn("smtp: message not committed", "err", err)
	return replyTempFail
}

// single is the recipient named in Received when there is exactly one.
func (ss *session) single() string {
	if ss.rcpts == 1 {
		return ss.first
	}
	return ""
}

// protocol is the Received "with" keyword (RFC 3848).
func (ss *session) protocol() string {
	p := "ESMTP"
	if ss.tls {
		p += "S"
	}
	if ss.account != "" {
		p += "A"
	}
	return p
}
