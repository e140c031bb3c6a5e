// Package chaos is Raftmail's chaos suite: it runs a real cluster (local
// processes, each in a network namespace of its own as root, or Docker
// containers) under mail traffic, injects one fault per scenario, or two for a pair (kill -9,
// SIGSTOP, partitions, cut or one-way links, flapping, disk full, hung or
// failing disks, power loss, wipe and rejoin, clock skew...),
// records what every client was told, reads back what every node holds,
// and checks DESIGN.md's promise with pure functions over that record.
//
// Operators run it too (`raftmail chaos run`), so it is a product feature,
// not only a test. No production package imports chaos.
//
// The pieces:
//
//	history.go   what was recorded: operations, faults, samples, final state, blob checks
//	check.go     the invariants, pure functions of a History
//	mboxops.go   COPY, MOVE, CREATE, RENAME, DELETE in the traffic, and what the checker knows of them
//	durability.go every node asked for each acknowledged blob (admin API, local store only): durable-at-ack, blobs-on-every-node
//	liveness.go  the liveness invariant: per node and phase, the longest wait for a 250
//	report.go    JSON, one summary line per scenario, a self-contained HTML page
//	launcher*.go starting, killing, pausing, partitioning nodes
//	netns.go     the process backend's network namespaces: links, cuts, netem
//	clock.go     clock faults: a chaos_clock build's wall-clock offset per node
//	combine.go   two faults at once: a pair "a+b", random pairs for the soak
//	diskfault.go the process backend's disk faults on faultfs mounts: stalls, EIO, ENOSPC, power loss
//	faultfs/     the FUSE file system under them, and its durability model
//	traffic.go   SMTP senders, liveness probes and IMAP sessions that record every operation
//	pop3.go      the POP3 client: UIDL, RETR, DELE+QUIT recorded as reads and expunges
//	scenario.go  warm-up, fault, heal, read-back, check
//	sink.go      the outside world of outbound mail: a DNS server and an SMTP sink MX that records what it takes
//	outbound.go  the wait for the outbound queue to drain, and the outbound-delivered invariant
//
// Outbound delivery is at-least-once: the sink may take a message more
// than once (a node that delivered it died or lost its quorum before
// committing the result, and another delivered it again once the lease
// expired). outbound-delivered counts those copies and fails only a loss,
// a phantom, a changed body, a bounce that reached the sink or brought no
// DSN, or an entry still queued once the cluster is healthy.
package chaos
