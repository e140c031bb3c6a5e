package imap

import (
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/raftmail/raftmail/storage"
)

// headerOnlyOptions are FETCH items headerItemsOnly answers from the
// stored header.
func headerOnlyOptions(p *imap.SectionPartial) []*imap.FetchOptions {
	return []*imap.FetchOptions{
		{Envelope: true},
		{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Partial: p, Peek: true}}},
		{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Partial: p, Peek: true,
			HeaderFields: []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "Content-Type"}}}},
		{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Partial: p, Peek: true,
			HeaderFieldsNot: []string{"Received", "DKIM-Signature"}}}},
		{Envelope: true, BodySection: []*imap.FetchItemBodySection{
			{Specifier: imap.PartSpecifierHeader, Peek: true},
			{Specifier: imap.PartSpecifierHeader, Peek: true, HeaderFields: []string{"subject"}},
		}},
	}
}

// checkHeaderOnly: every header-only item computed from the stored header
// equals the one computed from the whole message.
func checkHeaderOnly(t *testing.T, raw []byte, p *imap.SectionPartial) {
	t.Helper()
	hdr, ok := storage.MessageHeader(raw)
	if !ok {
		return // not stored: the whole message is read
	}
	for _, opts := range headerOnlyOptions(p) {
		if !headerItemsOnly(opts) {
			t.Fatalf("headerItemsOnly(%+v) = false", opts)
		}
		var full, part fetchData
		buildFetch(raw, opts, &full)
		buildFetch(hdr, opts, &part)
		if !reflect.DeepEqual(full, part) {
			t.Errorf("header-only fetch of %q differs:\nfrom the header %+v\nfrom the message %+v", raw, part, full)
		}
	}
}

func TestHeaderOnlyFetch(t *testing.T) {
	for name, s := range sectionCorpus(t) {
		t.Run(name, func(t *testing.T) {
			for _, p := range fastPartials {
				checkHeaderOnly(t, []byte(s), p)
			}
		})
	}
	for _, opts := range []*imap.FetchOptions{
		{BodyStructure: &imap.FetchItemBodyStructure{}},
		{BodySection: []*imap.FetchItemBodySection{{}}},
		{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}},
		{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Part: []int{1}}}},
		{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader}, {}}},
		{BinarySection: []*imap.FetchItemBinarySection{{}}},
		{BinarySectionSize: []*imap.FetchItemBinarySectionSize{{}}},
	} {
		if headerItemsOnly(opts) {
			t.Errorf("headerItemsOnly(%+v) = true, needs the body", opts)
		}
	}
}

// FuzzHeaderOnlyFetch: on any message, the header-only items are the same
// from the stored header as from the whole message.
func FuzzHeaderOnlyFetch(f *testing.F) {
	for _, s := range sectionCorpus(f) {
		if len(s) < 1000 {
			f.Add([]byte(s), int64(5), int64(10), uint16(0))
		}
	}
	f.Add([]byte("Subject: a\n\r\nX: b\r\n\r\n"), int64(0), int64(100), uint16(4090))
	f.Fuzz(func(t *testing.T, raw []byte, off, size int64, pad uint16) {
		if pad > 0 {
			raw = append([]byte("X-Pad: "+strings.Repeat("p", int(pad)%10000)), raw...)
		}
		checkHeaderOnly(t, raw, nil)
		checkHeaderOnly(t, raw, &imap.SectionPartial{Offset: off, Size: size})
	})
}
