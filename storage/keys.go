package storage

import (
	"encoding/binary"
	"strings"
)

// Keyspace. Every key starts with one byte naming its keyspace:
//
//	'm'  metadata: replicated, in snapshots and in the state hash
//	'b'  blobs: message bodies by SHA-256, node-local
//	'w'  wanted blobs: referenced by metadata but absent here, node-local
//	'h'  blob headers: the header block of each local blob, node-local,
//	     kept in the sstables (not value-separated) for header-only reads
//	'c'  blob continuation chunks: a blob longer than BlobChunkSize keeps
//	     its first chunk under 'b' and the rest here, by hash and index
//
// Inside metadata a second byte names the table. Table numbers are never
// reused.
const (
	prefixMeta   = 'm'
	prefixBlob   = 'b'
	prefixWanted = 'w'
	prefixHeader = 'h'
	prefixChunk  = 'c'

	tApplied     = 0x01 // -> be64 last applied index
	tSetting     = 0x02 // + key -> value
	tToken       = 0x03 // + id -> JoinToken JSON
	tCert        = 0x04 // + serial (hex) -> NodeCert JSON
	tDomain      = 0x10 // + name -> Domain JSON
	tAccount     = 0x11 // + domain 0x00 local -> Account JSON
	tAlias       = 0x12 // + domain 0x00 local -> Alias JSON
	tMailbox     = 0x20 // + be64 id -> Mailbox JSON
	tMailboxName = 0x21 // + account 0x00 name -> be64 id
	tMessage     = 0x22 // + be64 mailbox id + be32 uid -> Message JSON
	tBlobRef     = 0x30 // + hash -> be64 reference count
	tBlobGarbage = 0x31 // + be64 ordered time + hash -> empty: unreferenced since that time
	tBlobGarbIdx = 0x32 // + hash -> be64 ordered time (the tBlobGarbage key's time)
	tQueue       = 0x40 // + id -> QueueEntry JSON
	tDedup       = 0x50 // + command id -> be64 time + Result JSON
	tDedupTime   = 0x51 // + be64 ordered time + command id -> empty
)

var (
	metaStart   = []byte{prefixMeta}
	metaEnd     = []byte{prefixMeta + 1}
	wantedStart = []byte{prefixWanted}
	wantedEnd   = []byte{prefixWanted + 1}
	keyApplied  = []byte{prefixMeta, tApplied}
)

func metaKey(table byte, parts ...string) []byte {
	n := 2
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 2, n)
	k[0], k[1] = prefixMeta, table
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// splitAddr splits a normalised address at its last '@'.
func splitAddr(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, ""
	}
	return addr[:i], addr[i+1:]
}

func settingKey(key string) []byte { return metaKey(tSetting, key) }
func tokenKey(id string) []byte    { return metaKey(tToken, id) }
func certKey(serial string) []byte { return metaKey(tCert, serial) }
func domainKey(name string) []byte { return metaKey(tDomain, name) }
func queueKey(id string) []byte    { return metaKey(tQueue, id) }

func accountKey(addr string) []byte {
	l, d := splitAddr(addr)
	return metaKey(tAccount, d, "\x00", l)
}

// accountDomainPrefix is the prefix of every account key in domain; "" is
// every account.
func accountDomainPrefix(domain string) []byte {
	if domain == "" {
		return metaKey(tAccount)
	}
	return metaKey(tAccount, domain, "\x00")
}

func aliasKey(addr string) []byte {
	l, d := splitAddr(addr)
	return metaKey(tAlias, d, "\x00", l)
}

func aliasDomainPrefix(domain string) []byte {
	if domain == "" {
		return metaKey(tAlias)
	}
	return metaKey(tAlias, domain, "\x00")
}

func mailboxKey(id uint64) []byte {
	return append([]byte{prefixMeta, tMailbox}, be64(id)...)
}

func mailboxNameKey(account, name string) []byte {
	return metaKey(tMailboxName, account, "\x00", name)
}

func mailboxNamePrefix(account string) []byte {
	return metaKey(tMailboxName, account, "\x00")
}

func messagePrefix(mailboxID uint64) []byte {
	return append([]byte{prefixMeta, tMessage}, be64(mailboxID)...)
}

func messageKey(mailboxID uint64, uid uint32) []byte {
	return binary.BigEndian.AppendUint32(messagePrefix(mailboxID), uid)
}

func blobRefKey(h Hash) []byte { return append([]byte{prefixMeta, tBlobRef}, h[:]...) }
func blobKey(h Hash) []byte    { return append([]byte{prefixBlob}, h[:]...) }
func wantedKey(h Hash) []byte  { return append([]byte{prefixWanted}, h[:]...) }
func headerKey(h Hash) []byte  { return append([]byte{prefixHeader}, h[:]...) }

// chunkKey is continuation chunk i (i >= 1) of blob h.
func chunkKey(h Hash, i uint32) []byte {
	k := make([]byte, 0, 1+len(h)+4)
	k = append(k, prefixChunk)
	k = append(k, h[:]...)
	return binary.BigEndian.AppendUint32(k, i)
}

// chunkBounds are the bounds of every continuation chunk of blob h.
func chunkBounds(h Hash) (lo, hi []byte) {
	return chunkKey(h, 0), chunkKey(h, 1<<32-1)
}

func blobGarbageKey(nanos uint64, h Hash) []byte {
	k := append([]byte{prefixMeta, tBlobGarbage}, be64(nanos)...)
	return append(k, h[:]...)
}
func blobGarbIdxKey(h Hash) []byte { return append([]byte{prefixMeta, tBlobGarbIdx}, h[:]...) }

func dedupKey(id [16]byte) []byte { return append([]byte{prefixMeta, tDedup}, id[:]...) }

// orderedNanos maps signed nanoseconds to an unsigned value with the same
// order, so that big-endian keys sort by time.
func orderedNanos(n int64) uint64 { return uint64(n) ^ (1 << 63) }

func dedupTimeKey(nanos int64, id [16]byte) []byte {
	k := append([]byte{prefixMeta, tDedupTime}, be64(orderedNanos(nanos))...)
	return append(k, id[:]...)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
