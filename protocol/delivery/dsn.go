package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/storage"
)

// bounce sends a delivery status notification (RFC 3464) for the failed
// recipients of e to its sender: into the sender's INBOX when the sender
// is a local account or alias, else queued (with the null sender, RFC 5321
// §4.5.5) for remote delivery. No bounce for the null sender: that is how
// bounce loops end. A local sender that no longer exists gets none either.
func (s *Service) bounce(ctx context.Context, e storage.QueueEntry, failedRcpts []storage.QueueRecipient, log *slog.Logger) error {
	if e.From == "" {
		log.Info("delivery: failed recipients of a null-sender message: no bounce", "failed", len(failedRcpts))
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var headers []byte
	if orig, err := s.cfg.Cluster.FetchBlob(ctx, e.Blob); err == nil {
		headers = headerOf(orig)
	} else {
		log.Warn("delivery: original message not available for the bounce; sending it without its headers", "err", err)
	}
	id, err := newQueueID()
	if err != nil {
		return err
	}
	msg := s.buildDSN(e, failedRcpts, headers, id, s.cfg.Now())

	d := storage.Deliver{QueueID: id, Size: int64(len(msg))}
	local := false
	if _, err := s.cfg.Store.Domain(domainOf(e.From)); err == nil {
		local = true
		targets, err := s.cfg.Store.ResolveRecipient(e.From)
		if errors.Is(err, storage.ErrNotFound) {
			log.Warn("delivery: local sender no longer exists: no bounce", "from", e.From)
			return nil
		}
		if err != nil {
			return err
		}
		for _, t := range targets {
			d.Targets = append(d.Targets, storage.DeliverTarget{Account: t, Mailbox: "INBOX"})
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	} else {
		d.Remote = &storage.QueueEntry{ID: id, From: "", Recipients: []storage.QueueRecipient{{Address: e.From, Status: storage.QueuePending}}}
	}
	res, _, err := s.cfg.Accept.CommitBytes(ctx, msg, s.cfg.Now(), func(st accept.Stored) (storage.Deliver, error) {
		d.Blob = st.Hash
		if d.Remote != nil {
			d.Remote.Blob, d.Remote.Size = st.Hash, d.Size
		}
		return d, nil
	})
	if err == nil {
		err = res.Err()
	}
	switch {
	case errors.Is(err, storage.ErrOverQuota):
		// Like a full mailbox at any MX: the bounce is dropped, the
		// sender's own problem is visible to them.
		log.Warn("delivery: sender's mailbox is full: bounce dropped", "from", e.From)
		return nil
	case err != nil:
		return fmt.Errorf("deliver bounce: %w", err)
	}
	log.Info("delivery: bounce sent", "from", e.From, "local", local, "bounce_id", id, "failed", len(failedRcpts))
	return nil
}

var queueIDEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

// newQueueID is 16 characters of base32 from 80 random bits, like the
// queue IDs protocol/smtp gives.
func newQueueID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("delivery: queue id: %w", err)
	}
	return queueIDEnc.EncodeToString(b[:]), nil
}

// headerOf returns the header section of a message (up to and including
// the line ending before the empty line), or all of it if it has no body.
func headerOf(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+1]
	}
	return msg
}

var (
	replyCodeRe = regexp.MustCompile(`^([245])\d\d(?: ([245]\.\d{1,3}\.\d{1,3}))?`)
	bareCodeRe  = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3})\b`)
)

// dsnStatus returns the RFC 3463 status code and the RFC 3464
// Diagnostic-Code of a recipient's last reply.
func dsnStatus(reply string) (status, diagnostic string) {
	r := strings.TrimPrefix(reply, expiredPrefix)
	expired := r != reply
	status = "5.0.0"
	if m := replyCodeRe.FindStringSubmatch(r); m != nil {
		if m[2] != "" {
			status = m[2]
		} else {
			status = m[1] + ".0.0"
		}
		diagnostic = "smtp; " + oneLine(r)
	} else if m := bareCodeRe.FindStringSubmatch(r); m != nil {
		status = m[1]
		diagnostic = "X-Raftmail; " + oneLine(r)
	} else if r != "" {
		diagnostic = "X-Raftmail; " + oneLine(r)
	}
	if expired {
		// RFC 3463 §3.5: X.4.7 delivery time expired. The Action is
		// still "failed" (RFC 3464 §2.3.3).
		status = "4.4.7"
	}
	return status, diagnostic
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// buildDSN renders the report: multipart/report; report-type=
// delivery-status (RFC 3462/6522) with a human-readable part, the
// message/delivery-status part (RFC 3464 §2) and the original headers
// (text/rfc822-headers).
func (s *Service) buildDSN(e storage.QueueEntry, failedRcpts []storage.QueueRecipient, headers []byte, id string, now time.Time) []byte {
	host := s.cfg.Hostname
	boundary := id + "/" + host
	date := now.Format(time.RFC1123Z)
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("Return-Path: <>")
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	w("To: <%s>", e.From)
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", date)
	w("Message-ID: <%s@%s>", id, host)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w(`Content-Type: multipart/report; report-type=delivery-status; boundary="%s"`, boundary)
	w("")
	w("This is a MIME-encapsulated message.")
	w("")
	w("--%s", boundary)
	w("Content-Description: Notification")
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	w("This is the mail system at host %s.", host)
	w("")
	w("I'm sorry to have to inform you that your message could not")
	w("be delivered to one or more recipients. It's attached below.")
	w("")
	for _, r := range failedRcpts {
		w("<%s>: %s", r.Address, oneLine(r.LastReply))
	}
	w("")
	w("--%s", boundary)
	w("Content-Description: Delivery report")
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", host)
	w("X-Raftmail-Queue-ID: %s", e.ID)
	w("Arrival-Date: %s", e.Created.Format(time.RFC1123Z))
	for _, r := range failedRcpts {
		status, diag := dsnStatus(r.LastReply)
		w("")
		w("Final-Recipient: rfc822; %s", r.Address)
		w("Action: failed")
		w("Status: %s", status)
		if diag != "" {
			w("Diagnostic-Code: %s", diag)
		}
		w("Last-Attempt-Date: %s", date)
	}
	w("")
	w("--%s", boundary)
	w("Content-Description: Undelivered Message Headers")
	w("Content-Type: text/rfc822-headers")
	w("")
	b.Write(crlf(headers))
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

// crlf makes every line ending CRLF (the stored message should have them
// already; this keeps a bare LF out of the report whatever happens).
func crlf(p []byte) []byte {
	p = bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))
}
