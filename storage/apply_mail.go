package storage

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Handlers for mailbox and message commands. As in apply_admin.go, each
// checks first and writes only once it cannot fail.

func decodeID(v []byte) uint64 {
	if len(v) != 8 {
		panic(fmt.Sprintf("storage: mailbox id is %d bytes", len(v)))
	}
	return binary.BigEndian.Uint64(v)
}

func (t *tx) unmarshal(raw []byte, v any) {
	if err := json.Unmarshal(raw, v); err != nil {
		panic(fmt.Sprintf("storage: apply index %d: decode %T: %v", t.index, v, err))
	}
}

func (t *tx) mailboxByID(id uint64) (Mailbox, bool) {
	var mb Mailbox
	ok := t.getJSON(mailboxKey(id), &mb)
	return mb, ok
}

func (t *tx) mailboxByName(account, name string) (Mailbox, bool) {
	v, ok := t.get(mailboxNameKey(account, name))
	if !ok {
		return Mailbox{}, false
	}
	mb, ok := t.mailboxByID(decodeID(v))
	if !ok {
		panic(fmt.Sprintf("storage: apply index %d: mailbox %q of %q: index points nowhere", t.index, name, account))
	}
	return mb, true
}

// lookupMailbox normalises account and name and reads the mailbox.
func (t *tx) lookupMailbox(account, name string) (Account, Mailbox, error) {
	a, err := t.lookupAccount(account)
	if err != nil {
		return Account{}, Mailbox{}, err
	}
	n, err := normMailbox(name)
	if err != nil {
		return Account{}, Mailbox{}, err
	}
	mb, ok := t.mailboxByName(a.Address, n)
	if !ok {
		return Account{}, Mailbox{}, fmt.Errorf("mailbox %q of %q: %w", n, a.Address, ErrNotFound)
	}
	return a, mb, nil
}

func (t *tx) mailboxByIDErr(id uint64) (Mailbox, error) {
	mb, ok := t.mailboxByID(id)
	if !ok {
		return mb, fmt.Errorf("mailbox %d: %w", id, ErrNotFound)
	}
	return mb, nil
}

// newMailbox creates a mailbox whose ID and UIDVALIDITY come from the log
// index, so every node picks the same ones.
func (t *tx) newMailbox(account, name, specialUse string, subscribed bool) Mailbox {
	if t.seq >= 16 {
		panic(fmt.Sprintf("storage: apply index %d: more than 16 mailboxes in one command", t.index))
	}
	uidValidity := uint32(t.index)
	if uidValidity == 0 {
		uidValidity = 1
	}
	mb := Mailbox{
		ID:            t.index<<4 | t.seq,
		Account:       account,
		Name:          name,
		UIDValidity:   uidValidity,
		UIDNext:       1,
		HighestModSeq: 1,
		SpecialUse:    specialUse,
		Subscribed:    subscribed,
	}
	t.seq++
	t.setJSON(mailboxKey(mb.ID), mb)
	t.set(mailboxNameKey(account, name), be64(mb.ID))
	t.changes = append(t.changes, Change{Kind: MailboxCreated, Account: account, MailboxID: mb.ID, Name: name})
	return mb
}

func (t *tx) messages(mailboxID uint64) []Message {
	kvs := t.scan(messagePrefix(mailboxID))
	out := make([]Message, len(kvs))
	for i, kv := range kvs {
		t.unmarshal(kv.v, &out[i])
	}
	return out
}

func (t *tx) addUsage(account string, delta int64) {
	if delta == 0 {
		return
	}
	a, err := t.account(account)
	if err != nil {
		panic(fmt.Sprintf("storage: apply index %d: %v", t.index, err))
	}
	a.UsedBytes += delta
	t.setJSON(accountKey(account), a)
}

