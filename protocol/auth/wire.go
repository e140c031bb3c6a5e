package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The throttle records a node sends the others (one record per gossip
// message; every record at a push-pull and in the saved file), version 1:
//
//	message: u8 version | record...
//	record:  u8 class | [16]byte key | i64 cleared | u8 origin length | origin |
//	         u8 n | n × i64 failure time
//
// Integers are big-endian; times are Unix milliseconds. The key is a hash
// of the class, the client network and the account, so neither gossip nor
// the file holds addresses or account names. An origin (a node name, 1 to
// 64 bytes) has at most 50 failure times per record, strictly ascending
// and positive (so a record fits a 512-byte gossip message); cleared is 0 or positive. decodeRecords refuses anything
// encodeRecords would not write (FuzzThrottleRecords).
const (
	wireVersion     = 1
	maxOriginLen    = 64
	maxWireTimes    = 50
	recordFixedSize = 1 + 16 + 8 + 1 + 1
	// MaxStateBytes bounds a message Merge accepts and the default size
	// of State.
	MaxStateBytes = 4 << 20
)

// ErrBadRecords: a throttle message that is not version 1 or is malformed.
var ErrBadRecords = errors.New("auth: malformed throttle records")

// record is what one node knows of one key: the failures it saw itself
// (origin) and the time of the last successful login that cleared it.
type record struct {
	class   keyClass
	id      [16]byte
	cleared int64
	origin  string
	at      []int64
}

func recordSize(r record) int { return recordFixedSize + len(r.origin) + 8*len(r.at) }

// appendRecord appends r's encoding to b; r must be valid (at most
// maxWireTimes times, an origin of 1 to maxOriginLen bytes).
func appendRecord(b []byte, r record) []byte {
	b = append(b, byte(r.class))
	b = append(b, r.id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.cleared))
	b = append(b, byte(len(r.origin)))
	b = append(b, r.origin...)
	b = append(b, byte(len(r.at)))
	for _, t := range r.at {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	return b
}

// encodeRecords is a message holding rs; nil when rs is empty.
func encodeRecords(rs []record) []byte {
	if len(rs) == 0 {
		return nil
	}
	n := 1
	for _, r := range rs {
		n += recordSize(r)
	}
	b := make([]byte, 1, n)
	b[0] = wireVersion
	for _, r := range rs {
		b = appendRecord(b, r)
	}
	return b
}

// decodeRecords parses a message. An empty message holds no records.
func decodeRecords(b []byte) ([]record, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > MaxStateBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadRecords, len(b), MaxStateBytes)
	}
	if b[0] != wireVersion {
		return nil, fmt.Errorf("%w: version %d, this node speaks %d", ErrBadRecords, b[0], wireVersion)
	}
	b = b[1:]
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrBadRecords)
	}
	var out []record
	for len(b) > 0 {
		if len(b) < recordFixedSize {
			return nil, fmt.Errorf("%w: truncated record", ErrBadRecords)
		}
		var r record
		r.class = keyClass(b[0])
		if !r.class.valid() {
			return nil, fmt.Errorf("%w: unknown key class %d", ErrBadRecords, b[0])
		}
		copy(r.id[:], b[1:17])
		r.cleared = int64(binary.BigEndian.Uint64(b[17:25]))
		if r.cleared < 0 {
			return nil, fmt.Errorf("%w: negative time", ErrBadRecords)
		}
		ol := int(b[25])
		b = b[26:]
		if ol == 0 || ol > maxOriginLen || len(b) < ol+1 {
			return nil, fmt.Errorf("%w: bad origin", ErrBadRecords)
		}
		r.origin = string(b[:ol])
		n := int(b[ol])
		b = b[ol+1:]
		if n > maxWireTimes || len(b) < 8*n {
			return nil, fmt.Errorf("%w: bad failure list", ErrBadRecords)
		}
		if n > 0 {
			r.at = make([]int64, n)
		}
		for i := range n {
			t := int64(binary.BigEndian.Uint64(b[8*i:]))
			if t <= 0 || (i > 0 && t <= r.at[i-1]) {
				return nil, fmt.Errorf("%w: failure times not positive and ascending", ErrBadRecords)
			}
			r.at[i] = t
		}
		b = b[8*n:]
		out = append(out, r)
	}
	return out, nil
}
