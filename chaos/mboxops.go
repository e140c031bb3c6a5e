package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Mailbox operations: COPY and MOVE between mailboxes of one account,
// CREATE, RENAME and DELETE of extra mailboxes ("chaos-<client>-<k>",
// renamed to "chaos-<client>-<k>-r"). The names are reused after a
// DELETE, so one name comes back with a new UIDVALIDITY.
const (
	// OpCopy is a UID COPY of UIDs of Mailbox (UIDValidity its) to
	// Target; Detail ends with the COPYUID answer when there is one.
	OpCopy = "imap.copy"
	// OpCreate is a CREATE of Mailbox.
	OpCreate = "imap.create"
	// OpRename is a RENAME of Mailbox (UIDValidity as last read) to
	// Target: the mailbox keeps its UIDVALIDITY and messages.
	OpRename = "imap.rename"
	// OpDelete is a DELETE of Mailbox (UIDValidity as last read, 0 if
	// not read): its messages leave the account.
	OpDelete = "imap.delete"
)

// isMailboxOp reports whether kind is one of the operations above (for
// the summary's count).
func isMailboxOp(kind string) bool {
	switch kind {
	case OpCopy, OpCreate, OpRename, OpDelete:
		return true
	}
	return false
}

// folderRound runs one round of mailbox operations in a logged-in session:
// CREATE a chaos folder, COPY and MOVE messages of INBOX into it, read
// it, MOVE one back, now and then RENAME it, and mostly DELETE it again;
// now and then a COPY of INBOX to Archive or a MOVE of Archive back to
// INBOX. Every step is recorded; it reports whether the session is still
// usable (false after an unknown outcome).
func (t *Traffic) folderRound(ic *imapConn, client int, node NodeInfo, acct Account, rng *rand.Rand) bool {
	rec := func(kind, mailbox string, f func(op *Op) error) (Op, bool) {
		op := t.rec.Begin(kind, node.Name, client)
		op.Account, op.Mailbox = acct.Address, mailbox
		err := ic.do(func() error { return f(&op) })
		op.Outcome = imapOutcome(err)
		if err != nil {
			op.Detail = strings.TrimSpace(op.Detail + " " + err.Error())
		}
		t.rec.Finish(op)
		return op, op.Outcome != Unknown
	}
	read := func(mailbox string) (Op, bool) {
		op := t.rec.Begin(OpFetch, node.Name, client)
		op.Account = acct.Address
		err := ic.selectAndFetch(&op, mailbox, false)
		op.Outcome = imapOutcome(err)
		if err != nil {
			op.Detail = err.Error()
		}
		t.rec.Finish(op)
		return op, op.Outcome != Unknown
	}
	pick := func(seen []Msg, n int) []uint32 {
		var out []uint32
		for _, i := range rng.Perm(len(seen))[:min(n, len(seen))] {
			out = append(out, seen[i].UID)
		}
		slices.Sort(out)
		return out
	}
	uidSet := func(uids []uint32) imap.UIDSet {
		var s imap.UIDSet
		for _, u := range uids {
			s.AddNum(imap.UID(u))
		}
		return s
	}
	// transfer copies or moves uids of the mailbox src (read as uv) to dst.
	transfer := func(kind, src string, uv uint32, uids []uint32, dst string) bool {
		_, ok := rec(kind, src, func(op *Op) error {
			op.UIDValidity, op.UIDs, op.Target = uv, uids, dst
			if kind == OpCopy {
				data, err := ic.c.Copy(uidSet(uids), dst).Wait()
				if err == nil && data != nil && data.UIDValidity != 0 {
					op.Detail = fmt.Sprintf("COPYUID %d %s %s", data.UIDValidity, data.SourceUIDs, data.DestUIDs)
				}
				return err
			}
			data, err := ic.c.Move(uidSet(uids), dst).Wait()
			if err == nil && data != nil && data.UIDValidity != 0 {
				op.Detail = fmt.Sprintf("COPYUID %d %s %s", data.UIDValidity, data.SourceUIDs, data.DestUIDs)
			}
			return err
		})
		return ok
	}

	if rng.IntN(3) == 0 {
		// INBOX and Archive.
		if rng.IntN(2) == 0 {
			in, ok := read("INBOX")
			if !ok || in.Outcome != OK || len(in.Seen) == 0 {
				return ok
			}
			return transfer(OpCopy, "INBOX", in.UIDValidity, pick(in.Seen, 1), "Archive")
		}
		ar, ok := read("Archive")
		if !ok || ar.Outcome != OK || len(ar.Seen) == 0 {
			return ok
		}
		return transfer(OpMove, "Archive", ar.UIDValidity, pick(ar.Seen, 1), "INBOX")
	}

	name := fmt.Sprintf("chaos-%d-%d", client, rng.IntN(3))
	if _, ok := rec(OpCreate, name, func(*Op) error { return ic.c.Create(name, nil).Wait() }); !ok {
		return false
	}
	in, ok := read("INBOX")
	if !ok {
		return false
	}
	if in.Outcome == OK && len(in.Seen) > 0 {
		if !transfer(OpCopy, "INBOX", in.UIDValidity, pick(in.Seen, 1+rng.IntN(2)), name) {
			return false
		}
		if rng.IntN(2) == 0 && !transfer(OpMove, "INBOX", in.UIDValidity, pick(in.Seen, 1), name) {
			return false
		}
	}
	f, ok := read(name)
	if !ok {
		return false
	}
	if f.Outcome != OK {
		return true // gone meanwhile (another session deleted it), or refused
	}
	if len(f.Seen) > 0 && rng.IntN(3) == 0 && !transfer(OpMove, name, f.UIDValidity, pick(f.Seen, 1), "INBOX") {
		return false
	}
	// RENAME and DELETE with no mailbox selected.
	if err := ic.do(func() error { return ic.c.Unselect().Wait() }); imapOutcome(err) == Unknown {
		return false
	}
	target := name
	if rng.IntN(2) == 0 {
		op, ok := rec(OpRename, name, func(op *Op) error {
			op.UIDValidity, op.Target = f.UIDValidity, name+"-r"
			return ic.c.Rename(name, name+"-r", nil).Wait()
		})
		if !ok {
			return false
		}
		if op.Outcome == OK {
			target = name + "-r"
		}
	}
	if rng.IntN(3) != 0 {
		if _, ok := rec(OpDelete, target, func(op *Op) error {
			op.UIDValidity = f.UIDValidity
			return ic.c.Delete(target).Wait()
		}); !ok {
			return false
		}
	}
	return true
}

