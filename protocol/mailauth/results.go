package mailauth

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
)

// Checker runs the inbound checks of a message: SPF, DKIM and DMARC.
// It is safe for concurrent use.
type Checker struct {
	// Resolver makes every DNS lookup; nil = the system's resolver.
	Resolver Resolver
	// AuthServID names this receiver in Authentication-Results headers
	// (RFC 8601 §2.5): the cluster's mail domain or host name, the same
	// on every node. Required.
	AuthServID string
	// MaxDKIMSignatures bounds how many DKIM signatures of one message
	// are verified; 0 = DefaultMaxDKIMSignatures (5).
	MaxDKIMSignatures int
}

// Results are the outcome of Checker.Check.
type Results struct {
	// AuthServID is the checker's, for the header.
	AuthServID string
	SPF        SPFResult
	// DKIM has one result per verified signature; empty if the message
	// has none. DKIMErr is set when the header could not be read.
	DKIM    []DKIMResult
	DKIMErr error
	DMARC   DMARCResult
}

// Check runs SPF (for the client at ip, with HELO name helo and reverse
// path mailFrom, "" for the null sender) and DKIM verification at the same
// time, then DMARC, every lookup bounded by ctx. msg is the message as it
// arrived, before our own Received header. DNS failures give temperror
// results, never an error.
func (c *Checker) Check(ctx context.Context, ip net.IP, helo, mailFrom string, msg []byte) *Results {
	hdr, body := SplitHeader(msg)
	return c.CheckMessage(ctx, ip, helo, mailFrom, hdr, func() io.Reader { return bytes.NewReader(body) })
}

// CheckMessage is Check for a message given as its header block (up to and
// including the empty line that ends it; see SplitHeader) and its body,
// which body opens from the start each time it is called: the body is
// read as a stream (for DKIM body hashes), never held whole.
func (c *Checker) CheckMessage(ctx context.Context, ip net.IP, helo, mailFrom string, header []byte, body func() io.Reader) *Results {
	r := c.Resolver
	if r == nil {
		r = NewResolver("")
	}
	res := &Results{AuthServID: c.AuthServID}
	var wg sync.WaitGroup
	wg.Go(func() { res.SPF = CheckSPF(ctx, r, ip, helo, mailFrom) })
	res.DKIM, res.DKIMErr = verifyDKIM(ctx, r, header, body, c.MaxDKIMSignatures)
	wg.Wait()
	res.DMARC = evaluateDMARC(ctx, r, header, body, res.SPF, res.DKIM)
	return res
}

// SplitHeader splits msg into its header block, which ends with the empty
// line after the header fields (or is all of msg when there is none), and
// the body after it.
func SplitHeader(msg []byte) (header, body []byte) {
	_, rest := splitMessage(msg)
	n := len(msg) - len(rest)
	if len(rest) > 0 {
		n += lineEnd(rest, 0)
	}
	return msg[:n], msg[n:]
}

// Disposition is what DMARC says to do with the message:
// DispositionNone, DispositionQuarantine or DispositionReject.
func (r *Results) Disposition() string {
	if r.DMARC.Disposition == "" {
		return DispositionNone
	}
	return r.DMARC.Disposition
}

// maxLine is where Header folds (RFC 5322 §2.1.1: SHOULD be at most 78).
const maxLine = 78

