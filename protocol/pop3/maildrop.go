package pop3

import (
	"fmt"

	"github.com/raftmail/raftmail/storage"
)

// maildrop is a session's snapshot of an INBOX, taken at login.
type maildrop struct {
	mailboxID   uint64
	uidValidity uint32
	msgs        []dropMsg // message number i+1 is msgs[i], in UID order
}

type dropMsg struct {
	uid     uint32
	blob    storage.Hash
	size    int64
	deleted bool // marked by DELE
}

// loadMaildrop snapshots account's INBOX from the local store.
func loadMaildrop(st *storage.Store, account string) (*maildrop, error) {
	mb, err := st.Mailbox(account, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("pop3: open maildrop: %w", err)
	}
	msgs, err := st.Messages(mb.ID)
	if err != nil {
		return nil, fmt.Errorf("pop3: list maildrop: %w", err)
	}
	d := &maildrop{mailboxID: mb.ID, uidValidity: mb.UIDValidity, msgs: make([]dropMsg, len(msgs))}
	for i, m := range msgs {
		d.msgs[i] = dropMsg{uid: m.UID, blob: m.Blob, size: m.Size}
	}
	return d, nil
}

// stat returns the number and total size of messages not marked deleted.
func (d *maildrop) stat() (n int, size int64) {
	for _, m := range d.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

// uniqueID is a message's UIDL unique-id (RFC 1939 section 7): the INBOX's
// UIDVALIDITY and the message's UID, both assigned by the replicated state
// machine, so the same on every node and in every session.
func (d *maildrop) uniqueID(m *dropMsg) string {
	return fmt.Sprintf("%d.%d", d.uidValidity, m.uid)
}