// checkQuota reports ErrOverQuota if adding add bytes to a exceeds its quota.
func checkQuota(a Account, add int64) error {
	if a.QuotaBytes > 0 && add > 0 && a.UsedBytes+add > a.QuotaBytes {
		return fmt.Errorf("account %q: %d of %d bytes used, %d more: %w", a.Address, a.UsedBytes, a.QuotaBytes, add, ErrOverQuota)
	}
	return nil
}

func checkUIDSpace(mb Mailbox, n int) error {
	if uint64(mb.UIDNext)+uint64(n) > math.MaxUint32 {
		return fmt.Errorf("mailbox %q: UIDs exhausted: %w", mb.Name, ErrInvalid)
	}
	return nil
}

// addMessage appends m to mailbox id with the next UID and MODSEQ. It
// changes neither blob references nor account usage.
func (t *tx) addMessage(id uint64, m Message) Message {
	mb, ok := t.mailboxByID(id)
	if !ok {
		panic(fmt.Sprintf("storage: apply index %d: add message to missing mailbox %d", t.index, id))
	}
	m.MailboxID = id
	m.UID = mb.UIDNext
	if reuseUID {
		// Only with -tags chaos_reuse_uid, the chaos suite's negative
		// control: an expunged UID again (reuseuid_chaos.go).
		m.UID = t.reusedUID(id, mb.UIDNext)
	}
	mb.UIDNext = m.UID + 1
	mb.HighestModSeq++
	m.ModSeq = mb.HighestModSeq
	mb.Messages++
	mb.Size += m.Size
	t.setJSON(messageKey(id, m.UID), m)
	t.setJSON(mailboxKey(id), mb)
	t.changes = append(t.changes, Change{Kind: MessageAdded, Account: mb.Account, MailboxID: id, UID: m.UID, Flags: m.Flags, ModSeq: m.ModSeq})
	return m
}

// removeMessages deletes msgs from mb (one MODSEQ bump for all). It changes
// neither blob references nor account usage; it returns the bytes removed.
func (t *tx) removeMessages(mb Mailbox, msgs []Message) int64 {
	if len(msgs) == 0 {
		return 0
	}
	mb.HighestModSeq++
	var size int64
	for _, m := range msgs {
		t.del(messageKey(mb.ID, m.UID))
		mb.Messages--
		mb.Size -= m.Size
		size += m.Size
		t.changes = append(t.changes, Change{Kind: MessageExpunged, Account: mb.Account, MailboxID: mb.ID, UID: m.UID, ModSeq: mb.HighestModSeq})
	}
	t.setJSON(mailboxKey(mb.ID), mb)
	return size
}

// dropMailbox deletes mb, its messages and their blob references.
func (t *tx) dropMailbox(mb Mailbox) {
	for _, m := range t.messages(mb.ID) {
		t.del(messageKey(mb.ID, m.UID))
		t.decref(m.Blob)
	}
	t.addUsage(mb.Account, -mb.Size)
	t.del(mailboxKey(mb.ID))
	t.del(mailboxNameKey(mb.Account, mb.Name))
	t.changes = append(t.changes, Change{Kind: MailboxDeleted, Account: mb.Account, MailboxID: mb.ID, Name: mb.Name})
}

func (t *tx) mailboxCreate() (any, error) {
	var p MailboxCreate
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, err := t.lookupAccount(p.Account)
	if err != nil {
		return nil, err
	}
	name, err := normMailbox(p.Name)
	if err != nil {
		return nil, err
	}
	use, err := normSpecialUse(p.SpecialUse)
	if err != nil {
		return nil, err
	}
	if t.exists(mailboxNameKey(a.Address, name)) {
		return nil, fmt.Errorf("mailbox %q of %q: %w", name, a.Address, ErrExists)
	}
	return t.newMailbox(a.Address, name, use, false), nil
}

