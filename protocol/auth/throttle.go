package auth

import (
	"container/list"
	"crypto/sha256"
	"net/netip"
	"slices"
	"time"
)

// keyClass is what a throttle key counts failures of.
type keyClass uint8

const (
	// classPair: one client network (an IPv4 address, an IPv6 /64) and
	// one account. Locks at Config.MaxFailures; a successful login clears
	// it.
	classPair keyClass = 1
	// classIP: one client network, whatever the account. Locks at
	// Config.MaxIPFailures; a login does not clear it.
	classIP keyClass = 2
	// classAccount: one account, from any network. Never locks; only
	// lengthens the delay before a failure is answered.
	classAccount keyClass = 3
)

func (k keyClass) valid() bool { return k >= classPair && k <= classAccount }

// label names the class in metrics.
func (k keyClass) label() string {
	switch k {
	case classPair:
		return "ip_account"
	case classIP:
		return "ip"
	}
	return "account"
}

type throttleKey struct {
	class keyClass
	id    [16]byte
}

func makeKey(class keyClass, network, account string) throttleKey {
	h := sha256.New()
	h.Write([]byte{byte(class)})
	h.Write([]byte(network))
	h.Write([]byte{0})
	h.Write([]byte(account))
	k := throttleKey{class: class}
	copy(k.id[:], h.Sum(nil))
	return k
}

// clientNetwork is what a client address is counted as: an IPv4 address
// (also when mapped into IPv6), or the /64 of an IPv6 address, which one
// subscriber usually holds whole. A string that is no IP is used as is.
func clientNetwork(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// originTimes are the failures one node saw for a key, ascending.
type originTimes struct {
	origin string
	at     []int64
}

// entry is what this node knows of one key: the failures each node saw
// (a sliding-window log per node, the newest keep(class) of them), the
// last success that cleared it, and the attempts of this node still being
// checked.
type entry struct {
	key      throttleKey
	cleared  int64
	origins  []originTimes
	inflight int
	warned   time.Time // last "locked" warning logged for this key
	elem     *list.Element
}

// maxOrigins bounds the nodes remembered per key (a cluster has far
// fewer; a record from one more replaces the origin seen longest ago).
const maxOrigins = 32

// table holds the entries, at most max of them (plus those with attempts
// in flight), the least recently used evicted first. Not safe for
// concurrent use: Checker.mu guards it.
type table struct {
	max    int
	window int64 // ms
	keep   func(keyClass) int
	byKey  map[throttleKey]*entry
	lru    *list.List // of *entry, most recently used first
}

func newTable(maxKeys int, window time.Duration, keep func(keyClass) int) *table {
	return &table{max: maxKeys, window: window.Milliseconds(), keep: keep, byKey: make(map[throttleKey]*entry), lru: list.New()}
}

// get returns k's entry or nil, and marks it used.
func (t *table) get(k throttleKey) *entry {
	e := t.byKey[k]
	if e != nil {
		t.lru.MoveToFront(e.elem)
	}
	return e
}

// getOrCreate returns k's entry, creating it (and evicting others) if
// needed.
func (t *table) getOrCreate(k throttleKey, now int64) *entry {
	if e := t.get(k); e != nil {
		return e
	}
	t.evict(now)
	e := &entry{key: k}
	e.elem = t.lru.PushFront(e)
	t.byKey[k] = e
	return e
}

// evict makes room for one more entry: it drops entries from the least
// recently used end that have nothing left to count, then, while the
// table is full, the least recently used ones without attempts in flight.
func (t *table) evict(now int64) {
	for el, n := t.lru.Back(), 0; el != nil && n < 8; n++ {
		prev := el.Prev()
		if e := el.Value.(*entry); t.dead(e, now) {
			t.remove(e)
		}
		el = prev
	}
	for el := t.lru.Back(); el != nil && len(t.byKey) >= t.max; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.inflight == 0 {
			t.remove(e)
		}
		el = prev
	}
}

func (t *table) remove(e *entry) {
	t.lru.Remove(e.elem)
	delete(t.byKey, e.key)
}

