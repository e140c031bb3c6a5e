package imap

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// fetchData is what a FETCH response needs from a message body, computed
// before the response is started so that a failure cannot leave a
// half-written response behind.
type fetchData struct {
	envelope    *imap.Envelope
	structure   imap.BodyStructure
	sections    [][]byte
	binary      [][]byte
	binarySizes []uint32
}

// maxMultipartDepth bounds the multipart declarations of a message whose
// structure is computed: go-message parses nested multiparts recursively,
// and a hostile message must not exhaust the stack.
const maxMultipartDepth = 200

// buildFetch computes the body-derived items of options from raw into fd,
// reusing fd's slices: Fetch builds one message after the other. It never
// panics: malformed MIME and non-UTF-8 yield the best structure that can be
// made, at worst a single text/plain part. The sections may be slices of
// raw, which must not change until they are written.
func buildFetch(raw []byte, options *imap.FetchOptions, fd *fetchData) {
	fd.envelope, fd.structure = nil, nil
	fd.sections = reuse(fd.sections, len(options.BodySection))
	fd.binary = reuse(fd.binary, len(options.BinarySection))
	fd.binarySizes = reuse(fd.binarySizes, len(options.BinarySectionSize))
	m := rawMessage{raw: raw, depth: -1}
	if options.Envelope {
		fd.envelope = safe(m.envelope, nil)
	}
	if options.BodyStructure != nil {
		var bs imap.BodyStructure
		if m.parseable() {
			bs = safe(func() imap.BodyStructure { return imapserver.ExtractBodyStructure(bytes.NewReader(raw)) }, nil)
		}
		fd.structure = sanitizeStructure(bs, len(raw), 0)
	}
	for i, sec := range options.BodySection {
		if b, ok := m.section(sec); ok {
			fd.sections[i] = b
			continue
		}
		if len(sec.Part) > 0 && !m.parseable() {
			continue
		}
		fd.sections[i] = safe(func() []byte { return imapserver.ExtractBodySection(bytes.NewReader(raw), sec) }, nil)
	}
	for i, sec := range options.BinarySection {
		if len(sec.Part) > 0 && !m.parseable() {
			continue
		}
		fd.binary[i] = safe(func() []byte { return imapserver.ExtractBinarySection(bytes.NewReader(raw), sec) }, nil)
	}
	for i, sec := range options.BinarySectionSize {
		if len(sec.Part) > 0 && !m.parseable() {
			continue
		}
		fd.binarySizes[i] = safe(func() uint32 { return imapserver.ExtractBinarySectionSize(bytes.NewReader(raw), sec) }, 0)
	}
}

// reuse returns s with length n and zero elements, in s's array if it is
// large enough.
func reuse[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// safe runs f, turning a panic in a MIME parser into fallback.
func safe[T any](f func() T, fallback T) (out T) {
	defer func() {
		if recover() != nil {
			out = fallback
		}
	}()
	return f()
}

// rawMessage computes what the items of one FETCH response need from
// raw at most once, and only when an item needs it: most FETCHes need
// neither the multipart count nor any MIME parsing.
type rawMessage struct {
	raw      []byte
	depth    int // countMultipart(raw); -1 until computed
	split    headerSplit
	hasSplit bool
}

// parseable reports whether go-message may parse raw's MIME structure.
func (m *rawMessage) parseable() bool {
	if m.depth < 0 {
		m.depth = countMultipart(m.raw)
	}
	return m.depth <= maxMultipartDepth
}

// header returns raw's header, split once.
func (m *rawMessage) header() *headerSplit {
	if !m.hasSplit {
		m.split, m.hasSplit = splitHeader(m.raw), true
	}
	return &m.split
}

// section answers BODY[], BODY[HEADER] and BODY[TEXT] of the whole
// message from raw, with what imapserver.ExtractBodySection returns but
// without its parse and copy. ok is false for any other section, and for
// a header only go-message can tell how it reads.
func (m *rawMessage) section(sec *imap.FetchItemBodySection) (b []byte, ok bool) {
	if len(sec.Part) > 0 || len(sec.HeaderFields) > 0 || len(sec.HeaderFieldsNot) > 0 {
		return nil, false
	}
	switch sec.Specifier {
	case imap.PartSpecifierNone, imap.PartSpecifierHeader, imap.PartSpecifierText:
	default:
		return nil, false
	}
	h := m.header()
	switch h.state {
	case splitUnknown:
		return nil, false
	case splitInvalid:
		// go-imap answers nothing at all, so the client would show an
		// empty message (an mbox "From " line, a header line without a
		// colon): BODY[] is the stored message whatever its header.
		if sec.Specifier == imap.PartSpecifierNone {
			return partial(m.raw, sec.Partial), true
		}
		return nil, true
	}
	switch sec.Specifier {
	case imap.PartSpecifierHeader:
		b = h.header
	case imap.PartSpecifierText:
		b = m.raw[h.body:]
	default:
		if h.rewritten {
			b = make([]byte, 0, len(h.header)+len(m.raw)-h.body)
			b = append(append(b, h.header...), m.raw[h.body:]...)
		} else {
			b = m.raw
		}
	}
	return partial(b, sec.Partial), true
}

// envelope parses only the header: a reader over the whole message would
// buffer 4 KiB of it for nothing.
func (m *rawMessage) envelope() *imap.Envelope {
	raw := m.raw
	switch h := m.header(); h.state {
	case splitInvalid:
		return &imap.Envelope{} // what ReadHeader's error gives below
	case splitOK:
		// The same lines as in raw, all terminated or shorter than the
		// buffer, so they read the same.
		raw = raw[:h.body]
	}
	br := bufio.NewReaderSize(bytes.NewReader(raw), min(len(raw)+1, headerBufferSize))
	hdr, err := textproto.ReadHeader(br)
	if err != nil {
		return &imap.Envelope{}
	}
	return imapserver.ExtractEnvelope(hdr)
}

// partial is go-imap's extractPartial: <offset.size> of b, nothing past
// its end. Where go-imap's slicing would panic (a negative or overflowing
// range, which the command parser never produces) safe would make it nil:
// so is it here.
func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	end := p.Offset + p.Size // may wrap, as in go-imap
	if p.Offset > int64(len(b)) {
		return nil
	}
	if end > int64(len(b)) {
		end = int64(len(b))
	}
	if p.Offset < 0 || end < p.Offset {
		return nil
	}
	return b[p.Offset:end]
}