func (t *tx) mailboxRename() (any, error) {
	var p MailboxRename
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	a, from, err := t.lookupMailbox(p.Account, p.From)
	if err != nil {
		return nil, err
	}
	to, err := normMailbox(p.To)
	if err != nil {
		return nil, err
	}
	if t.exists(mailboxNameKey(a.Address, to)) {
		return nil, fmt.Errorf("mailbox %q of %q: %w", to, a.Address, ErrExists)
	}
	if from.Name == inbox {
		// RFC 3501 6.3.5: move INBOX's messages to a new mailbox, leave
		// INBOX empty and its children where they are.
		msgs := t.messages(from.ID)
		if err := checkUIDSpace(Mailbox{UIDNext: 1}, len(msgs)); err != nil {
			return nil, err
		}
		nmb := t.newMailbox(a.Address, to, "", false)
		for _, m := range msgs {
			t.addMessage(nmb.ID, Message{Blob: m.Blob, Size: m.Size, InternalDate: m.InternalDate, Flags: m.Flags})
		}
		t.removeMessages(from, msgs)
		return nil, nil
	}
	if strings.HasPrefix(to, from.Name+"/") {
		return nil, fmt.Errorf("rename %q to its own child %q: %w", from.Name, to, ErrInvalid)
	}
	// Collect the mailbox and its children, and check no new name is taken.
	type move struct {
		id       uint64
		old, new string
	}
	var moves []move
	for _, kv := range t.scan(mailboxNamePrefix(a.Address)) {
		name := string(kv.k[len(mailboxNamePrefix(a.Address)):])
		if name != from.Name && !strings.HasPrefix(name, from.Name+"/") {
			continue
		}
		nn := to + name[len(from.Name):]
		if len(nn) > maxMailboxNameLen {
			return nil, fmt.Errorf("mailbox name %q: too long: %w", nn, ErrInvalid)
		}
		if name != from.Name && t.exists(mailboxNameKey(a.Address, nn)) {
			return nil, fmt.Errorf("mailbox %q of %q: %w", nn, a.Address, ErrExists)
		}
		moves = append(moves, move{decodeID(kv.v), name, nn})
	}
	for _, m := range moves {
		t.del(mailboxNameKey(a.Address, m.old))
	}
	for _, m := range moves {
		mb, _ := t.mailboxByID(m.id)
		mb.Name = m.new
		t.setJSON(mailboxKey(m.id), mb)
		t.set(mailboxNameKey(a.Address, m.new), be64(m.id))
		t.changes = append(t.changes, Change{Kind: MailboxRenamed, Account: a.Address, MailboxID: m.id, Name: m.new})
	}
	return nil, nil
}

func (t *tx) mailboxDelete() (any, error) {
	var p MailboxDelete
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	_, mb, err := t.lookupMailbox(p.Account, p.Name)
	if err != nil {
		return nil, err
	}
	if mb.Name == inbox {
		return nil, fmt.Errorf("mailbox INBOX cannot be deleted: %w", ErrInvalid)
	}
	t.dropMailbox(mb)
	return nil, nil
}

func (t *tx) mailboxSubscribe() (any, error) {
	var p MailboxSubscribe
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	_, mb, err := t.lookupMailbox(p.Account, p.Name)
	if err != nil {
		return nil, err
	}
	mb.Subscribed = p.Subscribed
	t.setJSON(mailboxKey(mb.ID), mb)
	return nil, nil
}