// dead reports that e counts nothing and no attempt is in flight.
func (t *table) dead(e *entry, now int64) bool {
	return e.inflight == 0 && t.count(e, now) == 0 && e.cleared <= now-t.window
}

// count is the number of failures of e within the window after its last
// clearing, plus attempts in flight.
func (t *table) count(e *entry, now int64) int {
	n := e.inflight
	from := max(e.cleared, now-t.window)
	for _, o := range e.origins {
		i, _ := slices.BinarySearch(o.at, from+1)
		n += len(o.at) - i
	}
	return n
}

// fail records a failure this node (origin) saw at now, and returns the
// record to send the others.
func (t *table) fail(e *entry, origin string, now int64) record {
	o := e.origin(origin)
	at := now
	if n := len(o.at); n > 0 && o.at[n-1] >= at {
		at = o.at[n-1] + 1 // times of one origin are distinct
	}
	o.at = append(o.at, at)
	t.trim(e, o, now)
	return e.record(o)
}

// clear records a successful login at now: failures at or before it no
// longer count, on any node. It returns the record to send the others.
func (t *table) clear(e *entry, origin string, now int64) record {
	e.cleared = max(e.cleared, now)
	o := e.origin(origin)
	t.trim(e, o, now)
	return e.record(o)
}

// merge takes in a record from another node (or from this node's saved
// state): the union of the failure times of its origin, the later
// clearing. Union and maximum do not depend on order or repetition, so
// every node that received the same records knows the same.
func (t *table) merge(r record, now int64) {
	e := t.getOrCreate(throttleKey{class: r.class, id: r.id}, now)
	e.cleared = max(e.cleared, r.cleared)
	o := e.origin(r.origin)
	if len(r.at) > 0 {
		merged := make([]int64, 0, len(o.at)+len(r.at))
		merged = append(merged, o.at...)
		merged = append(merged, r.at...)
		slices.Sort(merged)
		o.at = slices.Compact(merged)
	}
	t.trim(e, o, now)
	if t.dead(e, now) {
		t.remove(e) // nothing worth keeping (an old record)
	}
}

// trim drops the failures of o that can never count again (before the
// window, at or before the clearing) and keeps the newest keep(class).
func (t *table) trim(e *entry, o *originTimes, now int64) {
	from := max(e.cleared, now-t.window)
	i, _ := slices.BinarySearch(o.at, from+1)
	if k := min(t.keep(e.key.class), maxWireTimes); len(o.at)-i > k {
		i = len(o.at) - k
	}
	o.at = slices.Delete(o.at, 0, i)
}

// origin returns the failure list of origin, adding it if needed (and
// dropping the origin whose newest failure is oldest when there are
// already maxOrigins).
func (e *entry) origin(origin string) *originTimes {
	for i := range e.origins {
		if e.origins[i].origin == origin {
			return &e.origins[i]
		}
	}
	if len(e.origins) >= maxOrigins {
		oldest := 0
		for i, o := range e.origins {
			if last(o.at) < last(e.origins[oldest].at) {
				oldest = i
			}
		}
		e.origins = slices.Delete(e.origins, oldest, oldest+1)
	}
	e.origins = append(e.origins, originTimes{origin: origin})
	return &e.origins[len(e.origins)-1]
}

func last(at []int64) int64 {
	if len(at) == 0 {
		return 0
	}
	return at[len(at)-1]
}

func (e *entry) record(o *originTimes) record {
	return record{class: e.key.class, id: e.key.id, cleared: e.cleared, origin: o.origin, at: slices.Clone(o.at)}
}

// state encodes the live entries, most recently used first, in at most
// limit bytes.
func (t *table) state(now int64, limit int) []byte {
	var rs []record
	size := 1
	for el := t.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if t.count(e, now)-e.inflight == 0 && e.cleared <= now-t.window {
			continue
		}
		for i := range e.origins {
			o := &e.origins[i]
			t.trim(e, o, now)
			r := e.record(o)
			if size+recordSize(r) > limit {
				return encodeRecords(rs)
			}
			size += recordSize(r)
			rs = append(rs, r)
		}
	}
	return encodeRecords(rs)
}
