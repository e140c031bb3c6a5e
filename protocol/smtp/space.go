package smtp

import (
	"errors"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/storage"
)

// storageRefusal maps a refusal of the local store (Store.CheckSpace) or
// of the blob write (the accept pipeline): below the free-space floor here
// or on too many peers is 452 4.3.1 (RFC 3463: insufficient system
// storage; RFC 5321 allows 452 for MAIL and DATA), so the client retries
// later or through another MX; anything else is the generic 451.
func storageRefusal(err error) *gosmtp.SMTPError {
	if errors.Is(err, storage.ErrInsufficientStorage) {
		return replyNoStorage
	}
	return replyTempFail
}

// declaredSize is the SIZE parameter of MAIL (RFC 1870), 0 without one.
func declaredSize(opts *gosmtp.MailOptions) int64 {
	if opts == nil {
		return 0
	}
	return opts.Size
}