// Header returns the Authentication-Results header field (RFC 8601),
// folded, ending in CRLF, ready to prepend to the message:
//
//	Authentication-Results: mx.example.com;
//		spf=pass smtp.mailfrom=alice@example.org;
//		dkim=pass header.d=example.org header.s=sel header.a=ed25519-sha256
//		 header.b=AbCdEfGh;
//		dmarc=pass (p=reject dis=none) header.from=example.org
func (r *Results) Header() string {
	var h hdrBuilder
	h.line.WriteString("Authentication-Results: ")
	h.line.WriteString(token(r.AuthServID, "unknown"))

	// SPF (RFC 8601 §2.7.2).
	h.resinfo("spf=" + token(r.SPF.Result, "none"))
	if r.SPF.MailFrom != "" {
		h.add("smtp.mailfrom=" + pvalue(r.SPF.MailFrom))
	} else {
		h.add("smtp.helo=" + pvalue(r.SPF.HELO))
	}

	// DKIM (RFC 8601 §2.7.1, RFC 6008 for header.b).
	switch {
	case r.DKIMErr != nil:
		h.resinfo("dkim=permerror")
		h.add(`reason="unreadable header"`)
	case len(r.DKIM) == 0:
		h.resinfo("dkim=none")
	}
	for _, d := range r.DKIM {
		h.resinfo("dkim=" + token(d.Result, "permerror"))
		if d.Err != nil && (d.Result == "fail" || d.Result == "permerror") {
			h.add("reason=" + quote(strings.TrimPrefix(d.Err.Error(), "dkim: ")))
		}
		if d.Domain != "" {
			h.add("header.d=" + pvalue(d.Domain))
		}
		if d.Selector != "" {
			h.add("header.s=" + pvalue(d.Selector))
		}
		if d.Algorithm != "" {
			h.add("header.a=" + pvalue(d.Algorithm))
		}
		if b := d.Signature; b != "" {
			if len(b) > 8 {
				b = b[:8]
			}
			h.add("header.b=" + pvalue(b))
		}
	}

	// DMARC (RFC 7489 §11.2).
	h.resinfo("dmarc=" + token(r.DMARC.Result, "none"))
	if r.DMARC.Policy != "" {
		h.add("(p=" + r.DMARC.Policy + " dis=" + r.Disposition() + ")")
	}
	if r.DMARC.FromDomain != "" {
		h.add("header.from=" + pvalue(r.DMARC.FromDomain))
	}
	return h.done()
}

// hdrBuilder folds a header field at word boundaries.
type hdrBuilder struct {
	out  strings.Builder
	line strings.Builder // the current line, not yet in out
}

// resinfo starts a result on a line of its own: "; CRLF TAB s".
func (h *hdrBuilder) resinfo(s string) {
	h.line.WriteString(";")
	h.flush()
	h.line.WriteString("\t")
	h.line.WriteString(s)
}

// add appends a word, folding before it if the line would get too long.
func (h *hdrBuilder) add(s string) {
	if h.line.Len()+1+len(s) > maxLine {
		h.flush()
		h.line.WriteString("\t ")
	} else {
		h.line.WriteString(" ")
	}
	h.line.WriteString(s)
}

func (h *hdrBuilder) flush() {
	h.out.WriteString(h.line.String())
	h.out.WriteString("\r\n")
	h.line.Reset()
}

func (h *hdrBuilder) done() string {
	h.flush()
	return h.out.String()
}

// isTokenChar reports whether c may appear in an RFC 2045 token.
func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// token returns s if it is a token, else def.
func token(s, def string) string {
	if isToken(s) {
		return s
	}
	return def
}

// pvalue writes a property value (RFC 8601 §2.2): as it is when it is a
// token or [local-part "@"] domain-name of plain characters, else as a
// quoted-string.
func pvalue(s string) string {
	if isToken(s) {
		return s
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 && isDotAtom(s[:i]) && isDomainName(s[i+1:]) {
		return s
	}
	return quote(s)
}

func isDomainName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// isDotAtom reports whether s is empty or an RFC 5322 dot-atom of ASCII
// atext.
func isDotAtom(s string) bool {
	if s == "" {
		return true
	}
	for _, a := range strings.Split(s, ".") {
		if a == "" {
			return false
		}
		for i := 0; i < len(a); i++ {
			c := a[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// quote returns s as a quoted-string: control characters dropped,
// backslash and quote escaped, at most 200 bytes of it.
func quote(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r < ' ' || r == 0x7f:
			continue
		case r == '"' || r == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
