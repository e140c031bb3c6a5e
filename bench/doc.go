// Package bench is Raftmail's load generator: SMTP (MX or submission),
// IMAP, POP3 and "250 → IDLE EXISTS" visibility workloads against any mail
// server, with latency percentiles, and the report that puts two servers'
// figures side by side (docs/benchmarks.md, docs/bench-peers.svg).
//
// It speaks only the wire protocols, through go-smtp's and go-imap's
// clients and a small POP3 client of its own, so it measures Raftmail,
// Postfix + Dovecot or anything else the same way. It imports nothing of
// Raftmail; no production package imports it (cmd/raftmail's `bench`
// command wires it to the CLI). It never retries a failed message: a
// failure is counted by its reply code.
package bench
