package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/storage"
)

// Session states (RFC 1939 section 3).
type state uint8

const (
	stateAuthorization state = iota
	stateTransaction
)

// Replies used in more than one place.
const (
	replyShutdown   = "-ERR [SYS/TEMP] server shutting down"
	replyAuthFailed = "-ERR [AUTH] Authentication failed"
	replyNeedTLS    = "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS"
	replyBadState   = "-ERR Command not valid in this state"
)

var errInUse = errors.New("pop3: maildrop in use")

// session is one client connection. Its goroutine owns every field but mu;
// Shutdown's goroutine uses mu and, while the session is idle, conn.
type session struct {
	srv         *Server
	log         *slog.Logger
	cid         uint64
	implicitTLS bool
	ip          string
	// loginBy is when the AUTHORIZATION state ends the connection
	// (Config.PreAuthTimeout after accept).
	loginBy time.Time

	ctx    context.Context // cancelled when the connection is force-closed
	cancel context.CancelFunc

	conn  net.Conn // written under mu (STLS), read freely by the owner
	isTLS bool
	r     *bufio.Reader
	w     *bufio.Writer

	state   state
	user    string // name given by USER, awaiting PASS
	account string // logged-in account address
	drop    *maildrop
	tooLong int

	mu struct {
		sync.Mutex
		idle     bool // waiting for a line, with all replies flushed
		shutdown bool // Shutdown asked this session to end
		closed   bool // conn is closed
	}
}

func newSession(srv *Server, c net.Conn, cid uint64, implicitTLS bool) *session {
	ss := &session{srv: srv, cid: cid, implicitTLS: implicitTLS, conn: c, loginBy: time.Now().Add(srv.cfg.PreAuthTimeout)}
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		ss.ip = host
	}
	ss.log = srv.log.With("cid", cid)
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	ss.r = bufio.NewReaderSize(c, 4096)
	ss.w = bufio.NewWriterSize(deadlineWriter{ss}, 16*1024)
	return ss
}

// deadlineWriter writes to the session's current connection with a fresh
// write deadline for every write.
type deadlineWriter struct{ ss *session }

func (d deadlineWriter) Write(p []byte) (int, error) {
	c := d.ss.conn
	if err := c.SetWriteDeadline(time.Now().Add(d.ss.srv.cfg.WriteTimeout)); err != nil {
		return 0, err
	}
	return c.Write(p)
}

// shutdown is called by Server.Shutdown: an idle session is told goodbye
// and closed at once; a busy one at its next read.
func (ss *session) shutdown() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.mu.shutdown = true
	if ss.mu.idle && !ss.mu.closed {
		_ = ss.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(ss.conn, replyShutdown+"\r\n")
		ss.conn.Close()
		ss.mu.closed = true
	}
}

// forceClose closes the connection and cancels the session's work.
func (ss *session) forceClose() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.mu.closed {
		ss.conn.Close()
		ss.mu.closed = true
	}
	ss.cancel()
}

func (ss *session) run() {
	defer ss.forceClose()
	ss.log.Debug("pop3 connection", "remote", ss.conn.RemoteAddr().String(), "implicit_tls", ss.implicitTLS)
	if ss.implicitTLS {
		if err := ss.startTLS(); err != nil {
			ss.log.Debug("pop3 tls handshake failed", "err", err)
			return
		}
	}
	ss.reply("+OK " + ss.srv.cfg.Hostname + " Raftmail POP3 server ready")
	for {
		line, err := ss.readLine()
		switch {
		case errors.Is(err, errLineTooLong):
			ss.tooLong++
			if ss.tooLong >= maxTooLongLines {
				ss.reply("-ERR line too long, closing connection")
				ss.flush()
				return
			}
			ss.reply("-ERR line too long")
			continue
		case errors.Is(err, errLineFlood):
			ss.reply("-ERR line too long, closing connection")
			ss.flush()
			return
		case err != nil:
			ss.endOnReadError(err)
			return
		}
		cmd, err := parseCommand(line)
		ss.trace(cmd, err)
		if err != nil {
			ss.reply("-ERR " + err.Error())
			continue
		}
		if !ss.handle(cmd) {
			ss.flush()
			return
		}
	}
}

