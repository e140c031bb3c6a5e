package pop3

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Parse errors. Their text is sent after "-ERR ".
var (
	errEmptyLine    = errors.New("empty command")
	errBadChar      = errors.New("invalid character in command")
	errBadKeyword   = errors.New("invalid command keyword")
	errLineTooLong  = errors.New("line too long")
	errLineFlood    = errors.New("line too long, closing")
	errBadMsgNum    = errors.New("invalid message number")
	errBadBase64    = errors.New("invalid base64 data")
	errBadPlain     = errors.New("malformed PLAIN response")
	errPlainTooLong = errors.New("PLAIN response too long")
)

// command is one parsed command line.
type command struct {
	name string   // upper case keyword
	args []string // space separated arguments
	// rest is everything after the keyword and the one space that follows
	// it, unsplit (PASS takes the rest of the line: passwords may hold
	// spaces).
	rest string
}

// maxKeyword bounds a keyword; POP3 keywords are 3 or 4 characters (RFC
// 1939 section 3), extensions up to 8 or so.
const maxKeyword = 16

// parseCommand parses a command line without its line terminator: a
// keyword of ASCII letters, then arguments separated by spaces. Control
// characters are refused. Keywords are case-insensitive (RFC 1939 section
// 3) and returned in upper case.
func parseCommand(line string) (command, error) {
	if line == "" {
		return command{}, errEmptyLine
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return command{}, errBadChar
		}
	}
	kw, rest, _ := strings.Cut(line, " ")
	if kw == "" || len(kw) > maxKeyword {
		return command{}, errBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return command{}, errBadKeyword
		}
	}
	cmd := command{name: strings.ToUpper(kw), rest: rest}
	for _, f := range strings.Split(rest, " ") {
		if f != "" {
			cmd.args = append(cmd.args, f)
		}
	}
	return cmd, nil
}

// parseMsgNum parses a message number: decimal digits only, 1..n.
func parseMsgNum(s string, n int) (int, error) {
	v, err := parseUint(s)
	if err != nil || v < 1 || v > uint64(n) {
		return 0, errBadMsgNum
	}
	return int(v), nil
}

// parseUint parses a non-negative decimal number of at most 9 digits (no
// sign, no spaces): enough for message numbers and TOP line counts.
func parseUint(s string) (uint64, error) {
	if s == "" || len(s) > 9 {
		return 0, strconv.ErrRange
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// maxPlainField bounds each field of a PLAIN response.
const maxPlainField = 1024

// decodeSASL decodes a base64 SASL response line (RFC 5034 section 4): "="
// is an empty response.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	if len(s) > 4*(3*maxPlainField+2)/3+4 {
		return nil, errPlainTooLong
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadBase64
	}
	return b, nil
}

// parsePlain splits a decoded PLAIN message (RFC 4616 section 2):
// [authzid] NUL authcid NUL passwd. authcid and passwd must not be empty;
// no field may hold NUL.
func parsePlain(b []byte) (authzid, authcid, passwd string, err error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 {
		return "", "", "", errBadPlain
	}
	for _, p := range parts {
		if len(p) > maxPlainField {
			return "", "", "", errPlainTooLong
		}
	}
	if len(parts[1]) == 0 || len(parts[2]) == 0 {
		return "", "", "", errBadPlain
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}

// decodePlain decodes a base64 PLAIN response.
func decodePlain(s string) (authzid, authcid, passwd string, err error) {
	b, err := decodeSASL(s)
	if err != nil {
		return "", "", "", err
	}
	return parsePlain(b)
}

// readLine reads one line of at most max octets including the terminator
// (CRLF, or a bare LF) and returns it without the terminator. A longer line
// is consumed and errLineTooLong returned; if it goes on for more than
// 64 times max without a line end, errLineFlood.
func readLine(r *bufio.Reader, max int) (string, error) {
	var line []byte
	n := 0
	for {
		frag, err := r.ReadSlice('\n')
		n += len(frag)
		if n <= max {
			line = append(line, frag...)
		} else {
			line = nil
		}
		switch {
		case err == nil:
			if n > max {
				return "", errLineTooLong
			}
			line = line[:len(line)-1]
			if l := len(line); l > 0 && line[l-1] == '\r' {
				line = line[:l-1]
			}
			return string(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			if n > 64*max {
				return "", errLineFlood
			}
		case errors.Is(err, io.EOF) && n > 0:
			return "", io.ErrUnexpectedEOF
		default:
			return "", err
		}
	}
}

// writeMessageFrom writes a message read from r for RETR or TOP, a line
// at a time (or a buffer's worth of a longer line), never holding it
// whole: every line ends in CRLF (a bare LF becomes CRLF, a missing final
// line end is added), lines starting with "." get another ".", and the
// terminating ".\r\n" follows. bodyLines < 0 sends the whole message;
// otherwise the header, the blank line after it, and at most bodyLines
// lines of the body (TOP). A message without a blank line is all header.
func writeMessageFrom(w *bufio.Writer, r io.Reader, bodyLines int) error {
	return writeMessageFromSize(w, r, bodyLines, 32<<10)
}

func writeMessageFromSize(w *bufio.Writer, r io.Reader, bodyLines, bufSize int) error {
	br := bufio.NewReaderSize(r, bufSize)
	inBody, sent := false, 0
	lineStart := true  // nothing of the current line written yet
	pendingCR := false // a CR that ended a segment: dropped if the line ends there
	data := func(p []byte) {
		if len(p) == 0 {
			return
		}
		if lineStart && p[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(p)
		lineStart = false
	}
	endLine := func() {
		if inBody {
			sent++
		} else if lineStart {
			inBody = true
		}
		w.WriteString("\r\n")
		lineStart = true
	}
	for {
		if lineStart && !pendingCR && inBody && bodyLines >= 0 && sent >= bodyLines {
			break
		}
		seg, err := br.ReadSlice('\n')
		if len(seg) > 0 {
			end := seg[len(seg)-1] == '\n'
			content := seg
			if end {
				content = seg[:len(seg)-1]
				switch {
				case len(content) > 0 && content[len(content)-1] == '\r':
					content = content[:len(content)-1]
				case len(content) == 0 && pendingCR:
					pendingCR = false // the held CR was the line's end
				}
			}
			if pendingCR {
				// The held CR is inside the line after all.
				data([]byte{'\r'})
				pendingCR = false
			}
			if !end && len(content) > 0 && content[len(content)-1] == '\r' {
				content = content[:len(content)-1]
				pendingCR = true
			}
			data(content)
			if end {
				endLine()
			}
		}
		if errors.Is(err, io.EOF) {
			if !lineStart || pendingCR {
				// A last line without LF (a trailing CR is its end).
				endLine()
			}
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	_, err := w.WriteString(".\r\n")
	return err
}
