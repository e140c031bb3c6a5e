package smtp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/mailauth"
)

// mailAuthTimeout bounds the SPF, DKIM and DMARC lookups of one inbound
// message. What does not answer in time is a temperror, which never
// rejects.
const mailAuthTimeout = 10 * time.Second

// junkSpecialUse marks the mailbox a DMARC quarantine delivers to.
const junkSpecialUse = `\Junk`

// mailAuth applies email authentication to a received message, m: its
// Prefix is our Received header, its Header and the body in the spool the
// message as the client sent it. The body is only read as a stream.
//
// ModeMX with Config.MailAuth (DESIGN.md "Accepting a message", 2.): check SPF,
// DKIM and DMARC on the message as it arrived, drop any
// Authentication-Results header that claims our authserv-id (RFC 8601
// §5), and add ours right after Received. A DMARC reject becomes a 550
// and nothing is stored; junk reports a quarantine.
//
// ModeSubmission with Config.DKIMKeys: sign with the keys of the MAIL
// FROM domain, the DKIM-Signature fields right after Received. A key
// that cannot sign is a temporary failure: mail that leaves unsigned is
// likely to be refused where DMARC is enforced.
func (ss *session) mailAuth(m *accept.Message, log *slog.Logger) (junk bool, err error) {
	cfg := &ss.srv.cfg
	var opened []io.Closer
	defer func() {
		for _, c := range opened {
			c.Close()
		}
	}()
	body := func() io.Reader {
		rc, err := m.Spool.Open(m.BodyOffset)
		if err != nil {
			return errReader{err}
		}
		opened = append(opened, rc)
		return rc
	}
	switch {
	case cfg.Mode == ModeMX && cfg.MailAuth != nil:
		ctx, cancel := context.WithTimeout(ss.srv.ctx, mailAuthTimeout)
		defer cancel()
		res := cfg.MailAuth.CheckMessage(ctx, net.ParseIP(ss.ip), ss.helo, ss.from, m.Header, body)
		dkim := make([]string, len(res.DKIM))
		for i, d := range res.DKIM {
			dkim[i] = d.Result + ":" + d.Domain
		}
		log.Info("smtp: mail authentication", "ip", ss.ip, "helo", ss.helo, "from", ss.from,
			"spf", res.SPF.Result, "dkim", dkim, "dmarc", res.DMARC.Result,
			"header_from", res.DMARC.FromDomain, "disposition", res.Disposition())
		switch res.Disposition() {
		case mailauth.DispositionReject:
			return false, reply(550, 5, 7, 1, "Rejected by DMARC policy of "+headerToken(res.DMARC.FromDomain))
		case mailauth.DispositionQuarantine:
			junk = true
		}
		m.Header = mailauth.StripAuthResults(m.Header, cfg.MailAuth.AuthServID)
		m.Prefix = append(m.Prefix, res.Header()...)
		return junk, nil

	case cfg.Mode == ModeSubmission && cfg.DKIMKeys != nil && ss.from != "":
		a, perr := ParseAddress(ss.from)
		if perr != nil {
			return false, nil // Mail checked it; cannot happen
		}
		keys := cfg.DKIMKeys(a.Domain)
		if len(keys) == 0 {
			return false, nil
		}
		sigs, serr := mailauth.SignDKIMMessage(m.Header, body(), a.Domain, keys, time.Now())
		if serr != nil {
			log.Error("smtp: dkim signing failed", "domain", a.Domain, "err", serr)
			return false, replyTempFail
		}
		m.Prefix = append(m.Prefix, sigs...)
		return false, nil
	}
	return false, nil
}

// errReader is a reader that fails with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// targetMailbox is where a message for account goes: INBOX, or for a
// quarantined message the account's \Junk mailbox ("Junk" unless the user
// renamed it), INBOX if it has none.
func (ss *session) targetMailbox(account string, junk bool) string {
	if !junk {
		return "INBOX"
	}
	mbs, err := ss.srv.cfg.Store.Mailboxes(account)
	if err != nil {
		return "INBOX"
	}
	name := ""
	for _, mb := range mbs {
		if mb.SpecialUse == junkSpecialUse {
			return mb.Name
		}
		if mb.Name == "Junk" {
			name = mb.Name
		}
	}
	if name != "" {
		return name
	}
	return "INBOX"
}
