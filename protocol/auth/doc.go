// Package auth is what SMTP submission, IMAP and POP3 share to log users
// in: the credential check against the replicated store (account password or
// app password), throttling of failed logins, and the SASL LOGIN server
// mechanism that go-sasl lacks.
//
// Throttling counts failures in a sliding window (30 minutes) under three
// keys: the pair (client network, account), where a client network is an
// IPv4 address or an IPv6 /64; the client network alone; and the account
// alone. Ten failures of a pair lock that pair, fifty of a network lock
// the network (ErrLocked, answered before any password check); the account
// key never locks, it only lengthens the delay before a failure is
// answered (250ms doubling to 4s, whichever key has most failures; at most
// MaxDelayed answers wait at once, each bounded by its context). So the
// right user from another network is never locked out by someone else's
// failures. A successful login clears its pair, on every node; it does not
// clear the network. Attempts in flight count, so parallel guesses on one
// node get no more checks than the limit.
//
// Failures are shared by the nodes without the Raft log: each failure
// becomes a record (key hash, node, that node's recent failure times, the
// last clearing) that Config.Peers broadcasts; Merge takes in what the
// others send. Merging is a union of failure times per node and a maximum
// of clearings, so order, loss and repetition do not matter and a later
// full exchange (State) heals what was lost. State is also what cmd saves
// so a restarted node keeps its locks. The table is bounded (MaxKeys, least
// recently used first; about 300 bytes a key), a record fits a 512-byte
// gossip message, and the decoder is fuzzed (FuzzThrottleRecords).
//
// It imports storage only. It never logs passwords or AUTH payloads; the
// records hold hashes of addresses and account names, not the names.
package auth