// endOnReadError ends the session after a failed read: an idle timeout is
// told so; a closed connection or shutdown needs nothing more.
func (ss *session) endOnReadError(err error) {
	switch {
	case errors.Is(err, errSessionShutdown):
		ss.reply(replyShutdown)
		ss.flush()
	case errors.Is(err, os.ErrDeadlineExceeded) && ss.state == stateAuthorization && !time.Now().Before(ss.loginBy):
		ss.log.Debug("pop3 pre-auth timeout", "ip", ss.ip)
		ss.reply("-ERR [SYS/TEMP] login timeout, closing connection")
		ss.flush()
	case errors.Is(err, os.ErrDeadlineExceeded):
		ss.log.Debug("pop3 idle timeout")
		ss.reply("-ERR [SYS/TEMP] idle timeout, closing connection")
		ss.flush()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		ss.log.Debug("pop3 connection closed by client")
	default:
		ss.log.Debug("pop3 read", "err", err)
	}
}

var errSessionShutdown = errors.New("pop3: session shut down")

// readLine flushes pending replies unless a whole pipelined command is
// already buffered, then reads the next line. The session counts as idle
// while it waits.
func (ss *session) readLine() (string, error) {
	if ss.r.Buffered() == 0 || !bytes.Contains(peekBuffered(ss.r), []byte("\n")) {
		if err := ss.flush(); err != nil {
			return "", err
		}
	}
	ss.mu.Lock()
	if ss.mu.shutdown {
		ss.mu.Unlock()
		return "", errSessionShutdown
	}
	// Idle only with nothing left to send: Shutdown then writes its
	// goodbye straight to the connection.
	ss.mu.idle = ss.w.Buffered() == 0
	ss.mu.Unlock()
	_ = ss.conn.SetReadDeadline(ss.readDeadline())
	line, err := readLine(ss.r, ss.srv.cfg.MaxLineLength)
	ss.mu.Lock()
	ss.mu.idle = false
	closed := ss.mu.closed
	ss.mu.Unlock()
	if closed {
		return "", net.ErrClosed
	}
	return line, err
}

// readDeadline is when the wait for the next line ends: IdleTimeout from
// now, and no later than loginBy before login.
func (ss *session) readDeadline() time.Time {
	d := time.Now().Add(ss.srv.cfg.IdleTimeout)
	if ss.state == stateAuthorization && ss.loginBy.Before(d) {
		d = ss.loginBy
	}
	return d
}

func peekBuffered(r *bufio.Reader) []byte {
	b, _ := r.Peek(r.Buffered())
	return b
}

func (ss *session) reply(line string) { ss.w.WriteString(line + "\r\n") }

func (ss *session) flush() error {
	if ss.w.Buffered() == 0 {
		return nil
	}
	return ss.w.Flush()
}

// trace logs a command at debug level, without passwords or AUTH data.
func (ss *session) trace(cmd command, perr error) {
	if !ss.log.Enabled(ss.ctx, slog.LevelDebug) {
		return
	}
	if perr != nil {
		ss.log.Debug("pop3 bad command", "err", perr)
		return
	}
	args := cmd.args
	switch cmd.name {
	case "PASS":
		args = []string{"<redacted>"}
	case "AUTH":
		if len(args) > 1 {
			args = []string{args[0], "<redacted>"}
		}
	}
	ss.log.Debug("pop3 command", "cmd", cmd.name, "args", args)
}

