package smtp

import gosmtp "github.com/emersion/go-smtp"

// Replies. Errors are mapped to these only here, at the edge; go-smtp
// writes a returned *SMTPError as it is.

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
	// RFC 3463 4.3.1: the node's disk is below its free-space floor.
	replyNoSpace = reply(452, 4, 3, 1, "Insufficient system storage")
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
)
