package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// SearchWord is in the body of every 100th generated message (k%100 == 0),
// so that `bench imap`'s SEARCH TEXT matches 1 % of a mailbox filled by
// `bench smtp`.
const SearchWord = "quokkafjord"

// DefaultFrom is the envelope sender of MX workloads.
const DefaultFrom = "bench@sender.example"

// textLine is the body line of ordinary generated messages: the same for
// every message, so that bodies compress as well as plain text does.
const textLine = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"

// uniqueLineLen is the length of a body line of a unique message: 76
// base64 characters and CRLF, as in a MIME attachment.
const uniqueLineLen = 76 + 2

// MessageSpec describes the generated messages of a workload.
type MessageSpec struct {
	// From and To go in the From: and To: header fields.
	From, To string
	// Size is each message's length in bytes, headers included (at least
	// the headers: a smaller Size gives the headers alone).
	Size int
	// Unique fills each body with base64 lines of pseudo-random bytes
	// drawn from Seed and the message number, like an attachment: no two
	// messages share a body, and bodies do not compress. Otherwise every
	// body repeats one line of English text.
	Unique bool
	// Seed picks the unique bodies; two runs with different seeds send
	// different bodies.
	Seed uint64
}

// Message returns generated message number k from from to to, size bytes
// long in all (headers and body; at least the headers), in CRLF lines.
func Message(k int, from, to string, size int) []byte {
	var buf bytes.Buffer
	buf.Grow(size + 512)
	_, _ = MessageSpec{From: from, To: to, Size: size}.WriteTo(&buf, k)
	return buf.Bytes()
}

// chunk is how much of a body WriteTo hands to w at a time.
const chunk = 64 << 10

// WriteTo writes message number k to w, a chunk at a time, so that a
// message of tens of megabytes is never held whole. It returns the bytes
// written.
func (s MessageSpec) WriteTo(w io.Writer, k int) (int64, error) {
	var hdr bytes.Buffer
	now := time.Now()
	fmt.Fprintf(&hdr, "From: <%s>\r\nTo: <%s>\r\nSubject: raftmail bench message %d\r\n", s.From, s.To, k)
	fmt.Fprintf(&hdr, "Date: %s\r\nMessage-ID: <%d.%d@bench.invalid>\r\nX-Bench-Seq: %d\r\n", now.Format(time.RFC1123Z), k, now.UnixNano(), k)
	if s.Unique {
		hdr.WriteString("MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n")
	}
	hdr.WriteString("\r\n")
	if k%100 == 0 {
		hdr.WriteString(SearchWord + "\r\n")
	}

	lineLen := len(textLine)
	var next func(line []byte) // fills one whole line, CRLF included
	if s.Unique {
		lineLen = uniqueLineLen
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[0:], s.Seed)
		binary.LittleEndian.PutUint64(seed[8:], uint64(k))
		rng := rand.NewChaCha8(seed)
		var raw [57]byte // 57 bytes are 76 base64 characters
		next = func(line []byte) {
			_, _ = rng.Read(raw[:])
			base64.StdEncoding.Encode(line, raw[:])
			line[76], line[77] = '\r', '\n'
		}
	} else {
		next = func(line []byte) { copy(line, textLine) }
	}

	// The body is full lines, then what is left: a shorter last line
	// (rest >= 2), or, for one byte, the last full line one byte longer.
	body := max(s.Size-hdr.Len(), 0)
	full, rest := body/lineLen, body%lineLen
	longer := false
	if rest == 1 && full > 0 {
		full--
		longer = true
	}
	var n int64
	m, err := w.Write(hdr.Bytes())
	n += int64(m)
	if err != nil {
		return n, err
	}
	buf := make([]byte, 0, min(chunk, body+lineLen+1))
	flush := func() error {
		m, err := w.Write(buf)
		n += int64(m)
		buf = buf[:0]
		return err
	}
	for i := 0; i < full; i++ {
		if len(buf)+lineLen > cap(buf) {
			if err := flush(); err != nil {
				return n, err
			}
		}
		buf = buf[:len(buf)+lineLen]
		next(buf[len(buf)-lineLen:])
	}
	if rest >= 2 || longer {
		line := make([]byte, lineLen)
		next(line)
		if longer {
			buf = append(buf, line[:lineLen-2]...)
			buf = append(buf, '.', '\r', '\n')
		} else {
			buf = append(buf, line[:rest-2]...)
			buf = append(buf, '\r', '\n')
		}
	}
	if len(buf) > 0 {
		if err := flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// ParseSize reads a byte count: 1234, 10k, 10KiB, 1m, 1MiB, 1GiB, 1TiB
// (powers of 1024; case-insensitive).
func ParseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"tb", 1 << 40},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
	} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = v, u.mult
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 || n > math.MaxInt/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 10240, 10KiB, 1MiB, 1GiB)", s)
	}
	return n * mult, nil
}
