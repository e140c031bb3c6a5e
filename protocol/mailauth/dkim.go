package mailauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM key algorithms (DKIMKey.Algorithm, the k= tag of the DNS record).
const (
	AlgEd25519 = "ed25519"
	AlgRSA     = "rsa"
)

// DKIMRSABits is the size of the RSA keys GenerateDKIMKeys makes.
const DKIMRSABits = 2048

// DKIMSignatureLifetime is how long a signature made by SignDKIM stays
// valid (its x= tag): longer than any message stays in the outbound queue,
// short enough to limit replays of a signed message.
const DKIMSignatureLifetime = 30 * 24 * time.Hour

// DefaultMaxDKIMSignatures is how many DKIM signatures of one message are
// verified when Checker.MaxDKIMSignatures is 0; the rest are ignored.
const DefaultMaxDKIMSignatures = 5

// DKIMKey is one DKIM signing key of a domain: published in DNS at
// <Selector>._domainkey.<domain>.
type DKIMKey struct {
	Selector string
	// Algorithm is AlgEd25519 or AlgRSA.
	Algorithm string
	// PrivateKeyPEM is the private key, PEM "PRIVATE KEY" (PKCS #8);
	// "RSA PRIVATE KEY" (PKCS #1) is accepted too.
	PrivateKeyPEM []byte
}

// Signer parses the private key and checks it is of k.Algorithm.
func (k DKIMKey) Signer() (crypto.Signer, error) {
	blk, _ := pem.Decode(k.PrivateKeyPEM)
	if blk == nil {
		return nil, fmt.Errorf("mailauth: dkim key %q: no PEM block", k.Selector)
	}
	var key any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("mailauth: dkim key %q: unexpected PEM block %q", k.Selector, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("mailauth: dkim key %q: %w", k.Selector, err)
	}
	switch key := key.(type) {
	case ed25519.PrivateKey:
		if k.Algorithm == AlgEd25519 {
			return key, nil
		}
	case *rsa.PrivateKey:
		if k.Algorithm == AlgRSA {
			return key, nil
		}
	}
	return nil, fmt.Errorf("mailauth: dkim key %q: a %T is not an %q key", k.Selector, key, k.Algorithm)
}

// TXTRecord returns the DNS TXT record that publishes the public key
// (RFC 6376 §3.6.1, RFC 8463 §4): "v=DKIM1; k=ed25519; p=<base64 of the
// 32-byte key>" or "v=DKIM1; k=rsa; p=<base64 of the DER
// SubjectPublicKeyInfo>". An RSA record is longer than 255 bytes: publish
// it as several character-strings of one TXT record.
func (k DKIMKey) TXTRecord() (string, error) {
	s, err := k.Signer()
	if err != nil {
		return "", err
	}
	var p []byte
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		p = pub
	case *rsa.PublicKey:
		p, err = x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("mailauth: dkim key %q: %w", k.Selector, err)
		}
	}
	return "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(p), nil
}

// NewSelectorBase returns the selector base for keys made at t: "rm" and
// the UTC date, e.g. "rm20261128". GenerateDKIMKeys appends "e" and "r".
func NewSelectorBase(t time.Time) string {
	return "rm" + t.UTC().Format("20060102")
}

// GenerateDKIMKeys makes a new pair of keys, both to be used (dual
// signature, RFC 8463 §1): ed25519 with selector selectorBase+"e", and
// RSA-2048 with selectorBase+"r" for verifiers that do not know ed25519.
func GenerateDKIMKeys(selectorBase string) ([]DKIMKey, error) {
	if selectorBase == "" {
		return nil, errors.New("mailauth: empty DKIM selector base")
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mailauth: generate ed25519 key: %w", err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, DKIMRSABits)
	if err != nil {
		return nil, fmt.Errorf("mailauth: generate rsa key: %w", err)
	}
	var keys []DKIMKey
	for _, k := range []struct {
		sel, alg string
		key      any
	}{{selectorBase + "e", AlgEd25519, edKey}, {selectorBase + "r", AlgRSA, rsaKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("mailauth: encode %s key: %w", k.alg, err)
		}
		keys = append(keys, DKIMKey{
			Selector:      k.sel,
			Algorithm:     k.alg,
			PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		})
	}
	return keys, nil
}

// signedHeaders are the fields a signature covers when present, in this
// order (RFC 6376 §5.4.1): what a reader sees and what changes how the
// body reads. Trace and transport fields (Received, Return-Path, ...) are
// left out: they change on the way.
var signedHeaders = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-Disposition", "Content-Language",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"Autocrypt", "OpenPGP",
}

// headerKeys returns the h= list for a message with these header fields:
// each name of signedHeaders as many times as it occurs, and From once
// more than it occurs (oversigned, RFC 6376 §8.15), so that a From added
// on the way breaks the signature.
func headerKeys(fields []field) []string {
	count := make(map[string]int, len(signedHeaders))
	for _, f := range fields {
		if f.name != "" {
			count[strings.ToLower(f.name)]++
		}
	}
	var keys []string
	for _, name := range signedHeaders {
		n := count[strings.ToLower(name)]
		if name == "From" {
			n++
		}
		for range n {
			keys = append(keys, name)
		}
	}
	return keys
}