// handle runs one command; false ends the session.
func (ss *session) handle(cmd command) bool {
	if cmd.name == "CAPA" {
		if ss.noArgs(cmd) {
			ss.capa()
		}
		return true
	}
	if cmd.name == "QUIT" {
		return ss.quit()
	}
	if ss.state == stateAuthorization {
		switch cmd.name {
		case "STLS":
			if ss.noArgs(cmd) {
				return ss.stls()
			}
		case "USER":
			ss.userCmd(cmd)
		case "PASS":
			ss.pass(cmd)
		case "AUTH":
			return ss.authCmd(cmd)
		case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET":
			ss.reply(replyBadState)
		default:
			ss.reply("-ERR Unknown command")
		}
		return true
	}
	switch cmd.name {
	case "STAT":
		if ss.noArgs(cmd) {
			n, size := ss.drop.stat()
			ss.reply(fmt.Sprintf("+OK %d %d", n, size))
		}
	case "LIST":
		ss.list(cmd, false)
	case "UIDL":
		ss.list(cmd, true)
	case "RETR":
		ss.retr(cmd)
	case "TOP":
		ss.top(cmd)
	case "DELE":
		if len(cmd.args) != 1 {
			ss.reply("-ERR Syntax: DELE msg")
		} else if i, ok := ss.msgArg(cmd.args[0]); ok {
			ss.drop.msgs[i].deleted = true
			ss.reply(fmt.Sprintf("+OK Message %d deleted", i+1))
		}
	case "NOOP":
		if ss.noArgs(cmd) {
			ss.reply("+OK")
		}
	case "RSET":
		if ss.noArgs(cmd) {
			for i := range ss.drop.msgs {
				ss.drop.msgs[i].deleted = false
			}
			n, size := ss.drop.stat()
			ss.reply(fmt.Sprintf("+OK Maildrop has %d messages (%d octets)", n, size))
		}
	case "STLS", "USER", "PASS", "AUTH":
		ss.reply(replyBadState)
	default:
		ss.reply("-ERR Unknown command")
	}
	return true
}

func (ss *session) noArgs(cmd command) bool {
	if len(cmd.args) != 0 {
		ss.reply("-ERR Syntax: " + cmd.name + " takes no arguments")
		return false
	}
	return true
}

// authAllowed reports whether credentials may be sent now.
func (ss *session) authAllowed() bool { return ss.isTLS || ss.srv.cfg.AllowInsecureAuth }

// capa answers CAPA (RFC 2449 section 5).
func (ss *session) capa() {
	ss.reply("+OK Capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} {
		ss.reply(c)
	}
	if ss.state == stateAuthorization {
		if ss.srv.cfg.TLS != nil && !ss.isTLS {
			ss.reply("STLS")
		}
		if ss.authAllowed() {
			ss.reply("USER")
			ss.reply("SASL PLAIN LOGIN")
		}
	}
	ss.reply("IMPLEMENTATION Raftmail")
	ss.reply(".")
}

// stls upgrades the connection (RFC 2595 section 4).
func (ss *session) stls() bool {
	switch {
	case ss.isTLS:
		ss.reply("-ERR Already using TLS")
		return true
	case ss.srv.cfg.TLS == nil:
		ss.reply("-ERR STLS not available")
		return true
	}
	ss.reply("+OK Begin TLS negotiation")
	if err := ss.flush(); err != nil {
		return false
	}
	if err := ss.startTLS(); err != nil {
		ss.log.Debug("pop3 stls handshake failed", "err", err)
		return false
	}
	ss.user = ""
	return true
}

// startTLS runs the server handshake on the connection and replaces the
// reader, dropping any plaintext the client sent ahead. The handshake has
// DefaultHandshakeTimeout, and the login deadline, whichever comes first.
func (ss *session) startTLS() error {
	tc := tls.Server(ss.conn, ss.srv.cfg.TLS)
	by := time.Now().Add(DefaultHandshakeTimeout)
	if ss.loginBy.Before(by) {
		by = ss.loginBy
	}
	ctx, cancel := context.WithDeadline(ss.ctx, by)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	ss.mu.Lock()
	ss.conn = tc
	ss.mu.Unlock()
	ss.isTLS = true
	ss.r = bufio.NewReaderSize(tc, 4096)
	return nil
}

func (ss *session) userCmd(cmd command) {
	if !ss.authAllowed() {
		ss.reply(replyNeedTLS)
		return
	}
	name := strings.TrimSpace(cmd.rest)
	if name == "" || len(cmd.args) != 1 {
		ss.reply("-ERR Syntax: USER name")
		return
	}
	ss.user = name
	ss.reply("+OK Send your password")
}

