package imap

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/storage"
)

// feed turns the store's change feed into MailboxTracker updates, strictly
// in log order, for every mailbox selected on this node. It owns one
// goroutine.
//
// Each selected mailbox has one view: the server-side list of its UIDs as
// the feed has processed them, and the MailboxTracker whose message count
// always equals len(uids). Both change only under view.mu, only from the
// feed goroutine (or from the loader, before anyone can see the view), and
// only together — so the tracker never sees an impossible update and a
// session's sequence numbers (tracker.EncodeSeqNum over the view) match
// exactly what the tracker has told it.
type feed struct {
	store *storage.Store
	log   *slog.Logger
	done  chan struct{}
	quit  chan struct{}
	once  sync.Once

	mu struct {
		sync.Mutex
		views map[uint64]*view
	}
}

func newFeed(st *storage.Store, log *slog.Logger) *feed {
	f := &feed{store: st, log: log, done: make(chan struct{}), quit: make(chan struct{})}
	f.mu.views = make(map[uint64]*view)
	sub := st.Subscribe(feedBuffer)
	go f.run(sub)
	return f
}

func (f *feed) stop() {
	f.once.Do(func() { close(f.quit) })
	<-f.done
}

func (f *feed) run(sub *storage.Subscription) {
	defer close(f.done)
	defer func() { sub.Close() }()
	for {
		select {
		case <-f.quit:
			return
		case ch, ok := <-sub.C:
			if !ok {
				err := sub.Err()
				if errors.Is(err, storage.ErrClosed) || err == nil {
					// The store is closed (or we were): nothing more will come.
					select {
					case <-f.quit:
					default:
						f.log.Info("change feed ended: store closed")
						<-f.quit
					}
					return
				}
				f.log.Warn("change feed overflowed; resynchronising selected mailboxes", "err", err)
				sub = f.store.Subscribe(feedBuffer)
				f.resyncAll()
				continue
			}
			if ch.Kind == storage.Reset {
				f.log.Info("store restored from a snapshot; resynchronising selected mailboxes")
				f.resyncAll()
				continue
			}
			f.apply(ch)
		}
	}
}

func (f *feed) lookup(id uint64) *view {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.views[id]
}

func (f *feed) apply(ch storage.Change) {
	v := f.lookup(ch.MailboxID)
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tracker == nil { // failed to load; being released
		return
	}
	switch ch.Kind {
	case storage.MessageAdded:
		v.addLocked(ch.UID)
	case storage.MessageExpunged:
		v.expungeLocked(ch.UID)
	case storage.FlagsChanged:
		if i, ok := v.indexLocked(ch.UID); ok {
			v.tracker.QueueMessageFlags(uint32(i+1), imap.UID(ch.UID), toFlags(ch.Flags), nil)
		}
	case storage.MailboxDeleted:
		v.goneLocked()
	}
	if ch.ModSeq > v.modSeq {
		v.modSeq = ch.ModSeq
	}
	v.notifyLocked()
}

func (f *feed) resyncAll() {
	f.mu.Lock()
	views := make([]*view, 0, len(f.mu.views))
	for _, v := range f.mu.views {
		views = append(views, v)
	}
	f.mu.Unlock()
	for _, v := range views {
		v.mu.Lock()
		if err := v.resyncLocked(f.store); err != nil {
			f.log.Error("resynchronise mailbox view", "mailbox_id", v.id, "err", err)
		}
		v.notifyLocked()
		v.mu.Unlock()
	}
}

// acquire returns the view of mailbox id, loading it from the store if no
// session on this node has it selected. Release it with release.
func (f *feed) acquire(id uint64) (*view, error) {
	f.mu.Lock()
	v := f.mu.views[id]
	if v != nil {
		v.refs++
		f.mu.Unlock()
		v.mu.Lock()
		err := v.loadErr
		v.mu.Unlock()
		if err != nil {
			f.release(v)
			return nil, err
		}
		return v, nil
	}
	// Publish the view before loading it, with its lock held: a change
	// the feed sees from now on waits for the load and is then applied
	// idempotently; a change it saw before was already in the store when
	// the load began, so the load includes it.
	v = &view{id: id, refs: 1, changed: make(chan struct{})}
	v.mu.Lock()
	f.mu.views[id] = v
	f.mu.Unlock()
	err := v.loadLocked(f.store)
	if err != nil {
		v.loadErr = err
	}
	v.mu.Unlock()
	if err != nil {
		f.release(v)
		return nil, err
	}
	return v, nil
}

