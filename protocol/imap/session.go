package imap

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// delim is the hierarchy separator of mailbox names (storage uses "/").
const delim = '/'

// session is one IMAP connection. imapserver calls its methods from the
// connection's goroutine one at a time, except Idle, which runs on a second
// goroutine and — when the client vanishes mid-IDLE — may still be running
// (or not yet started) when Close is called. Hence mu, closed and idling;
// bye is the only method called from elsewhere (Shutdown, the watchdog).
type session struct {
	srv  *Server
	conn *imapserver.Conn
	log  *slog.Logger
	// connLog is log as created (key cid, no user), never reassigned:
	// what bye and the watchdog, which run on other goroutines, log with.
	connLog *slog.Logger
	ip      string
	user    string // account address once logged in
	sel     *selection

	// The watchdog (timeout.go): start is when the connection was
	// accepted; loggedIn is set by Login; ac is the connection's
	// activity record (nil if it was not accepted through Serve or
	// ServeTLS); raw is what a stuck BYE closes.
	start    time.Time
	loggedIn atomic.Bool
	ac       *activityConn
	raw      net.Conn

	mu       sync.Mutex // guards closed, timer, and sel against Close/Idle
	closed   bool
	timer    *time.Timer    // the watchdog's; nil once Close stopped it
	expiring sync.WaitGroup // a watchdog saying BYE
	idling   sync.WaitGroup
}

// selection is the selected mailbox of a session.
type selection struct {
	mb       storage.Mailbox // as of SELECT: ID, name, UIDVALIDITY
	view     *view
	st       *imapserver.SessionTracker
	readOnly bool
	saved    []uint32 // SEARCHRES ($): UIDs saved by SEARCH RETURN (SAVE)
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func newSession(srv *Server, conn *imapserver.Conn) *session {
	cid := srv.nextCID.Add(1)
	nc := conn.NetConn()
	ip := ""
	if addr, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip = addr.IP.String()
	}
	log := srv.log.With("cid", cid)
	s := &session{srv: srv, conn: conn, ip: ip, log: log, connLog: log, start: time.Now(), raw: nc}
	if s.ac = activityOf(nc); s.ac != nil {
		s.raw = s.ac
	}
	s.startWatchdog()
	return s
}

func (s *session) bye(text string) {
	if err := s.conn.Bye(text); err != nil {
		s.connLog.Debug("bye", "err", err)
	}
}

// Close implements imapserver.Session.
func (s *session) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.mu.Unlock()
	s.expiring.Wait()
	s.idling.Wait()
	s.unselect()
	s.srv.sessionClosed(s)
	s.log.Debug("connection closed")
	return nil
}

// ctx returns a context for one request to the store or cluster.
func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.srv.ctx, s.srv.cfg.WriteTimeout)
}

// Errors on the wire.

func imapErr(typ imap.StatusResponseType, code imap.ResponseCode, text string) *imap.Error {
	return &imap.Error{Type: typ, Code: code, Text: text}
}

var (
	errUnavailable = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Temporary failure, try again later")
	errReadOnly    = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "Mailbox is read-only")
	errNoMailbox   = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeNonExistent, "No such mailbox")
	errTryCreate   = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTryCreate, "No such mailbox")
	errClosing     = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Connection closed")
	// As Dovecot answers when its disk is full.
	errNoDiskSpace = imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeOverQuota, "Not enough disk space")
)

// internal logs err and answers a generic temporary failure.
func (s *session) internal(op string, err error) error {
	s.log.Error(op+" failed", "err", err)
	return errUnavailable
}

// writeFailed maps a Propose or APPEND commit error: an unknown outcome closes
// the connection with BYE (the client must not be told "not done" for what
// may be done); anything else is a clean temporary failure.
func (s *session) writeFailed(op string, err error) error {
	var u interface{ OutcomeUnknown() bool }
	if errors.As(err, &u) && u.OutcomeUnknown() {
		s.log.Error(op+": outcome unknown, closing the connection", "err", err)
		s.bye("Outcome of the last command is unknown, please reconnect and check")
		return errClosing
	}
	s.log.Warn(op+": cluster write failed", "err", err)
	return errUnavailable
}

// refused maps a state machine refusal (Result.Err) or a read error.
func (s *session) refused(op string, err error, notFound *imap.Error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return notFound
	case errors.Is(err, storage.ErrExists):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, storage.ErrOverQuota):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeOverQuota, "Over quota")
	case errors.Is(err, storage.ErrInvalid):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "Not allowed: "+sanitizeText(err.Error()))
	case errors.Is(err, storage.ErrNotEmpty):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeInUse, "Not empty")
	}
	return s.internal(op, err)
}