type splitState int

const (
	splitOK      splitState = iota
	splitInvalid            // textproto.ReadHeader fails: go-imap answers nothing
	splitUnknown            // left to go-message, see headerBufferSize
)

// headerSplit is raw's header as textproto.ReadHeader reads it and
// textproto.WriteHeader writes it back, which is what go-imap returns for
// BODY[HEADER] and puts before the body in BODY[].
type headerSplit struct {
	state splitState
	// header is raw[:body] unless rewritten: go-message ends every header
	// line with CRLF, drops fields with an empty name and adds the blank
	// line a header cut short by the end of the message lacks.
	header    []byte
	rewritten bool
	body      int // the body, BODY[TEXT], is raw[body:]
}

// headerBufferSize is the bufio.Reader size textproto.ReadHeader gets from
// go-imap. An unterminated last line of that length or more may fill the
// buffer exactly, and bufio then reports EOF with the line, which makes
// ReadHeader fail: such headers go the slow way.
const headerBufferSize = 4096

// splitHeader finds raw's header line by line as textproto.ReadHeader
// does: bufio.Reader.ReadLine lines (LF or CRLF, a CR alone is data),
// continuation lines start with space or tab, the first line must not,
// every field needs a colon after a name of printable ASCII (spaces and
// tabs around it are trimmed; an empty name drops the field), and the
// header ends at an empty line or at the end of raw.
//
// Some of what go-imap answers is arguably wrong, and matched anyway so
// that a message reads the same whichever way it is fetched: BODY[] is
// empty for a message whose header does not parse (a first line without
// a colon, such as an mbox "From " line, or starting with a space), it
// loses nameless fields, has CRLF header lines where the message had LF
// and gains a blank line where the message had none, so that it is not
// RFC822.SIZE long.
func splitHeader(raw []byte) headerSplit {
	if len(raw) > 0 && isSpaceTab(raw[0]) {
		return headerSplit{state: splitInvalid}
	}
	var out []byte // the header written back, once it differs from raw
	rewritten := false
	pos := 0
	for pos < len(raw) {
		end, next := headerLine(raw, pos)
		if end == next && next-pos >= headerBufferSize {
			return headerSplit{state: splitUnknown}
		}
		if end == pos { // the empty line, necessarily terminated
			if !rewritten && next-pos == 2 {
				return headerSplit{header: raw[:next], body: next}
			}
			if !rewritten {
				out = append(make([]byte, 0, pos+2), raw[:pos]...)
			}
			return headerSplit{header: append(out, '\r', '\n'), rewritten: true, body: next}
		}
		colon := bytes.IndexByte(raw[pos:end], ':')
		if colon < 0 {
			return headerSplit{state: splitInvalid}
		}
		name := raw[pos : pos+colon]
		for len(name) > 0 && isSpaceTab(name[0]) {
			name = name[1:]
		}
		for len(name) > 0 && isSpaceTab(name[len(name)-1]) {
			name = name[:len(name)-1]
		}
		for _, c := range name {
			if c < '!' || c > '~' {
				return headerSplit{state: splitInvalid}
			}
		}
		start := pos
		crlf := next-end == 2
		pos = next
		for pos < len(raw) && isSpaceTab(raw[pos]) {
			end, next := headerLine(raw, pos)
			if end == next && next-pos >= headerBufferSize {
				return headerSplit{state: splitUnknown}
			}
			crlf = crlf && next-end == 2
			pos = next
		}
		if !rewritten && (!crlf || len(name) == 0) {
			out = append(make([]byte, 0, len(raw)+2), raw[:start]...)
			rewritten = true
		}
		if rewritten && len(name) > 0 {
			for p := start; p < pos; {
				end, next := headerLine(raw, p)
				out = append(append(out, raw[p:end]...), '\r', '\n')
				p = next
			}
		}
	}
	if !rewritten {
		out = append(make([]byte, 0, len(raw)+2), raw...)
	}
	return headerSplit{header: append(out, '\r', '\n'), rewritten: true, body: len(raw)}
}

