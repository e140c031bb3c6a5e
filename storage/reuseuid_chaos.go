//go:build chaos_reuse_uid

package storage

// The chaos suite's negative control (go build -tags chaos_reuse_uid): a
// new message gets the UID after the highest one still in the mailbox, so
// expunging the newest message makes its UID come back, which breaks
// DESIGN.md's promise 3 on purpose; chaos's uid-stability check must say
// so. Deterministic (every node applies the same), so nodes still
// converge. Never build a release with it.

const reuseUID = true

// reusedUID is one above the highest UID in mailbox id, at most next.
func (t *tx) reusedUID(id uint64, next uint32) uint32 {
	uid := uint32(1)
	for _, m := range t.messages(id) {
		uid = max(uid, m.UID+1)
	}
	return min(uid, next)
}
