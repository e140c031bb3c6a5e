package wire

import (
	"errors"
	"fmt"
)

// Answer is what the server says to a command the reader refused.
type Answer int

const (
	// AnswerBAD: a tagged BAD (untagged when the tag itself could not be
	// read). The reader has resynchronised: the next ReadCommand starts
	// at the client's next command.
	AnswerBAD Answer = iota
	// AnswerNO: a tagged NO, with Error.Code (TOOBIG for a literal or a
	// line over a limit). The reader has resynchronised.
	AnswerNO
	// AnswerBYE: "* BYE" and close the connection. The reader could not
	// find the next command within its limits and refuses all further
	// reads.
	AnswerBYE
)

func (a Answer) String() string {
	switch a {
	case AnswerBAD:
		return "BAD"
	case AnswerNO:
		return "NO"
	case AnswerBYE:
		return "BYE"
	}
	return fmt.Sprintf("Answer(%d)", int(a))
}

// Error is a refused command: the answer to give and why. Every syntax
// error and every limit the reader or a parse method enforces returns an
// *Error; I/O errors from the underlying reader are returned as they are
// (the caller closes the connection).
type Error struct {
	Answer Answer
	// Code is the response code to put in brackets, or "": "TOOBIG",
	// or one a ContinueFunc returned.
	Code string
	// Tag is the command's tag, or "" if it could not be read (then the
	// answer is untagged).
	Tag  string
	Text string
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("imap: %s [%s] %s", e.Answer, e.Code, e.Text)
	}
	return fmt.Sprintf("imap: %s %s", e.Answer, e.Text)
}

// Fatal reports whether the connection must be closed after the answer.
func (e *Error) Fatal() bool { return e.Answer == AnswerBYE }

// AsError returns err as an *Error, or nil if it is not one (an I/O error).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

func badf(format string, args ...any) *Error {
	return &Error{Answer: AnswerBAD, Text: fmt.Sprintf(format, args...)}
}

// Limits bound what one command may cost the server. A zero field takes
// the default shown.
type Limits struct {
	// MaxLine bounds a command's text: all its lines plus the literals
	// read into strings (AString, String, NString), not the streamed ones
	// (Literal). Default 64 KiB. Over it: NO [TOOBIG] (BYE if the rest of
	// the command exceeds MaxDiscard too).
	MaxLine int
	// MaxLiteral bounds a streamed literal (APPEND's message) unless the
	// caller of Command.Literal passes its own bound. Default 64 MiB.
	MaxLiteral int64
	// MaxNonSync bounds a non-synchronising literal {n+}: 4096 for
	// LITERAL- (RFC 7888 section 4), negative for LITERAL+ (no bound but
	// the others). Default 4096. Over it: BAD [TOOBIG].
	MaxNonSync int64
	// MaxDiscard bounds what the reader skips to find the next command
	// after a refused one: the rest of a long line and the non-synchronising
	// literals the client sent anyway. Default 1 MiB. Over it: BYE.
	MaxDiscard int64
	// MaxArgs bounds the arguments (atoms, strings, numbers, sets, list
	// openings) of one command. Default 4096. Over it: BAD.
	MaxArgs int
	// MaxDepth bounds the nesting of parenthesised lists. Default 32.
	// Over it: BAD.
	MaxDepth int
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	MaxLine:    64 << 10,
	MaxLiteral: 64 << 20,
	MaxNonSync: 4096,
	MaxDiscard: 1 << 20,
	MaxArgs:    4096,
	MaxDepth:   32,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxLine > 0 {
		d.MaxLine = l.MaxLine
	}
	if l.MaxLiteral > 0 {
		d.MaxLiteral = l.MaxLiteral
	}
	if l.MaxNonSync != 0 {
		d.MaxNonSync = l.MaxNonSync
	}
	if l.MaxDiscard > 0 {
		d.MaxDiscard = l.MaxDiscard
	}
	if l.MaxArgs > 0 {
		d.MaxArgs = l.MaxArgs
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	return d
}
