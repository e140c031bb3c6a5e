// Package delivery is Raftmail's outbound MTA: it delivers the replicated
// outbound queue (storage.QueueEntry, filled by protocol/smtp's
// submission) to remote MX hosts, with retries and bounces, from whichever
// nodes are alive (DESIGN.md "Outbound queue").
//
// A Service runs on every node and has two loops:
//
//   - The scheduler acts only while the node leads, and only after a Raft
//     Barrier following the gain of leadership. Every PollInterval it
//     leases each due entry (NextAttempt passed, not held, no live lease)
//     to a live voter, round-robin, with storage.CmdQueueLease. Apply
//     grants a lease only if the entry is still due, unheld and unleased at
//     the command's time, so two leaders around a leader change never both
//     lease it.
//   - The worker delivers the entries leased to its own node. For one
//     entry it groups the pending recipients by domain and, per domain,
//     looks up MX (RFC 5321 §5.1: no MX means the domain's own A/AAAA;
//     RFC 7505: a null MX "." fails at once with 556 5.1.10), tries the
//     hosts in preference order (random among equal preferences) and each
//     of their addresses, until one host takes the transaction: EHLO with
//     Config.Hostname, STARTTLS when offered (opportunistic unless
//     RequireTLS; certificates unverified unless VerifyTLS, like Postfix's
//     "may" level; a failed handshake is retried once in plain text), MAIL
//     FROM, RCPT TO for each recipient (per-recipient 2xx/4xx/5xx), one
//     DATA for all accepted ones. The outcome is committed with
//     storage.CmdQueueResult: delivered and failed (5xx) recipients are
//     final, deferred (4xx, connection and DNS failures) ones are retried
//     after RetrySchedule (Postfix-like 5m, 10m, 20m, 40m, then hourly),
//     until MaxQueueLifetime (5 days) makes them fail. An entry with no
//     pending recipient is finished: a DSN (RFC 3464, multipart/report,
//     RFC 6522) for the failed recipients goes to the sender (into the
//     INBOX of a local sender, else queued with the null sender), never
//     for a null sender; then the entry is removed (storage.CmdQueueRemove).
//
// Leases and failures: a lease lasts LeaseDuration (5 minutes) and the
// worker renews it every third of that while an attempt runs. If the node
// dies or stops, nothing is recorded; the lease expires and the scheduler
// leases the entry to another node, which delivers it again. A remote may
// see a duplicate (the dead node may have finished DATA), never a loss. The
// same holds for a result or bounce that cannot be committed: the next
// attempt redoes the work (a bounce is sent before the entry is removed, so
// a crash between the two can duplicate a bounce, never lose one). A node
// does not retry an entry under the same lease after its result failed to
// commit, so a lost quorum does not make it hammer the remote.
//
// It must not: import cluster (it declares the Cluster interface it needs);
// read files or the environment; use time.Now inside storage commands (the
// proposer stamps them with Config.Now).
//
// Known gaps: no MTA-STS (RFC 8461) or DANE (RFC 7672), so RequireTLS is
// all-or-nothing; no SMTPUTF8 or REQUIRETLS forwarding; no DSN extension
// (RFC 3461) parameters (NOTIFY/RET/ENVID) are honoured, since submission
// does not offer them; the scheduler balances by round-robin, not by the
// load of each node; the queue is polled (PollInterval) rather than
// watched; the whole message is held in memory while it is sent; a bounce
// to a full local mailbox is dropped; delivery to IP address literals
// ("user@[192.0.2.1]") is not supported.
package delivery
