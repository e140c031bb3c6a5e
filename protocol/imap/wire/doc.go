// Package wire is the IMAP wire layer of Raftmail's own IMAP server
// engine: a command reader (a pull parser over a bufio.Reader, with
// literals, continuations and limits) and a buffered response writer. It
// imports no other Raftmail package.
package wire
