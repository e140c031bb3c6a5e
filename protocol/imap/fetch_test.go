package imap

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// sectionCorpus is messages whose whole-message sections must come out
// of the fast path exactly as go-imap makes them.
func sectionCorpus(t testing.TB) map[string]string {
	long := strings.Repeat("x", 5000)
	c := map[string]string{
		"simple":        simpleMsg,
		"multipart":     multipartMsg,
		"broken":        brokenMsg,
		"bare LF":       "From: a@example.test\nSubject: lf\n\nbody\nline\n",
		"mixed ends":    "From: a@example.test\r\nSubject: lf\n\r\nbody\n",
		"LF blank":      "From: a@example.test\r\nSubject: x\r\n\nbody\r\n",
		"no body":       "From: a@example.test\r\nSubject: x\r\n\r\n",
		"no blank line": "From: a@example.test\r\nSubject: x\r\n",
		"no final EOL":  "From: a@example.test\r\nSubject: x",
		"header only":   "Subject: x",
		"bare LF only":  "Subject: x\n",
		"empty":         "",
		"CRLF only":     "\r\n",
		"LF only":       "\n",
		"body only":     "\r\nno header\r\n",
		"no colon":      "no header at all\r\n\r\nbody",
		"colon later":   "Subject\r\n x: y\r\n\r\nbody",
		"leading space": " Subject: x\r\n\r\nbody",
		"leading tab":   "\tSubject: x\r\n\r\nbody",
		"bad name":      "Sub ject: x\r\n\r\nbody",
		"8-bit name":    "Sübject: x\r\n\r\nbody",
		"empty name":    "From: a@example.test\r\n: nameless\r\n folded\r\nTo: b@example.test\r\n\r\nbody",
		"spaced name":   "Subject \t: x\r\n\r\nbody",
		"folded":        "Subject: a\r\n b\r\n\tc\r\n \r\nTo: x\r\n\r\nbody\r\n",
		"folded LF":     "Subject: a\n b\r\n\tc\nTo: x\r\n\r\nbody\r\n",
		"CR in line":    "Subject: a\rb\r\r\nX: \r\r\n\r\nbody\r",
		"CR blank":      "Subject: a\r\n\r\r\nbody",
		"lone CR end":   "Subject: a\r",
		"8-bit":         "Subject: caf\xe9 \xff\r\nX-Bin: \x00\x01\r\n\r\n\xff\xfe\x00body\r\n",
		"nested multipart": "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" +
			"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n" +
			"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n--a\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: inner\r\n\r\ninner body\r\n--a--\r\n",
		"long line":         "Subject: " + long + "\r\n\r\nbody",
		"long folded":       "Subject: a\r\n " + long + "\r\n\r\nbody",
		"long last line":    "Subject: " + long,
		"long last folded":  "Subject: a\r\n " + long,
		"long CR straddles": "X: " + strings.Repeat("y", 4092) + "\r\n" + "Z: " + strings.Repeat("z", 4090) + "\r\r\n\r\nbody",
	}
	// Unterminated last lines around the reader's buffer size, where
	// go-message's result depends on how bufio cut the line.
	for _, n := range []int{4094, 4095, 4096, 4097, 8191, 8192, 8193} {
		line := "S: " + strings.Repeat("v", n-3)
		c["last line "+strconv.Itoa(n)] = line
		c["last line CR "+strconv.Itoa(n)] = line[:n-1] + "\r"
		c["last folded "+strconv.Itoa(n)] = "A: b\r\n" + " " + line[1:]
		c["first line "+strconv.Itoa(n)] = line + "\r\n\r\nbody"
		c["first line CR "+strconv.Itoa(n)] = line[:n-1] + "\r\r\n\r\nbody"
	}
	for i, s := range fuzzSeeds {
		c["fuzz seed "+strconv.Itoa(i)] = s
	}
	for i := range 3 {
		c["bench "+strconv.Itoa(i)] = benchMessage(i*5, 10<<10)
	}
	for name, raw := range fuzzCorpus(t) {
		c[name] = raw
	}
	return c
}

// fuzzCorpus reads the first []byte argument of every stored fuzz input.
func fuzzCorpus(t testing.TB) map[string]string {
	out := map[string]string{}
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if q, ok := strings.CutPrefix(l, "[]byte("); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
					out[f] = s
				}
				break
			}
		}
	}
	return out
}

