package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// Reads. Each read sees one committed state: point reads use a single Get,
// list reads a single iterator (a point-in-time view).

func (s *Store) getJSON(key []byte, v any, what string) error {
	raw, c, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("storage: read %s: %w", what, err)
	}
	defer c.Close()
	if err := decodeRecord(raw, v); err != nil {
		return fmt.Errorf("storage: decode %s: %v: %w", what, err, ErrCorrupt)
	}
	return nil
}

// list decodes every value with prefix p.
func list[T any](s *Store, p []byte) ([]T, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("storage: iterate: %w", err)
	}
	var out []T
	for ok := it.First(); ok; ok = it.Next() {
		var v T
		if err := decodeRecord(it.Value(), &v); err != nil {
			it.Close()
			return nil, fmt.Errorf("storage: decode %q: %v: %w", it.Key(), err, ErrCorrupt)
		}
		out = append(out, v)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("storage: iterate: %w", err)
	}
	return out, nil
}

// Domain returns a domain (name compared case-insensitively).
func (s *Store) Domain(name string) (Domain, error) {
	var d Domain
	return d, s.getJSON(domainKey(strings.ToLower(name)), &d, fmt.Sprintf("domain %q", name))
}

// Domains returns every domain by name.
func (s *Store) Domains() ([]Domain, error) { return list[Domain](s, metaKey(tDomain)) }

// Account returns an account (address compared case-insensitively).
func (s *Store) Account(addr string) (Account, error) {
	var a Account
	return a, s.getJSON(accountKey(strings.ToLower(addr)), &a, fmt.Sprintf("account %q", addr))
}

// Accounts returns the accounts of domain ("" = all), by domain then local
// part.
func (s *Store) Accounts(domain string) ([]Account, error) {
	return list[Account](s, accountDomainPrefix(strings.ToLower(domain)))
}

// Alias returns an alias.
func (s *Store) Alias(addr string) (Alias, error) {
	var a Alias
	return a, s.getJSON(aliasKey(strings.ToLower(addr)), &a, fmt.Sprintf("alias %q", addr))
}

// Aliases returns the aliases of domain ("" = all).
func (s *Store) Aliases(domain string) ([]Alias, error) {
	return list[Alias](s, aliasDomainPrefix(strings.ToLower(domain)))
}

// ResolveRecipient returns the account addresses that mail to addr goes
// to: the account itself, or an alias's targets. ErrNotFound otherwise.
func (s *Store) ResolveRecipient(addr string) ([]string, error) {
	a := strings.ToLower(addr)
	if _, err := s.Account(a); err == nil {
		return []string{a}, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	al, err := s.Alias(a)
	if err != nil {
		return nil, fmt.Errorf("recipient %q: %w", addr, err)
	}
	return al.Targets, nil
}

// dummyHash is checked when an account does not exist, so that a failed
// login takes as long for unknown users as for wrong passwords.
var dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// Authenticate checks password against the account's password and its app
// passwords. Any failure, including an unknown account, is ErrAuthFailed.
func (s *Store) Authenticate(addr, password string) (Account, error) {
	a, err := s.Account(addr)
	if err != nil {
		CheckPassword(dummyHash, password)
		if errors.Is(err, ErrNotFound) {
			return Account{}, ErrAuthFailed
		}
		return Account{}, err
	}
	if a.PasswordHash != "" && CheckPassword(a.PasswordHash, password) {
		return a, nil
	}
	for _, ap := range a.AppPasswords {
		if CheckPassword(ap.Hash, password) {
			return a, nil
		}
	}
	return Account{}, ErrAuthFailed
}

// Mailboxes returns an account's mailboxes by name.
func (s *Store) Mailboxes(account string) ([]Mailbox, error) {
	p := mailboxNamePrefix(strings.ToLower(account))
	snap := s.db.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("storage: iterate: %w", err)
	}
	var ids []uint64
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Value()) != 8 {
			it.Close()
			return nil, fmt.Errorf("storage: mailbox index %q: %w", it.Key(), ErrCorrupt)
		}
		ids = append(ids, binary.BigEndian.Uint64(it.Value()))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("storage: iterate: %w", err)
	}
	out := make([]Mailbox, 0, len(ids))
	for _, id := range ids {
		raw, c, err := snap.Get(mailboxKey(id))
		if err != nil {
			return nil, fmt.Errorf("storage: mailbox %d: %v: %w", id, err, ErrCorrupt)
		}
		var mb Mailbox
		err = json.Unmarshal(raw, &mb)
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("storage: decode mailbox %d: %v: %w", id, err, ErrCorrupt)
		}
		out = append(out, mb)
	}
	return out, nil
}

