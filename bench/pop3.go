package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// POP3Config is the POP3 workload: log in, STAT, UIDL, RETR of every
// message (nothing is deleted), QUIT.
type POP3Config struct {
	Addr string
	// TLS connects with implicit TLS (POP3S); StartTLS sends STLS first.
	TLS, StartTLS bool
	TLSInsecure   bool
	User, Pass    string
	// Timeout bounds each reply; 0 = DefaultTimeout.
	Timeout  time.Duration
	Progress *Progress
}

// POP3Result is what the POP3 workload measured.
type POP3Result struct {
	Kind     string   `json:"kind"` // "pop3"
	Addr     string   `json:"addr"`
	Messages int      `json:"messages"`
	Bytes    int64    `json:"bytes"` // RETR data received, dot-unstuffed
	Steps    []Step   `json:"steps"`
	Metrics  []Metric `json:"metrics"`
}

// pop3Conn is a minimal POP3 client (RFC 1939).
type pop3Conn struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// cmd sends line (if not "") and reads a status line; -ERR is an error
// carrying the server's text.
func (p *pop3Conn) cmd(line string) (string, error) {
	_ = p.conn.SetDeadline(time.Now().Add(p.timeout))
	if line != "" {
		if _, err := io.WriteString(p.conn, line+"\r\n"); err != nil {
			return "", err
		}
	}
	l, err := p.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	l = strings.TrimRight(l, "\r\n")
	if rest, ok := strings.CutPrefix(l, "+OK"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", fmt.Errorf("server replied %q", l)
}

// multi reads a multi-line body up to the "." line and returns its size
// without the dot-stuffing and the line count.
func (p *pop3Conn) multi() (int64, int, error) {
	var n int64
	lines := 0
	for {
		_ = p.conn.SetDeadline(time.Now().Add(p.timeout))
		l, err := p.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			n += int64(len(l)) // a long line: count it and go on
			continue
		}
		if err != nil {
			return n, lines, err
		}
		if len(l) >= 2 && l[0] == '.' {
			if string(l) == ".\r\n" || string(l) == ".\n" {
				return n, lines, nil
			}
			l = l[1:]
		}
		n += int64(len(l))
		lines++
	}
}

func dialPOP3(cfg POP3Config) (*pop3Conn, error) {
	if err := checkAddr(cfg.Addr); err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", cfg.Addr, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to POP3 %s: %w", cfg.Addr, err)
	}
	if cfg.TLS {
		conn = tls.Client(conn, tlsConfig(cfg.Addr, cfg.TLSInsecure))
	}
	p := &pop3Conn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), timeout: cfg.Timeout}
	fail := func(what string, err error) (*pop3Conn, error) {
		conn.Close()
		return nil, fmt.Errorf("bench: POP3 %s on %s: %w", what, cfg.Addr, err)
	}
	if _, err := p.cmd(""); err != nil {
		return fail("greeting", err)
	}
	if cfg.StartTLS && !cfg.TLS {
		if _, err := p.cmd("STLS"); err != nil {
			return fail("STLS", err)
		}
		p.conn = tls.Client(conn, tlsConfig(cfg.Addr, cfg.TLSInsecure))
		p.r = bufio.NewReaderSize(p.conn, 64<<10)
	}
	if _, err := p.cmd("USER " + cfg.User); err != nil {
		return fail("USER "+cfg.User, err)
	}
	if _, err := p.cmd("PASS " + cfg.Pass); err != nil {
		return fail("PASS for "+cfg.User, err)
	}
	return p, nil
}

// RunPOP3 runs the workload.
func RunPOP3(ctx context.Context, cfg POP3Config) (*POP3Result, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	r := &POP3Result{Kind: "pop3", Addr: cfg.Addr}
	start := time.Now()
	p, err := dialPOP3(cfg)
	if err != nil {
		return nil, err
	}
	defer p.conn.Close()
	r.Steps = append(r.Steps, Step{Name: "connect+login", Ms: ms(time.Since(start))})

	start = time.Now()
	st, err := p.cmd("STAT")
	if err != nil {
		return nil, fmt.Errorf("bench: POP3 STAT: %w", err)
	}
	f := strings.Fields(st)
	if len(f) < 2 {
		return nil, fmt.Errorf("bench: POP3 STAT: unexpected reply %q", st)
	}
	if r.Messages, err = strconv.Atoi(f[0]); err != nil {
		return nil, fmt.Errorf("bench: POP3 STAT: unexpected reply %q", st)
	}
	r.Steps = append(r.Steps, Step{Name: "stat", Ms: ms(time.Since(start)), Messages: r.Messages})

	start = time.Now()
	if _, err := p.cmd("UIDL"); err != nil {
		return nil, fmt.Errorf("bench: POP3 UIDL: %w", err)
	}
	_, lines, err := p.multi()
	if err != nil {
		return nil, fmt.Errorf("bench: POP3 UIDL: %w", err)
	}
	r.Steps = append(r.Steps, Step{Name: "uidl", Ms: ms(time.Since(start)), Messages: lines})

	tr := cfg.Progress.start("pop3 RETR", r.Messages)
	start = time.Now()
	for i := 1; i <= r.Messages; i++ {
		if err := ctx.Err(); err != nil {
			tr.stop()
			return nil, err
		}
		if _, err := p.cmd(fmt.Sprintf("RETR %d", i)); err != nil {
			tr.stop()
			return nil, fmt.Errorf("bench: POP3 RETR %d: %w", i, err)
		}
		n, _, err := p.multi()
		if err != nil {
			tr.stop()
			return nil, fmt.Errorf("bench: POP3 RETR %d: %w", i, err)
		}
		r.Bytes += n
		tr.Add(1)
	}
	d := time.Since(start)
	tr.stop()
	s := Step{Name: "retr-all", Ms: ms(d), Messages: r.Messages, Bytes: r.Bytes}
	if d > 0 {
		s.MBps = float64(r.Bytes) / 1e6 / d.Seconds()
	}
	r.Steps = append(r.Steps, s)
	if _, err := p.cmd("QUIT"); err != nil {
		return nil, fmt.Errorf("bench: POP3 QUIT: %w", err)
	}
	r.Metrics = stepMetrics(r.Steps)
	return r, nil
}
