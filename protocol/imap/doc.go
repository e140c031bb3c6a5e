// Package imap is the IMAP server of a Raftmail node: IMAP4rev1 (RFC 3501)
// and IMAP4rev2 (RFC 9051) on github.com/emersion/go-imap/v2's imapserver,
// backed by the replicated store.
//
// # What it owns
//
//   - Serve (port 143: STARTTLS, LOGINDISABLED until TLS) and ServeTLS
//     (port 993, implicit TLS) on listeners the caller creates; Shutdown
//     says "* BYE" to every client and waits for them.
//   - Sessions: LOGIN and AUTHENTICATE PLAIN/LOGIN (SASL-IR) through the
//     shared auth.Checker; every command against the local store (reads)
//     and the cluster (writes through Propose).
//   - One change-feed goroutine per Server that turns the store's Changes
//     into imapserver.MailboxTracker updates, so IDLE and every command's
//     poll show EXISTS, EXPUNGE and FETCH FLAGS for changes made through
//     any node.
//   - Timeouts (timeout.go): a connection not logged in within
//     Config.PreAuthTimeout (60 s, TLS handshake included) is told
//     "* BYE Login timeout"; a logged-in one that leaves the server waiting
//     for input for Config.IdleTimeout (30 min, RFC 9051 section 5.4; IDLE
//     included, so a client re-issues IDLE within it) is told
//     "* BYE Autologout; idle for too long". go-imap's own read deadlines
//     (30 s per command before login, 35 min after, 5 min per literal)
//     are made inactivity timeouts, so an APPEND literal that keeps
//     arriving is never cut off.
//   - The refusal lines of the connection caps (TooManyFromAddress,
//     TooManyToServer): the caps themselves are protocol/connlimit's,
//     put around the listeners by cmd, before a session exists.
//
// # What it must not do
//
//   - Import cluster: the Cluster interface is what it needs.
//   - Assign UIDs, UIDVALIDITY or MODSEQ: the state machine does; a write
//     is acknowledged only after Propose returned (committed on a majority,
//     applied locally).
//   - Answer "not done" to a write whose outcome is unknown: it closes the
//     connection with BYE instead; so it does for a write committed but not
//     applied on this node (its Raft log failing), whose next reads here
//     would contradict an OK. Other write failures are
//     NO [UNAVAILABLE]; reads never need a quorum, so a minority node keeps
//     serving them.
//   - Advertise a capability it does not implement: imapserver panics on
//     some and has no handler at all for others (CONDSTORE, QRESYNC, QUOTA,
//     ID). Options.Caps is set explicitly in capabilities().
//   - Read files or the environment, or log passwords or AUTH payloads.
//
// # Implementation notes
//
// Sequence numbers. Each mailbox selected on the node has one view: the
// UIDs in the order the feed processed them, plus the MailboxTracker whose
// count always equals the view's length. Both change together, under the
// view's lock, only from the feed goroutine (in log order) or the loader.
// A session never keeps its own message list: a client sequence number is
// the view position mapped through the session's SessionTracker
// (EncodeSeqNum), which accounts for exactly the updates not yet delivered
// to that client. So a session's numbering changes only when the tracker
// delivers an update to it (RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE
// or SEARCH), however far the store has moved on. The view loads under its
// lock after being published, and applies adds and expunges idempotently
// (UIDs only ascend and are never reused), so a change that races with the
// load is neither lost nor applied twice. A Reset change or an overflowed
// subscription resynchronises every view from the store.
//
// Own writes. EXPUNGE, MOVE, STORE, COPY or APPEND into the selected
// mailbox wait (bounded) until the feed has processed their result, so the
// poll after the command reports the EXPUNGEs, EXISTS and FETCH FLAGS in
// the same response (RFC 6851 3.3: COPYUID before the EXPUNGEs). Flag
// changes reach their own session through the tracker too, so a
// STORE ... FLAGS.SILENT still sees an unsolicited FETCH for messages it
// changed (RFC 3501 7.4.2 allows unsolicited FETCH at any time).
//
// APPEND streams the literal into a spool of the node's accept pipeline
// (protocol/accept), which stores it on a majority and proposes one
// Deliver: the same path as SMTP. Out of disk space is NO [OVERQUOTA] Not
// enough disk space, as Dovecot says.
//
// Bodies. Blobs are read with Cluster.FetchBlob (this node, else a peer).
// FETCH items come from imapserver's Extract* helpers, except BODY[],
// BODY[HEADER] and BODY[TEXT] of a whole message, cut from the blob with
// the same bytes as go-imap (splitHeader, fuzzed against it), except that
// BODY[] of a message whose header go-message cannot read is the stored
// message, where go-imap answers nothing. Their output
// is computed before a response is started, under recover, and the body
// structure is sanitised (imapserver panics on a multipart without parts),
// so malformed MIME and non-UTF-8 never panic and get a sensible
// BODYSTRUCTURE (at worst text/plain). A non-peek body fetch sets \Seen
// through Propose; if that fails the data is served anyway.
//
// SEARCH evaluates every key of RFC 9051 6.4.4 itself; HEADER, BODY, TEXT
// and SENT* read the body, with a tolerant header parser, RFC 2047 decoding
// and go-message for transfer encodings and charsets (parseHeader,
// matchHeader, matchText: fuzzed).
//
// Known deviations: \Recent is never set. UID EXPUNGE sends only UIDs that
// carry \Deleted and asks storage to re-check the flag when applying.
package imap
