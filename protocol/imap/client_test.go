package imap

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

func (e *env) client(i int, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialTLS(e.implicit[i], &imapclient.Options{TLSConfig: e.clientTLS, UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// must(f())(t) fails t if f failed, else returns f's value.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func appendMsg(t *testing.T, c *imapclient.Client, mailbox, raw string, opts *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), opts)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := cmd.Wait()
	return must(d, err)(t)
}

// TestClientMailboxes: LIST with special-use and children, LIST-STATUS,
// LSUB, CREATE (with parents and USE), RENAME with children, DELETE,
// SUBSCRIBE, STATUS with SIZE, NAMESPACE.
func TestClientMailboxes(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(0, nil)

	list := func(pattern string, o *imap.ListOptions) map[string][]imap.MailboxAttr {
		t.Helper()
		out := map[string][]imap.MailboxAttr{}
		for _, d := range must(c.List("", pattern, o).Collect())(t) {
			out[d.Mailbox] = d.Attrs
		}
		return out
	}
	got := list("*", nil)
	for name, use := range map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive} {
		if !slices.Contains(got[name], use) || !slices.Contains(got[name], imap.MailboxAttrHasNoChildren) {
			t.Errorf("%s: attributes %v, want %s and \\HasNoChildren", name, got[name], use)
		}
	}
	if _, ok := got["INBOX"]; !ok {
		t.Fatalf("no INBOX in %v", got)
	}

	if err := c.Create("Projects/2026/Q1", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Receipts", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatal(err)
	}
	got = list("*", nil)
	if !slices.Contains(got["Projects"], imap.MailboxAttrHasChildren) || !slices.Contains(got["Projects/2026/Q1"], imap.MailboxAttrHasNoChildren) {
		t.Fatalf("children attributes: %v", got)
	}
	if !slices.Contains(got["Receipts"], imap.MailboxAttrFlagged) {
		t.Fatalf("CREATE USE: %v", got["Receipts"])
	}
	if got := list("%", nil); len(got) != 8 || got["Projects/2026"] != nil {
		t.Fatalf("LIST %%: %v", got)
	}
	if got := list("inbox", nil); len(got) != 1 {
		t.Fatalf("LIST inbox: %v", got)
	}
	if got := list("*", &imap.ListOptions{SelectSpecialUse: true}); len(got) != 6 || got["INBOX"] != nil {
		t.Fatalf("LIST (SPECIAL-USE): %v", got)
	}

	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got = list("Work/*", nil)
	if len(got) != 2 || got["Work/2026/Q1"] == nil {
		t.Fatalf("after RENAME: %v", got)
	}
	if err := c.Delete("Work/2026/Q1").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Work/2026/Q1").Wait(); err == nil {
		t.Fatal("second DELETE succeeded")
	}

	if err := c.Unsubscribe("Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	subs := list("*", &imap.ListOptions{SelectSubscribed: true})
	if subs["Junk"] != nil || !slices.Contains(subs["Sent"], imap.MailboxAttrSubscribed) {
		t.Fatalf("LIST (SUBSCRIBED): %v", subs)
	}
	if err := c.Subscribe("Work").Wait(); err != nil {
		t.Fatal(err)
	}

	appendMsg(t, c, "Sent", simpleMsg, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	appendMsg(t, c, "Sent", multipartMsg, nil)
	st := must(c.Status("Sent", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, NumDeleted: true, Size: true, AppendLimit: true}).Wait())(t)
	if *st.NumMessages != 2 || *st.NumUnseen != 1 || *st.NumDeleted != 0 || *st.Size != int64(len(simpleMsg)+len(multipartMsg)) || st.UIDNext != 3 || st.UIDValidity == 0 {
		t.Fatalf("STATUS: %+v", st)
	}
	ls := must(c.List("", "Sent", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, Size: true}}).Collect())(t)
	if len(ls) != 1 || ls[0].Status == nil || *ls[0].Status.NumMessages != 2 {
		t.Fatalf("LIST-STATUS: %+v", ls)
	}
	ns := must(c.Namespace().Wait())(t)
	if len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Fatalf("NAMESPACE: %+v", ns)
	}

	// The store agrees with what the client saw.
	mbs, err := e.c.Nodes[0].Store.Mailboxes(testUser)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
	}
	if !slices.Contains(names, "Work/2026") || slices.Contains(names, "Projects") || slices.Contains(names, "Work/2026/Q1") {
		t.Fatalf("store mailboxes: %v", names)
	}
}