// SignDKIM signs msg (a whole message, CRLF line endings) for domain with
// every key, relaxed/relaxed, over an explicit list of header fields, and
// returns the message with one DKIM-Signature field per key prepended, in
// the order of keys. now is the signing time: the signatures expire
// DKIMSignatureLifetime after it (x=); a zero now means no expiry. (The t=
// tag comes from the system clock: go-msgauth takes no time.)
func SignDKIM(msg []byte, domain string, keys []DKIMKey, now time.Time) ([]byte, error) {
	hdr, body := SplitHeader(msg)
	sigs, err := SignDKIMMessage(hdr, bytes.NewReader(body), domain, keys, now)
	if err != nil {
		return nil, err
	}
	return append(sigs, msg...), nil
}

// SignDKIMMessage is SignDKIM for a message given as its header block
// (SplitHeader) and its body as a stream. It returns only the
// DKIM-Signature fields, one per key, to put before the header.
func SignDKIMMessage(header []byte, body io.Reader, domain string, keys []DKIMKey, now time.Time) ([]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	fields, _ := splitMessage(header)
	hk := headerKeys(fields)
	signers := make([]*dkim.Signer, 0, len(keys))
	ws := make([]io.Writer, 0, len(keys))
	// Every signer runs a goroutine until it is closed: close each one
	// whatever happens.
	closed := 0
	defer func() {
		for _, sg := range signers[closed:] {
			_ = sg.Close()
		}
	}()
	for _, k := range keys {
		signer, err := k.Signer()
		if err != nil {
			return nil, err
		}
		opts := &dkim.SignOptions{
			Domain:                 domain,
			Selector:               k.Selector,
			Signer:                 signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             hk,
		}
		if !now.IsZero() {
			opts.Expiration = now.Add(DKIMSignatureLifetime)
		}
		sg, err := dkim.NewSigner(opts)
		if err != nil {
			return nil, fmt.Errorf("mailauth: dkim sign with %q: %w", k.Selector, err)
		}
		signers = append(signers, sg)
		ws = append(ws, sg)
	}
	w := io.MultiWriter(ws...)
	if _, err := w.Write(header); err != nil {
		return nil, fmt.Errorf("mailauth: dkim sign: %w", err)
	}
	if _, err := io.Copy(w, body); err != nil {
		return nil, fmt.Errorf("mailauth: dkim sign: %w", err)
	}
	var out []byte
	for i, sg := range signers {
		closed = i + 1
		if err := sg.Close(); err != nil {
			return nil, fmt.Errorf("mailauth: dkim sign with %q: %w", keys[i].Selector, err)
		}
		out = append(out, sg.Signature()...)
	}
	return out, nil
}

// DKIMResult is the verification of one DKIM-Signature field.
type DKIMResult struct {
	// Result is "pass", "fail" (the signature or body hash does not
	// verify), "temperror" (key lookup failed for now) or "permerror"
	// (malformed signature, missing or unusable key, expired).
	Result string
	// Domain (d=), Selector (s=), Algorithm (a=), Identifier (i=) and
	// the signature (b=) as in the field, "" if absent.
	Domain, Selector, Algorithm, Identifier, Signature string
	// Err says why it did not pass; nil on pass.
	Err error
}

// VerifyDKIM verifies the first maxSignatures DKIM signatures of msg (0 =
// DefaultMaxDKIMSignatures; the rest are ignored), looking keys up through
// r within ctx. It returns one result per verified signature, in header
// order, and none for a message without signatures. An error means the
// header could not be read at all.
func VerifyDKIM(ctx context.Context, r Resolver, msg []byte, maxSignatures int) ([]DKIMResult, error) {
	hdr, body := SplitHeader(msg)
	return verifyDKIM(ctx, r, hdr, func() io.Reader { return bytes.NewReader(body) }, maxSignatures)
}

func verifyDKIM(ctx context.Context, r Resolver, header []byte, body func() io.Reader, maxSignatures int) ([]DKIMResult, error) {
	if maxSignatures <= 0 {
		maxSignatures = DefaultMaxDKIMSignatures
	}
	fields, _ := splitMessage(header)
	var tags []map[string]string
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			tags = append(tags, parseTags(f.value()))
			if len(tags) == maxSignatures {
				break
			}
		}
	}
	if len(tags) == 0 {
		return nil, nil
	}
	dr := dnsErrors{r}
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(header), body()), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return dr.LookupTXT(ctx, name) },
		MaxVerifications: maxSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return nil, fmt.Errorf("mailauth: dkim verify: %w", err)
	}
	res := make([]DKIMResult, 0, len(verifs))
	for i, v := range verifs {
		d := DKIMResult{Result: "pass", Domain: strings.ToLower(v.Domain), Identifier: v.Identifier, Err: v.Err}
		if i < len(tags) {
			t := tags[i]
			d.Selector, d.Algorithm, d.Signature = t["s"], t["a"], t["b"]
			if d.Domain == "" {
				d.Domain = strings.ToLower(t["d"])
			}
		}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			d.Result = "temperror"
		case dkim.IsPermFail(v.Err):
			d.Result = "permerror"
		default:
			d.Result = "fail"
		}
		res = append(res, d)
	}
	return res, nil
}

// parseTags parses a DKIM tag list (RFC 6376 §3.2), whitespace removed
// from the values; later duplicates are ignored.
func parseTags(v string) map[string]string {
	m := make(map[string]string)
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := m[k]; dup {
			continue
		}
		m[k] = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, val)
	}
	return m
}
