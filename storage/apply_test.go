package storage

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestCommands(t *testing.T) {
	blob, _ := blobOf("hello")
	type tc struct {
		name    string
		prep    func(h *harness) // after the base setup
		typ     CommandType
		payload func(h *harness) any
		want    error
		check   func(t *testing.T, h *harness, r Result)
	}
	p := func(v any) func(*harness) any { return func(*harness) any { return v } }
	inboxOf := func(h *harness, acct string) uint64 { return h.mailbox(acct, "INBOX").ID }
	withMsgs := func(h *harness) {
		h.deliver("a@example.test", "", "one")
		h.deliver("a@example.test", "", "two", `\Deleted`)
		h.deliver("a@example.test", "", "three", `\Seen`)
	}
	cases := []tc{
		{name: "noop", typ: CmdNoop, payload: p(nil)},
		{name: "setting set", typ: CmdSettingSet, payload: p(SettingSet{Key: "cluster-id", Value: []byte("c1")}),
			check: func(t *testing.T, h *harness, r Result) {
				v, err := h.s.Setting("cluster-id")
				if err != nil || string(v) != "c1" {
					t.Fatalf("Setting = %q, %v", v, err)
				}
			}},
		{name: "setting delete", prep: func(h *harness) { h.ok(CmdSettingSet, SettingSet{Key: "k", Value: []byte("v")}) },
			typ: CmdSettingSet, payload: p(SettingSet{Key: "k"}),
			check: func(t *testing.T, h *harness, r Result) {
				if _, err := h.s.Setting("k"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Setting after delete: %v", err)
				}
			}},
		{name: "setting empty key", typ: CmdSettingSet, payload: p(SettingSet{Value: []byte("v")}), want: ErrInvalid},
		{name: "token add", typ: CmdTokenAdd, payload: p(JoinToken{ID: "t1", SecretHash: []byte{1}, Description: "node 2"}),
			check: func(t *testing.T, h *harness, r Result) {
				tok, err := h.s.Token("t1")
				if err != nil || tok.Created.IsZero() || tok.Description != "node 2" {
					t.Fatalf("Token = %+v, %v", tok, err)
				}
			}},
		{name: "token add duplicate", prep: func(h *harness) { h.ok(CmdTokenAdd, JoinToken{ID: "t1"}) },
			typ: CmdTokenAdd, payload: p(JoinToken{ID: "t1"}), want: ErrExists},
		{name: "token revoke", prep: func(h *harness) { h.ok(CmdTokenAdd, JoinToken{ID: "t1"}) },
			typ: CmdTokenRevoke, payload: p(TokenRevoke{ID: "t1"}),
			check: func(t *testing.T, h *harness, r Result) {
				if tok, _ := h.s.Token("t1"); !tok.Revoked {
					t.Fatal("not revoked")
				}
			}},
		{name: "token revoke missing", typ: CmdTokenRevoke, payload: p(TokenRevoke{ID: "nope"}), want: ErrNotFound},
		{name: "domain add", typ: CmdDomainAdd, payload: p(DomainAdd{Name: "Other.TEST"}),
			check: func(t *testing.T, h *harness, r Result) {
				if _, err := h.s.Domain("other.test"); err != nil {
					t.Fatal(err)
				}
				ds, _ := h.s.Domains()
				if len(ds) != 2 {
					t.Fatalf("Domains = %v", ds)
				}
			}},
		{name: "domain add exists", typ: CmdDomainAdd, payload: p(DomainAdd{Name: "example.test"}), want: ErrExists},
		{name: "domain add invalid", typ: CmdDomainAdd, payload: p(DomainAdd{Name: "bad domain"}), want: ErrInvalid},
		{name: "domain remove not empty", typ: CmdDomainRemove, payload: p(DomainRemove{Name: "example.test"}), want: ErrNotEmpty},
		{name: "domain remove", prep: func(h *harness) { h.ok(CmdDomainAdd, DomainAdd{Name: "x.test"}) },
			typ: CmdDomainRemove, payload: p(DomainRemove{Name: "x.test"})},
		{name: "domain remove missing", typ: CmdDomainRemove, payload: p(DomainRemove{Name: "x.test"}), want: ErrNotFound},
		{name: "account add", typ: CmdAccountAdd, payload: p(AccountAdd{Address: "C@Example.Test", PasswordHash: "h", QuotaBytes: 100}),
			check: func(t *testing.T, h *harness, r Result) {
				a, err := h.s.Account("c@example.test")
				if err != nil || a.QuotaBytes != 100 || a.PasswordHash != "h" {
					t.Fatalf("Account = %+v, %v", a, err)
				}
				mbs, _ := h.s.Mailboxes("c@example.test")
				var names []string
				for _, mb := range mbs {
					names = append(names, mb.Name+" "+mb.SpecialUse)
					if !mb.Subscribed || mb.UIDNext != 1 || mb.UIDValidity == 0 {
						t.Errorf("mailbox %+v", mb)
					}
				}
				want := []string{"Archive \\Archive", "Drafts \\Drafts", "INBOX ", "Junk \\Junk", "Sent \\Sent", "Trash \\Trash"}
				if !slices.Equal(names, want) {
					t.Fatalf("mailboxes %q, want %q", names, want)
				}
			}},
		{name: "account add exists", typ: CmdAccountAdd, payload: p(AccountAdd{Address: "A@example.test"}), want: ErrExists},
		{name: "account add no domain", typ: CmdAccountAdd, payload: p(AccountAdd{Address: "a@nowhere.test"}), want: ErrNotFound},
		{name: "account add bad address", typ: CmdAccountAdd, payload: p(AccountAdd{Address: "no-at-sign"}), want: ErrInvalid},
		{name: "account add over alias", prep: func(h *harness) {
			h.ok(CmdAliasAdd, AliasAdd{Address: "al@example.test", Targets: []string{"a@example.test"}})
		}, typ: CmdAccountAdd, payload: p(AccountAdd{Address: "al@example.test"}), want: ErrExists},
		{name: "account password", typ: CmdAccountPassword, payload: p(AccountPassword{Address: "a@example.test", PasswordHash: "new"}),
			check: func(t *testing.T, h *harness, r Result) {
				if a, _ := h.s.Account("a@example.test"); a.PasswordHash != "new" {
					t.Fatalf("hash %q", a.PasswordHash)
				}
			}},
		{name: "account password missing", typ: CmdAccountPassword, payload: p(AccountPassword{Address: "z@example.test"}), want: ErrNotFound},
		{name: "account quota", typ: CmdAccountQuota, payload: p(AccountQuota{Address: "a@example.test", QuotaBytes: 5}),
			check: func(t *testing.T, h *harness, r Result) {
				if a, _ := h.s.Account("a@example.test"); a.QuotaBytes != 5 {
					t.Fatalf("quota %d", a.QuotaBytes)
				}
			}},
		{name: "account quota negative", typ: CmdAccountQuota, payload: p(AccountQuota{Address: "a@example.test", QuotaBytes: -1}), want: ErrInvalid},
		{name: "account remove", prep: func(h *harness) {
			h.deliver("a@example.test", "", "x")
			h.ok(CmdAliasAdd, AliasAdd{Address: "only-a@example.test", Targets: []string{"a@example.test"}})
			h.ok(CmdAliasAdd, AliasAdd{Address: "both@example.test", Targets: []string{"a@example.test", "b@example.test"}})
		}, typ: CmdAccountRemove, payload: p(AccountRemove{Address: "a@example.test"}),
			check: func(t *testing.T, h *harness, r Result) {
				if _, err := h.s.Account("a@example.test"); !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
				if mbs, _ := h.s.Mailboxes("a@example.test"); len(mbs) != 0 {
					t.Fatalf("mailboxes left: %v", mbs)
				}
				if _, err := h.s.Alias("only-a@example.test"); !errors.Is(err, ErrNotFound) {
					t.Fatal("alias only to a survived")
				}
				if al, _ := h.s.Alias("both@example.test"); !slices.Equal(al.Targets, []string{"b@example.test"}) {
					t.Fatalf("alias both = %v", al)
				}
				h.afterGrace()
				if bh, _ := blobOf("x"); h.s.HasBlob(bh) {
					t.Fatal("blob not released")
				}
				if _, n, _ := h.s.MissingBlobs(10); n != 0 {
					t.Fatalf("%d missing blobs after removal", n)
				}
			}},
		{name: "account remove missing", typ: CmdAccountRemove, payload: p(AccountRemove{Address: "z@example.test"}), want: ErrNotFound},
		{name: "app password add", typ: CmdAppPasswordAdd, payload: p(AppPasswordAdd{Address: "a@example.test", Name: "phone", PasswordHash: "h"}),
			check: func(t *testing.T, h *harness, r Result) {
				a, _ := h.s.Account("a@example.test")
				if len(a.AppPasswords) != 1 || a.AppPasswords[0].Name != "phone" {
					t.Fatalf("app passwords %+v", a.AppPasswords)
				}
			}},
		{name: "app password add duplicate", prep: func(h *harness) {
			h.ok(CmdAppPasswordAdd, AppPasswordAdd{Address: "a@example.test", Name: "phone", PasswordHash: "h"})
		}, typ: CmdAppPasswordAdd, payload: p(AppPasswordAdd{Address: "a@example.test", Name: "phone", PasswordHash: "h"}), want: ErrExists},
		{name: "app password remove", prep: func(h *harness) {
			h.ok(CmdAppPasswordAdd, AppPasswordAdd{Address: "a@example.test", Name: "phone", PasswordHash: "h"})
		}, typ: CmdAppPasswordRemove, payload: p(AppPasswordRemove{Address: "a@example.test", Name: "phone"}),
			check: func(t *testing.T, h *harness, r Result) {
				if a, _ := h.s.Account("a@example.test"); len(a.AppPasswords) != 0 {
					t.Fatalf("app passwords %+v", a.AppPasswords)
				}
			}},
		{name: "app password remove missing", typ: CmdAppPasswordRemove, payload: p(AppPasswordRemove{Address: "a@example.test", Name: "x"}), want: ErrNotFound},
		{name: "alias add", typ: CmdAliasAdd, payload: p(AliasAdd{Address: "Sales@example.test", Targets: []string{"B@example.test", "a@example.test", "a@example.test"}}),
			check: func(t *testing.T, h *harness, r Result) {
				got, err := h.s.ResolveRecipient("SALES@example.test")
				if err != nil || !slices.Equal(got, []string{"a@example.test", "b@example.test"}) {
					t.Fatalf("ResolveRecipient = %v, %v", got, err)
				}
				if got, _ := h.s.ResolveRecipient("A@EXAMPLE.TEST"); !slices.Equal(got, []string{"a@example.test"}) {
					t.Fatalf("ResolveRecipient(account) = %v", got)
				}
				if _, err := h.s.ResolveRecipient("nobody@example.test"); !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
				if als, _ := h.s.Aliases("example.test"); len(als) != 1 {
					t.Fatalf("Aliases = %v", als)
				}
			}},
		{name: "alias add target missing", typ: CmdAliasAdd, payload: p(AliasAdd{Address: "s@example.test", Targets: []string{"z@example.test"}}), want: ErrNotFound},
		{name: "alias add no domain", typ: CmdAliasAdd, payload: p(AliasAdd{Address: "s@other.test", Targets: []string{"a@example.test"}}), want: ErrNotFound},
		{name: "alias add is account", typ: CmdAliasAdd, payload: p(AliasAdd{Address: "b@example.test", Targets: []string{"a@example.test"}}), want: ErrExists},
		{name: "alias add no targets", typ: CmdAliasAdd, payload: p(AliasAdd{Address: "s@example.test"}), want: ErrInvalid},
		{name: "alias remove missing", typ: CmdAliasRemove, payload: p(AliasRemove{Address: "s@example.test"}), want: ErrNotFound},
		{name: "mailbox create", typ: CmdMailboxCreate, payload: p(MailboxCreate{Account: "a@example.test", Name: "Work/2025", SpecialUse: `\flagged`}),
			check: func(t *testing.T, h *harness, r Result) {
				var mb Mailbox
				if err := r.Decode(&mb); err != nil {
					t.Fatal(err)
				}
				got := h.mailbox("a@example.test", "Work/2025")
				if got != mb || mb.UIDValidity != uint32(h.idx) || mb.SpecialUse != `\Flagged` {
					t.Fatalf("created %+v, read %+v", mb, got)
				}
				if byID, _ := h.s.MailboxByID(mb.ID); byID != mb {
					t.Fatalf("MailboxByID = %+v", byID)
				}
			}},
		{name: "mailbox create exists", typ: CmdMailboxCreate, payload: p(MailboxCreate{Account: "a@example.test", Name: "inbox"}), want: ErrExists},
		{name: "mailbox create bad name", typ: CmdMailboxCreate, payload: p(MailboxCreate{Account: "a@example.test", Name: "a//b"}), want: ErrInvalid},
		{name: "mailbox create bad special use", typ: CmdMailboxCreate, payload: p(MailboxCreate{Account: "a@example.test", Name: "x", SpecialUse: `\Bogus`}), want: ErrInvalid},
		{name: "mailbox create no account", typ: CmdMailboxCreate, payload: p(MailboxCreate{Account: "z@example.test", Name: "x"}), want: ErrNotFound},
		{name: "mailbox rename with children", prep: func(h *harness) {
			h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "W"})
			h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "W/x"})
			h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "Wz"})
		}, typ: CmdMailboxRename, payload: p(MailboxRename{Account: "a@example.test", From: "W", To: "V"}),
			check: func(t *testing.T, h *harness, r Result) {
				for _, n := range []string{"V", "V/x", "Wz"} {
					h.mailbox("a@example.test", n)
				}
				for _, n := range []string{"W", "W/x", "V/z"} {
					if _, err := h.s.Mailbox("a@example.test", n); !errors.Is(err, ErrNotFound) {
						t.Fatalf("%s: %v", n, err)
					}
				}
			}},
		{name: "mailbox rename INBOX", prep: withMsgs,
			typ: CmdMailboxRename, payload: p(MailboxRename{Account: "a@example.test", From: "INBOX", To: "Old"}),
			check: func(t *testing.T, h *harness, r Result) {
				in := h.mailbox("a@example.test", "INBOX")
				old := h.mailbox("a@example.test", "Old")
				if in.Messages != 0 || in.Size != 0 || in.UIDNext != 4 || old.Messages != 3 || old.UIDNext != 4 {
					t.Fatalf("INBOX %+v, Old %+v", in, old)
				}
				if msgs, _ := h.s.Messages(in.ID); len(msgs) != 0 {
					t.Fatalf("INBOX still has %d messages", len(msgs))
				}
				msgs, _ := h.s.Messages(old.ID)
				if len(msgs) != 3 || !slices.Equal(msgs[2].Flags, []string{`\Seen`}) {
					t.Fatalf("Old messages %+v", msgs)
				}
			}},
		{name: "mailbox rename into own child", prep: func(h *harness) {
			h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "W"})
		}, typ: CmdMailboxRename, payload: p(MailboxRename{Account: "a@example.test", From: "W", To: "W/y"}), want: ErrInvalid},
		{name: "mailbox rename target exists", typ: CmdMailboxRename, payload: p(MailboxRename{Account: "a@example.test", From: "Sent", To: "Trash"}), want: ErrExists},
		{name: "mailbox rename child target exists", prep: func(h *harness) {
			h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "Sent/x"})
			h.ok(CmdMailboxCreate, MailboxCreate{Account: "a@example.test", Name: "S2/x"})
		}, typ: CmdMailboxRename, payload: p(MailboxRename{Account: "a@example.test", From: "Sent", To: "S2"}), want: ErrExists},
		{name: "mailbox rename missing", typ: CmdMailboxRename, payload: p(MailboxRename{Account: "a@example.test", From: "Nope", To: "X"}), want: ErrNotFound},
		{name: "mailbox delete", prep: func(h *harness) { h.deliver("a@example.test", "Trash", "t") },
			typ: CmdMailboxDelete, payload: p(MailboxDelete{Account: "a@example.test", Name: "Trash"}),
			check: func(t *testing.T, h *harness, r Result) {
				if a, _ := h.s.Account("a@example.test"); a.UsedBytes != 0 {
					t.Fatalf("UsedBytes %d", a.UsedBytes)
				}
				h.afterGrace()
				if bh, _ := blobOf("t"); h.s.HasBlob(bh) {
					t.Fatal("blob kept")
				}
			}},
		{name: "mailbox delete INBOX", typ: CmdMailboxDelete, payload: p(MailboxDelete{Account: "a@example.test", Name: "Inbox"}), want: ErrInvalid},
		{name: "mailbox delete missing", typ: CmdMailboxDelete, payload: p(MailboxDelete{Account: "a@example.test", Name: "Nope"}), want: ErrNotFound},
		{name: "mailbox subscribe", typ: CmdMailboxSubscribe, payload: p(MailboxSubscribe{Account: "a@example.test", Name: "Sent", Subscribed: false}),
			check: func(t *testing.T, h *harness, r Result) {
				if h.mailbox("a@example.test", "Sent").Subscribed {
					t.Fatal("still subscribed")
				}
			}},
		{name: "deliver", typ: CmdDeliver, payload: p(Deliver{Blob: blob, Size: 5, Targets: []DeliverTarget{
			{Account: "a@example.test"}, {Account: "b@example.test", Mailbox: "Junk", Flags: []string{`\seen`, "$Junk"}}},
			Remote: &QueueEntry{ID: "q1", From: "a@example.test", Recipients: []QueueRecipient{{Address: "x@remote.test"}}}}),
			check: func(t *testing.T, h *harness, r Result) {
				var dr DeliverResult
				if err := r.Decode(&dr); err != nil || len(dr.Placed) != 2 || dr.Placed[0].UID != 1 {
					t.Fatalf("result %+v %v", dr, err)
				}
				m, err := h.s.Message(dr.Placed[1].MailboxID, 1)
				if err != nil || !slices.Equal(m.Flags, []string{"$Junk", `\Seen`}) || m.Blob != blob || m.ModSeq != 2 {
					t.Fatalf("message %+v %v", m, err)
				}
				if a, _ := h.s.Account("b@example.test"); a.UsedBytes != 5 {
					t.Fatalf("UsedBytes %d", a.UsedBytes)
				}
				q, err := h.s.QueueEntry("q1")
				if err != nil || q.Blob != blob || q.Size != 5 || q.Recipients[0].Status != "pending" {
					t.Fatalf("queue %+v %v", q, err)
				}
				if hs, n, _ := h.s.MissingBlobs(10); n != 1 || hs[0] != blob {
					t.Fatalf("MissingBlobs = %v %d", hs, n)
				}
			}},
		{name: "deliver over quota", prep: func(h *harness) {
			h.ok(CmdAccountQuota, AccountQuota{Address: "b@example.test", QuotaBytes: 7})
		}, typ: CmdDeliver, payload: p(Deliver{Blob: blob, Size: 5, Targets: []DeliverTarget{
			{Account: "a@example.test"}, {Account: "b@example.test"}, {Account: "b@example.test", Mailbox: "Sent"}}}),
			want: ErrOverQuota,
			check: func(t *testing.T, h *harness, r Result) {
				if h.mailbox("a@example.test", "INBOX").Messages != 0 {
					t.Fatal("partial delivery")
				}
			}},
		{name: "deliver missing mailbox", typ: CmdDeliver, payload: p(Deliver{Blob: blob, Size: 5, Targets: []DeliverTarget{{Account: "a@example.test", Mailbox: "Nope"}}}), want: ErrNotFound},
		{name: "deliver no blob", typ: CmdDeliver, payload: p(Deliver{Size: 5, Targets: []DeliverTarget{{Account: "a@example.test"}}}), want: ErrInvalid},
		{name: "deliver bad flag", typ: CmdDeliver, payload: p(Deliver{Blob: blob, Targets: []DeliverTarget{{Account: "a@example.test", Flags: []string{`\Recent`}}}}), want: ErrInvalid},
		{name: "flags add", prep: withMsgs, typ: CmdFlags,
			payload: func(h *harness) any {
				return Flags{MailboxID: inboxOf(h, "a@example.test"), UIDs: []uint32{3, 1, 9}, Op: FlagsAdd, Flags: []string{`\Seen`}}
			},
			check: func(t *testing.T, h *harness, r Result) {
				var fr FlagsResult
				if err := r.Decode(&fr); err != nil {
					t.Fatal(err)
				}
				// UID 3 already had \Seen: only UID 1 changes.
				if len(fr.Changed) != 1 || fr.Changed[0].UID != 1 || fr.Changed[0].ModSeq != 5 {
					t.Fatalf("changed %+v", fr.Changed)
				}
				if mb := h.mailbox("a@example.test", "INBOX"); mb.HighestModSeq != 5 {
					t.Fatalf("HighestModSeq %d", mb.HighestModSeq)
				}
			}},
		{name: "flags remove and set", prep: withMsgs, typ: CmdFlags,
			payload: func(h *harness) any {
				h.ok(CmdFlags, Flags{MailboxID: inboxOf(h, "a@example.test"), UIDs: []uint32{2}, Op: FlagsRemove, Flags: []string{`\Deleted`}})
				return Flags{MailboxID: inboxOf(h, "a@example.test"), UIDs: []uint32{1, 2, 3}, Op: FlagsSet, Flags: []string{"kw"}}
			},
			check: func(t *testing.T, h *harness, r Result) {
				msgs, _ := h.s.Messages(inboxOf(h, "a@example.test"))
				for _, m := range msgs {
					if !slices.Equal(m.Flags, []string{"kw"}) {
						t.Fatalf("message %+v", m)
					}
				}
			}},
		{name: "flags bad op", prep: withMsgs, typ: CmdFlags,
			payload: func(h *harness) any { return Flags{MailboxID: inboxOf(h, "a@example.test"), UIDs: []uint32{1}} }, want: ErrInvalid},
		{name: "flags missing mailbox", typ: CmdFlags, payload: p(Flags{MailboxID: 12345, Op: FlagsAdd}), want: ErrNotFound},
		{name: "expunge deleted", prep: withMsgs, typ: CmdExpunge,
			payload: func(h *harness) any { return Expunge{MailboxID: inboxOf(h, "a@example.test")} },
			check: func(t *testing.T, h *harness, r Result) {
				var er ExpungeResult
				if err := r.Decode(&er); err != nil || !slices.Equal(er.UIDs, []uint32{2}) {
					t.Fatalf("expunged %v %v", er, err)
				}
				mb := h.mailbox("a@example.test", "INBOX")
				if mb.Messages != 2 || mb.Size != int64(len("one")+len("three")) {
					t.Fatalf("mailbox %+v", mb)
				}
				if a, _ := h.s.Account("a@example.test"); a.UsedBytes != mb.Size {
					t.Fatalf("UsedBytes %d", a.UsedBytes)
				}
			}},
		{name: "expunge uids", prep: withMsgs, typ: CmdExpunge,
			payload: func(h *harness) any { return Expunge{MailboxID: inboxOf(h, "a@example.test"), UIDs: []uint32{1, 3, 7}} },
			check: func(t *testing.T, h *harness, r Result) {
				var er ExpungeResult
				if err := r.Decode(&er); err != nil || !slices.Equal(er.UIDs, []uint32{1, 3}) {
					t.Fatalf("expunged %v %v", er, err)
				}
			}},
		{name: "expunge uids only deleted", prep: withMsgs, typ: CmdExpunge,
			payload: func(h *harness) any {
				return Expunge{MailboxID: inboxOf(h, "a@example.test"), UIDs: []uint32{1, 2, 3}, OnlyDeleted: true}
			},
			check: func(t *testing.T, h *harness, r Result) {
				var er ExpungeResult
				if err := r.Decode(&er); err != nil || !slices.Equal(er.UIDs, []uint32{2}) {
					t.Fatalf("expunged %v %v", er, err)
				}
			}},
		{name: "deliver with internal date", typ: CmdDeliver,
			payload: p(Deliver{Blob: blob, Size: 5, InternalDate: time.Date(2001, 2, 3, 4, 5, 6, 0, time.FixedZone("x", 3600)),
				Targets: []DeliverTarget{{Account: "a@example.test"}}}),
			check: func(t *testing.T, h *harness, r Result) {
				msgs, err := h.s.Messages(inboxOf(h, "a@example.test"))
				if err != nil || len(msgs) != 1 || !msgs[0].InternalDate.Equal(time.Date(2001, 2, 3, 3, 5, 6, 0, time.UTC)) {
					t.Fatalf("messages %+v %v", msgs, err)
				}
			}},
		{name: "copy", prep: withMsgs, typ: CmdCopy,
			payload: func(h *harness) any {
				return Copy{From: inboxOf(h, "a@example.test"), To: inboxOf(h, "b@example.test"), UIDs: []uint32{3, 1}}
			},
			check: func(t *testing.T, h *harness, r Result) {
				var cr CopyResult
				if err := r.Decode(&cr); err != nil || !slices.Equal(cr.Pairs, []UIDPair{{1, 1}, {3, 2}}) {
					t.Fatalf("copy %+v %v", cr, err)
				}
				if b, _ := h.s.Account("b@example.test"); b.UsedBytes != int64(len("one")+len("three")) {
					t.Fatalf("b used %d", b.UsedBytes)
				}
				if h.mailbox("a@example.test", "INBOX").Messages != 3 {
					t.Fatal("source changed")
				}
			}},
		{name: "copy over quota", prep: func(h *harness) {
			withMsgs(h)
			h.ok(CmdAccountQuota, AccountQuota{Address: "b@example.test", QuotaBytes: 1})
		}, typ: CmdCopy,
			payload: func(h *harness) any {
				return Copy{From: inboxOf(h, "a@example.test"), To: inboxOf(h, "b@example.test"), UIDs: []uint32{1}}
			}, want: ErrOverQuota},
		{name: "move", prep: withMsgs, typ: CmdMove,
			payload: func(h *harness) any {
				return Move{From: inboxOf(h, "a@example.test"), To: h.mailbox("a@example.test", "Archive").ID, UIDs: []uint32{2}}
			},
			check: func(t *testing.T, h *harness, r Result) {
				var cr CopyResult
				if err := r.Decode(&cr); err != nil || !slices.Equal(cr.Pairs, []UIDPair{{2, 1}}) {
					t.Fatalf("move %+v %v", cr, err)
				}
				if h.mailbox("a@example.test", "INBOX").Messages != 2 || h.mailbox("a@example.test", "Archive").Messages != 1 {
					t.Fatal("counts")
				}
				if a, _ := h.s.Account("a@example.test"); a.UsedBytes != int64(len("one")+len("two")+len("three")) {
					t.Fatalf("used %d", a.UsedBytes)
				}
				if _, n, _ := h.s.MissingBlobs(10); n != 3 {
					t.Fatalf("%d missing blobs after move, want 3", n)
				}
			}},
		{name: "move same mailbox", prep: withMsgs, typ: CmdMove,
			payload: func(h *harness) any {
				return Move{From: inboxOf(h, "a@example.test"), To: inboxOf(h, "a@example.test"), UIDs: []uint32{1}}
			}, want: ErrInvalid},
		{name: "queue add", typ: CmdQueueAdd, payload: p(QueueEntry{ID: "q1", Blob: blob, Size: 5}),
			check: func(t *testing.T, h *harness, r Result) {
				qs, _ := h.s.QueueEntries()
				if len(qs) != 1 || qs[0].Created.IsZero() {
					t.Fatalf("queue %+v", qs)
				}
			}},
		{name: "queue add no blob", typ: CmdQueueAdd, payload: p(QueueEntry{ID: "q1"}), want: ErrInvalid},
		{name: "queue update", prep: func(h *harness) { h.ok(CmdQueueAdd, QueueEntry{ID: "q1", Blob: blob}) },
			typ: CmdQueueUpdate, payload: p(QueueEntry{ID: "q1", Blob: blob, Attempts: 2, LeaseNode: "n2"}),
			check: func(t *testing.T, h *harness, r Result) {
				if q, _ := h.s.QueueEntry("q1"); q.Attempts != 2 || q.LeaseNode != "n2" || q.Created.IsZero() {
					t.Fatalf("queue %+v", q)
				}
			}},
		{name: "queue update missing", typ: CmdQueueUpdate, payload: p(QueueEntry{ID: "q1", Blob: blob}), want: ErrNotFound},
		{name: "queue remove", prep: func(h *harness) {
			h.ok(CmdQueueAdd, QueueEntry{ID: "q1", Blob: blob})
			if err := h.s.PutBlob(blobOf("hello")); err != nil {
				h.tb.Fatal(err)
			}
		}, typ: CmdQueueRemove, payload: p(QueueRemove{ID: "q1"}),
			check: func(t *testing.T, h *harness, r Result) {
				h.afterGrace()
				if h.s.HasBlob(blob) {
					t.Fatal("blob kept after its last reference")
				}
			}},
		{name: "queue remove missing", typ: CmdQueueRemove, payload: p(QueueRemove{ID: "q1"}), want: ErrNotFound},
		{name: "bad payload", typ: CmdDomainAdd, payload: p(42), want: ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.setup()
			if c.prep != nil {
				c.prep(h)
			}
			payload := c.payload(h)
			before := dumpState(t, h.s)
			r := h.apply(c.typ, payload)
			wantErr(t, r, c.want)
			if c.want != nil && !slices.Equal(before, dumpState(t, h.s)) {
				// A failed command changes only the applied index and the
				// de-duplication table.
				t.Fatalf("failed command changed state")
			}
			if c.check != nil {
				c.check(t, h, r)
			}
		})
	}
}
