// Package wire is the IMAP wire layer of Raftmail's own IMAP server
// engine, meant to replace go-imap v2's imapserver (which has no handlers
// for CONDSTORE, QRESYNC, QUOTA, ID, SORT or THREAD and no hook for new
// commands): a command reader and a response writer. It imports no other
// Raftmail package and is not used by protocol/imap yet.
//
// # Why a pull parser
//
// A Reader hands a dispatcher a Command holding only the tag and the
// name; the command's handler then reads its own arguments in order
// (c.SP(), c.SeqSet(), c.List(...), c.Literal(...), c.End()). IMAP's
// grammar cannot be tokenised without knowing the command: "BODY.PEEK[1.MIME]<0.100>"
// is one atom to a generic tokeniser and five pieces to FETCH, "1:5" is
// a sequence set to FETCH and an atom to SELECT, "*" is a wildcard to LIST
// and a number to STORE, and whether "~{3}" may appear depends on the
// argument. A typed argument tree would have to guess and then be parsed a
// second time by every handler. The pull parser reads each element with
// the rules of the grammar rule the handler names, so a handler is as
// strict as the RFC and about as long as its ABNF. It also decides
// literals at the right moment: the handler that reaches a literal says
// whether it is a string (read whole, against MaxLine) or a message to
// stream (Literal, against its own bound), and only then is the
// continuation sent or the literal refused. Errors are sticky: after the
// first one every method returns it again, so a handler may ignore all
// errors but the last call's (or End's).
//
// # Grammar (RFC 9051, RFC 3501, and the extensions' syntax)
//
//	Command.Tag, Name   tag (ASTRING-CHAR except "+"), command name; "UID x" is one name
//	SP, TrySP, Byte     SP and the delimiters "[", "]", "<", ".", ">"
//	Atom                1*ATOM-CHAR
//	Keyword, PeekKeyword letters, digits, ".", "-", "_": fetch-att, section-spec,
//	                    search-key and option names (upper-cased)
//	Flag                flag: "\" atom or atom
//	Number, NZNumber    number, nz-number (32 bits)
//	Number64, NZNumber64 number64 (up to 2^63-1: mod-sequence-valzer, -value, RFC 7162)
//	Quoted              quoted, with \" and \\ only; UTF-8 allowed (RFC 9051 QUOTED-CHAR)
//	String              quoted / literal ({n} or {n+}, RFC 7888)
//	AString, NString    astring, nstring (NIL)
//	ListMailbox         list-mailbox ("%", "*")
//	SeqSet              sequence-set with "*", and "$" (RFC 5182)
//	List, Paren         "(" elem *(SP elem) ")", "(" inner ")": fetch-att lists,
//	                    RFC 4466 extension lists (select-params, fetch-modifiers,
//	                    store-modifiers), search-key groups, ID's parameter list
//	Literal             literal / literal8 (~{n}, RFC 3516), streamed
//	DateTime, Date      date-time (APPEND), date (SEARCH)
//	ExtValue, HasExtValue RFC 4466 tagged-ext-val, read generically
//
// The tests hold a miniature dispatcher (dispatch_test.go) that reads
// LOGIN, SELECT/EXAMINE with CONDSTORE and QRESYNC, FETCH and UID FETCH
// with sections, partials and CHANGEDSINCE/VANISHED, STORE with
// UNCHANGEDSINCE, SEARCH with RETURN, CHARSET, nested OR/NOT/groups and
// MODSEQ, APPEND with flags, date-time, LITERAL+, literal8, MULTIAPPEND
// (RFC 3502) and CATENATE (RFC 4469), ENABLE, ID, SORT and THREAD
// (RFC 5256) and LIST with these methods: the way real handlers are meant
// to look.
//
// # Literals
//
// A literal is announced at the end of a line: {n}, {n+}, ~{n}, ~{n+}.
// For a synchronising one the Reader calls the ContinueFunc (which writes
// "+ ..." and flushes) when the handler asks for it and it is within the
// limits; the ContinueFunc may refuse it with an *Error (NO [OVERQUOTA]),
// and a refused synchronising literal ends the command, since the client
// sends nothing more. A non-synchronising one has been sent already: if
// refused, it is skipped. A streamed literal (Command.Literal) is an
// io.Reader of exactly Size octets over the connection's bufio.Reader;
// nothing is buffered, and what the handler does not read is skipped. A
// plain literal holding NUL fails with BAD; literal8 may hold anything,
// and String/AString refuse it.
//
// # Limits and their answers
//
//	limit                  default  over it
//	MaxLine (command text, 64 KiB   NO [TOOBIG] "Command line too long" (tagged if
//	  lines + string literals)       the tag was read); NO [TOOBIG] for a string literal
//	MaxLiteral (streamed)  64 MiB   NO [TOOBIG] (or the caller's bound to Literal)
//	MaxNonSync ({n+})      4096     BAD [TOOBIG] (LITERAL-, RFC 7888); -1 for LITERAL+
//	MaxArgs                4096     BAD "Too many arguments"
//	MaxDepth (lists)       32       BAD "Lists nested too deeply"
//	MaxDiscard             1 MiB    BYE: the skip needed to find the next command
//	                                (rest of a long line, refused {n+} data) is larger
//
// Every refusal is an *Error with the Answer (BAD, NO, BYE), the Code
// and the Tag; nothing panics and memory is bounded by MaxLine plus the
// bufio.Reader's buffer. After a BAD or NO the Reader resynchronises by
// itself on the next ReadCommand: it skips the rest of the line, any
// non-synchronising literal announced at its end and the lines after it,
// and stops at a synchronising literal (the client is waiting for a "+"
// it will not get, and takes the tagged answer as the end of the
// command). After a BYE every read returns the BYE. I/O errors are
// returned as they are; io.EOF from ReadCommand is a client that closed
// between commands.
//
// The package makes no network calls: the session sets the connection's
// read and write deadlines (an inactivity timeout), under the
// bufio.Reader and the Writer, and a blocked read or a streamed literal
// ends with the deadline's error.
//
// # A dispatcher
//
//	r := wire.NewReader(bufio.NewReader(conn), limits, func(n int64) error {
//		return w.Continuation("Ready").Flush()
//	})
//	for {
//		c, err := r.ReadCommand()
//		if e := wire.AsError(err); e != nil {
//			answer(w, e) // "tag BAD ...", "tag NO [TOOBIG] ...", or "* BYE ..." and close
//			if e.Fatal() { return }
//			continue
//		} else if err != nil {
//			return // I/O
//		}
//		h, ok := handlers[c.Name]
//		if !ok {
//			err = c.Fail("Unknown command")
//		} else {
//			err = h(c, w) // reads its arguments, ends with c.End(), then acts
//		}
//		if e := wire.AsError(err); e != nil { answer(w, e) ... }
//		if r.Buffered() == 0 { w.Flush() } // no pipelined command waiting
//	}
//
// A handler reads all its arguments and calls End before it acts, so a
// syntax error never leaves a command half done. The Reader never gives
// up on a client for bad syntax alone: closing a connection after a run
// of BADs is the session's decision.
//
// # Writer
//
// A Writer writes through a bufio.Writer that only Flush (or a full
// buffer) empties, as the server coalesces its output. Items are spaced
// automatically (none after "(" or "[", none before Raw). Strings are
// written by content: quoted when 7-bit printable text (UTF-8 too if
// Writer.UTF8, for IMAP4rev2 or UTF8=ACCEPT) of at most QuotedMax
// octets; a literal {n} when they hold CR, LF or 8-bit octets; a literal8
// ~{n} when they hold NUL and BinaryString is used (BINARY, RFC 3516),
// ErrInvalid with String. AString writes an atom when it can (never for
// "NIL"), NString writes NIL. Literal streams a body of known size from
// an io.Reader. Text turns controls into spaces, so a message can never
// end a response line early. The first error is sticky and reported by
// Flush. A status text should not begin with "[", which a client reads as
// a response code.
//
// Not here yet: a response parser (client side), modified UTF-7 mailbox
// names, and the session state machine (IDLE, AUTHENTICATE read their
// lines with Reader.ReadLine).
package wire