// TestClientMessages: APPEND, FETCH of every item, \Seen on a body fetch,
// STORE, SEARCH, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT.
func TestClientMessages(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.client(0, nil)
	date := time.Date(2025, 12, 24, 18, 0, 0, 0, time.UTC)
	a1 := appendMsg(t, c, "INBOX", simpleMsg, &imap.AppendOptions{Flags: []imap.Flag{"$Important"}, Time: date})
	a2 := appendMsg(t, c, "INBOX", multipartMsg, nil)
	if a1.UID != 1 || a2.UID != 2 || a1.UIDValidity == 0 || a1.UIDValidity != a2.UIDValidity {
		t.Fatalf("APPENDUID: %+v %+v", a1, a2)
	}
	sd := must(c.Select("INBOX", nil).Wait())(t)
	if sd.NumMessages != 2 || sd.UIDNext != 3 || sd.UIDValidity != a1.UIDValidity || !slices.Contains(sd.Flags, "$Important") {
		t.Fatalf("SELECT: %+v", sd)
	}

	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
	subj := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	partial := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 3}}
	bin := &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	msgs := must(c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure:     &imap.FetchItemBodyStructure{Extended: true},
		BodySection:       []*imap.FetchItemBodySection{text, subj, part1, partial},
		BinarySection:     []*imap.FetchItemBinarySection{bin},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
	}).Collect())(t)
	if len(msgs) != 2 {
		t.Fatalf("fetched %d messages", len(msgs))
	}
	m1, m2 := msgs[0], msgs[1]
	if m1.UID != 1 || m1.RFC822Size != int64(len(simpleMsg)) || m1.Envelope.Subject != "Hello there" ||
		m1.Envelope.From[0].Host != "example.test" || m1.Envelope.MessageID != "m1@example.test" ||
		!slices.Contains(m1.Flags, "$Important") || !m1.InternalDate.Equal(date) {
		t.Fatalf("message 1: %+v %+v", m1, m1.Envelope)
	}
	if got := string(m1.FindBodySection(text)); got != "Lunch at noon?\r\n" {
		t.Fatalf("BODY[TEXT]: %q", got)
	}
	if got := string(m1.FindBodySection(subj)); got != "Subject: Hello there\r\n\r\n" {
		t.Fatalf("BODY[HEADER.FIELDS (Subject)]: %q", got)
	}
	if got := string(m1.FindBodySection(partial)); got != simpleMsg[6:9] {
		t.Fatalf("BODY[]<6.3>: %q", got)
	}
	if m2.Envelope.Subject != "Réunion" {
		t.Fatalf("encoded subject: %q", m2.Envelope.Subject)
	}
	mp, ok := m2.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE: %#v", m2.BodyStructure)
	}
	if got := string(m2.FindBodySection(part1)); got != "Caf=E9 tomorrow" {
		t.Fatalf("BODY[1]: %q", got)
	}
	if got := m2.FindBinarySection(bin); string(got) != "\x00\x01\x02\x03\x04\x05" {
		t.Fatalf("BINARY[2]: %q", got)
	}
	if n, ok := m2.FindBinarySectionSize([]int{2}); !ok || n != 6 {
		t.Fatalf("BINARY.SIZE[2]: %d %v", n, ok)
	}

	// A non-peek fetch sets \Seen, in the store too.
	msgs = must(c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect())(t)
	if len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("FETCH BODY[] flags: %+v", msgs)
	}
	mb, _ := e.c.Nodes[0].Store.Mailbox(testUser, "INBOX")
	if m, _ := e.c.Nodes[0].Store.Message(mb.ID, 1); !slices.Contains(m.Flags, `\Seen`) {
		t.Fatalf("store flags after BODY[]: %v", m.Flags)
	}

	// STORE.
	res := must(c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted}}, nil).Collect())(t)
	if len(res) != 1 || !slices.Contains(res[0].Flags, imap.FlagFlagged) {
		t.Fatalf("STORE +FLAGS: %+v", res)
	}
	if res := must(c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Collect())(t); len(res) > 1 {
		t.Fatalf("STORE .SILENT: %+v", res)
	}

	// SEARCH.
	search := func(c0 *imap.SearchCriteria) []uint32 {
		t.Helper()
		return must(c.Search(c0, nil).Wait())(t).AllSeqNums()
	}
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2}},
		{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{1}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{2}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$important"}}, []uint32{1}},
		{"header subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "réunion"}}}, []uint32{2}},
		{"header from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob@"}}}, []uint32{1}},
		{"header exists", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "MIME-Version"}}}, []uint32{2}},
		{"body", imap.SearchCriteria{Body: []string{"CAFÉ"}}, []uint32{2}},
		{"body not header", imap.SearchCriteria{Body: []string{"Hello there"}}, nil},
		{"text header", imap.SearchCriteria{Text: []string{"hello THERE"}}, []uint32{1}},
		{"larger", imap.SearchCriteria{Larger: int64(len(simpleMsg))}, []uint32{2}},
		{"smaller", imap.SearchCriteria{Smaller: int64(len(simpleMsg) + 1)}, []uint32{1}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagDeleted}}}}, []uint32{1}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"lunch"}}, {Flag: []imap.Flag{imap.FlagFlagged}}}}}, []uint32{1, 2}},
		{"uid", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(2)}}, []uint32{2}},
		{"seq star", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 0, Stop: 0}}}}, []uint32{2}},
		{"sentsince", imap.SearchCriteria{SentSince: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)}, []uint32{2}},
		{"sentbefore", imap.SearchCriteria{SentBefore: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)}, []uint32{1}},
		{"since yesterday", imap.SearchCriteria{Since: time.Now().UTC().Add(-24 * time.Hour).Truncate(24 * time.Hour)}, []uint32{2}},
		{"on the append date", imap.SearchCriteria{Since: date.Truncate(24 * time.Hour), Before: date.Add(24 * time.Hour).Truncate(24 * time.Hour)}, []uint32{1}},
		{"before 2000", imap.SearchCriteria{Before: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"recent", imap.SearchCriteria{Flag: []imap.Flag{"\\Recent"}}, nil},
	} {
		if got := search(&tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("SEARCH %s: %v, want %v", tc.name, got, tc.want)
		}
	}
	uids := must(c.UIDSearch(&imap.SearchCriteria{Body: []string{"tomorrow"}}, &imap.SearchOptions{ReturnCount: true, ReturnMin: true, ReturnMax: true}).Wait())(t)
	if uids.Count != 1 || uids.Min != 2 || uids.Max != 2 {
		t.Fatalf("ESEARCH: %+v", uids)
	}

	// COPY and MOVE give COPYUID; MOVE expunges at once.
	cp := must(c.Copy(imap.SeqSetNum(1, 2), "Drafts").Wait())(t)
	if cp.UIDValidity == 0 || cp.SourceUIDs.String() != "1:2" || cp.DestUIDs.String() != "1:2" {
		t.Fatalf("COPYUID: %+v", cp)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	mv := must(c.Move(imap.SeqSetNum(3), "Archive").Wait())(t)
	if mv.SourceUIDs.String() != "3" || mv.DestUIDs.String() != "1" {
		t.Fatalf("MOVE: %+v", mv)
	}
	if n := c.Mailbox().NumMessages; n != 2 {
		t.Fatalf("after MOVE the client sees %d messages", n)
	}

	// EXPUNGE removes \Deleted (message 2); UID EXPUNGE only listed ones.
	exp := must(c.Expunge().Collect())(t)
	if !slices.Equal(exp, []uint32{2}) {
		t.Fatalf("EXPUNGE: %v", exp)
	}
	if exp := must(c.UIDExpunge(imap.UIDSetNum(1)).Collect())(t); len(exp) != 0 {
		t.Fatalf("UID EXPUNGE of a message without \\Deleted: %v", exp)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if exp := must(c.UIDExpunge(imap.UIDSetNum(1)).Collect())(t); !slices.Equal(exp, []uint32{1}) {
		t.Fatalf("UID EXPUNGE: %v", exp)
	}

	// EXAMINE is read-only: no \Seen, no STORE. CLOSE expunges.
	must(c.Select("Drafts", &imap.SelectOptions{ReadOnly: true}).Wait())(t)
	must(c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect())(t)
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
		t.Fatal("STORE in a read-only mailbox succeeded")
	}
	must(c.Select("Drafts", nil).Wait())(t)
	if got := search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("EXAMINE set \\Seen: %v", got)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	st := must(c.Status("Drafts", &imap.StatusOptions{NumMessages: true}).Wait())(t)
	if *st.NumMessages != 0 { // both copies carried or got \Deleted
		t.Fatalf("CLOSE did not expunge: %d messages", *st.NumMessages)
	}
	must(c.Select("Archive", nil).Wait())(t)
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestClientIdle: a client IDLEs; a delivery, a flag change and an expunge
// from another connection arrive as EXISTS, FETCH and EXPUNGE.
func TestClientIdle(t *testing.T) {
	e := newEnv(t, envOptions{})
	ev := newEvents()
	idler := e.client(0, ev.handler())
	must(idler.Select("INBOX", nil).Wait())(t)
	idle, err := idler.Idle()
	if err != nil {
		t.Fatal(err)
	}
	other := e.client(0, nil)
	appendMsg(t, other, "INBOX", simpleMsg, nil)
	ev.wait(t, "EXISTS 1")
	must(other.Select("INBOX", nil).Wait())(t)
	must(other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect())(t)
	ev.wait(t, "FETCH 1 \\Deleted")
	must(other.Expunge().Collect())(t)
	ev.wait(t, "EXPUNGE 1")
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// events records unilateral data as strings.
type events struct {
	mu  sync.Mutex
	got []string
}

func newEvents() *events { return &events{} }

func (ev *events) add(s string) {
	ev.mu.Lock()
	ev.got = append(ev.got, s)
	ev.mu.Unlock()
}

func (ev *events) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { ev.add("EXPUNGE " + itoa(seq)) },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				ev.add("EXISTS " + itoa(*d.NumMessages))
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil {
				return
			}
			var fl []string
			for _, f := range buf.Flags {
				fl = append(fl, string(f))
			}
			ev.add("FETCH " + itoa(buf.SeqNum) + " " + strings.Join(fl, " "))
		},
	}
}

// wait polls until an event containing want was recorded.
func (ev *events) wait(t *testing.T, want string) {
	t.Helper()
	clustertest.WaitFor(t, 10*time.Second, "unilateral "+want, func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, g := range ev.got {
			if strings.Contains(g, want) {
				return true
			}
		}
		return false
	})
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