// sanitizeText keeps a response text on one line of printable ASCII.
func sanitizeText(t string) string {
	b := []byte(t)
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// propose commits one command and decodes its result into out (nil: no
// data expected). Wire errors are ready to return.
func (s *session) propose(op string, t storage.CommandType, payload any, out any, notFound *imap.Error) (uint64, error) {
	cmd, err := storage.NewCommand(t, payload)
	if err != nil {
		return 0, s.internal(op, err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	idx, res, err := s.srv.cfg.Cluster.Propose(ctx, cmd)
	if err != nil {
		return 0, s.writeFailed(op, err)
	}
	if applied := s.srv.cfg.Store.AppliedIndex(); applied < idx {
		// Committed, but this node has not applied it (its Raft log cannot
		// be written, or it fell behind): what this session reads next
		// would not show the write (an EXPUNGE's message back, a flag
		// unset). The client is told to reconnect, as for an unknown
		// outcome, rather than OK followed by reads that contradict it.
		s.log.Error(op+": committed but not applied on this node, closing the connection", "index", idx, "applied", applied)
		s.bye("This server is behind the cluster, please reconnect")
		return idx, errClosing
	}
	if err := res.Err(); err != nil {
		return idx, s.refused(op, err, notFound)
	}
	if out != nil {
		if err := res.Decode(out); err != nil {
			return idx, s.internal(op, err)
		}
	}
	return idx, nil
}

// Authentication.

// Login implements imapserver.Session.
func (s *session) Login(username, password string) error {
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.WriteTimeout)
	defer cancel()
	acct, err := s.srv.cfg.Auth.Authenticate(ctx, s.ip, username, password)
	switch {
	case errors.Is(err, auth.ErrFailed):
		return imapserver.ErrAuthFailed
	case errors.Is(err, auth.ErrLocked):
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeUnavailable, "Too many failed logins, try again later")
	case err != nil:
		return s.internal("login", err)
	}
	s.user = acct.Address
	s.log = s.log.With("user", acct.Address)
	s.loggedIn.Store(true)
	s.rearmWatchdog(s.srv.cfg.IdleTimeout)
	s.log.Info("logged in", "ip", s.ip)
	return nil
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *session) AuthenticateMechanisms() []string {
	return []string{sasl.Plain, auth.LoginMechanism}
}

// Authenticate implements imapserver.SessionSASL.
func (s *session) Authenticate(mech string) (sasl.Server, error) {
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeAuthorizationFailed, "SASL identity not supported")
			}
			return s.Login(username, password)
		}), nil
	case auth.LoginMechanism:
		return auth.NewLoginServer(s.Login), nil
	}
	return nil, imapErr(imap.StatusResponseTypeNo, "", "SASL mechanism not supported")
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *session) AppendLimit() uint32 { return uint32(s.srv.cfg.AppendLimit) }

// Namespace implements imapserver.SessionNamespace.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// Mailboxes.

func (s *session) mailbox(name string) (storage.Mailbox, error) {
	mb, err := s.srv.cfg.Store.Mailbox(s.user, name)
	if err != nil {
		if errors.Is(err, storage.ErrInvalid) {
			return mb, errNoMailbox
		}
		return mb, s.refused("read mailbox", err, errNoMailbox)
	}
	return mb, nil
}

// Create implements imapserver.Session. Missing parents are created first
// (RFC 3501 6.3.3).
func (s *session) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimRight(name, string(delim))
	if name == "" {
		return imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeCannot, "Empty mailbox name")
	}
	use := ""
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return imapErr(imap.StatusResponseTypeNo, "USEATTR", "Only one special-use attribute per mailbox")
		}
		use = string(options.SpecialUse[0])
		if !slices.ContainsFunc(specialUses, func(u string) bool { return strings.EqualFold(u, use) }) {
			return imapErr(imap.StatusResponseTypeNo, "USEATTR", "Unsupported special-use attribute")
		}
	}
	parts := strings.Split(name, string(delim))
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], string(delim))
		if _, err := s.srv.cfg.Store.Mailbox(s.user, parent); err == nil {
			continue
		}
		_, err := s.propose("create", storage.CmdMailboxCreate, storage.MailboxCreate{Account: s.user, Name: parent}, nil, errNoMailbox)
		var ie *imap.Error
		if err != nil && !(errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists) {
			return err
		}
	}
	_, err := s.propose("create", storage.CmdMailboxCreate, storage.MailboxCreate{Account: s.user, Name: name, SpecialUse: use}, nil, errNoMailbox)
	return err
}

