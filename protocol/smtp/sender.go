package smtp

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/storage"
)

// SenderCheck says what of a submitted message must name an address the
// authenticated user owns: their account, or an alias that delivers to
// it. Recipients see the From header field; the envelope sender gets the
// bounces. Checking both is what keeps one user from writing as another.
type SenderCheck int

const (
	// SenderCheckBoth checks MAIL FROM and every address of the From
	// header field. The zero value, and the default.
	SenderCheckBoth SenderCheck = iota
	// SenderCheckEnvelope checks MAIL FROM only (Postfix's
	// reject_sender_login_mismatch).
	SenderCheckEnvelope
	// SenderCheckHeader checks the From header field only.
	SenderCheckHeader
	// SenderCheckOff checks neither: any authenticated user may send as
	// anyone, the null sender included.
	SenderCheckOff
)

var senderCheckNames = []string{"both", "envelope", "header", "off"}

func (c SenderCheck) String() string {
	if c >= 0 && int(c) < len(senderCheckNames) {
		return senderCheckNames[c]
	}
	return fmt.Sprintf("SenderCheck(%d)", int(c))
}

// ParseSenderCheck reads "both", "envelope", "header" or "off".
func ParseSenderCheck(s string) (SenderCheck, error) {
	if i := slices.Index(senderCheckNames, s); i >= 0 {
		return SenderCheck(i), nil
	}
	return 0, fmt.Errorf("smtp: sender check %q: want both, envelope, header or off", s)
}

func (c SenderCheck) envelope() bool { return c == SenderCheckBoth || c == SenderCheckEnvelope }
func (c SenderCheck) header() bool   { return c == SenderCheckBoth || c == SenderCheckHeader }

// checkHeaderFrom applies the header part of Config.SenderCheck to a
// submitted message's header block: the From field must be there once
// and every address in it (RFC 5322 allows several) must be the user's.
// A message without a usable From is refused like mox does, 550 5.6.0:
// RFC 5322 §3.6 requires the field, and the MSA cannot make one up (RFC
// 6409 §8 adds Date, Message-ID and Sender, never From); DKIM could not
// sign without it either (RFC 6376 §5.4). Not owned: 550 5.7.1.
func (ss *session) checkHeaderFrom(hdr []byte, log *slog.Logger) *gosmtp.SMTPError {
	if !ss.srv.cfg.SenderCheck.header() {
		return nil
	}
	addrs, err := mailauth.FromAddresses(hdr)
	switch {
	case errors.Is(err, mailauth.ErrManyFrom):
		log.Info("smtp: submission refused: more than one From field", "user", ss.account)
		return replyManyFrom
	case err != nil:
		log.Info("smtp: submission refused: no usable From field", "user", ss.account, "err", err)
		return replyNoFrom
	}
	for _, s := range addrs {
		ok := false
		if a, err := ParseAddress(s); err == nil {
			ok, err = ss.mayUseSender(a)
			if err != nil {
				log.Error("smtp: look up sender", "err", err)
				return replyTempFail
			}
		}
		if !ok {
			log.Info("smtp: submission refused: From address not owned by user", "user", ss.account, "header_from", s)
			return replyFromNotOwned
		}
	}
	return nil
}

// mayUseSender reports whether the authenticated account may send as a:
// its own address, or an alias that delivers to it.
func (ss *session) mayUseSender(a Address) (bool, error) {
	key := a.Key()
	if key == ss.account {
		return true, nil
	}
	al, err := ss.srv.cfg.Store.Alias(key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return slices.Contains(al.Targets, ss.account), nil
}
