package smtp

import gosmtp "github.com/emersion/go-smtp"

// Replies. Errors are mapped to these only here, at the edge; go-smtp
// writes a returned *SMTPError as it is.

// The lines a client past a connection cap reads before the connection is
// closed, in place of the greeting: 421 4.7.0, as Postfix answers past
// smtpd_client_connection_count_limit (RFC 5321 §3.8, RFC 3463 X.7.0).
// The caps are protocol/connlimit's, put around the listeners by cmd; no
// session is started.
const (
	TooManyFromAddress = "421 4.7.0 Too many connections from your address, try again later"
	TooManyToServer    = "421 4.7.0 Too many connections to this server, try again later"
)

func reply(code int, e0, e1, e2 int, msg string) *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.EnhancedCode{e0, e1, e2}, Message: msg}
}

var (
	replyTempFail     = reply(451, 4, 3, 0, "Temporary failure, please try again later")
	replyRelayDenied  = reply(554, 5, 7, 1, "Relay access denied")
	replyUnknownUser  = reply(550, 5, 1, 1, "Recipient address rejected: User unknown")
	replyBadRcpt      = reply(501, 5, 1, 3, "Bad recipient address syntax")
	replyBadSender    = reply(501, 5, 1, 7, "Bad sender address syntax")
	replyNeedUTF8     = reply(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8")
	replyTooManyRcpts = reply(452, 4, 5, 3, "Too many recipients")
	replyMailboxFull  = reply(552, 5, 2, 2, "Mailbox full")
	replyTooBig       = reply(552, 5, 3, 4, "Message size exceeds fixed limit")
	// RFC 3463 §3.4: X.3.1 "Mail system full", temporary at 452 (RFC
	// 5321 §4.2.2: insufficient system storage).
	replyNoStorage = reply(452, 4, 3, 1, "Insufficient system storage, try again later")
	replyBusy      = reply(452, 4, 3, 1, "Too much mail in flight on this server, try again later")
	// The header is held in memory while it is checked (accept.Config.MaxHeaderBytes).
	replyHeaderTooLong = reply(552, 5, 3, 4, "Message header exceeds fixed limit")
	// RFC 5321 §2.3.8: lines end in CRLF. A bare LF is how SMTP smuggling
	// starts (a later hop may read "\n.\n" as the end of data), so it is
	// refused like Postfix's smtpd_forbid_bare_newline does.
	replyBareLF = reply(554, 5, 5, 2, "Bare LF in message data is not allowed, lines must end in CRLF")

	replyAuthRequired      = reply(530, 5, 7, 0, "Authentication required")
	replyNeedTLS           = reply(530, 5, 7, 0, "Must issue a STARTTLS command first")
	replyAuthNotEnabled    = reply(503, 5, 5, 1, "Authentication not enabled on this port, use submission")
	replyAuthInTransaction = reply(503, 5, 5, 1, "AUTH not permitted during a mail transaction")
	replyAuthFailed        = reply(535, 5, 7, 8, "Authentication credentials invalid")
	replyAuthLocked        = reply(454, 4, 7, 0, "Too many failed logins, try again later")
	replyAuthTemp          = reply(454, 4, 7, 0, "Temporary authentication failure")
	replyAuthSyntax        = reply(501, 5, 5, 2, "Malformed AUTH response")
	replySenderNotOwned    = reply(553, 5, 7, 1, "Sender address rejected: not owned by the authenticated user")
	// Submission, after DATA: the From header field (Config.SenderCheck).
	replyFromNotOwned = reply(550, 5, 7, 1, "From header address rejected: not owned by the authenticated user")
	replyNoFrom       = reply(550, 5, 6, 0, "Message must have a From header field with the sender's address")
	replyManyFrom     = reply(550, 5, 6, 0, "Message must have only one From header field")
)
