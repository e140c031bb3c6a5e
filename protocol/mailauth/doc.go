// Package mailauth is email authentication for Raftmail: DKIM signing and
// verification (emersion/go-msgauth), SPF (blitiri.com.ar/go/spf), DMARC
// evaluation, the Authentication-Results header, and the one DNS seam that
// every lookup of the mail service goes through (Resolver), so tests and
// operators can point it at a server of their choice.
//
// It imports storage at most; protocol/smtp and protocol/delivery import it.
//
// Implementation notes:
//
//   - DKIM (RFC 6376, RFC 8463): every domain signs twice, ed25519 and
//     RSA-2048 (GenerateDKIMKeys), relaxed/relaxed, over an explicit list
//     of header fields (only those present, From oversigned), never "all
//     headers". Verification is bounded (Checker.MaxDKIMSignatures).
//   - SPF (RFC 7208) checks MAIL FROM's domain, or the HELO name for the
//     null sender.
//   - DMARC (RFC 7489): go-msgauth only parses the record; discovery
//     (_dmarc.<From domain>, then the organizational domain from the
//     Public Suffix List), alignment, p/sp and pct are here. pct sampling
//     hashes the message (Message-ID, else body), so every node and retry
//     decides alike. A DNS failure anywhere is a temperror, which never
//     rejects.
//   - Authentication-Results (RFC 8601): Results.Header; StripAuthResults
//     removes incoming fields that claim our authserv-id (§5).
//   - FromAddresses reads the From field strictly (once, every address,
//     nothing guessed) for submission's sender check; DMARC's reading of
//     the From domains is lenient so a malformed From cannot escape it.
//   - The SPF and DKIM libraries recognise DNS "not found" and
//     "temporary" only on an unwrapped *net.DNSError; lookups pass through
//     an adapter that makes every Resolver error one, unknown errors
//     counting as temporary.
package mailauth
