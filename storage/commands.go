package storage

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
)

// CommandType names what a [Command] does. Numbers are never reused: a
// retired command keeps its number forever.
type CommandType uint8

// Ignorable marks a command type that an older node may skip. An unknown
// type with this bit set is skipped (the applied index still advances); an
// unknown type without it stops the node, so that a rolling upgrade never
// silently diverges.
const Ignorable CommandType = 0x80

// Command types. The payload type of CmdX is the struct X of this package
// unless noted.
const (
	CmdNoop              CommandType = 1  // no payload
	CmdSettingSet        CommandType = 2  // SettingSet
	CmdTokenAdd          CommandType = 3  // JoinToken
	CmdTokenRevoke       CommandType = 4  // TokenRevoke
	CmdTokenUse          CommandType = 5  // TokenUse
	CmdCertAdd           CommandType = 6  // CertAdd
	CmdCertRevoke        CommandType = 7  // CertRevoke; result CertRevokeResult
	CmdDomainAdd         CommandType = 10 // DomainAdd
	CmdDomainRemove      CommandType = 11 // DomainRemove
	CmdAccountAdd        CommandType = 12 // AccountAdd
	CmdAccountPassword   CommandType = 13 // AccountPassword
	CmdAccountRemove     CommandType = 14 // AccountRemove
	CmdAccountQuota      CommandType = 15 // AccountQuota
	CmdAppPasswordAdd    CommandType = 16 // AppPasswordAdd
	CmdAppPasswordRemove CommandType = 17 // AppPasswordRemove
	CmdAliasAdd          CommandType = 18 // AliasAdd
	CmdAliasRemove       CommandType = 19 // AliasRemove
	CmdDKIMRotate        CommandType = 20 // DKIMRotate
	CmdDKIMRetire        CommandType = 21 // DKIMRetire
	CmdMailboxCreate     CommandType = 30 // MailboxCreate; result Mailbox
	CmdMailboxRename     CommandType = 31 // MailboxRename
	CmdMailboxDelete     CommandType = 32 // MailboxDelete
	CmdMailboxSubscribe  CommandType = 33 // MailboxSubscribe
	CmdDeliver           CommandType = 40 // Deliver; result DeliverResult
	CmdFlags             CommandType = 41 // Flags; result FlagsResult
	CmdExpunge           CommandType = 42 // Expunge; result ExpungeResult
	CmdCopy              CommandType = 43 // Copy; result CopyResult
	CmdMove              CommandType = 44 // Move; result CopyResult
	CmdQueueAdd          CommandType = 50 // QueueEntry
	CmdQueueUpdate       CommandType = 51 // QueueEntry, replaced by ID
	CmdQueueRemove       CommandType = 52 // QueueRemove
	CmdQueueLease        CommandType = 53 // QueueLease; result QueueEntry
	CmdQueueResult       CommandType = 54 // QueueResult; result QueueEntry
	CmdQueueAdmin        CommandType = 55 // QueueAdmin; result QueueAdminResult
)

var cmdNames = map[CommandType]string{
	CmdNoop: "noop", CmdSettingSet: "setting-set", CmdTokenAdd: "token-add",
	CmdTokenRevoke: "token-revoke", CmdTokenUse: "token-use",
	CmdCertAdd: "cert-add", CmdCertRevoke: "cert-revoke", CmdDomainAdd: "domain-add",
	CmdDomainRemove: "domain-remove", CmdAccountAdd: "account-add",
	CmdAccountPassword: "account-password", CmdAccountRemove: "account-remove",
	CmdAccountQuota: "account-quota", CmdAppPasswordAdd: "app-password-add",
	CmdAppPasswordRemove: "app-password-remove", CmdAliasAdd: "alias-add",
	CmdAliasRemove: "alias-remove", CmdMailboxCreate: "mailbox-create",
	CmdMailboxRename: "mailbox-rename", CmdMailboxDelete: "mailbox-delete",
	CmdMailboxSubscribe: "mailbox-subscribe", CmdDeliver: "deliver",
	CmdFlags: "flags", CmdExpunge: "expunge", CmdCopy: "copy", CmdMove: "move",
	CmdQueueAdd: "queue-add", CmdQueueUpdate: "queue-update",
	CmdQueueRemove: "queue-remove",
	CmdQueueLease:  "queue-lease", CmdQueueResult: "queue-result", CmdQueueAdmin: "queue-admin",
	CmdDKIMRotate: "dkim-rotate", CmdDKIMRetire: "dkim-retire",
}

