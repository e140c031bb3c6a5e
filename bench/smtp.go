package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// DefaultTimeout bounds every wait on one server reply or event.
const DefaultTimeout = 60 * time.Second

// SMTPConfig is an SMTP workload: Messages messages of Size bytes, sent by
// Concurrency connections, connection i to Addrs[i%len(Addrs)], each
// sending in a loop with RSET in between.
type SMTPConfig struct {
	// Addrs are host:port of the servers; at least one.
	Addrs []string
	// Submission authenticates (AUTH PLAIN as User/Pass) after STARTTLS
	// when the server offers it. Without it the workload is MX: no AUTH.
	Submission bool
	// User and Pass are the submission credentials.
	User, Pass string
	// TLS connects with implicit TLS (port 465) instead of plain TCP.
	TLS bool
	// StartTLS upgrades with STARTTLS when offered; Submission implies it.
	StartTLS bool
	// TLSInsecure skips certificate verification (self-signed servers).
	TLSInsecure bool
	// Messages to send; Size of each in bytes (headers included).
	Messages, Size int
	// Unique sends bodies of pseudo-random base64 that differ from
	// message to message and from run to run (MessageSpec.Unique), so
	// that neither de-duplication nor compression makes a message
	// cheaper than real mail of its size.
	Unique bool
	// Seed picks the unique bodies; 0 = from the clock.
	Seed uint64
	// Concurrency is the number of connections; 0 = 1.
	Concurrency int
	// From is the envelope sender; "" = DefaultFrom for MX, User for
	// submission. To is the recipient; "" = User.
	From, To string
	// HeloName is sent in EHLO; "" = "bench.client.invalid".
	HeloName string
	// Timeout bounds each reply; 0 = DefaultTimeout.
	Timeout time.Duration
	// Progress, if not nil, shows how many messages are done.
	Progress *Progress
}

// SMTPResult is what an SMTP workload measured. Latency is from the last
// write of the message's final "." to the reply.
type SMTPResult struct {
	Kind        string         `json:"kind"` // "smtp"
	Addrs       []string       `json:"addrs"`
	Messages    int            `json:"messages"`
	Size        int            `json:"size_bytes"`
	Unique      bool           `json:"unique_bodies"`
	Seed        uint64         `json:"seed,omitempty"` // of the unique bodies
	Concurrency int            `json:"concurrency"`
	Accepted    int            `json:"accepted"`
	Errors      map[string]int `json:"errors"` // by reply code; "conn" = no reply
	// Replies counts every message's outcome by the code of the reply
	// that ended it ("250", "451", "552", ...; "conn" = no reply: the
	// connection broke or timed out), successes included.
	Replies map[string]int `json:"replies"`
	// PerAddr is the same per server address, in the order of Addrs.
	PerAddr []AddrResult `json:"per_addr"`
	Elapsed float64      `json:"elapsed_s"`
	Rate    float64      `json:"messages_per_s"`
	MBps    float64      `json:"mb_per_s"`
	Latency Latency      `json:"latency"`
	Metrics []Metric     `json:"metrics"`
}

// AddrResult is what one server address of an SMTP workload answered.
type AddrResult struct {
	Addr    string         `json:"addr"`
	Replies map[string]int `json:"replies"` // as SMTPResult.Replies
	// Elapsed runs from the start of the workload to this address's
	// last reply.
	Elapsed float64 `json:"elapsed_s"`
}

func (c *SMTPConfig) validate() error {
	if len(c.Addrs) == 0 {
		return errors.New("bench: no server address (--addr host:port)")
	}
	for _, a := range c.Addrs {
		if err := checkAddr(a); err != nil {
			return err
		}
	}
	if c.Messages <= 0 {
		return errors.New("bench: --messages must be positive")
	}
	if c.Submission && (c.User == "" || c.Pass == "") {
		return errors.New("bench: submission needs --user and --pass")
	}
	if c.To == "" {
		c.To = c.User
	}
	if c.To == "" {
		return errors.New("bench: no recipient (--to ADDR, or --user)")
	}
	if c.From == "" {
		c.From = DefaultFrom
		if c.Submission {
			c.From = c.User
		}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.HeloName == "" {
		c.HeloName = "bench.client.invalid"
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Unique && c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	return nil
}

// checkAddr says clearly what is wrong with a host:port.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("bench: bad address %q: want host:port (%v)", a, err)
	}
	if p, err := strconv.Atoi(port); host == "" || err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("bench: bad address %q: want host:port", a)
	}
	return nil
}

func tlsConfig(addr string, insecure bool) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	return &tls.Config{ServerName: host, InsecureSkipVerify: insecure}
}

