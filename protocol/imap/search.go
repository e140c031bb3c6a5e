package imap

import (
	"bytes"
	"io"
	"mime"
	netmail "net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	message "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"

	"github.com/raftmail/raftmail/storage"
)

// Search implements imapserver.Session: every RFC 9051 search key over the
// messages the client can see. Flags, sizes, dates and UIDs come from the
// store's metadata; HEADER, BODY, TEXT and SENT* read the body (fetched
// once per message, only when a criterion needs it).
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	sel.view.mu.Lock()
	all := sel.visibleLocked()
	sel.view.mu.Unlock()
	var lastSeq, lastUID uint32
	if len(all) > 0 {
		lastSeq, lastUID = all[len(all)-1].seq, all[len(all)-1].uid
	}
	c := staticCriteria(*criteria, lastSeq, lastUID, sel.saved)
	msgs, err := s.loadMessages(sel.mb.ID, uidsOf(all))
	if err != nil {
		return nil, s.internal("search", err)
	}
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	var saved []uint32
	for _, it := range all {
		m, ok := msgs[it.uid]
		if !ok {
			continue
		}
		d := &searchDoc{seq: it.seq, msg: m, load: func() ([]byte, error) { return s.blob(m) }}
		ok, err := d.match(&c)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		saved = append(saved, it.uid)
		num := it.seq
		if kind == imapserver.NumKindUID {
			num = it.uid
			uids.AddNum(imap.UID(it.uid))
		} else {
			seqs.AddNum(it.seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options != nil && options.ReturnSave {
		sel.saved = saved
	}
	return data, nil
}

// staticCriteria copies c with "*" replaced by the last sequence number or
// UID, and "$" by the saved result.
func staticCriteria(c imap.SearchCriteria, lastSeq, lastUID uint32, saved []uint32) imap.SearchCriteria {
	out := c
	out.SeqNum = make([]imap.SeqSet, len(c.SeqNum))
	for i, set := range c.SeqNum {
		out.SeqNum[i] = staticSeqSet(set, lastSeq)
	}
	out.UID = make([]imap.UIDSet, len(c.UID))
	for i, set := range c.UID {
		if imap.IsSearchRes(set) {
			var res imap.UIDSet
			for _, u := range saved {
				res.AddNum(imap.UID(u))
			}
			out.UID[i] = res
			continue
		}
		out.UID[i] = staticUIDSet(set, lastUID)
	}
	out.Not = make([]imap.SearchCriteria, len(c.Not))
	for i := range c.Not {
		out.Not[i] = staticCriteria(c.Not[i], lastSeq, lastUID, saved)
	}
	out.Or = make([][2]imap.SearchCriteria, len(c.Or))
	for i := range c.Or {
		out.Or[i][0] = staticCriteria(c.Or[i][0], lastSeq, lastUID, saved)
		out.Or[i][1] = staticCriteria(c.Or[i][1], lastSeq, lastUID, saved)
	}
	return out
}

// searchDoc is one message under evaluation; its body is loaded at most
// once.
type searchDoc struct {
	seq    uint32
	msg    storage.Message
	load   func() ([]byte, error)
	raw    []byte
	loaded bool
	fields []headerField
}

func (d *searchDoc) body() ([]byte, error) {
	if !d.loaded {
		raw, err := d.load()
		if err != nil {
			return nil, err
		}
		d.raw, d.loaded = raw, true
		d.fields = parseHeader(raw)
	}
	return d.raw, nil
}

func (d *searchDoc) match(c *imap.SearchCriteria) (bool, error) {
	for _, set := range c.SeqNum {
		if !set.Contains(d.seq) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !set.Contains(imap.UID(d.msg.UID)) {
			return false, nil
		}
	}
	if !matchDate(d.msg.InternalDate.UTC(), c.Since, c.Before) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !hasFlag(d.msg.Flags, f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(d.msg.Flags, f) {
			return false, nil
		}
	}
	if c.Larger > 0 && d.msg.Size <= c.Larger {
		return false, nil
	}
	if c.Smaller > 0 && d.msg.Size >= c.Smaller {
		return false, nil
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		if _, err := d.body(); err != nil {
			return false, err
		}
		for _, h := range c.Header {
			if !matchHeader(d.fields, h.Key, h.Value) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			sent := d.msg.InternalDate
			if t, ok := sentDate(d.fields); ok {
				// The date as written in the message, without time or zone.
				sent = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			}
			if !matchDate(sent, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	for _, needle := range c.Body {
		raw, err := d.body()
		if err != nil {
			return false, err
		}
		if !matchText(raw, needle, false) {
			return false, nil
		}
	}
	for _, needle := range c.Text {
		raw, err := d.body()
		if err != nil {
			return false, err
		}
		if !matchText(raw, needle, true) {
			return false, nil
		}
	}
	for i := range c.Not {
		ok, err := d.match(&c.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		ok, err := d.match(&c.Or[i][0])
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = d.match(&c.Or[i][1]); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// hasFlag compares flags case-insensitively. \Recent is never set: this
// server keeps no per-session recent state.
func hasFlag(flags []string, f imap.Flag) bool {
	return slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, string(f)) })
}

// matchDate compares dates only (RFC 9051 6.4.4): since <= day < before.
func matchDate(t, since, before time.Time) bool {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && day.Before(since) {
		return false
	}
	if !before.IsZero() && !day.Before(before) {
		return false
	}
	return true
}

// Text matching over raw messages. Everything here takes untrusted bytes
// and must neither panic nor take more than linear time and memory.

// headerField is one unfolded header field.
type headerField struct{ key, value string }

// maxHeaderBytes bounds the header parseHeader looks at.
const maxHeaderBytes = 1 << 20

// parseHeader splits the header of raw into unfolded fields. It is
// tolerant: a line without a colon is skipped, bare LF line ends are
// accepted, and the header ends at the first empty line or maxHeaderBytes.
func parseHeader(raw []byte) []headerField {
	if len(raw) > maxHeaderBytes {
		raw = raw[:maxHeaderBytes]
	}
	var out []headerField
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of header
		}
		if line[0] == ' ' || line[0] == '\t' {
			if n := len(out); n > 0 {
				out[n-1].value += " " + string(bytes.TrimSpace(line))
			}
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, headerField{
			key:   string(bytes.TrimSpace(k)),
			value: string(bytes.TrimSpace(v)),
		})
	}
	return out
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeader decodes RFC 2047 encoded words; undecodable text stays as
// it is.
func decodeHeader(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	s, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return s
}

// matchHeader implements SEARCH HEADER (and FROM, TO, CC, BCC, SUBJECT):
// a field named key whose decoded value contains value, case-insensitively;
// an empty value matches any message that has the field.
func matchHeader(fields []headerField, key, value string) bool {
	needle := fold(value)
	for _, f := range fields {
		if !strings.EqualFold(f.key, key) {
			continue
		}
		if needle == "" || strings.Contains(fold(decodeHeader(f.value)), needle) {
			return true
		}
	}
	return false
}

func sentDate(fields []headerField) (time.Time, bool) {
	for _, f := range fields {
		if strings.EqualFold(f.key, "Date") {
			t, err := netmail.ParseDate(f.value)
			return t, err == nil
		}
	}
	return time.Time{}, false
}

// fold lower-cases for case-insensitive matching.
func fold(s string) string { return strings.ToLower(s) }

const (
	maxSearchDepth = 20       // nested multiparts and messages
	maxSearchParts = 1000     // parts visited per message
	maxSearchText  = 64 << 20 // bytes of decoded text per part
)

// matchText implements SEARCH BODY (headers=false) and TEXT (true): needle
// occurs, case-insensitively, in the decoded text parts of raw (transfer
// encoding and charset undone), or with headers in a decoded header field.
// A message go-message cannot parse is searched as raw bytes.
func matchText(raw []byte, needle string, headers bool) bool {
	n := fold(needle)
	if n == "" {
		return true
	}
	parts := 0
	found, ok := walkText(raw, n, headers, 0, &parts)
	if !ok {
		return bytes.Contains(bytes.ToLower(raw), []byte(n))
	}
	return found
}

// walkText searches one entity; ok is false if raw could not be parsed.
func walkText(raw []byte, needle string, headers bool, depth int, parts *int) (found, ok bool) {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
		return false, false
	}
	return walkEntity(e, needle, headers, depth, parts), true
}

func walkEntity(e *message.Entity, needle string, headers bool, depth int, parts *int) bool {
	*parts++
	if depth > maxSearchDepth || *parts > maxSearchParts {
		return false
	}
	if headers {
		for f := e.Header.Fields(); f.Next(); {
			if strings.Contains(fold(f.Key()+": "+decodeHeader(f.Value())), needle) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if walkEntity(p, needle, headers, depth+1, parts) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil || t == "" {
		t = "text/plain"
	}
	switch {
	case strings.HasPrefix(t, "text/"):
		b, _ := io.ReadAll(io.LimitReader(e.Body, maxSearchText))
		return bytes.Contains(bytes.ToLower(b), []byte(needle))
	case t == "message/rfc822" || t == "message/global":
		b, _ := io.ReadAll(io.LimitReader(e.Body, maxSearchText))
		found, ok := walkText(b, needle, true, depth+1, parts)
		if !ok {
			return bytes.Contains(bytes.ToLower(b), []byte(needle))
		}
		return found
	}
	return false
}
