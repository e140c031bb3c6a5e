package smtp

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

var (
	errBareLF  = errors.New("smtp: bare LF in message data")
	queueIDEnc = base32.StdEncoding.WithPadding(base32.NoPadding)
)

// newQueueID returns 16 characters of upper-case base32 from 80 random
// bits, like a Postfix long queue ID: unique without coordination.
func newQueueID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("smtp: queue id: %w", err)
	}
	return queueIDEnc.EncodeToString(b[:]), nil
}

// receivedInfo is what a Received header says (RFC 5321 §4.4).
type receivedInfo struct {
	helo, ip, hostname, node, proto, queueID, rcpt string
	date                                           time.Time
}

// writeReceived writes the Received header, folded, ending in CRLF:
//
//	Received: from HELO ([IP])
//		by HOSTNAME (Raftmail node NODE) with ESMTPSA id QUEUEID
//		for <RCPT>; DATE
func writeReceived(w *bytes.Buffer, ri receivedInfo) {
	w.WriteString("Received: from ")
	w.WriteString(headerToken(ri.helo))
	if ri.ip != "" {
		w.WriteString(" ([")
		w.WriteString(headerToken(ri.ip))
		w.WriteString("])")
	}
	w.WriteString("\r\n\tby ")
	w.WriteString(headerToken(ri.hostname))
	w.WriteString(" (Raftmail node ")
	w.WriteString(headerToken(ri.node))
	w.WriteString(") with ")
	w.WriteString(ri.proto)
	w.WriteString(" id ")
	w.WriteString(ri.queueID)
	if ri.rcpt != "" {
		w.WriteString("\r\n\tfor <")
		w.WriteString(headerText(ri.rcpt))
		w.WriteString(">")
	}
	w.WriteString(";\r\n\t")
	w.WriteString(ri.date.Format(time.RFC1123Z))
	w.WriteString("\r\n")
}

// headerToken keeps a client-chosen word (the HELO name) from breaking the
// header: only printable ASCII without comment, quote or separator
// characters survives; anything else becomes '?'. Empty is "unknown".
func headerToken(s string) string {
	if s == "" {
		return "unknown"
	}
	if len(s) > 255 {
		s = s[:255]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>;"\`, c) >= 0 {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// headerText drops control characters (CR, LF...) from text that is
// already checked (an address), keeping UTF-8.
func headerText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '>' {
			return -1
		}
		return r
	}, s)
}

// readMessage copies the message from r into w (a spool, which enforces
// the size limit and the node's budgets). It fails with errBareLF at an LF
// not preceded by CR, and with w's error. extend is called before each
// read to push the connection's read deadline out, so a slow but steady
// upload is not cut off by the command timeout. What is left unread is
// drained by go-smtp before it replies.
func readMessage(w io.Writer, r io.Reader, extend func()) error {
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	chunk := *bp
	prevCR := false
	for {
		extend()
		k, err := r.Read(chunk)
		if k > 0 {
			if bareLF(chunk[:k], &prevCR) {
				return errBareLF
			}
			if _, werr := w.Write(chunk[:k]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bareLF reports whether b has an LF not preceded by CR; prevCR carries
// whether the previous chunk ended in CR.
func bareLF(b []byte, prevCR *bool) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			*prevCR = b[len(b)-1] == '\r'
			return false
		}
		if i == 0 && !*prevCR || i > 0 && b[i-1] != '\r' {
			return true
		}
		*prevCR = false
		b = b[i+1:]
	}
	return false
}
