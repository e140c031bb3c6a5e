package storage

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors. Results of Apply carry them as codes (see [Result.Err]).
var (
	ErrNotFound   = errors.New("storage: not found")
	ErrExists     = errors.New("storage: already exists")
	ErrInvalid    = errors.New("storage: invalid")
	ErrNotEmpty   = errors.New("storage: not empty")
	ErrOverQuota  = errors.New("storage: over quota")
	ErrAuthFailed = errors.New("storage: authentication failed")
	ErrCorrupt    = errors.New("storage: corrupt")
	// ErrClosed is returned by WaitApplied once the store is closed.
	ErrClosed = errors.New("storage: closed")
	// ErrOverflow is reported by Subscription.Err when the subscriber fell
	// behind and was dropped.
	ErrOverflow = errors.New("storage: subscription overflowed")
)

var codes = []struct {
	code string
	err  error
}{
	{"not_found", ErrNotFound},
	{"exists", ErrExists},
	{"invalid", ErrInvalid},
	{"not_empty", ErrNotEmpty},
	{"over_quota", ErrOverQuota},
	{"auth_failed", ErrAuthFailed},
	{"corrupt", ErrCorrupt},
}

// Result is the outcome of one applied command. It is stored in the
// de-duplication table, so it must be deterministic.
type Result struct {
	Code string          `json:"code,omitempty"` // "" on success
	Msg  string          `json:"msg,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// ResultError is the error of a failed [Result]. It matches the sentinel
// named by its code with errors.Is.
type ResultError struct{ Code, Msg string }

func (e *ResultError) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	if s := sentinel(e.Code); s != nil {
		return s.Error()
	}
	return "storage: " + e.Code
}

// Is reports whether target is the sentinel of e's code.
func (e *ResultError) Is(target error) bool {
	s := sentinel(e.Code)
	return s != nil && s == target
}

func sentinel(code string) error {
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

// Err returns nil on success, else a *ResultError.
func (r Result) Err() error {
	if r.Code == "" {
		return nil
	}
	return &ResultError{Code: r.Code, Msg: r.Msg}
}

// Decode unmarshals r.Data into v.
func (r Result) Decode(v any) error {
	if err := r.Err(); err != nil {
		return err
	}
	if len(r.Data) == 0 {
		return fmt.Errorf("storage: result has no data: %w", ErrInvalid)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("storage: decode result: %w", err)
	}
	return nil
}

// errResult turns a handler error into a Result. Errors that wrap no
// sentinel become ErrInvalid.
func errResult(err error) Result {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return Result{Code: c.code, Msg: err.Error()}
		}
	}
	return Result{Code: "invalid", Msg: err.Error()}
}

// Hash is the SHA-256 of a blob.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeroes (no blob).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("parse hash %q: want %d hex digits: %w", s, 2*len(h), ErrInvalid)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("parse hash %q: %v: %w", s, err, ErrInvalid)
	}
	return h, nil
}

// MarshalText encodes h as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes hex.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Read models. Times are UTC.

// Domain is a mail domain served by the cluster.
type Domain struct {
	Name    string
	Created time.Time
	// DKIM is the domain's DKIM selectors in the order they were added.
	// Empty for domains added before DKIM keys existed (and omitted from
	// the stored JSON then, so those records are unchanged).
	DKIM []DKIMSelector `json:",omitempty"`
}

// DKIMSelector is one DKIM key of a domain. Every node signs with the same
// keys because they live here, in the replicated store.
type DKIMSelector struct {
	Selector      string    // DNS label: the key is published at <Selector>._domainkey.<domain>
	Algorithm     string    // "ed25519" or "rsa"
	PrivateKeyPEM []byte    // nil once retired
	Created       time.Time // the command time of the domain add or rotation
	// Signing: new mail is signed with this key. A selector that stopped
	// signing after a rotation stays published until retired.
	Signing bool
	// Retired: no longer published and its key is gone; the name stays
	// reserved so it is never reused for another key.
	Retired bool `json:",omitempty"`
}

// AppPassword is a named extra password of an account.
type AppPassword struct {
	Name    string
	Hash    string
	Created time.Time
}

// Account is a mail user. Address is lower case.
type Account struct {
	Address      string
	PasswordHash string
	QuotaBytes   int64 // 0 = unlimited
	UsedBytes    int64
	AppPasswords []AppPassword // sorted by name
	Created      time.Time
}

// Alias forwards an address to accounts.
type Alias struct {
	Address string
	Targets []string // sorted account addresses
}

// Mailbox is an IMAP mailbox.
type Mailbox struct {
	ID            uint64
	Account       string
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string
	Subscribed    bool
	Messages      uint32
	Size          int64
}

// Message is one message in a mailbox.
type Message struct {
	MailboxID    uint64
	UID          uint32
	Blob         Hash
	Size         int64
	InternalDate time.Time
	Flags        []string // sorted
	ModSeq       uint64
}

// JoinToken lets a new node join the cluster.
type JoinToken struct {
	ID          string
	SecretHash  []byte
	Created     time.Time
	Expires     time.Time
	Revoked     bool
	Description string
	// MaxUses is how many nodes the token may admit; 0 (a token recorded
	// before tokens were counted) counts as 1.
	MaxUses int `json:",omitempty"`
	// UsedBy names the nodes it admitted, in order.
	UsedBy []string `json:",omitempty"`
}

// Uses is how many nodes the token has admitted.
func (t JoinToken) Uses() int { return len(t.UsedBy) }

// Limit is how many nodes the token may admit.
func (t JoinToken) Limit() int { return max(t.MaxUses, 1) }

// NodeCert is a node certificate the cluster issued, by serial number.
// Revoked ones are refused on the cluster port; a record is dropped once
// its certificate has expired (the TLS handshake refuses it then anyway).
type NodeCert struct {
	Serial    string // lowercase hex
	Node      string
	Token     string `json:",omitempty"` // the join token it descends from
	NotAfter  time.Time
	Revoked   bool      `json:",omitempty"`
	RevokedAt time.Time `json:",omitzero"`
}

// QueueRecipient is one remote recipient of a queued message.
type QueueRecipient struct {
	Address   string
	Status    string // "pending", "delivered", "failed"
	LastReply string
	Attempts  int
}

// QueueEntry is a message waiting for remote delivery.
type QueueEntry struct {
	ID          string
	Blob        Hash
	Size        int64
	From        string
	Recipients  []QueueRecipient
	Created     time.Time
	NextAttempt time.Time
	Attempts    int
	LeaseNode   string
	LeaseUntil  time.Time
	Hold        bool
	LastError   string
}

// BlobSource is a blob to store: its hash and size, and Open, which returns
// a new reader of its bytes from the start each time it is called (one per
// copy being written; copies are written in parallel and may outlive the
// call that started them, so the bytes must stay readable until every
// reader is closed).
type BlobSource struct {
	Hash Hash
	Size int64
	Open func() (io.ReadCloser, error)
}