// The checker's view of the mailbox operations (see Check).

// renKey is a mailbox name with the UIDVALIDITY it was seen under.
type renKey struct {
	k  mbKey
	uv uint32
}

// mboxIndex is what the invariants need to know about mailbox
// operations, computed once per History.
type mboxIndex struct {
	// renamed: a (name, UIDVALIDITY) that an OK or unknown RENAME made,
	// to the name it had before. A renamed mailbox keeps its UIDVALIDITY
	// and its UIDs, so reads of it under the new name are reads of the
	// same mailbox (index.canon).
	renamed map[renKey]mbKey
	// replaced: names that an OK or unknown DELETE or RENAME took away:
	// a mailbox of that name created later is another mailbox, with
	// another UIDVALIDITY.
	replaced map[mbKey]bool
	// copies: OK and unknown COPYs, by account.
	copies map[string][]*Op
}

func newMboxIndex(h History) mboxIndex {
	mi := mboxIndex{renamed: make(map[renKey]mbKey), replaced: make(map[mbKey]bool), copies: make(map[string][]*Op)}
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Outcome == Fail || op.Account == "" {
			continue
		}
		a := acctKey(op.Account)
		switch op.Kind {
		case OpRename:
			from, to := mbKey{a, mboxKey(op.Mailbox)}, mbKey{a, mboxKey(op.Target)}
			mi.replaced[from] = true
			if op.UIDValidity != 0 && from != to {
				mi.renamed[renKey{to, op.UIDValidity}] = from
			}
		case OpDelete:
			mi.replaced[mbKey{a, mboxKey(op.Mailbox)}] = true
		case OpCopy:
			mi.copies[a] = append(mi.copies[a], op)
		}
	}
	// A name deleted under a UIDVALIDITY it got by a RENAME: its first
	// name is replaced too.
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Kind == OpDelete && op.Outcome != Fail && op.UIDValidity != 0 {
			mi.replaced[mi.canon(mbKey{acctKey(op.Account), mboxKey(op.Mailbox)}, op.UIDValidity)] = true
		}
	}
	return mi
}

// canon names a mailbox seen as k under UIDVALIDITY uv by the name it had
// before any RENAME, so that one mailbox is one key whatever it is
// called. uv 0 (not known) leaves k as it is.
func (mi mboxIndex) canon(k mbKey, uv uint32) mbKey {
	if uv == 0 {
		return k
	}
	for range 64 { // a chain of renames; bounded against a loop
		prev, ok := mi.renamed[renKey{k, uv}]
		if !ok {
			break
		}
		k = prev
	}
	return k
}

func (ix *index) canon(k mbKey, uv uint32) mbKey { return ix.mboxes.canon(k, uv) }

// copies is how many copies of message cid OK or unknown COPYs in acct may
// have made: one per UID copied that was seen naming cid or never seen.
func (ix *index) copies(cid, acct string) int {
	n := 0
	for _, op := range ix.mboxes.copies[acct] {
		k := mbKey{acct, mboxKey(op.Mailbox)}
		for _, uid := range op.UIDs {
			if ids := ix.lookup(k, op.UIDValidity, uid); len(ids) == 0 || slices.Contains(ids, cid) {
				n++
			}
		}
	}
	return n
}
