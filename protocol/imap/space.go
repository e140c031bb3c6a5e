package imap

import (
	"errors"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/storage"
)

// errNoSpace is Dovecot's answer when its disk is full (RFC 5530
// OVERQUOTA): the client keeps the message and tries again later.
var errNoSpace = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeOverQuota, "Not enough disk space")

// storageRefusal maps a refusal of Store.CheckSpace: below the node's
// free-space floor is errNoSpace; a failed store is a temporary failure.
func (s *session) storageRefusal(err error) error {
	if errors.Is(err, storage.ErrInsufficientStorage) {
		return errNoSpace
	}
	return s.internal("append: check space", err)
}