// headerLine returns the end of the content of the line at pos and the
// start of the next: LF and CRLF end a line; at the end of raw, next is
// end.
func headerLine(raw []byte, pos int) (end, next int) {
	i := bytes.IndexByte(raw[pos:], '\n')
	if i < 0 {
		return len(raw), len(raw)
	}
	end, next = pos+i, pos+i+1
	if end > pos && raw[end-1] == '\r' {
		end--
	}
	return end, next
}

func isSpaceTab(c byte) bool { return c == ' ' || c == '\t' }

// countMultipart counts "multipart/" case-insensitively, stopping past the
// limit. It looks at slashes only: they are much rarer than letters.
func countMultipart(raw []byte) int {
	const name = "multipart"
	n := 0
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '/')
		if j < 0 {
			return n
		}
		i += j + 1
		if i-1 >= len(name) && equalFoldASCII(raw[i-1-len(name):i-1], name) {
			n++
			if n > maxMultipartDepth {
				return n
			}
		}
	}
}

// equalFoldASCII reports whether b starts with lower, lower-case ASCII
// letters, ignoring case.
func equalFoldASCII(b []byte, lower string) bool {
	for i := range len(lower) {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// plainPart is the structure given to what cannot be parsed: text/plain.
func plainPart(size int) *imap.BodyStructureSinglePart {
	return &imap.BodyStructureSinglePart{
		Type: "text", Subtype: "plain",
		Params:   map[string]string{"charset": "us-ascii"},
		Encoding: "7bit",
		Size:     uint32(size),
		Text:     &imap.BodyStructureText{},
		Extended: &imap.BodyStructureSinglePartExt{},
	}
}

// sanitizeStructure makes bs writable by imapserver, which panics on a
// multipart without parts or a missing extension: empty types become
// text/plain or multipart/mixed, empty multiparts get one empty text part,
// every part gets its extension data, text parts their line count.
func sanitizeStructure(bs imap.BodyStructure, size, depth int) imap.BodyStructure {
	switch p := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if p == nil {
			return plainPart(size)
		}
		if p.Type == "" || p.Subtype == "" {
			p.Type, p.Subtype = "text", "plain"
		}
		if strings.EqualFold(p.Type, "text") && p.Text == nil {
			p.Text = &imap.BodyStructureText{}
		}
		if p.Extended == nil {
			p.Extended = &imap.BodyStructureSinglePartExt{}
		}
		if m := p.MessageRFC822; m != nil {
			if depth > maxMultipartDepth {
				p.MessageRFC822 = nil
			} else {
				m.BodyStructure = sanitizeStructure(m.BodyStructure, 0, depth+1)
			}
		}
		if p.MessageRFC822 == nil && strings.EqualFold(p.Type, "message") &&
			(strings.EqualFold(p.Subtype, "rfc822") || strings.EqualFold(p.Subtype, "global")) {
			p.Type, p.Subtype = "application", "octet-stream"
		}
		return p
	case *imap.BodyStructureMultiPart:
		if p == nil {
			return plainPart(size)
		}
		if p.Subtype == "" {
			p.Subtype = "mixed"
		}
		if p.Extended == nil {
			p.Extended = &imap.BodyStructureMultiPartExt{}
		}
		for i, c := range p.Children {
			p.Children[i] = sanitizeStructure(c, 0, depth+1)
		}
		if len(p.Children) == 0 {
			p.Children = []imap.BodyStructure{plainPart(0)}
		}
		return p
	}
	return plainPart(size)
}