func (ss *session) pass(cmd command) {
	if !ss.authAllowed() {
		ss.reply(replyNeedTLS)
		return
	}
	if ss.user == "" {
		ss.reply("-ERR USER first")
		return
	}
	user := ss.user
	ss.user = ""
	if cmd.rest == "" {
		ss.reply("-ERR Syntax: PASS password")
		return
	}
	ss.replyLogin(ss.login(user, cmd.rest))
}

// authCmd runs AUTH (RFC 5034). False ends the session.
func (ss *session) authCmd(cmd command) bool {
	if !ss.authAllowed() {
		ss.reply(replyNeedTLS)
		return true
	}
	if len(cmd.args) == 0 {
		// Not in RFC 5034, but clients (Outlook) send a bare AUTH to list
		// the mechanisms, as RFC 1734 servers answered.
		ss.reply("+OK")
		ss.reply("PLAIN")
		ss.reply("LOGIN")
		ss.reply(".")
		return true
	}
	if len(cmd.args) > 2 {
		ss.reply("-ERR Syntax: AUTH mechanism [initial-response]")
		return true
	}
	var loginErr error
	authenticate := func(user, pass string) error {
		loginErr = ss.login(user, pass)
		return loginErr
	}
	var srv sasl.Server
	switch strings.ToUpper(cmd.args[0]) {
	case "PLAIN":
		srv = &plainServer{authenticate: authenticate}
	case auth.LoginMechanism:
		srv = auth.NewLoginServer(authenticate)
	default:
		ss.reply("-ERR Unsupported SASL mechanism")
		return true
	}
	var resp []byte
	if len(cmd.args) == 2 {
		b, err := decodeSASL(cmd.args[1])
		if err != nil {
			ss.reply("-ERR " + err.Error())
			return true
		}
		resp = b
	}
	for {
		chal, done, err := srv.Next(resp)
		if done || err != nil {
			switch {
			case loginErr != nil || err == nil:
				ss.replyLogin(loginErr)
			case errors.Is(err, errAuthzid):
				ss.reply(replyAuthFailed)
			default:
				ss.reply("-ERR Malformed AUTH response")
			}
			return true
		}
		ss.reply("+ " + base64.StdEncoding.EncodeToString(chal))
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			ss.reply("-ERR line too long")
			return true
		}
		if err != nil {
			ss.endOnReadError(err)
			return false
		}
		if line == "*" {
			ss.reply("-ERR AUTH cancelled")
			return true
		}
		if resp, err = decodeSASL(line); err != nil {
			ss.reply("-ERR " + err.Error())
			return true
		}
	}
}

var errAuthzid = errors.New("pop3: authorization identity differs from authentication identity")

// plainServer is the server side of SASL PLAIN (RFC 4616), with our own
// decoder. An authorization identity other than the user's own is refused.
type plainServer struct {
	authenticate func(user, pass string) error
	done         bool
}

func (p *plainServer) Next(response []byte) ([]byte, bool, error) {
	if response == nil && !p.done {
		p.done = true // ask for the response: "+ "
		return []byte{}, false, nil
	}
	authzid, user, pass, err := parsePlain(response)
	if err != nil {
		return nil, true, err
	}
	if authzid != "" && !strings.EqualFold(authzid, user) {
		return nil, true, errAuthzid
	}
	return nil, true, p.authenticate(user, pass)
}

// login checks credentials, locks and snapshots the maildrop, and enters
// the TRANSACTION state.
func (ss *session) login(user, pass string) error {
	acct, err := ss.srv.cfg.Auth.Authenticate(ss.ctx, ss.ip, user, pass)
	if err != nil {
		return err
	}
	if !ss.srv.lockMaildrop(acct.Address, ss) {
		ss.log.Info("pop3 login refused: maildrop in use", "user", acct.Address)
		return errInUse
	}
	ss.account = acct.Address // endSession unlocks
	drop, err := loadMaildrop(ss.srv.cfg.Store, acct.Address)
	if err != nil {
		ss.srv.unlockMaildrop(acct.Address, ss)
		ss.account = ""
		return err
	}
	ss.drop = drop
	ss.state = stateTransaction
	ss.log = ss.log.With("user", acct.Address)
	ss.log.Info("pop3 login", "messages", len(drop.msgs), "tls", ss.isTLS)
	return nil
}

