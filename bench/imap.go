package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// IMAPConfig is the IMAP workload on one mailbox: LOGIN, SELECT, UID FETCH
// 1:* of full bodies, of headers and of flags, SEARCH TEXT, and UID STORE
// 1:* +FLAGS (\Seen), each timed on its own.
type IMAPConfig struct {
	// Addr is the server's host:port.
	Addr string
	// TLS connects with implicit TLS (IMAPS); StartTLS upgrades a plain
	// connection; neither = plain text.
	TLS, StartTLS bool
	// TLSInsecure skips certificate verification.
	TLSInsecure bool
	// User and Pass log in.
	User, Pass string
	// Mailbox to select; "" = INBOX.
	Mailbox string
	// Search is the word for SEARCH TEXT; "" = SearchWord.
	Search string
	// Timeout bounds the connection and greeting; 0 = DefaultTimeout.
	Timeout time.Duration
}

// Step is one timed command of a workload.
type Step struct {
	Name     string  `json:"name"`
	Ms       float64 `json:"ms"`
	Messages int     `json:"messages,omitempty"`
	Bytes    int64   `json:"bytes,omitempty"`
	MBps     float64 `json:"mb_per_s,omitempty"`
}

// IMAPResult is what the IMAP workload measured.
type IMAPResult struct {
	Kind       string   `json:"kind"` // "imap"
	Addr       string   `json:"addr"`
	Messages   int      `json:"messages"` // in the mailbox at SELECT
	SearchHits int      `json:"search_hits"`
	Steps      []Step   `json:"steps"`
	Metrics    []Metric `json:"metrics"`
}

func dialIMAP(addr string, tlsOn, startTLS, insecure bool, timeout time.Duration, h *imapclient.UnilateralDataHandler) (*imapclient.Client, error) {
	if err := checkAddr(addr); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	opts := &imapclient.Options{
		TLSConfig:             tlsConfig(addr, insecure),
		UnilateralDataHandler: h,
		Dialer:                &net.Dialer{Timeout: timeout},
	}
	var (
		c   *imapclient.Client
		err error
	)
	switch {
	case tlsOn:
		c, err = imapclient.DialTLS(addr, opts)
	case startTLS:
		c, err = imapclient.DialStartTLS(addr, opts)
	default:
		c, err = imapclient.DialInsecure(addr, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: connect to IMAP %s: %w", addr, err)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: IMAP greeting of %s: %w", addr, err)
	}
	return c, nil
}

func imapLogin(c *imapclient.Client, addr, user, pass string) error {
	if err := c.Login(user, pass).Wait(); err != nil {
		return fmt.Errorf("bench: IMAP LOGIN as %s on %s: %w", user, addr, err)
	}
	return nil
}

// RunIMAP runs the workload. It changes the mailbox: every message ends
// up \Seen.
func RunIMAP(ctx context.Context, cfg IMAPConfig) (*IMAPResult, error) {
	if cfg.Mailbox == "" {
		cfg.Mailbox = "INBOX"
	}
	if cfg.Search == "" {
		cfg.Search = SearchWord
	}
	r := &IMAPResult{Kind: "imap", Addr: cfg.Addr}
	timed := func(name string, f func() error) (Step, error) {
		if err := ctx.Err(); err != nil {
			return Step{}, err
		}
		start := time.Now()
		err := f()
		s := Step{Name: name, Ms: ms(time.Since(start))}
		return s, err
	}

	var c *imapclient.Client
	s, err := timed("connect+login", func() error {
		var err error
		if c, err = dialIMAP(cfg.Addr, cfg.TLS, cfg.StartTLS, cfg.TLSInsecure, cfg.Timeout, nil); err != nil {
			return err
		}
		return imapLogin(c, cfg.Addr, cfg.User, cfg.Pass)
	})
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		return nil, err
	}
	r.Steps = append(r.Steps, s)

	s, err = timed("select", func() error {
		d, err := c.Select(cfg.Mailbox, nil).Wait()
		if err != nil {
			return fmt.Errorf("bench: SELECT %s: %w", cfg.Mailbox, err)
		}
		r.Messages = int(d.NumMessages)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.Messages = r.Messages
	r.Steps = append(r.Steps, s)

	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}} // 1:*
	fetches := []struct {
		name string
		opts *imap.FetchOptions
	}{
		{"fetch-body", &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}},
		{"fetch-header", &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}},
		{"fetch-flags", &imap.FetchOptions{Flags: true}},
	}
	for _, f := range fetches {
		var n int
		var bytes int64
		s, err := timed(f.name, func() error {
			var err error
			n, bytes, err = fetchAll(c, all, f.opts)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("bench: UID FETCH 1:* (%s): %w", f.name, err)
		}
		s.Messages, s.Bytes = n, bytes
		if bytes > 0 && s.Ms > 0 {
			s.MBps = float64(bytes) / 1e6 / (s.Ms / 1000)
		}
		r.Steps = append(r.Steps, s)
	}

	s, err = timed("search-text", func() error {
		d, err := c.Search(&imap.SearchCriteria{Text: []string{cfg.Search}}, nil).Wait()
		if err != nil {
			return fmt.Errorf("bench: SEARCH TEXT %s: %w", cfg.Search, err)
		}
		r.SearchHits = len(d.AllSeqNums())
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.Messages = r.SearchHits
	r.Steps = append(r.Steps, s)

	s, err = timed("store-seen", func() error {
		err := c.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
		if err != nil {
			return fmt.Errorf("bench: UID STORE 1:* +FLAGS.SILENT (\\Seen): %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.Messages = r.Messages
	r.Steps = append(r.Steps, s)
	if err := c.Logout().Wait(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("bench: LOGOUT: %w", err)
	}
	r.Metrics = stepMetrics(r.Steps)
	return r, nil
}

// stepMetrics: each step's time, and MB/s where bytes moved.
func stepMetrics(steps []Step) []Metric {
	var m []Metric
	for _, s := range steps {
		m = append(m, Metric{Name: s.Name, Unit: "ms", Value: s.Ms})
		if s.MBps > 0 {
			m = append(m, Metric{Name: s.Name, Unit: "MB/s", Value: s.MBps, Higher: true})
		}
	}
	return m
}

// fetchAll runs UID FETCH set with opts, reads every literal and returns
// the number of messages and literal bytes received.
func fetchAll(c *imapclient.Client, set imap.UIDSet, opts *imap.FetchOptions) (int, int64, error) {
	cmd := c.Fetch(set, opts)
	var n int
	var bytes int64
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		n++
		for item := msg.Next(); item != nil; item = msg.Next() {
			if sec, ok := item.(imapclient.FetchItemDataBodySection); ok && sec.Literal != nil {
				m, err := io.Copy(io.Discard, sec.Literal)
				bytes += m
				if err != nil {
					cmd.Close()
					return n, bytes, err
				}
			}
		}
	}
	return n, bytes, cmd.Close()
}
