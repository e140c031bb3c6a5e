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

// buildFetch computes the body-derived items of options from raw. It never
// panics: malformed MIME and non-UTF-8 yield the best structure that can be
// made, at worst a single text/plain part.
func buildFetch(raw []byte, options *imap.FetchOptions) (fd fetchData) {
	fd.sections = make([][]byte, len(options.BodySection))
	fd.binary = make([][]byte, len(options.BinarySection))
	fd.binarySizes = make([]uint32, len(options.BinarySectionSize))
	parseable := countMultipart(raw) <= maxMultipartDepth
	if options.Envelope {
		fd.envelope = safe(func() *imap.Envelope { return envelope(raw) }, nil)
	}
	if options.BodyStructure != nil {
		var bs imap.BodyStructure
		if parseable {
			bs = safe(func() imap.BodyStructure { return imapserver.ExtractBodyStructure(bytes.NewReader(raw)) }, nil)
		}
		fd.structure = sanitizeStructure(bs, len(raw), 0)
	}
	for i, sec := range options.BodySection {
		sec := sec
		if !parseable && len(sec.Part) > 0 {
			continue
		}
		fd.sections[i] = safe(func() []byte { return imapserver.ExtractBodySection(bytes.NewReader(raw), sec) }, nil)
	}
	for i, sec := range options.BinarySection {
		sec := sec
		if !parseable && len(sec.Part) > 0 {
			continue
		}
		fd.binary[i] = safe(func() []byte { return imapserver.ExtractBinarySection(bytes.NewReader(raw), sec) }, nil)
	}
	for i, sec := range options.BinarySectionSize {
		sec := sec
		if !parseable && len(sec.Part) > 0 {
			continue
		}
		fd.binarySizes[i] = safe(func() uint32 { return imapserver.ExtractBinarySectionSize(bytes.NewReader(raw), sec) }, 0)
	}
	return fd
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

func envelope(raw []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return &imap.Envelope{}
	}
	return imapserver.ExtractEnvelope(h)
}

// countMultipart counts "multipart/" case-insensitively, stopping past the
// limit.
func countMultipart(raw []byte) int {
	n := 0
	const needle = "multipart/"
	for i := 0; i+len(needle) <= len(raw); i++ {
		if raw[i]|0x20 == 'm' && strings.EqualFold(string(raw[i:i+len(needle)]), needle) {
			n++
			if n > maxMultipartDepth {
				return n
			}
			i += len(needle) - 1
		}
	}
	return n
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