func (t CommandType) String() string {
	if n, ok := cmdNames[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown(0x%02x)", uint8(t))
}

// Command is one state machine command as carried in a Raft log entry.
type Command struct {
	Type CommandType
	// ID is chosen by the proposer and kept across retries: the state
	// machine applies a given ID once and answers repeats with the first
	// Result.
	ID [16]byte
	// Time is the proposer's clock when the command was made. It is the
	// only time Apply uses.
	Time    time.Time
	Payload []byte // JSON
}

// commandVersion is the first byte of an encoded command.
const commandVersion = 1

// commandHeaderLen is version + type + ID + time.
const commandHeaderLen = 1 + 1 + 16 + 8

// NewCommand returns a command of type t with a random ID, the current time
// and payload encoded as JSON (nil payload: empty).
func NewCommand(t CommandType, payload any) (Command, error) {
	c := Command{Type: t, Time: wallclock.Now().UTC()}
	if _, err := rand.Read(c.ID[:]); err != nil {
		return Command{}, fmt.Errorf("storage: command id: %w", err)
	}
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return Command{}, fmt.Errorf("storage: encode %v payload: %w", t, err)
		}
		c.Payload = b
	}
	return c, nil
}

// Encode returns the wire form: version byte 1, type byte, 16-byte ID,
// proposer time as int64 Unix nanoseconds big-endian (0 for the zero time),
// then the payload.
func (c Command) Encode() []byte {
	b := make([]byte, 0, commandHeaderLen+len(c.Payload))
	b = append(b, commandVersion, byte(c.Type))
	b = append(b, c.ID[:]...)
	var nanos int64
	if !c.Time.IsZero() {
		nanos = c.Time.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(nanos))
	return append(b, c.Payload...)
}

// DecodeCommand parses the output of [Command.Encode]. Errors wrap
// [ErrCorrupt]. The returned command does not alias b.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return Command{}, fmt.Errorf("decode command: empty: %w", ErrCorrupt)
	}
	if b[0] != commandVersion {
		return Command{}, fmt.Errorf("decode command: unknown version %d: %w", b[0], ErrCorrupt)
	}
	if len(b) < commandHeaderLen {
		return Command{}, fmt.Errorf("decode command: truncated: %d bytes, header needs %d: %w", len(b), commandHeaderLen, ErrCorrupt)
	}
	c := Command{Type: CommandType(b[1])}
	copy(c.ID[:], b[2:18])
	if nanos := int64(binary.BigEndian.Uint64(b[18:26])); nanos != 0 {
		c.Time = time.Unix(0, nanos).UTC()
	}
	if len(b) > commandHeaderLen {
		c.Payload = append([]byte(nil), b[commandHeaderLen:]...)
	}
	return c, nil
}

// Payloads.

// SettingSet sets a cluster setting (CA certificate and key, gossip key,
// cluster ID...). A nil Value deletes the setting.
type SettingSet struct {
	Key   string
	Value []byte
}

// TokenRevoke revokes a join token. (It leaves the certificates issued
// with it alone; [CertRevoke] with Token revokes both.)
type TokenRevoke struct{ ID string }

// TokenUse spends one use of a join token to admit a node, and records the
// certificate issued to it. Refused with ErrInvalid when the token is
// revoked, expired at the command's time, or used up; so of two joins with
// a single-use token, only the first one committed admits its node.
type TokenUse struct {
	ID   string
	Cert NodeCert
}

// CertAdd records a node certificate the cluster issued: a renewal
// (Renews names the serial of the certificate it replaces, refused with
// ErrInvalid when that one is revoked), or a certificate issued outside a
// join (the first node's, one from before certificates were recorded).
// Recording a serial that is already there changes nothing.
type CertAdd struct {
	Cert   NodeCert
	Renews string `json:",omitempty"`
}

// CertRevoke revokes node certificates: every recorded one of Node, and
// every one issued through the join token Token (the nodes it admitted and
// their renewals), which is revoked too. At least one must be set.
type CertRevoke struct {
	Node  string `json:",omitempty"`
	Token string `json:",omitempty"`
}

// CertRevokeResult is the Data of a CmdCertRevoke result: the serials
// revoked by this command.
type CertRevokeResult struct{ Serials []string }

// DomainAdd adds a mail domain, with its first DKIM keys when DKIM is not
// empty (generated by the proposer; each becomes a signing selector).
type DomainAdd struct {
	Name string
	DKIM []DKIMSelector `json:",omitempty"`
}

// DomainRemove removes a domain; refused with ErrNotEmpty while it has
// accounts or aliases.
type DomainRemove struct{ Name string }

// AccountAdd creates an account and its default mailboxes: INBOX, Sent,
// Drafts, Trash, Junk, Archive, all subscribed. PasswordHash comes from
// [HashPassword] on the proposer. QuotaBytes 0 is unlimited.
type AccountAdd struct {
	Address      string
	PasswordHash string
	QuotaBytes   int64
}

// AccountPassword replaces an account's password hash.
type AccountPassword struct {
	Address      string
	PasswordHash string
}

// AccountRemove removes an account, its mailboxes and messages, and the
// aliases that point only to it (it is dropped from the others).
type AccountRemove struct{ Address string }

// AccountQuota sets an account's quota; 0 is unlimited.
type AccountQuota struct {
	Address    string
	QuotaBytes int64
}

