// Package accept is Raftmail's one path for accepting a message (DESIGN.md
// "Accepting a message"), shared by SMTP DATA/BDAT, IMAP APPEND and the
// bounces protocol/delivery writes:
//
//  1. Spool: the message streams into a Spool as it arrives, its size limit
//     enforced on the way. A small message stays in memory while the
//     node's spool memory budget (SpoolMemory) allows; anything else goes
//     to an unlinked temporary file in SpoolDir. The header block is kept
//     in memory (at most MaxHeaderBytes) for the checks that need it; the
//     body is only ever read as a stream. Messages from unauthenticated
//     senders count against a node-wide budget of bytes in flight
//     (UnauthInFlight): past it Write fails with ErrBusy and the sender is
//     told to retry later.
//  2. The protocol checks the message from the spool (SPF, DKIM, DMARC,
//     DKIM signing in protocol/smtp, through protocol/mailauth's streaming
//     calls) and builds a Message: new trace fields, the header block, the
//     body's place in the spool.
//  3. Store hashes the Message once and stores it on a majority of voters
//     (Cluster.StoreBlobFrom), every copy read from the spool on its own.
//  4. Deliver proposes one Deliver command and classifies the outcome
//     (Outcome): the protocol maps it to its own reply.
//
// It must not: import cluster (it declares the Cluster interface it
// needs); answer anything on the wire; hold a message whole in memory
// beyond SpoolMemoryMessage; leave spool files behind (they are unlinked
// when created and closed when the last reader is done, which may be after
// Commit returns: pushes to slow peers go on in the background).
package accept