// replyLogin answers a login attempt.
func (ss *session) replyLogin(err error) {
	switch {
	case err == nil:
		n, size := ss.drop.stat()
		ss.reply(fmt.Sprintf("+OK Maildrop has %d messages (%d octets)", n, size))
	case errors.Is(err, auth.ErrFailed), errors.Is(err, auth.ErrLoginSyntax):
		ss.reply(replyAuthFailed)
	case errors.Is(err, auth.ErrLocked):
		ss.reply("-ERR [SYS/TEMP] Too many failed logins, try again later")
	case errors.Is(err, errInUse):
		ss.reply("-ERR [IN-USE] Maildrop already in use")
	default:
		ss.log.Error("pop3 login", "err", err)
		ss.reply("-ERR [SYS/TEMP] Temporary failure, try again later")
	}
}

// msgArg parses a message number that must name a message not marked
// deleted, and answers -ERR otherwise. It returns the index.
func (ss *session) msgArg(arg string) (int, bool) {
	n, err := parseMsgNum(arg, len(ss.drop.msgs))
	if err != nil {
		ss.reply("-ERR No such message")
		return 0, false
	}
	if ss.drop.msgs[n-1].deleted {
		ss.reply(fmt.Sprintf("-ERR Message %d already deleted", n))
		return 0, false
	}
	return n - 1, true
}

// list answers LIST (sizes) or UIDL (unique-ids).
func (ss *session) list(cmd command, uidl bool) {
	value := func(m *dropMsg) string {
		if uidl {
			return ss.drop.uniqueID(m)
		}
		return fmt.Sprint(m.size)
	}
	switch len(cmd.args) {
	case 0:
		if uidl {
			ss.reply("+OK Unique-id listing follows")
		} else {
			n, size := ss.drop.stat()
			ss.reply(fmt.Sprintf("+OK %d messages (%d octets)", n, size))
		}
		for i := range ss.drop.msgs {
			if m := &ss.drop.msgs[i]; !m.deleted {
				ss.reply(fmt.Sprintf("%d %s", i+1, value(m)))
			}
		}
		ss.reply(".")
	case 1:
		if i, ok := ss.msgArg(cmd.args[0]); ok {
			ss.reply(fmt.Sprintf("+OK %d %s", i+1, value(&ss.drop.msgs[i])))
		}
	default:
		ss.reply("-ERR Syntax: " + cmd.name + " [msg]")
	}
}

func (ss *session) retr(cmd command) {
	if len(cmd.args) != 1 {
		ss.reply("-ERR Syntax: RETR msg")
		return
	}
	if i, ok := ss.msgArg(cmd.args[0]); ok {
		ss.sendMessage(i, -1)
	}
}

func (ss *session) top(cmd command) {
	if len(cmd.args) != 2 {
		ss.reply("-ERR Syntax: TOP msg lines")
		return
	}
	i, ok := ss.msgArg(cmd.args[0])
	if !ok {
		return
	}
	lines, err := parseUint(cmd.args[1])
	if err != nil {
		ss.reply("-ERR Invalid number of lines")
		return
	}
	ss.sendMessage(i, int(lines))
}

// blobTimeout bounds fetching one message body.
const blobTimeout = time.Minute