// AppPasswordAdd adds a named application password to an account.
type AppPasswordAdd struct {
	Address      string
	Name         string
	PasswordHash string
}

// AppPasswordRemove removes a named application password.
type AppPasswordRemove struct {
	Address string
	Name    string
}

// AliasAdd adds an alias. The domain of Address must exist, Address must not
// be an account, and every target must be an account.
type AliasAdd struct {
	Address string
	Targets []string
}

// AliasRemove removes an alias.
type AliasRemove struct{ Address string }

// MailboxCreate creates a mailbox. Parents are not created.
type MailboxCreate struct {
	Account    string
	Name       string
	SpecialUse string // "" or one of \All \Archive \Drafts \Flagged \Junk \Sent \Trash
}

// MailboxRename renames a mailbox and its children. Renaming INBOX moves its
// messages into a new mailbox and leaves INBOX empty (RFC 3501 6.3.5).
type MailboxRename struct {
	Account string
	From    string
	To      string
}

// MailboxDelete deletes a mailbox and its messages (not its children).
// INBOX cannot be deleted.
type MailboxDelete struct {
	Account string
	Name    string
}

// MailboxSubscribe sets a mailbox's subscription.
type MailboxSubscribe struct {
	Account    string
	Name       string
	Subscribed bool
}

// DeliverTarget is one local mailbox a delivered message goes to.
type DeliverTarget struct {
	Account string
	Mailbox string // "" is INBOX
	Flags   []string
}

// Deliver places a stored blob into local mailboxes and optionally queues it
// for remote recipients, atomically. If any target account would go over its
// quota, nothing changes and the result is ErrOverQuota.
type Deliver struct {
	QueueID string // the SMTP queue ID, for logs
	Blob    Hash
	Size    int64
	Targets []DeliverTarget
	Remote  *QueueEntry // nil: no remote recipients
	// InternalDate is the IMAP internal date of the placed messages (an
	// APPEND's date argument); zero means the command's time.
	InternalDate time.Time `json:",omitzero"`
}

// Placed is where Deliver put a message.
type Placed struct {
	Account   string
	MailboxID uint64
	UID       uint32
}

// DeliverResult is the Data of a CmdDeliver result.
type DeliverResult struct{ Placed []Placed }

// FlagsOp says how [Flags] changes a message's flags.
type FlagsOp uint8

// Flag operations.
const (
	FlagsSet    FlagsOp = 1 // replace
	FlagsAdd    FlagsOp = 2
	FlagsRemove FlagsOp = 3
)

// Flags changes the flags of messages in a mailbox. UIDs that do not exist
// are skipped. Each message whose flags change gets a new MODSEQ.
type Flags struct {
	MailboxID uint64
	UIDs      []uint32
	Op        FlagsOp
	Flags     []string
}

// MessageFlags is a message's flags after a [Flags] command.
type MessageFlags struct {
	UID    uint32
	Flags  []string
	ModSeq uint64
}

// FlagsResult is the Data of a CmdFlags result: the messages that changed.
type FlagsResult struct{ Changed []MessageFlags }

// Expunge removes messages. An empty UIDs removes every message flagged
// \Deleted.
type Expunge struct {
	MailboxID uint64
	UIDs      []uint32
	// OnlyDeleted expunges only those of UIDs that carry \Deleted when
	// the command is applied (IMAP UID EXPUNGE, RFC 4315), so a flag
	// removed meanwhile through another node is respected.
	OnlyDeleted bool `json:",omitempty"`
}

// ExpungeResult is the Data of a CmdExpunge result.
type ExpungeResult struct{ UIDs []uint32 }

// Copy copies messages (in UID order) to another mailbox, keeping flags and
// internal dates.
type Copy struct {
	From, To uint64
	UIDs     []uint32
}

// Move is Copy then expunge from the source, atomically.
type Move Copy

// UIDPair maps a source UID to the UID of its copy.
type UIDPair struct{ Src, Dst uint32 }

// CopyResult is the Data of CmdCopy and CmdMove results.
type CopyResult struct {
	UIDValidity uint32 // of the destination, for COPYUID
	Pairs       []UIDPair
}

// QueueRemove removes an outbound queue entry.
type QueueRemove struct{ ID string }

// DKIMRotate adds new DKIM selectors to a domain and signs with them from
// now on; the selectors that signed until now stop signing but stay
// published (their DNS records must stay until mail signed with them has
// been verified) until retired with [DKIMRetire]. The keys are generated by
// the proposer.
type DKIMRotate struct {
	Domain string
	New    []DKIMSelector
}

// DKIMRetire retires a selector that no longer signs: its private key is
// deleted and it is no longer published. Its name stays reserved so that it
// is never reused with another key. Retiring a signing selector is refused
// with ErrInvalid.
type DKIMRetire struct {
	Domain   string
	Selector string
}
