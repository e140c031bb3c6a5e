//go:build !chaos_reuse_uid

package storage

// reuseUID is true only in a binary built with -tags chaos_reuse_uid: the
// chaos suite's negative control, which hands out an expunged UID again to
// prove that the suite's checker catches it (see reuseuid_chaos.go).
// Never true in a real build.
const reuseUID = false

// reusedUID is never called in a real build.
func (t *tx) reusedUID(uint64, uint32) uint32 { return 0 }
