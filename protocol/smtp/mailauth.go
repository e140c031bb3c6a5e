package smtp

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/raftmail/raftmail/protocol/mailauth"
)

// mailAuthTimeout bounds the SPF, DKIM and DMARC lookups of one inbound
// message. What does not answer in time is a temperror, which never
// rejects.
const mailAuthTimeout = 10 * time.Second

// junkSpecialUse marks the mailbox a DMARC quarantine delivers to.
const junkSpecialUse = `\Junk`

// mailAuth applies email authentication to a received message. data is
// our Received header (its first hdr bytes) followed by the message as
// the client sent it.
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
func (ss *session) mailAuth(data []byte, hdr int, log *slog.Logger) (out []byte, junk bool, err error) {
	cfg := &ss.srv.cfg
	received, msg := data[:hdr], data[hdr:]
	switch {
	case cfg.Mode == ModeMX && cfg.MailAuth != nil:
		ctx, cancel := context.WithTimeout(ss.srv.ctx, mailAuthTimeout)
		defer cancel()
		res := cfg.MailAuth.Check(ctx, net.ParseIP(ss.ip), ss.helo, ss.from, msg)
		dkim := make([]string, len(res.DKIM))
		for i, d := range res.DKIM {
			dkim[i] = d.Result + ":" + d.Domain
		}
		log.Info("smtp: mail authentication", "ip", ss.ip, "helo", ss.helo, "from", ss.from,
			"spf", res.SPF.Result, "dkim", dkim, "dmarc", res.DMARC.Result,
			"header_from", res.DMARC.FromDomain, "disposition", res.Disposition())
		switch res.Disposition() {
		case mailauth.DispositionReject:
			return nil, false, reply(550, 5, 7, 1, "Rejected by DMARC policy of "+headerToken(res.DMARC.FromDomain))
		case mailauth.DispositionQuarantine:
			junk = true
		}
		msg = mailauth.StripAuthResults(msg, cfg.MailAuth.AuthServID)
		return join(received, []byte(res.Header()), msg), junk, nil

	case cfg.Mode == ModeSubmission && cfg.DKIMKeys != nil && ss.from != "":
		a, perr := ParseAddress(ss.from)
		if perr != nil {
			return data, false, nil // Mail checked it; cannot happen
		}
		keys := cfg.DKIMKeys(a.Domain)
		if len(keys) == 0 {
			return data, false, nil
		}
		signed, serr := mailauth.SignDKIM(msg, a.Domain, keys, time.Now())
		if serr != nil {
			log.Error("smtp: dkim signing failed", "domain", a.Domain, "err", serr)
			return nil, false, replyTempFail
		}
		return join(received, signed), false, nil
	}
	return data, false, nil
}

// join concatenates its arguments into a new slice.
func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

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
