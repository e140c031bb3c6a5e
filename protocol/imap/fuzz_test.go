package imap

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

var fuzzSeeds = []string{simpleMsg, multipartMsg, brokenMsg,
	"Subject: =?utf-8?B?w6l0w6k=?= =?bogus?Q?x?=\n\n\xff\xfe",
	"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n",
	"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n",
	"no header at all",
	"",
}

// FuzzSearchText: the SEARCH matchers never panic on arbitrary messages
// and needles, and an empty needle always matches.
func FuzzSearchText(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "café", "Subject")
	}
	f.Fuzz(func(t *testing.T, raw []byte, needle, key string) {
		if !matchText(raw, "", true) || !matchText(raw, "", false) {
			t.Fatal("empty needle did not match")
		}
		matchText(raw, needle, true)
		matchText(raw, needle, false)
		fields := parseHeader(raw)
		matchHeader(fields, key, needle)
		sentDate(fields)
		for _, fl := range fields {
			decodeHeader(fl.value)
		}
	})
}

// FuzzFetch: every FETCH item computed from an arbitrary body can be
// written: no panic, and the body structure is one imapserver accepts.
func FuzzFetch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	opts := &imap.FetchOptions{
		Envelope:      true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{{}, {Part: []int{1}}, {Part: []int{2, 1}, Specifier: imap.PartSpecifierHeader},
			{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 3, Size: 10}}},
		BinarySection:     []*imap.FetchItemBinarySection{{}, {Part: []int{1}}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{1}}},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fd fetchData
		buildFetch(raw, opts, &fd)
		checkStructure(t, fd.structure)
		if len(fd.sections) != 4 || len(fd.binary) != 2 || len(fd.binarySizes) != 1 {
			t.Fatal("missing items")
		}
	})
}

func checkStructure(t *testing.T, bs imap.BodyStructure) {
	switch p := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if p.Extended == nil || p.Type == "" || p.Subtype == "" {
			t.Fatalf("single part: %+v", p)
		}
		if m := p.MessageRFC822; m != nil {
			checkStructure(t, m.BodyStructure)
		}
	case *imap.BodyStructureMultiPart:
		if p.Extended == nil || len(p.Children) == 0 {
			t.Fatalf("multipart: %+v", p)
		}
		for _, c := range p.Children {
			checkStructure(t, c)
		}
	default:
		t.Fatalf("structure %T", bs)
	}
}

func TestParseHeader(t *testing.T) {
	f := parseHeader([]byte("A: 1\r\n  more\nbroken line\nB:2\r\n\r\nC: body"))
	if len(f) != 2 || f[0] != (headerField{"A", "1 more"}) || f[1] != (headerField{"B", "2"}) {
		t.Fatalf("%+v", f)
	}
	if got := decodeHeader("=?ISO-8859-1?Q?R=E9union?= x"); got != "Réunion x" {
		t.Fatalf("decode: %q", got)
	}
	if !matchHeader(f, "a", "MORE") || matchHeader(f, "C", "") {
		t.Fatal("matchHeader")
	}
}
