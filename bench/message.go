package bench

import (
	"bytes"
	"fmt"
	"math"
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

// Message returns generated message number k from from to to, size bytes
// long in all (headers and body; at least the headers), in CRLF lines.
func Message(k int, from, to string, size int) []byte {
	var buf bytes.Buffer
	buf.Grow(size + 512)
	now := time.Now()
	fmt.Fprintf(&buf, "From: <%s>\r\nTo: <%s>\r\nSubject: raftmail bench message %d\r\n", from, to, k)
	fmt.Fprintf(&buf, "Date: %s\r\nMessage-ID: <%d.%d@bench.invalid>\r\nX-Bench-Seq: %d\r\n\r\n",
		now.Format(time.RFC1123Z), k, now.UnixNano(), k)
	if k%100 == 0 {
		buf.WriteString(SearchWord + "\r\n")
	}
	const line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
	for buf.Len()+len(line) <= size {
		buf.WriteString(line)
	}
	switch rest := size - buf.Len(); {
	case rest >= 2:
		buf.WriteString(line[:rest-2])
		buf.WriteString("\r\n")
	case rest == 1: // lengthen the last line by one byte
		b := buf.Bytes()
		return append(append(b[:len(b)-2:len(b)-2], '.'), "\r\n"...)
	}
	return buf.Bytes()
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