// RunSMTP runs the workload. It returns an error only when it cannot start
// (bad configuration, the first connection or login fails); failures of
// single messages are counted in the result.
func RunSMTP(ctx context.Context, cfg SMTPConfig) (*SMTPResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conns := make([]*smtpConn, cfg.Concurrency)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := range conns {
		c, err := dialSMTP(cfg, cfg.Addrs[i%len(cfg.Addrs)])
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}

	var (
		next    atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		errs    = map[string]int{}
		replies = map[string]int{}
		perAddr = make([]AddrResult, len(cfg.Addrs))
		wg      sync.WaitGroup
		sizeSum atomic.Int64
	)
	for i, a := range cfg.Addrs {
		perAddr[i] = AddrResult{Addr: a, Replies: map[string]int{}}
	}
	spec := MessageSpec{From: cfg.From, To: cfg.To, Size: cfg.Size, Unique: cfg.Unique, Seed: cfg.Seed}
	tr := cfg.Progress.start("smtp", cfg.Messages)
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			ai := i % len(cfg.Addrs)
			// reply records how a message ended: "250", a reply code, or
			// "conn".
			reply := func(code string) {
				mu.Lock()
				replies[code]++
				perAddr[ai].Replies[code]++
				perAddr[ai].Elapsed = time.Since(start).Seconds()
				if code != "250" {
					errs[code]++
				}
				mu.Unlock()
			}
			for k := int(next.Add(1) - 1); k < cfg.Messages && ctx.Err() == nil; k = int(next.Add(1) - 1) {
				c := conns[i]
				if c == nil {
					var err error
					if c, err = dialSMTP(cfg, cfg.Addrs[ai]); err != nil {
						reply("conn")
						tr.Add(1)
						time.Sleep(100 * time.Millisecond)
						continue
					}
					conns[i] = c
				}
				d, size, err := c.send(cfg.From, cfg.To, spec, k)
				tr.Add(1)
				var se *smtp.SMTPError
				switch {
				case err == nil:
					mine = append(mine, d)
					sizeSum.Add(size)
					reply("250")
				case errors.As(err, &se):
					reply(strconv.Itoa(se.Code))
				default:
					reply("conn")
				}
				broken := err != nil && se == nil
				if !broken && c.c.Reset() != nil {
					broken = true
				}
				if broken {
					c.c.Close()
					conns[i] = nil
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	tr.stop()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &SMTPResult{
		Kind: "smtp", Addrs: cfg.Addrs, Messages: cfg.Messages, Size: cfg.Size,
		Unique: cfg.Unique, Concurrency: cfg.Concurrency, Accepted: len(lat), Errors: errs,
		Replies: replies, PerAddr: perAddr,
		Elapsed: elapsed.Seconds(),
		Rate:    float64(len(lat)) / elapsed.Seconds(),
		MBps:    float64(sizeSum.Load()) / 1e6 / elapsed.Seconds(),
		Latency: Summarize(lat),
	}
	if cfg.Unique {
		r.Seed = cfg.Seed
	}
	r.Metrics = append([]Metric{{Name: "accepted", Unit: "msgs/s", Value: r.Rate, Higher: true}},
		latencyMetrics("accept ", r.Latency)...)
	nerr := 0
	for _, n := range errs {
		nerr += n
	}
	r.Metrics = append(r.Metrics, Metric{Name: "errors", Unit: "msgs", Value: float64(nerr)})
	return r, nil
}

// smtpConn is an SMTP client whose connection remembers when it last
// wrote, so that a latency can start at the final ".".
type smtpConn struct {
	c    *smtp.Client
	conn *writeTimer
}

// writeTimer is a net.Conn that records when its last Write returned. One
// goroutine at a time uses a connection, so it needs no lock.
type writeTimer struct {
	net.Conn
	lastWrite time.Time
}

func (w *writeTimer) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.lastWrite = time.Now()
	return n, err
}

func dialSMTP(cfg SMTPConfig, addr string) (*smtpConn, error) {
	raw, err := net.DialTimeout("tcp", addr, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to SMTP %s: %w", addr, err)
	}
	wt := &writeTimer{Conn: raw}
	var conn net.Conn = wt
	if cfg.TLS {
		tc := tls.Client(wt, tlsConfig(addr, cfg.TLSInsecure))
		_ = raw.SetDeadline(time.Now().Add(cfg.Timeout))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("bench: TLS with SMTP %s: %w", addr, err)
		}
		_ = raw.SetDeadline(time.Time{})
		conn = tc
	}
	// STARTTLS first (go-smtp sends its own EHLO before it), then our EHLO.
	var c *smtp.Client
	if !cfg.TLS && (cfg.StartTLS || cfg.Submission) {
		_ = raw.SetDeadline(time.Now().Add(cfg.Timeout))
		c, err = smtp.NewClientStartTLS(conn, tlsConfig(addr, cfg.TLSInsecure))
		_ = raw.SetDeadline(time.Time{})
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("bench: STARTTLS on SMTP %s: %w", addr, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = cfg.Timeout
	c.SubmissionTimeout = cfg.Timeout
	fail := func(what string, err error) (*smtpConn, error) {
		c.Close()
		return nil, fmt.Errorf("bench: %s on SMTP %s: %w", what, addr, err)
	}
	if err := c.Hello(cfg.HeloName); err != nil {
		return fail("EHLO", err)
	}
	if cfg.Submission {
		if err := c.Auth(sasl.NewPlainClient("", cfg.User, cfg.Pass)); err != nil {
			return fail("AUTH PLAIN as "+cfg.User, err)
		}
	}
	return &smtpConn{c: c, conn: wt}, nil
}

// send runs one transaction with message k of spec and returns the time
// from the end of the data to the reply, and the message's size. It does
// not RSET.
func (m *smtpConn) send(from, to string, spec MessageSpec, k int) (time.Duration, int64, error) {
	if err := m.c.Mail(from, nil); err != nil {
		return 0, 0, err
	}
	if err := m.c.Rcpt(to, nil); err != nil {
		return 0, 0, err
	}
	w, err := m.c.Data()
	if err != nil {
		return 0, 0, err
	}
	n, err := spec.WriteTo(w, k)
	if err != nil {
		return 0, 0, err
	}
	if _, err := w.CloseWithResponse(); err != nil {
		return 0, 0, err
	}
	return time.Since(m.conn.lastWrite), n, nil
}

func (m *smtpConn) close() {
	if m.c.Quit() != nil {
		m.c.Close()
	}
}