var specialUses = []string{`\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`}

// Delete implements imapserver.Session.
func (s *session) Delete(name string) error {
	_, err := s.propose("delete", storage.CmdMailboxDelete, storage.MailboxDelete{Account: s.user, Name: name}, nil, errNoMailbox)
	return err
}

// Rename implements imapserver.Session. Children move along (storage).
func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	newName = strings.TrimRight(newName, string(delim))
	_, err := s.propose("rename", storage.CmdMailboxRename, storage.MailboxRename{Account: s.user, From: oldName, To: newName}, nil, errNoMailbox)
	return err
}

// Subscribe implements imapserver.Session.
func (s *session) Subscribe(name string) error {
	_, err := s.propose("subscribe", storage.CmdMailboxSubscribe, storage.MailboxSubscribe{Account: s.user, Name: name, Subscribed: true}, nil, errNoMailbox)
	return err
}

// Unsubscribe implements imapserver.Session.
func (s *session) Unsubscribe(name string) error {
	_, err := s.propose("unsubscribe", storage.CmdMailboxSubscribe, storage.MailboxSubscribe{Account: s.user, Name: name, Subscribed: false}, nil, errNoMailbox)
	return err
}

// canonInbox spells a leading "inbox" level of a pattern or reference as
// INBOX, since the INBOX name is case-insensitive.
func canonInbox(p string) string {
	if len(p) >= 5 && strings.EqualFold(p[:5], "INBOX") && (len(p) == 5 || p[5] == delim) {
		return "INBOX" + p[5:]
	}
	return p
}

func listMatch(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) || imapserver.MatchList(name, delim, canonInbox(ref), canonInbox(p)) {
			return true
		}
	}
	return false
}

