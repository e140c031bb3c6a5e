package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// VisibilityConfig: a client IDLEs on IdleAddr's mailbox while Messages
// messages go one at a time through SendAddr (SMTP, MX unless Submission);
// each latency is from the 250 to the EXISTS that announces the message.
type VisibilityConfig struct {
	// SendAddr is the SMTP server; the SMTP fields below apply to it.
	SendAddr   string
	Submission bool
	SendTLS    bool // implicit TLS for SMTP
	// IdleAddr is the IMAP server; IdleTLS/IdleStartTLS as IMAPConfig.
	IdleAddr              string
	IdleTLS, IdleStartTLS bool
	TLSInsecure           bool
	// User and Pass log in to IMAP (and to SMTP with Submission).
	User, Pass string
	// To is the recipient; "" = User. From as SMTPConfig.
	To, From string
	// Messages to send (one at a time) and Size of each; 0 = 4 KiB.
	Messages, Size int
	// Timeout bounds each wait for EXISTS; 0 = DefaultTimeout.
	Timeout  time.Duration
	Progress *Progress
}

// VisibilityResult is what the visibility workload measured. A negative
// latency would mean the EXISTS arrived before the 250.
type VisibilityResult struct {
	Kind     string   `json:"kind"` // "visibility"
	Send     string   `json:"send"`
	Idle     string   `json:"idle"`
	Messages int      `json:"messages"`
	Latency  Latency  `json:"latency"`
	Metrics  []Metric `json:"metrics"`
}

// RunVisibility runs the workload.
func RunVisibility(ctx context.Context, cfg VisibilityConfig) (*VisibilityResult, error) {
	if cfg.Messages <= 0 {
		return nil, errors.New("bench: --messages must be positive")
	}
	if cfg.Size <= 0 {
		cfg.Size = 4 << 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	sc := SMTPConfig{
		Addrs: []string{cfg.SendAddr}, Submission: cfg.Submission, TLS: cfg.SendTLS,
		TLSInsecure: cfg.TLSInsecure, User: cfg.User, Pass: cfg.Pass,
		Messages: cfg.Messages, Size: cfg.Size, To: cfg.To, From: cfg.From, Timeout: cfg.Timeout,
	}
	if err := sc.validate(); err != nil {
		return nil, err
	}

	type exists struct {
		n  uint32
		at time.Time
	}
	events := make(chan exists, 1024)
	idler, err := dialIMAP(cfg.IdleAddr, cfg.IdleTLS, cfg.IdleStartTLS, cfg.TLSInsecure, cfg.Timeout, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case events <- exists{*d.NumMessages, time.Now()}:
				default: // the reader is far behind; a later count supersedes
				}
			}
		},
	})
	if err != nil {
		return nil, err
	}
	defer idler.Close()
	if err := imapLogin(idler, cfg.IdleAddr, cfg.User, cfg.Pass); err != nil {
		return nil, err
	}
	sel, err := idler.Select("INBOX", nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("bench: SELECT INBOX on %s: %w", cfg.IdleAddr, err)
	}
	idle, err := idler.Idle()
	if err != nil {
		return nil, fmt.Errorf("bench: IDLE on %s: %w", cfg.IdleAddr, err)
	}
	mx, err := dialSMTP(sc, cfg.SendAddr)
	if err != nil {
		return nil, err
	}
	defer mx.close()

	tr := cfg.Progress.start("visibility", cfg.Messages)
	defer tr.stop()
	var lat []time.Duration
	seen := sel.NumMessages
	spec := MessageSpec{From: sc.From, To: sc.To, Size: cfg.Size}
	for k := range cfg.Messages {
		if _, _, err := mx.send(sc.From, sc.To, spec, k); err != nil {
			return nil, fmt.Errorf("bench: message %d through %s: %w", k, cfg.SendAddr, err)
		}
		accepted := time.Now()
		want := seen + 1
		for seen < want {
			select {
			case ev := <-events:
				seen = ev.n
				if seen >= want {
					lat = append(lat, ev.at.Sub(accepted))
				}
			case <-time.After(cfg.Timeout):
				return nil, fmt.Errorf("bench: message %d: no EXISTS %d on %s within %s (last %d)", k, want, cfg.IdleAddr, cfg.Timeout, seen)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		tr.Add(1)
		if err := mx.c.Reset(); err != nil {
			return nil, fmt.Errorf("bench: RSET on %s: %w", cfg.SendAddr, err)
		}
	}
	if err := idle.Close(); err != nil {
		return nil, fmt.Errorf("bench: end IDLE: %w", err)
	}
	r := &VisibilityResult{Kind: "visibility", Send: cfg.SendAddr, Idle: cfg.IdleAddr, Messages: cfg.Messages, Latency: Summarize(lat)}
	r.Metrics = latencyMetrics("250 → EXISTS ", r.Latency)
	return r, nil
}
