package storage

import "fmt"

// ChangeKind says what a Change is about.
type ChangeKind uint8

// Change kinds. Values are stable.
const (
	MessageAdded    ChangeKind = 1
	MessageExpunged ChangeKind = 2
	FlagsChanged    ChangeKind = 3
	MailboxCreated  ChangeKind = 4
	MailboxDeleted  ChangeKind = 5
	MailboxRenamed  ChangeKind = 6
	// Reset means the whole state was replaced by a snapshot: subscribers
	// must reload everything they track.
	Reset ChangeKind = 7
)

func (k ChangeKind) String() string {
	switch k {
	case MessageAdded:
		return "message-added"
	case MessageExpunged:
		return "message-expunged"
	case FlagsChanged:
		return "flags-changed"
	case MailboxCreated:
		return "mailbox-created"
	case MailboxDeleted:
		return "mailbox-deleted"
	case MailboxRenamed:
		return "mailbox-renamed"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one committed change, published after its batch is durable.
type Change struct {
	Index     uint64 // log index of the command
	Kind      ChangeKind
	Account   string
	MailboxID uint64
	UID       uint32   // message changes
	Flags     []string // MessageAdded, FlagsChanged; do not modify
	ModSeq    uint64   // message changes
	Name      string   // mailbox changes: the (new) name
}

// Subscription receives Changes in log order.
type Subscription struct {
	// C delivers changes. It is closed by Close, by Store.Close, or when the
	// subscriber falls more than its buffer behind (then Err reports
	// ErrOverflow).
	C <-chan Change

	c   chan Change
	s   *Store
	err error // guarded by s.subs
}

// Subscribe returns a subscription buffering up to buffer changes (at
// least 1). Apply never blocks on a subscriber: one whose buffer is full is
// dropped.
func (s *Store) Subscribe(buffer int) *Subscription {
	c := make(chan Change, max(buffer, 1))
	sub := &Subscription{C: c, c: c, s: s}
	s.subs.Lock()
	s.subs.m[sub] = struct{}{}
	s.subs.Unlock()
	return sub
}

// Err returns ErrOverflow if the subscription was dropped for falling
// behind, ErrClosed if the store was closed, else nil.
func (sub *Subscription) Err() error {
	sub.s.subs.Lock()
	defer sub.s.subs.Unlock()
	return sub.err
}

// Close unsubscribes and closes C. It is safe to call more than once.
func (sub *Subscription) Close() {
	sub.s.subs.Lock()
	defer sub.s.subs.Unlock()
	sub.dropLocked(nil)
}

// dropLocked removes sub and closes its channel once.
func (sub *Subscription) dropLocked(err error) {
	if _, ok := sub.s.subs.m[sub]; !ok {
		return
	}
	delete(sub.s.subs.m, sub)
	sub.err = err
	close(sub.c)
}

func (s *Store) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.subs.Lock()
	defer s.subs.Unlock()
	for sub := range s.subs.m {
		for _, ch := range changes {
			select {
			case sub.c <- ch:
			default:
				sub.dropLocked(ErrOverflow)
			}
			if sub.err != nil {
				break
			}
		}
	}
}

func (s *Store) closeSubscriptions() {
	s.subs.Lock()
	defer s.subs.Unlock()
	for sub := range s.subs.m {
		sub.dropLocked(ErrClosed)
	}
}