// List implements imapserver.Session: LIST (with LIST-EXTENDED selection
// and return options, SPECIAL-USE, CHILDREN, LIST-STATUS) and LSUB.
// Levels that exist only as parents of other mailboxes are listed as
// \Noselect.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	if options == nil {
		options = &imap.ListOptions{}
	}
	mbs, err := s.srv.cfg.Store.Mailboxes(s.user)
	if err != nil {
		return s.internal("list", err)
	}
	byName := make(map[string]storage.Mailbox, len(mbs))
	names := make(map[string]bool) // every name, existing or implied parent
	for _, mb := range mbs {
		byName[mb.Name] = mb
		names[mb.Name] = true
		for i := strings.IndexByte(mb.Name, delim); i >= 0; {
			names[mb.Name[:i]] = true
			j := strings.IndexByte(mb.Name[i+1:], delim)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	hasChildren := map[string]bool{}
	subscribedChild := map[string]bool{}
	for n := range names {
		if i := strings.LastIndexByte(n, delim); i >= 0 {
			hasChildren[n[:i]] = true
		}
	}
	for _, mb := range mbs {
		if !mb.Subscribed {
			continue
		}
		for i := strings.LastIndexByte(mb.Name, delim); i >= 0; i = strings.LastIndexByte(mb.Name[:i], delim) {
			subscribedChild[mb.Name[:i]] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
	for _, name := range sorted {
		if !listMatch(name, ref, patterns) {
			continue
		}
		mb, exists := byName[name]
		data := &imap.ListData{Mailbox: name, Delim: delim}
		subscribed := exists && mb.Subscribed
		if options.SelectSubscribed && !subscribed {
			if !options.SelectRecursiveMatch || !subscribedChild[name] {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if options.SelectSpecialUse && (!exists || mb.SpecialUse == "") {
			continue
		}
		if !exists {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
		}
		if hasChildren[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if exists && mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(mb.SpecialUse))
		}
		if exists && options.ReturnStatus != nil {
			st, err := s.statusData(mb, options.ReturnStatus)
			if err != nil {
				return err
			}
			data.Status = st
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// Status implements imapserver.Session.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.mailbox(name)
	if err != nil {
		return nil, err
	}
	return s.statusData(mb, options)
}

// statusData fills every item options asks for: imapserver dereferences
// the pointers of all requested items.
func (s *session) statusData(mb storage.Mailbox, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{Mailbox: mb.Name, UIDNext: imap.UID(mb.UIDNext), UIDValidity: mb.UIDValidity}
	n, size := mb.Messages, mb.Size
	data.NumMessages, data.Size = &n, &size
	var zero uint32
	data.NumRecent = &zero
	limit := uint32(s.srv.cfg.AppendLimit)
	data.AppendLimit = &limit
	if options.NumUnseen || options.NumDeleted || options.DeletedStorage {
		msgs, err := s.srv.cfg.Store.Messages(mb.ID)
		if err != nil {
			return nil, s.internal("status", err)
		}
		var unseen, deleted uint32
		var deletedSize int64
		for _, m := range msgs {
			if !slices.Contains(m.Flags, `\Seen`) {
				unseen++
			}
			if slices.Contains(m.Flags, `\Deleted`) {
				deleted++
				deletedSize += m.Size
			}
		}
		data.NumUnseen, data.NumDeleted, data.DeletedStorage = &unseen, &deleted, &deletedSize
	}
	return data, nil
}

// Append implements imapserver.Session: the literal streams into a spool,
// then the accept pipeline stores it on a majority and proposes one
// Deliver. The internal date is the client's, or the command's time.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if err := s.srv.cfg.Store.CheckSpace(r.Size()); err != nil {
		return nil, s.storageRefusal(err)
	}
	mb, err := s.mailbox(mailbox)
	if err != nil {
		if errors.Is(err, errNoMailbox) {
			return nil, errTryCreate
		}
		return nil, err
	}
	var flags []string
	if options != nil {
		flags, err = storeFlags(options.Flags)
		if err != nil {
			return nil, err
		}
	}
	size := r.Size()
	if size > s.srv.cfg.AppendLimit {
		return nil, imapErr(imap.StatusResponseTypeNo, imap.ResponseCodeTooBig, "Message too big")
	}
	sp := s.srv.cfg.Accept.NewSpool(size+1, size, false)
	defer sp.Close()
	if _, err := io.Copy(sp, r); err != nil {
		if sp.Err() != nil {
			// The spool failed (its file); imapserver drains the rest.
			return nil, s.internal("append: spool", err)
		}
		return nil, err // the connection is broken
	}
	if err := sp.Err(); err != nil {
		return nil, s.internal("append: spool", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	res, out, err := s.srv.cfg.Accept.Commit(ctx, accept.Message{Spool: sp, ReadBack: true}, func(st accept.Stored) (storage.Deliver, error) {
		d := storage.Deliver{
			Blob: st.Hash, Size: st.Size,
			Targets: []storage.DeliverTarget{{Account: s.user, Mailbox: mb.Name, Flags: flags}},
		}
		if options != nil {
			d.InternalDate = options.Time // zero when the client gave no date
		}
		return d, nil
	})
	switch out {
	case accept.Accepted:
	case accept.NoSpace:
		s.log.Warn("append: no disk space for the message", "mailbox", mb.Name, "err", err)
		return nil, errNoDiskSpace
	case accept.Unknown, accept.TempFail:
		return nil, s.writeFailed("append", err)
	default:
		return nil, s.refused("append", err, errTryCreate)
	}
	var dr storage.DeliverResult
	if err := res.Decode(&dr); err != nil {
		return nil, s.internal("append", err)
	}
	if len(dr.Placed) != 1 {
		return nil, s.internal("append", errors.New("deliver placed no message"))
	}
	p := dr.Placed[0]
	if placed, err := s.srv.cfg.Store.MailboxByID(p.MailboxID); err == nil {
		mb = placed
	}
	if sel := s.sel; sel != nil && sel.mb.ID == p.MailboxID {
		// Let the poll after APPEND announce the new message.
		sel.view.waitFor(viewWaitTimeout, func() bool { return sel.view.gone || sel.view.uidNext > p.UID })
	}
	s.log.Info("appended", "mailbox", mb.Name, "uid", p.UID, "size", size)
	return &imap.AppendData{UID: imap.UID(p.UID), UIDValidity: mb.UIDValidity}, nil
}

var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagDraft, imap.FlagFlagged, imap.FlagSeen}

// storeFlags converts flags for storage: system flags in canonical case,
// \Recent dropped (it cannot be stored), other backslash flags refused.
func storeFlags(in []imap.Flag) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, f := range in {
		if strings.HasPrefix(string(f), `\`) {
			if strings.EqualFold(string(f), `\Recent`) {
				continue
			}
			i := slices.IndexFunc(systemFlags, func(sf imap.Flag) bool { return strings.EqualFold(string(sf), string(f)) })
			if i < 0 {
				return nil, imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "Unknown system flag")
			}
			out = append(out, string(systemFlags[i]))
			continue
		}
		if len(f) > 255 {
			return nil, imapErr(imap.StatusResponseTypeBad, imap.ResponseCodeClientBug, "Keyword too long")
		}
		out = append(out, string(f))
	}
	return out, nil
}