func (f *feed) release(v *view) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v.refs--
	if v.refs == 0 && f.mu.views[v.id] == v {
		delete(f.mu.views, v.id)
	}
}

// view is one mailbox as the feed has processed it.
type view struct {
	id   uint64
	refs int // guarded by feed.mu

	mu      sync.Mutex
	uids    []uint32 // ascending: uids[i] has server sequence number i+1
	floor   uint32   // UIDs below this were assigned before the load
	uidNext uint32   // greater than every UID the view has held
	modSeq  uint64   // highest MODSEQ of a change processed
	gone    bool     // the mailbox was deleted
	loadErr error
	tracker *imapserver.MailboxTracker
	changed chan struct{} // closed and replaced on every change
}

func (v *view) loadLocked(st *storage.Store) error {
	mb, err := st.MailboxByID(v.id)
	if err != nil {
		return err
	}
	msgs, err := st.Messages(v.id)
	if err != nil {
		return err
	}
	v.floor = mb.UIDNext
	v.uidNext = mb.UIDNext
	v.modSeq = mb.HighestModSeq
	v.uids = make([]uint32, len(msgs))
	for i, m := range msgs {
		v.uids[i] = m.UID
		v.uidNext = max(v.uidNext, m.UID+1)
	}
	v.tracker = imapserver.NewMailboxTracker(uint32(len(v.uids)))
	return nil
}

// addLocked appends uid unless the view already has it or had it: UIDs
// only ascend, so anything below the load floor or the last UID is old.
func (v *view) addLocked(uid uint32) {
	if v.gone || uid < v.floor || (len(v.uids) > 0 && uid <= v.uids[len(v.uids)-1]) {
		return
	}
	v.uids = append(v.uids, uid)
	v.uidNext = max(v.uidNext, uid+1)
	v.tracker.QueueNumMessages(uint32(len(v.uids)))
}

func (v *view) expungeLocked(uid uint32) {
	i, ok := v.indexLocked(uid)
	if !ok {
		return
	}
	v.uids = slices.Delete(v.uids, i, i+1)
	v.tracker.QueueExpunge(uint32(i + 1))
}

func (v *view) indexLocked(uid uint32) (int, bool) {
	return slices.BinarySearch(v.uids, uid)
}

// goneLocked expunges every message of a deleted mailbox, last first.
func (v *view) goneLocked() {
	for i := len(v.uids); i > 0; i-- {
		v.tracker.QueueExpunge(uint32(i))
	}
	v.uids = nil
	v.gone = true
}

// resyncLocked brings the view to the store's state after the feed lost
// changes: expunges what is gone, adds what is new and re-announces every
// message's flags.
func (v *view) resyncLocked(st *storage.Store) error {
	if v.gone || v.tracker == nil {
		return nil
	}
	mb, err := st.MailboxByID(v.id)
	if errors.Is(err, storage.ErrNotFound) {
		v.goneLocked()
		return nil
	}
	if err != nil {
		return err
	}
	msgs, err := st.Messages(v.id)
	if err != nil {
		return err
	}
	present := make(map[uint32]bool, len(msgs))
	for _, m := range msgs {
		present[m.UID] = true
	}
	for i := len(v.uids) - 1; i >= 0; i-- {
		if !present[v.uids[i]] {
			v.uids = slices.Delete(v.uids, i, i+1)
			v.tracker.QueueExpunge(uint32(i + 1))
		}
	}
	for _, m := range msgs {
		v.addLocked(m.UID)
	}
	for _, m := range msgs {
		if i, ok := v.indexLocked(m.UID); ok {
			v.tracker.QueueMessageFlags(uint32(i+1), imap.UID(m.UID), toFlags(m.Flags), nil)
		}
	}
	v.modSeq = max(v.modSeq, mb.HighestModSeq)
	return nil
}

func (v *view) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// waitFor waits until cond (called with v.mu held) holds, or d passes. It
// reports whether cond held.
func (v *view) waitFor(d time.Duration, cond func() bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		v.mu.Lock()
		ok := cond()
		ch := v.changed
		v.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		}
	}
}

func toFlags(in []string) []imap.Flag {
	out := make([]imap.Flag, len(in))
	for i, f := range in {
		out[i] = imap.Flag(f)
	}
	return out
}