// Mailbox returns an account's mailbox by name (any case of INBOX).
func (s *Store) Mailbox(account, name string) (Mailbox, error) {
	n, err := normMailbox(name)
	if err != nil {
		return Mailbox{}, err
	}
	what := fmt.Sprintf("mailbox %q of %q", name, account)
	snap := s.db.NewSnapshot()
	defer snap.Close()
	raw, c, err := snap.Get(mailboxNameKey(strings.ToLower(account), n))
	if errors.Is(err, pebble.ErrNotFound) {
		return Mailbox{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("storage: read %s: %w", what, err)
	}
	if len(raw) != 8 {
		c.Close()
		return Mailbox{}, fmt.Errorf("storage: %s index: %w", what, ErrCorrupt)
	}
	id := binary.BigEndian.Uint64(raw)
	c.Close()
	raw, c, err = snap.Get(mailboxKey(id))
	if err != nil {
		return Mailbox{}, fmt.Errorf("storage: read %s: %v: %w", what, err, ErrCorrupt)
	}
	defer c.Close()
	var mb Mailbox
	if err := json.Unmarshal(raw, &mb); err != nil {
		return Mailbox{}, fmt.Errorf("storage: decode %s: %v: %w", what, err, ErrCorrupt)
	}
	return mb, nil
}

// MailboxByID returns a mailbox by ID.
func (s *Store) MailboxByID(id uint64) (Mailbox, error) {
	var mb Mailbox
	return mb, s.getJSON(mailboxKey(id), &mb, fmt.Sprintf("mailbox %d", id))
}

// Messages returns a mailbox's messages in UID order.
func (s *Store) Messages(mailboxID uint64) ([]Message, error) {
	return list[Message](s, messagePrefix(mailboxID))
}

// Message returns one message.
func (s *Store) Message(mailboxID uint64, uid uint32) (Message, error) {
	var m Message
	return m, s.getJSON(messageKey(mailboxID, uid), &m, fmt.Sprintf("message %d/%d", mailboxID, uid))
}

// QueueEntries returns the outbound queue by ID.
func (s *Store) QueueEntries() ([]QueueEntry, error) { return list[QueueEntry](s, metaKey(tQueue)) }

// QueueEntry returns one queue entry.
func (s *Store) QueueEntry(id string) (QueueEntry, error) {
	var q QueueEntry
	return q, s.getJSON(queueKey(id), &q, fmt.Sprintf("queue entry %q", id))
}

// Tokens returns the join tokens by ID.
func (s *Store) Tokens() ([]JoinToken, error) { return list[JoinToken](s, metaKey(tToken)) }

// Token returns one join token.
func (s *Store) Token(id string) (JoinToken, error) {
	var t JoinToken
	return t, s.getJSON(tokenKey(id), &t, fmt.Sprintf("token %q", id))
}

// NodeCerts returns the recorded node certificates by serial.
func (s *Store) NodeCerts() ([]NodeCert, error) { return list[NodeCert](s, metaKey(tCert)) }

// Setting returns a cluster setting; ErrNotFound if unset.
func (s *Store) Setting(key string) ([]byte, error) {
	return s.getCopy(settingKey(key), fmt.Sprintf("setting %q", key))
}

// getCopy returns a copy of key's value; ErrNotFound names it as what.
func (s *Store) getCopy(key []byte, what string) ([]byte, error) {
	v, c, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read %s: %w", what, err)
	}
	defer c.Close()
	return append([]byte(nil), v...), nil
}

// StateHash returns the SHA-256 of every metadata key and value in key
// order, and the applied index it was taken at. Nodes that applied the
// same log have the same hash.
func (s *Store) StateHash() (Hash, uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: metaStart, UpperBound: metaEnd})
	if err != nil {
		return Hash{}, 0, fmt.Errorf("storage: iterate: %w", err)
	}
	h := sha256.New()
	var idx uint64
	var buf []byte
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if string(k) == string(keyApplied) && len(v) == 8 {
			idx = binary.BigEndian.Uint64(v)
		}
		buf = binary.AppendUvarint(buf[:0], uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		h.Write(buf)
		h.Write(v)
	}
	if err := it.Close(); err != nil {
		return Hash{}, 0, fmt.Errorf("storage: iterate: %w", err)
	}
	var out Hash
	h.Sum(out[:0])
	return out, idx, nil
}