func (t *tx) deliver() (any, error) {
	var p Deliver
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	if p.Blob.IsZero() || p.Size < 0 {
		return nil, fmt.Errorf("deliver: no blob or negative size: %w", ErrInvalid)
	}
	if len(p.Targets) == 0 && p.Remote == nil {
		return nil, fmt.Errorf("deliver: no targets: %w", ErrInvalid)
	}
	type target struct {
		account string
		mailbox uint64
		flags   []string
	}
	targets := make([]target, 0, len(p.Targets))
	var accounts []Account // distinct, in first-seen order
	var adds []int64
	perMailbox := map[uint64]int{}
	for _, tg := range p.Targets {
		name := tg.Mailbox
		if name == "" {
			name = inbox
		}
		a, mb, err := t.lookupMailbox(tg.Account, name)
		if err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
		flags, err := normFlags(tg.Flags)
		if err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
		perMailbox[mb.ID]++
		if err := checkUIDSpace(mb, perMailbox[mb.ID]); err != nil {
			return nil, err
		}
		i := slices.IndexFunc(accounts, func(x Account) bool { return x.Address == a.Address })
		if i < 0 {
			accounts = append(accounts, a)
			adds = append(adds, 0)
			i = len(accounts) - 1
		}
		adds[i] += p.Size
		targets = append(targets, target{a.Address, mb.ID, flags})
	}
	for i, a := range accounts {
		if err := checkQuota(a, adds[i]); err != nil {
			return nil, err
		}
	}
	var remote QueueEntry
	if p.Remote != nil {
		remote = *p.Remote
		if remote.Blob.IsZero() {
			remote.Blob = p.Blob
		}
		if remote.Size == 0 {
			remote.Size = p.Size
		}
		if remote.Blob != p.Blob {
			return nil, fmt.Errorf("deliver: remote entry blob differs: %w", ErrInvalid)
		}
		if len(remote.Recipients) == 0 {
			return nil, fmt.Errorf("deliver: remote entry without recipients: %w", ErrInvalid)
		}
		if err := t.checkQueueEntry(&remote); err != nil {
			return nil, err
		}
		if t.exists(queueKey(remote.ID)) {
			return nil, fmt.Errorf("queue entry %q: %w", remote.ID, ErrExists)
		}
	}

	res := DeliverResult{Placed: make([]Placed, 0, len(targets))}
	for _, tg := range targets {
		date := t.cmd.Time
		if !p.InternalDate.IsZero() {
			date = p.InternalDate.UTC()
		}
		m := t.addMessage(tg.mailbox, Message{Blob: p.Blob, Size: p.Size, InternalDate: date, Flags: tg.flags})
		t.incref(p.Blob)
		res.Placed = append(res.Placed, Placed{Account: tg.account, MailboxID: tg.mailbox, UID: m.UID})
	}
	for i, a := range accounts {
		t.addUsage(a.Address, adds[i])
	}
	if p.Remote != nil {
		t.setJSON(queueKey(remote.ID), remote)
		t.incref(remote.Blob)
	}
	return res, nil
}

func (t *tx) flags() (any, error) {
	var p Flags
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	mb, err := t.mailboxByIDErr(p.MailboxID)
	if err != nil {
		return nil, err
	}
	if p.Op < FlagsSet || p.Op > FlagsRemove {
		return nil, fmt.Errorf("flags: unknown op %d: %w", p.Op, ErrInvalid)
	}
	flags, err := normFlags(p.Flags)
	if err != nil {
		return nil, err
	}
	res := FlagsResult{Changed: []MessageFlags{}}
	for _, uid := range sortedUIDs(p.UIDs) {
		var m Message
		if !t.getJSON(messageKey(mb.ID, uid), &m) {
			continue
		}
		var nf []string
		switch p.Op {
		case FlagsSet:
			nf = slices.Clone(flags)
		case FlagsAdd:
			nf = append(slices.Clone(m.Flags), flags...)
			slices.Sort(nf)
			nf = slices.Compact(nf)
		case FlagsRemove:
			nf = slices.DeleteFunc(slices.Clone(m.Flags), func(f string) bool { return slices.Contains(flags, f) })
		}
		if len(nf) == 0 {
			nf = nil
		}
		if slices.Equal(nf, m.Flags) {
			continue
		}
		mb.HighestModSeq++
		m.Flags, m.ModSeq = nf, mb.HighestModSeq
		t.setJSON(messageKey(mb.ID, uid), m)
		res.Changed = append(res.Changed, MessageFlags{UID: uid, Flags: m.Flags, ModSeq: m.ModSeq})
		t.changes = append(t.changes, Change{Kind: FlagsChanged, Account: mb.Account, MailboxID: mb.ID, UID: uid, Flags: m.Flags, ModSeq: m.ModSeq})
	}
	if len(res.Changed) > 0 {
		t.setJSON(mailboxKey(mb.ID), mb)
	}
	return res, nil
}