// sendMessage answers RETR (bodyLines < 0) or TOP.
func (ss *session) sendMessage(i int, bodyLines int) {
	m := &ss.drop.msgs[i]
	ctx, cancel := context.WithTimeout(ss.ctx, blobTimeout)
	body, err := ss.srv.cfg.Cluster.OpenBlob(ctx, m.blob)
	cancel()
	if err != nil {
		if _, merr := ss.srv.cfg.Store.Message(ss.drop.mailboxID, m.uid); errors.Is(merr, storage.ErrNotFound) {
			ss.reply(fmt.Sprintf("-ERR Message %d was removed by another session", i+1))
			return
		}
		ss.log.Warn("pop3 fetch message", "mailbox", "INBOX", "uid", m.uid, "err", err)
		ss.reply("-ERR [SYS/TEMP] Message temporarily unavailable, try again later")
		return
	}
	defer body.Close()
	if bodyLines < 0 {
		ss.reply(fmt.Sprintf("+OK %d octets", m.size))
	} else {
		ss.reply("+OK Top of message follows")
	}
	// Streamed, a line at a time: a big message is never held whole.
	if err := writeMessageFrom(ss.w, body, bodyLines); err != nil {
		// Cut off inside the message, after +OK: closing the connection is
		// the only true answer left (the client retries; nothing is lost).
		ss.log.Warn("pop3 read message", "mailbox", "INBOX", "uid", m.uid, "err", err)
		ss.forceClose()
	}
}

// quit answers QUIT; in the TRANSACTION state it first commits the
// deletions (the UPDATE state, RFC 1939 section 6). It always ends the
// session.
func (ss *session) quit() bool {
	const bye = "+OK Raftmail POP3 server signing off"
	if ss.state != stateTransaction {
		ss.reply(bye)
		return false
	}
	var uids []uint32
	for _, m := range ss.drop.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	if len(uids) == 0 {
		// Never propose an empty UID list: Expunge would remove every
		// message flagged \Deleted.
		ss.reply(bye)
		return false
	}
	// Send the replies to earlier pipelined commands now: if the outcome
	// of the expunge is unknown nothing more is written.
	if err := ss.flush(); err != nil {
		return false
	}
	log := ss.log.With("mailbox", "INBOX", "uids", len(uids))
	cmd, err := storage.NewCommand(storage.CmdExpunge, storage.Expunge{MailboxID: ss.drop.mailboxID, UIDs: uids})
	if err != nil {
		log.Error("pop3 expunge", "err", err)
		ss.reply("-ERR [SYS/TEMP] Temporary failure, no messages deleted")
		return false
	}
	ctx := ss.ctx
	if d := ss.srv.cfg.WriteOpTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	idx, res, err := ss.srv.cfg.Cluster.Propose(ctx, cmd)
	if err == nil && ss.srv.cfg.Store.AppliedIndex() < idx {
		// Committed, but not applied on this node (its Raft log cannot be
		// written, or it is catching up): its next reads would still show
		// the messages. Close without a reply, as for an unknown outcome;
		// the client checks again on reconnecting.
		log.Warn("pop3 expunge committed but not applied on this node, closing without reply", "index", idx, "applied", ss.srv.cfg.Store.AppliedIndex())
		return false
	}
	if err != nil {
		var u interface{ OutcomeUnknown() bool }
		if errors.As(err, &u) && u.OutcomeUnknown() {
			// The deletion may have been committed: neither +OK nor -ERR
			// would be true. Close without a reply.
			log.Warn("pop3 expunge outcome unknown, closing without reply", "err", err)
			return false
		}
		log.Warn("pop3 expunge failed, nothing deleted", "err", err)
		ss.reply("-ERR [SYS/TEMP] Cannot delete messages now, none were deleted; try again later")
		return false
	}
	if err := res.Err(); err != nil {
		log.Warn("pop3 expunge refused", "err", err)
		if errors.Is(err, storage.ErrNotFound) {
			ss.reply("-ERR [SYS/PERM] Maildrop no longer exists")
		} else {
			ss.reply("-ERR [SYS/TEMP] Temporary failure, no messages deleted")
		}
		return false
	}
	var er storage.ExpungeResult
	if err := res.Decode(&er); err != nil {
		log.Warn("pop3 expunge result", "err", err)
	}
	log.Info("pop3 expunged", "deleted", len(er.UIDs))
	ss.reply(fmt.Sprintf("%s (%d messages deleted)", bye, len(uids)))
	return false
}
