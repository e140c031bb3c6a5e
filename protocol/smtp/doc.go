// Package smtp is Raftmail's SMTP server, on github.com/emersion/go-smtp,
// in two modes chosen per Server:
//
//   - MX (port 25, RFC 5321): mail from anyone for local domains and their
//     aliases. It never relays and never offers AUTH: a recipient in a
//     domain that is not ours is refused at RCPT with 554 5.7.1, an unknown
//     local recipient with 550 5.1.1.
//   - Submission (587 with STARTTLS, 465 with implicit TLS; RFC 6409,
//     RFC 8314): AUTH PLAIN and LOGIN (RFC 4954), offered and accepted only
//     over TLS, checked by protocol/auth (app passwords, throttling). MAIL
//     FROM and every address of the From header field must be the account
//     or an alias delivering to it (Config.SenderCheck relaxes either; a
//     message without exactly one From field that parses is refused, as
//     mox does: RFC 5322 §3.6 requires it and RFC 6409 §8 gives the MSA no
//     way to make one up). Local recipients are delivered, remote ones
//     queued for protocol/delivery.
//
// It owns the SMTP dialogue and its part of accepting a message (DESIGN.md
// "Accepting a message"): the message streams into a spool of the accept
// pipeline (protocol/accept) within MaxMessageBytes, a Received header is
// built (client HELO and IP, this host and node, ESMTP, ESMTPS or ESMTPSA
// per RFC 3848, the queue ID, the recipient if there is just one, the
// date), SPF/DKIM/DMARC are checked or DKIM signs from the spool, then the
// pipeline stores the body on a majority and proposes ONE storage.Deliver
// carrying the local targets (INBOX of each distinct account) and, for
// remote recipients, one outbound QueueEntry; only then "250 2.0.0 Ok:
// queued as ID".
//
// It must not: import cluster (the pipeline declares what it needs);
// answer 250 before the commit; answer 4xx when the outcome of the commit
// is unknown (it closes the connection without a reply instead, RFC 5321
// §4.2.5); log passwords or AUTH payloads; read files or the environment.
//
// Replies worth knowing: 451 4.3.0 when the blob or the Deliver could not
// be committed (nothing was); 452 4.3.1 when the node's budget of bytes in
// flight from unauthenticated senders is spent, or no disk space is left
// for the message; 552 5.3.4 over the size limit (at MAIL for a declared
// SIZE=, while streaming DATA/BDAT otherwise) or for a header over the
// pipeline's MaxHeaderBytes; 552 5.2.2 when an
// account is over quota (at RCPT when already full, after DATA when the
// message would overflow it); 452 4.5.3 past MaxRecipients; 530 5.7.0
// for AUTH before STARTTLS and for mail without AUTH on submission;
// 535 5.7.8 / 454 4.7.0 for failed / throttled logins; 553 5.7.1 for a
// sender the user does not own (at MAIL), 550 5.7.1 for a From header
// address they do not own and 550 5.6.0 for a missing, repeated or
// unreadable From field (after DATA); 554 5.5.2 for a bare LF in DATA or BDAT
// (RFC 5321 §2.3.8; SMTP smuggling). go-smtp v0.25.1 itself passes bare
// LFs through, so the check is ours.
//
// Timeouts and caps: Config.ReadTimeout (5 minutes, RFC 5321 §4.5.3.2)
// bounds every wait for a command, the first included, so a client that
// connects and never sends EHLO is told "421 4.4.2" and closed after it;
// on 465 it bounds the TLS handshake too. The connection caps are
// protocol/connlimit's, put around the listeners by cmd; this package
// gives their refusal lines (TooManyFromAddress, TooManyToServer).
//
// Implementation notes:
//
//   - go-smtp calls Backend.NewSession at EHLO and again after STARTTLS, so
//     a session knows whether it is on TLS from the start. AUTH is refused
//     by the session (not by go-smtp's AllowInsecureAuth) so that the reply
//     is 530 5.7.0 as submission clients expect.
//   - Shutdown: each accepted connection is wrapped; once closing, a
//     connection not inside DATA/BDAT gets a read deadline in the past, so
//     go-smtp's wait for the next command ends with "421 4.4.2" and the
//     connection closes. A session inside a message finishes it first.
//   - go-smtp v0.25.1 treats a BDAT chunk cut short by the end of the
//     connection as complete (and the message too, if the chunk was LAST).
//     The wrapped connection remembers any read error, and Data stores
//     nothing when one happened before the message ended.
//   - Known gaps: no rDNS in Received; HELO and EHLO both say ESMTP in
//     Received (go-smtp does not tell them apart); "RCPT TO:<postmaster>"
//     without a domain is refused by go-smtp's parser; address literals
//     and non-ASCII domains are never local (storage keeps A-labels only);
//     DSN, REQUIRETLS and BINARYMIME are not offered; a message that would
//     overflow one recipient's quota is refused for all of them (Deliver
//     is atomic).
package smtp