// selectMessages returns the messages of mb with the given UIDs (sorted,
// missing ones skipped), or with \Deleted when uids is empty and
// deletedIfEmpty.
func (t *tx) selectMessages(mb Mailbox, uids []uint32, deletedIfEmpty bool) []Message {
	if len(uids) == 0 && deletedIfEmpty {
		return slices.DeleteFunc(t.messages(mb.ID), func(m Message) bool {
			return !slices.Contains(m.Flags, `\Deleted`)
		})
	}
	var out []Message
	for _, uid := range sortedUIDs(uids) {
		var m Message
		if t.getJSON(messageKey(mb.ID, uid), &m) {
			out = append(out, m)
		}
	}
	return out
}

func (t *tx) expunge() (any, error) {
	var p Expunge
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	mb, err := t.mailboxByIDErr(p.MailboxID)
	if err != nil {
		return nil, err
	}
	msgs := t.selectMessages(mb, p.UIDs, true)
	if p.OnlyDeleted {
		msgs = slices.DeleteFunc(msgs, func(m Message) bool { return !slices.Contains(m.Flags, `\Deleted`) })
	}
	res := ExpungeResult{UIDs: make([]uint32, 0, len(msgs))}
	size := t.removeMessages(mb, msgs)
	for _, m := range msgs {
		t.decref(m.Blob)
		res.UIDs = append(res.UIDs, m.UID)
	}
	t.addUsage(mb.Account, -size)
	return res, nil
}

func (t *tx) copyCmd() (any, error) {
	var p Copy
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	return t.copyMove(p, false)
}

func (t *tx) move() (any, error) {
	var p Move
	if err := t.decode(&p); err != nil {
		return nil, err
	}
	return t.copyMove(Copy(p), true)
}

func (t *tx) copyMove(p Copy, move bool) (any, error) {
	src, err := t.mailboxByIDErr(p.From)
	if err != nil {
		return nil, err
	}
	dst, err := t.mailboxByIDErr(p.To)
	if err != nil {
		return nil, err
	}
	if move && src.ID == dst.ID {
		return nil, fmt.Errorf("move within mailbox %q: %w", src.Name, ErrInvalid)
	}
	msgs := t.selectMessages(src, p.UIDs, false)
	var size int64
	for _, m := range msgs {
		size += m.Size
	}
	if err := checkUIDSpace(dst, len(msgs)); err != nil {
		return nil, err
	}
	add := size
	if move && src.Account == dst.Account {
		add = 0
	}
	dstAcct, err := t.account(dst.Account)
	if err != nil {
		return nil, err
	}
	if err := checkQuota(dstAcct, add); err != nil {
		return nil, err
	}

	res := CopyResult{UIDValidity: dst.UIDValidity, Pairs: make([]UIDPair, 0, len(msgs))}
	for _, m := range msgs {
		n := t.addMessage(dst.ID, Message{Blob: m.Blob, Size: m.Size, InternalDate: m.InternalDate, Flags: m.Flags})
		res.Pairs = append(res.Pairs, UIDPair{Src: m.UID, Dst: n.UID})
		if !move {
			t.incref(m.Blob)
		}
	}
	if move {
		t.removeMessages(src, msgs)
		if src.Account != dst.Account {
			t.addUsage(src.Account, -size)
			t.addUsage(dst.Account, size)
		}
	} else {
		t.addUsage(dst.Account, size)
	}
	return res, nil
}
