package imap

import (
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/raftmail/raftmail/storage"
)

// Selected state. Sequence numbers are always the client's: the view's
// position of a UID mapped through the session's tracker
// (SessionTracker.EncodeSeqNum), computed under view.mu.

// Select implements imapserver.Session (SELECT and EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	mb, err := s.mailbox(name)
	if err != nil {
		return nil, err
	}
	v, err := s.srv.feed.acquire(mb.ID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errNoMailbox
		}
		return nil, s.internal("select", err)
	}
	msgs, err := s.srv.cfg.Store.Messages(mb.ID)
	if err != nil {
		s.srv.feed.release(v)
		return nil, s.internal("select", err)
	}
	flagsOf := make(map[uint32][]string, len(msgs))
	keywords := map[string]bool{}
	for _, m := range msgs {
		flagsOf[m.UID] = m.Flags
		for _, f := range m.Flags {
			if !strings.HasPrefix(f, `\`) {
				keywords[f] = true
			}
		}
	}
	v.mu.Lock()
	st := v.tracker.NewSession()
	n := uint32(len(v.uids))
	uidNext := v.uidNext
	var firstUnseen uint32
	for i, uid := range v.uids {
		if f, ok := flagsOf[uid]; ok && !slices.Contains(f, `\Seen`) {
			firstUnseen = uint32(i + 1)
			break
		}
	}
	v.mu.Unlock()
	sel := &selection{mb: mb, view: v, st: st, readOnly: options != nil && options.ReadOnly}
	s.mu.Lock()
	s.sel = sel
	s.mu.Unlock()

	flags := slices.Clone(systemFlags)
	for k := range keywords {
		flags = append(flags, imap.Flag(k))
	}
	slices.Sort(flags[len(systemFlags):])
	perm := append(slices.Clone(flags), imap.FlagWildcard)
	if sel.readOnly {
		perm = nil
	}
	s.log.Debug("selected", "mailbox", mb.Name, "read_only", sel.readOnly)
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       n,
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(uidNext),
		UIDValidity:       mb.UIDValidity,
	}, nil
}

// Unselect implements imapserver.Session.
func (s *session) Unselect() error {
	s.unselect()
	return nil
}

func (s *session) unselect() {
	s.mu.Lock()
	sel := s.sel
	s.sel = nil
	s.mu.Unlock()
	if sel == nil {
		return
	}
	sel.st.Close()
	s.srv.feed.release(sel.view)
}

// Poll implements imapserver.Session.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	return s.sel.st.Poll(w, allowExpunge)
}

// Idle implements imapserver.Session.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	sel := s.sel
	s.idling.Add(1)
	s.mu.Unlock()
	defer s.idling.Done()
	if sel == nil {
		<-stop
		return nil
	}
	return sel.st.Idle(w, stop)
}

// item is a message the client can see: its sequence number (the
// client's) and UID.
type item struct {
	seq uint32
	uid uint32
}

// visibleLocked lists the messages the client knows about, in order.
func (sel *selection) visibleLocked() []item {
	out := make([]item, 0, len(sel.view.uids))
	for i, uid := range sel.view.uids {
		if seq := sel.st.EncodeSeqNum(uint32(i + 1)); seq != 0 {
			out = append(out, item{seq, uid})
		}
	}
	return out
}

// resolve returns the visible messages in numSet ("*" is the last visible
// message, or the highest UID; "$" the saved search result), in order.
// Numbers that match nothing are ignored, as RFC 9051 allows for UIDs and
// as a vanished message needs.
func (sel *selection) resolve(numSet imap.NumSet) []item {
	sel.view.mu.Lock()
	defer sel.view.mu.Unlock()
	all := sel.visibleLocked()
	if imap.IsSearchRes(numSet) {
		var set imap.UIDSet
		for _, u := range sel.saved {
			set.AddNum(imap.UID(u))
		}
		numSet = set
	}
	var out []item
	switch set := numSet.(type) {
	case imap.SeqSet:
		var last uint32
		if len(all) > 0 {
			last = all[len(all)-1].seq
		}
		set = staticSeqSet(set, last)
		for _, it := range all {
			if set.Contains(it.seq) {
				out = append(out, it)
			}
		}
	case imap.UIDSet:
		var last uint32
		if len(all) > 0 {
			last = all[len(all)-1].uid
		}
		set = staticUIDSet(set, last)
		for _, it := range all {
			if set.Contains(imap.UID(it.uid)) {
				out = append(out, it)
			}
		}
	}
	return out
}

// staticSeqSet replaces "*" (0) by last; the input is not modified.
func staticSeqSet(in imap.SeqSet, last uint32) imap.SeqSet {
	out := slices.Clone(in)
	for i := range out {
		staticRange(&out[i].Start, &out[i].Stop, last)
	}
	return out
}

func staticUIDSet(in imap.UIDSet, last uint32) imap.UIDSet {
	out := slices.Clone(in)
	for i := range out {
		staticRange((*uint32)(&out[i].Start), (*uint32)(&out[i].Stop), last)
	}
	return out
}

func staticRange(start, stop *uint32, last uint32) {
	dyn := false
	if *start == 0 {
		*start, dyn = last, true
	}
	if *stop == 0 {
		*stop, dyn = last, true
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}

func uidsOf(items []item) []uint32 {
	out := make([]uint32, len(items))
	for i, it := range items {
		out[i] = it.uid
	}
	return out
}

// loadMessages reads the metadata of uids: point reads for a few, one
// scan for many. Missing (expunged) messages are absent from the map.
func (s *session) loadMessages(mbID uint64, uids []uint32) (map[uint32]storage.Message, error) {
	out := make(map[uint32]storage.Message, len(uids))
	if len(uids) > 32 {
		msgs, err := s.srv.cfg.Store.Messages(mbID)
		if err != nil {
			return nil, err
		}
		// A merge of two UID-ordered lists; uids from the view always are.
		if !slices.IsSorted(uids) {
			uids = slices.Sorted(slices.Values(uids))
		}
		i := 0
		for _, m := range msgs {
			for i < len(uids) && uids[i] < m.UID {
				i++
			}
			if i == len(uids) {
				break
			}
			if uids[i] == m.UID {
				out[m.UID] = m
			}
		}
		return out, nil
	}
	for _, u := range uids {
		m, err := s.srv.cfg.Store.Message(mbID, u)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[u] = m
	}
	return out, nil
}

// Fetch implements imapserver.Session. A non-peek body fetch first sets
// \Seen through the cluster (not in a read-only mailbox); if that write
// fails the fetch is still answered: reads never need a quorum.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel := s.sel
	items := sel.resolve(numSet)
	if len(items) == 0 {
		return nil
	}
	msgs, err := s.loadMessages(sel.mb.ID, uidsOf(items))
	if err != nil {
		return s.internal("fetch", err)
	}
	var seenSet map[uint32]bool
	if !sel.readOnly && fetchSetsSeen(options) {
		var unseen []uint32
		for _, it := range items {
			if m, ok := msgs[it.uid]; ok && !slices.Contains(m.Flags, `\Seen`) {
				unseen = append(unseen, it.uid)
			}
		}
		if len(unseen) > 0 {
			seenSet = s.markSeen(sel, unseen, msgs)
		}
	}
	needBlob := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	headerOnly := needBlob && headerItemsOnly(options)
	var fd fetchData // reused: a message's items are written before the next one's are built
	for _, it := range items {
		m, ok := msgs[it.uid]
		if !ok {
			continue // expunged meanwhile; its EXPUNGE is on the way
		}
		if needBlob {
			var raw []byte
			var err error
			if headerOnly {
				raw, err = s.header(m)
			} else {
				raw, err = s.blob(m)
			}
			if err != nil {
				return err
			}
			buildFetch(raw, options, &fd)
		}
		if err := writeFetch(w, it, m, options, seenSet[it.uid], &fd); err != nil {
			return err
		}
	}
	return nil
}

func fetchSetsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// markSeen adds \Seen to uids, updates msgs with the new flags and returns
// the UIDs whose flags changed. Failures are logged only.
func (s *session) markSeen(sel *selection, uids []uint32, msgs map[uint32]storage.Message) map[uint32]bool {
	cmd, err := storage.NewCommand(storage.CmdFlags, storage.Flags{MailboxID: sel.mb.ID, UIDs: uids, Op: storage.FlagsAdd, Flags: []string{`\Seen`}})
	if err != nil {
		s.log.Error("set \\Seen", "err", err)
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, res, err := s.srv.cfg.Cluster.Propose(ctx, cmd)
	if err == nil {
		err = res.Err()
	}
	var fr storage.FlagsResult
	if err == nil {
		err = res.Decode(&fr)
	}
	if err != nil {
		s.log.Warn("could not set \\Seen on fetched messages", "mailbox", sel.mb.Name, "err", err)
		return nil
	}
	changed := make(map[uint32]bool, len(fr.Changed))
	for _, c := range fr.Changed {
		changed[c.UID] = true
		if m, ok := msgs[c.UID]; ok {
			m.Flags, m.ModSeq = c.Flags, c.ModSeq
			msgs[c.UID] = m
		}
	}
	return changed
}

// headerItemsOnly reports whether every body-derived item of options
// depends on the header alone (ENVELOPE, BODY[HEADER], HEADER.FIELDS and
// HEADER.FIELDS.NOT of the whole message): what mail clients fetch to
// list a mailbox. Those are computed from the stored header, not the blob.
func headerItemsOnly(options *imap.FetchOptions) bool {
	if options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 {
		return false
	}
	for _, sec := range options.BodySection {
		if len(sec.Part) > 0 || sec.Specifier != imap.PartSpecifierHeader {
			return false
		}
	}
	return true
}

// header returns what holds a message's whole header: the header stored
// apart from its blob (storage.MessageHeader) or, where there is none, the
// blob itself.
func (s *session) header(m storage.Message) ([]byte, error) {
	if h, err := s.srv.cfg.Store.BlobHeader(m.Blob); err == nil {
		return h, nil
	}
	return s.blob(m)
}

// blob reads a message body, locally or from a peer.
func (s *session) blob(m storage.Message) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	raw, err := s.srv.cfg.Cluster.FetchBlob(ctx, m.Blob)
	if err != nil {
		s.log.Warn("message body unavailable", "uid", m.UID, "blob", m.Blob.String(), "err", err)
		return nil, imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Message body temporarily unavailable")
	}
	return raw, nil
}

// writeFetch writes one FETCH response. The response writer is always
// closed, also on error, since it holds the connection's encoder.
func writeFetch(w *imapserver.FetchWriter, it item, m storage.Message, options *imap.FetchOptions, seenChanged bool, fd *fetchData) error {
	rw := w.CreateMessage(it.seq)
	rw.WriteUID(imap.UID(it.uid))
	if options.Flags || seenChanged {
		rw.WriteFlags(toFlags(m.Flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.Envelope {
		rw.WriteEnvelope(fd.envelope)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(fd.structure)
	}
	var werr error
	for i, bs := range options.BodySection {
		wc := rw.WriteBodySection(bs, int64(len(fd.sections[i])))
		_, err := wc.Write(fd.sections[i])
		werr = errors.Join(werr, err, wc.Close())
	}
	for i, bs := range options.BinarySection {
		wc := rw.WriteBinarySection(bs, int64(len(fd.binary[i])))
		_, err := wc.Write(fd.binary[i])
		werr = errors.Join(werr, err, wc.Close())
	}
	for i, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, fd.binarySizes[i])
	}
	return errors.Join(werr, rw.Close())
}

// Store implements imapserver.Session. Changed flags reach the client as
// FETCH through the tracker (the poll after STORE); messages whose flags
// did not change get their FETCH here, unless .SILENT.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	fl, err := storeFlags(flags.Flags)
	if err != nil {
		return err
	}
	items := sel.resolve(numSet)
	if len(items) == 0 {
		return nil
	}
	var op storage.FlagsOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = storage.FlagsSet
	case imap.StoreFlagsAdd:
		op = storage.FlagsAdd
	case imap.StoreFlagsDel:
		op = storage.FlagsRemove
	default:
		return imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "Unknown STORE operation")
	}
	if len(fl) == 0 && op != storage.FlagsSet {
		return s.storeResponses(w, sel, items, nil, flags.Silent)
	}
	var res storage.FlagsResult
	if _, err := s.propose("store", storage.CmdFlags, storage.Flags{MailboxID: sel.mb.ID, UIDs: uidsOf(items), Op: op, Flags: fl}, &res, errNoMailbox); err != nil {
		return err
	}
	changed := make(map[uint32]bool, len(res.Changed))
	var top uint64
	for _, c := range res.Changed {
		changed[c.UID] = true
		top = max(top, c.ModSeq)
	}
	if top > 0 {
		sel.view.waitFor(viewWaitTimeout, func() bool { return sel.view.gone || sel.view.modSeq >= top })
	}
	return s.storeResponses(w, sel, items, changed, flags.Silent)
}

// storeResponses writes FETCH FLAGS for the items whose flags the tracker
// will not announce.
func (s *session) storeResponses(w *imapserver.FetchWriter, sel *selection, items []item, changed map[uint32]bool, silent bool) error {
	if silent {
		return nil
	}
	var rest []item
	for _, it := range items {
		if !changed[it.uid] {
			rest = append(rest, it)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	msgs, err := s.loadMessages(sel.mb.ID, uidsOf(rest))
	if err != nil {
		return s.internal("store", err)
	}
	for _, it := range rest {
		m, ok := msgs[it.uid]
		if !ok {
			continue
		}
		if err := writeFetch(w, it, m, &imap.FetchOptions{Flags: true}, false, &fetchData{}); err != nil {
			return err
		}
	}
	return nil
}

// Expunge implements imapserver.Session (EXPUNGE, UID EXPUNGE and CLOSE).
// The EXPUNGE responses come from the tracker in the poll after the
// command, once the change feed has processed the write.
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return nil // CLOSE after EXAMINE expunges nothing; neither does EXPUNGE
	}
	var list []uint32
	if uids != nil {
		// Which of these carry \Deleted is decided where the command is
		// applied (OnlyDeleted), not from this node's copy: a node that
		// cannot apply entries (its disk full) would see a STORE +FLAGS
		// \Deleted the client just made as not done, expunge nothing and
		// answer OK. A flag removed through another node meanwhile keeps
		// its message too (RFC 4315).
		list = uidsOf(sel.resolve(*uids))
		if len(list) == 0 {
			return nil // never send an empty list: that means "all \Deleted"
		}
	}
	var res storage.ExpungeResult
	cmd := storage.Expunge{MailboxID: sel.mb.ID, UIDs: list, OnlyDeleted: len(list) > 0}
	if _, err := s.propose("expunge", storage.CmdExpunge, cmd, &res, errNoMailbox); err != nil {
		return err
	}
	s.waitGone(sel, res.UIDs)
	return nil
}

// waitGone waits until the view no longer holds uids, so that the poll
// after the command reports their EXPUNGEs.
func (s *session) waitGone(sel *selection, uids []uint32) {
	if len(uids) == 0 {
		return
	}
	sel.view.waitFor(viewWaitTimeout, func() bool {
		for _, u := range uids {
			if _, ok := sel.view.indexLocked(u); ok {
				return false
			}
		}
		return true
	})
}

// copyOrMove is COPY and MOVE up to the commit.
func (s *session) copyOrMove(op string, t storage.CommandType, numSet imap.NumSet, dest string) (*imap.CopyData, []uint32, error) {
	sel := s.sel
	dst, err := s.mailbox(dest)
	if err != nil {
		if errors.Is(err, errNoMailbox) {
			return nil, nil, errTryCreate
		}
		return nil, nil, err
	}
	if t == storage.CmdMove && dst.ID == sel.mb.ID {
		return nil, nil, imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "Source and destination are the same mailbox")
	}
	items := sel.resolve(numSet)
	if len(items) == 0 {
		return nil, nil, nil
	}
	var res storage.CopyResult
	if _, err := s.propose(op, t, storage.Copy{From: sel.mb.ID, To: dst.ID, UIDs: uidsOf(items)}, &res, errTryCreate); err != nil {
		return nil, nil, err
	}
	if len(res.Pairs) == 0 {
		return nil, nil, nil
	}
	data := &imap.CopyData{UIDValidity: res.UIDValidity}
	var src []uint32
	var top uint32
	for _, p := range res.Pairs {
		data.SourceUIDs.AddNum(imap.UID(p.Src))
		data.DestUIDs.AddNum(imap.UID(p.Dst))
		src = append(src, p.Src)
		top = max(top, p.Dst)
	}
	if dst.ID == sel.mb.ID {
		sel.view.waitFor(viewWaitTimeout, func() bool { return sel.view.gone || sel.view.uidNext > top })
	}
	return data, src, nil
}

// Copy implements imapserver.Session.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := s.copyOrMove("copy", storage.CmdCopy, numSet, dest)
	return data, err
}

// Move implements imapserver.SessionMove: COPYUID first, then the
// EXPUNGEs (from the tracker, in the poll after the command).
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	data, src, err := s.copyOrMove("move", storage.CmdMove, numSet, dest)
	if err != nil || data == nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	s.waitGone(s.sel, src)
	return nil
}
