// Package pop3 is Raftmail's POP3 server, written from scratch: RFC 1939
// (USER/PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL) with
// CAPA and RESP-CODES (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034) with the
// PLAIN (RFC 4616) and LOGIN mechanisms, on port 110 (plain, STLS) and 995
// (implicit TLS, [WithImplicitTLS]).
//
// What it owns: the POP3 wire protocol, the session state machine
// (AUTHORIZATION, TRANSACTION, UPDATE) and the mapping of storage and
// cluster errors to POP3 replies.
//
// What it must not do: import cluster (it declares the [Cluster] interface
// it needs), re-implement credential checks or throttling (it uses
// protocol/auth), read files or environment variables, or log passwords
// and AUTH payloads.
//
// Implementation notes:
//
//   - The maildrop is the account's INBOX. At login the session takes a
//     snapshot of the INBOX from the local store: message numbers, sizes
//     and UIDs are fixed for the session (RFC 1939 section 3). Messages
//     delivered later show up in the next session; messages expunged by
//     another session (IMAP, another POP3 client) stay listed; RETR of one
//     still works while storage keeps its body (unreferenced blobs are
//     deleted after a grace period), then answers -ERR.
//   - Sizes (STAT, LIST) are the stored message sizes: the octet count of
//     the stored blob, which is kept with CRLF line endings, i.e. the size
//     as sent before dot-stuffing. RETR and TOP send the blob as stored,
//     turning any bare LF into CRLF and dot-stuffing lines that start with
//     "." (RFC 1939 section 3).
//   - UIDL is "UIDVALIDITY.UID", both assigned by the replicated state
//     machine, so every node and every session gives a message the same
//     unique-id (RFC 1939 section 7) and it never changes while the INBOX
//     lives.
//   - DELE only marks. QUIT in the TRANSACTION state proposes one
//     storage.CmdExpunge with the UIDs of the marked messages and answers
//     +OK only once it is committed (DESIGN.md, "The promise"). If no
//     quorum can be reached the answer is -ERR [SYS/TEMP] and nothing is
//     deleted; if the outcome is unknown the connection is closed without a
//     reply, so that the client does not take a deletion that may have
//     happened for one that did not; so it is when the deletion is committed
//     but this node has not applied it (its Raft log failing, or catching
//     up), whose reads would still show the messages. A connection that ends without QUIT,
//     or times out, deletes nothing (RFC 1939 section 6).
//   - Exclusive access (RFC 1939 section 8): a maildrop is locked per node;
//     a second login to the same maildrop on the same node gets
//     -ERR [IN-USE]. Sessions on different nodes are not excluded: that is
//     safe, since deletions name UIDs and a UID expunged twice is skipped.
//   - Authentication before TLS on a plain listener is refused with
//     -ERR [AUTH] and not advertised in CAPA, unless
//     Config.AllowInsecureAuth (RFC 2595 section 2.2). After STLS the
//     buffered plaintext input is discarded, so commands injected before
//     the handshake are never run (CVE-2011-0411 class).
//   - Lines end in CRLF; a bare LF is accepted. A line longer than
//     Config.MaxLineLength gets "-ERR line too long"; after a few such
//     lines the connection is closed. Commands are answered in order, and
//     replies are flushed when no more pipelined input is buffered
//     (PIPELINING, RFC 2449 section 6.6).
//   - Timeouts: a connection still in the AUTHORIZATION state
//     Config.PreAuthTimeout (60 s) after accept is told "-ERR [SYS/TEMP]
//     login timeout" and closed, however busy it keeps itself; the TLS
//     handshake (STLS or implicit) ends by then too, and within 30 s in
//     any case. After login, Config.IdleTimeout (10 min, RFC 1939
//     section 3) without a command ends the session ("-ERR [SYS/TEMP] idle
//     timeout"), deleting nothing.
//   - The refusal lines of the connection caps (TooManyFromAddress,
//     TooManyToServer): the caps themselves are protocol/connlimit's, put
//     around the listeners by cmd, before a session exists.
//   - Shutdown stops accepting, tells sessions waiting for a command
//     "-ERR [SYS/TEMP] server shutting down" and closes them; a session in
//     the middle of a command finishes it first (a QUIT's expunge is not cut
//     short), then gets the same goodbye.
package pop3
