// Package connlimit caps the connections a node's mail listeners hold, per
// client address and per node, so that no client (or flood of clients) can
// take every file descriptor of the process: a node out of descriptors can
// no longer accept on its admin, gossip or cluster ports either.
//
// # What it owns
//
//   - Limiter: the counters of one protocol (SMTP MX, submission, IMAP,
//     POP3). Every listener of that protocol is wrapped by the same
//     Limiter (Wrap for 25, 587, 143, 110; WrapTLS for 465, 993, 995), so
//     587 and 465 count together, as do 143 and 993.
//   - The wrapped listener's Accept: a connection past a cap is answered
//     at once with the protocol's refusal line (SMTP 421 4.7.0, IMAP
//   - BYE [UNAVAILABLE], POP3 -ERR [SYS/TEMP]) under a short write
//     deadline and closed, before the protocol server sees it; on an
//     implicit-TLS listener it is closed without a word (no handshake is
//     spent on it). Accept never returns a refusal to the server, and on
//     EMFILE/ENFILE it backs off (5 ms doubling to 500 ms) and logs once
//     per LogInterval instead of returning the error, so the server's
//     accept loop neither spins nor stops.
//   - Refusal logs, carrying the number of refusals since the last line:
//     per-address refusals at most once per client address and
//     LogInterval, node-cap refusals at most once per LogInterval (with the
//     last address), so that a flood from many addresses is not a flood of
//     log lines. The first refusal is logged at once; the Limiter's one
//     goroutine (from the first refusal until Close) logs the rest when
//     their interval is over, so the end of a flood is logged too.
//   - The figures for Prometheus (Collector): raftmail_connections_open
//     {protocol} and raftmail_connections_refused_total{protocol,reason},
//     reason "per_ip" or "per_node".
//   - ParseExempt (the --conn-limit-exempt list) and Fit (scaling the node
//     caps down to the descriptors the process may open).
//
// # Counting
//
// A connection counts from Accept until its Close. A client address is
// the IP address; IPv4-mapped IPv6 addresses count as IPv4, and IPv6
// addresses count per /64, the smallest network one subscriber usually
// holds (otherwise one host could take 2^64 addresses' worth of caps).
// Addresses in Config.Exempt (default loopback, like Postfix's
// $mynetworks exception to smtpd_client_connection_count_limit) are not
// held to the per-address cap but still count towards the node's. The
// per-address cap is checked first, so a client over both is told it is
// its own address.
//
// # What it must not do
//
//   - Import other Raftmail packages: it knows nothing of the protocols
//     but the refusal lines it is given.
//   - Read files or the environment (cmd reads RLIMIT_NOFILE and passes
//     the budget to Fit).
//   - Hold the accept loop: a refusal is one small write to a fresh socket
//     (it fits the socket buffer, and the deadline bounds it anyway).
package connlimit
