// Package mailauth is email authentication for Raftmail: DKIM signing and
// verification (emersion/go-msgauth), SPF (blitiri.com.ar/go/spf), DMARC
// evaluation, the Authentication-Results header, and the one DNS seam that
// every lookup of the mail service goes through (Resolver), so tests and
// operators can point it at a server of their choice.
//
// It imports storage at most; protocol/smtp and protocol/delivery import it.
package mailauth