var fastPartials = []*imap.SectionPartial{nil, {Offset: 0, Size: 10}, {Offset: 5, Size: 100000}, {Offset: 100000, Size: 5}, {Offset: 0, Size: 0}}

var fastSpecifiers = []imap.PartSpecifier{imap.PartSpecifierNone, imap.PartSpecifierHeader, imap.PartSpecifierText}

// checkFastSection compares buildFetch with go-imap for sec on raw and
// reports whether the fast path answered.
func checkFastSection(t *testing.T, raw []byte, sec *imap.FetchItemBodySection) bool {
	t.Helper()
	want := safe(func() []byte { return imapserver.ExtractBodySection(bytes.NewReader(raw), sec) }, nil)
	if sec.Specifier == imap.PartSpecifierNone && len(sec.Part) == 0 && splitHeader(raw).state == splitInvalid {
		// Where go-imap answers nothing, BODY[] is the stored message.
		if len(want) != 0 {
			t.Fatalf("go-imap answered %q for a header splitHeader finds invalid", want)
		}
		want = partial(raw, sec.Partial)
	}
	var fd fetchData
	buildFetch(raw, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}, &fd)
	if got := fd.sections[0]; !bytes.Equal(got, want) {
		t.Errorf("%s <%v>: got %q, want %q", sec.Specifier, sec.Partial, got, want)
	}
	m := rawMessage{raw: raw, depth: -1}
	_, ok := m.section(sec)
	return ok
}

// TestFetchSectionFastPath: BODY[], BODY[HEADER] and BODY[TEXT] with and
// without partial are go-imap's, byte for byte; the raw itself is never
// changed; only the lines go-message may read differently take the slow
// path.
func TestFetchSectionFastPath(t *testing.T) {
	for name, s := range sectionCorpus(t) {
		t.Run(name, func(t *testing.T) {
			raw := []byte(s)
			slow := false
			for _, spec := range fastSpecifiers {
				for _, p := range fastPartials {
					if !checkFastSection(t, raw, &imap.FetchItemBodySection{Specifier: spec, Partial: p, Peek: true}) {
						slow = true
					}
				}
			}
			if string(raw) != s {
				t.Fatal("raw changed")
			}
			wantSlow := strings.HasPrefix(name, "last ") && !strings.HasSuffix(name, "4094") && !strings.HasSuffix(name, "4095") ||
				name == "long last line" || name == "long last folded"
			if slow != wantSlow {
				t.Errorf("slow path: %v, want %v", slow, wantSlow)
			}
			if got, want := countMultipart(raw), countMultipartRef(raw); got != want {
				t.Errorf("countMultipart: %d, want %d", got, want)
			}
			m := rawMessage{raw: raw, depth: -1}
			if got, want := m.envelope(), envelopeRef(raw); !reflect.DeepEqual(got, want) {
				t.Errorf("envelope: %+v, want %+v", got, want)
			}
		})
	}
}

// TestFetchSectionSlices: the common sections are raw itself, not copies.
func TestFetchSectionSlices(t *testing.T) {
	raw := []byte(simpleMsg)
	var fd fetchData
	buildFetch(raw, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{
		{}, {Specifier: imap.PartSpecifierHeader}, {Specifier: imap.PartSpecifierText}}}, &fd)
	for i, b := range fd.sections {
		if len(b) == 0 || &b[len(b)-1] != &raw[len(raw)-1] && &b[0] != &raw[0] {
			t.Errorf("section %d is not a slice of raw", i)
		}
	}
}

func TestPartial(t *testing.T) {
	b := []byte("0123456789")
	for _, c := range []struct {
		off, size int64
		want      string
		isNil     bool
	}{
		{0, 3, "012", false}, {8, 5, "89", false}, {10, 1, "", false}, {11, 1, "", true},
		{-1, 3, "", true}, {2, -1, "", true}, {5, 1<<63 - 1, "", true},
	} {
		got := partial(b, &imap.SectionPartial{Offset: c.off, Size: c.size})
		if string(got) != c.want || (got == nil) != c.isNil {
			t.Errorf("<%d.%d>: %q (nil %v)", c.off, c.size, got, got == nil)
		}
	}
}

