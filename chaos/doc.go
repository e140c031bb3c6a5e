// Package chaos is Raftmail's chaos suite: it runs a real cluster (local
// processes, each in a network namespace of its own as root, or Docker
// containers) under mail traffic, injects one fault per scenario (kill -9,
// SIGSTOP, partitions, cut or one-way links, flapping, disk full, hung or
// failing disks, power loss, wipe and rejoin...),
// records what every client was told, reads back what every node holds,
// and checks DESIGN.md's promise with pure functions over that record.
//
// Operators run it too (`raftmail chaos run`), so it is a product feature,
// not only a test. No production package imports chaos.
//
// The pieces:
//
//	history.go   what was recorded: operations, faults, samples, final state
//	check.go     the invariants, pure functions of a History
//	liveness.go  the liveness invariant: per node and phase, the longest wait for a 250
//	report.go    JSON, one summary line per scenario, a self-contained HTML page
//	launcher*.go starting, killing, pausing, partitioning nodes
//	netns.go     the process backend's network namespaces: links, cuts, netem
//	diskfault.go the process backend's disk faults on faultfs mounts: stalls, EIO, ENOSPC, power loss
//	faultfs/     the FUSE file system under them, and its durability model
//	traffic.go   SMTP senders, liveness probes and IMAP sessions that record every operation
//	pop3.go      the POP3 client: UIDL, RETR, DELE+QUIT recorded as reads and expunges
//	scenario.go  warm-up, fault, heal, read-back, check
package chaos
