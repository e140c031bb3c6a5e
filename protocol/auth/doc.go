// Package auth is what SMTP submission, IMAP and POP3 share to log users
// in: the credential check against the replicated store (account password or
// app password), throttling of failed logins per client IP and per account
// (growing delays, then a temporary lock, all logged), and the SASL LOGIN
// server mechanism that go-sasl lacks.
//
// It imports storage only. It never logs passwords or AUTH payloads.
package auth