// FuzzFetchSectionFastPath: on any message and partial range, the fast
// path gives what go-imap gives, and countMultipart and the envelope are
// those of the straightforward versions. A non-zero pad puts a header
// line of about that length first, to reach bufio's buffer size.
func FuzzFetchSectionFastPath(f *testing.F) {
	for _, s := range sectionCorpus(f) {
		if len(s) < 1000 {
			f.Add([]byte(s), int64(5), int64(10), uint16(0))
		}
	}
	f.Add([]byte("\r\nbody"), int64(0), int64(100), uint16(4090))
	f.Add([]byte("b"), int64(0), int64(100), uint16(8185))
	f.Fuzz(func(t *testing.T, raw []byte, off, size int64, pad uint16) {
		if pad > 0 {
			raw = append([]byte("X-Pad: "+strings.Repeat("p", int(pad)%10000)), raw...)
		}
		orig := string(raw)
		for _, spec := range fastSpecifiers {
			for _, p := range append(fastPartials, &imap.SectionPartial{Offset: off, Size: size}) {
				checkFastSection(t, raw, &imap.FetchItemBodySection{Specifier: spec, Partial: p})
			}
		}
		if string(raw) != orig {
			t.Fatal("raw changed")
		}
		if got, want := countMultipart(raw), countMultipartRef(raw); got != want {
			t.Errorf("countMultipart: %d, want %d", got, want)
		}
		m := rawMessage{raw: raw, depth: -1}
		if got, want := safe(m.envelope, nil), safe(func() *imap.Envelope { return envelopeRef(raw) }, nil); !reflect.DeepEqual(got, want) {
			t.Errorf("envelope: %+v, want %+v", got, want)
		}
	})
}

// countMultipartRef is countMultipart the plain way.
func countMultipartRef(raw []byte) int {
	n := 0
	const needle = "multipart/"
	for i := 0; i+len(needle) <= len(raw); i++ {
		if strings.EqualFold(string(raw[i:i+len(needle)]), needle) {
			n++
			if n > maxMultipartDepth {
				return n
			}
			i += len(needle) - 1
		}
	}
	return n
}

// envelopeRef is the envelope read from the whole message.
func envelopeRef(raw []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return &imap.Envelope{}
	}
	return imapserver.ExtractEnvelope(h)
}

// TestFetchMany: a FETCH of more than 32 messages (the scan in
// loadMessages) answers every message once with go-imap's sections, and a
// non-peek one sets \Seen on exactly those messages.
func TestFetchMany(t *testing.T) {
	e := newEnv(t, envOptions{})
	var raws [][]byte
	for i := range 45 {
		m := benchMessage(i, 600)
		if i%3 == 1 {
			m = strings.ReplaceAll(m, "\r\n", "\n")
		}
		raws = append(raws, []byte(m))
		e.deliver(0, "INBOX", m)
	}
	c := e.client(0, nil)
	must(c.Select("INBOX", nil).Wait())(t)

	secs := []*imap.FetchItemBodySection{{Peek: true}, {Peek: true, Specifier: imap.PartSpecifierHeader},
		{Peek: true, Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 3, Size: 50}}}
	var set imap.UIDSet
	set.AddRange(3, 42)
	set.AddNum(44, 100)
	msgs := must(c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, BodySection: secs}).Collect())(t)
	if len(msgs) != 41 {
		t.Fatalf("fetched %d messages, want 41", len(msgs))
	}
	for _, m := range msgs {
		if m.UID < 3 || m.UID == 43 || m.UID > 44 || slices.Contains(m.Flags, imap.FlagSeen) {
			t.Fatalf("UID %d, flags %v", m.UID, m.Flags)
		}
		raw := raws[m.UID-1]
		for _, sec := range secs {
			want := imapserver.ExtractBodySection(bytes.NewReader(raw), sec)
			if got := m.FindBodySection(sec); !bytes.Equal(got, want) {
				t.Fatalf("UID %d %s: %q, want %q", m.UID, sec.Specifier, got, want)
			}
		}
	}

	set = imap.UIDSet{}
	set.AddRange(5, 40)
	msgs = must(c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader}}}).Collect())(t)
	if len(msgs) != 36 {
		t.Fatalf("fetched %d messages, want 36", len(msgs))
	}
	seen := must(c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, &imap.SearchOptions{ReturnAll: true}).Wait())(t)
	if got := seen.AllSeqNums(); len(got) != 36 || got[0] != 5 || got[35] != 40 {
		t.Fatalf("\\Seen on %v", got)
	}
}
