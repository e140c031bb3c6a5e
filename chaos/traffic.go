package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The message identity shared by the senders and the read-back.

// ChaosHeader names the header that carries a message's chaos ID.
const ChaosHeader = "X-Chaos-Id"

// RemoteDomain is the recipient domain of remote sends: no cluster serves
// it, so a message to it lands in the outbound queue. The local part is
// "chaos-" followed by the chaos ID, so a queue entry names its message.
const RemoteDomain = "remote.test"

// BodyHash returns the hex SHA-256 of a message's body, as both the
// senders (Op.BodyHash) and every read (Msg.BodyHash) define it: the exact
// bytes after the end of the header block (the first empty line, CRLF
// CRLF). A message without one has an empty body. Headers the server adds
// (Received, DKIM-Signature) therefore do not change the hash, and SMTP
// dot-stuffing must have been undone exactly.
func BodyHash(raw []byte) string {
	var body []byte
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		body = raw[i+4:]
	} else if bytes.HasPrefix(raw, []byte("\r\n")) {
		body = raw[2:]
	}
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// headerMatches reports whether header (a read's BODY[HEADER]: the header
// block the node keeps apart to answer ENVELOPE and HEADER fetches) is
// the header block of raw, byte for byte, its empty line included.
func headerMatches(raw, header []byte) bool {
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	if i < 0 {
		return bytes.Equal(header, raw) || bytes.Equal(header, append(raw, "\r\n"...))
	}
	return bytes.Equal(header, raw[:i+4])
}

// ChaosIDOf returns the value of raw's X-Chaos-Id header (unfolded and
// trimmed), or "" if it has none.
func ChaosIDOf(raw []byte) string {
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i]
	}
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		name, value, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), ChaosHeader) {
			continue
		}
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			value += " " + strings.TrimSpace(lines[i])
		}
		return strings.TrimSpace(value)
	}
	return ""
}

// readMsg is what a read of one stored message yields: raw is its
// BODY[], header its BODY[HEADER] (nil if not read).
func readMsg(uid uint32, raw, header []byte) Msg {
	m := Msg{UID: uid, ChaosID: ChaosIDOf(raw), BodyHash: BodyHash(raw), DSNFor: dsnChaosIDs(raw)}
	if header != nil && !headerMatches(raw, header) {
		m.HeaderMismatch = true
	}
	return m
}

// bodyAlphabet has no '.': the lines that start with one are made on
// purpose (see buildMessage).
const bodyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ "

// eightBit are lines of UTF-8 text for 8-bit bodies.
var eightBit = []string{"Grüße aus Köln, naïve café", "日本語のメール本文", "Ελληνικά και русский текст", "emoji 📬 and ½ ¾ €"}

// buildMessage returns a message with the chaos header and a random body
// of about size bytes in lines of 76 characters, and its BodyHash. Bodies
// are what SMTP allows but trips servers: lines that start with a dot
// (".", "..", ".x": dot-stuffed on the wire, unstuffed by the server), a
// line of 998 characters (the longest RFC 5322 allows), and 8-bit UTF-8
// text (sent with BODY=8BITMIME); each on about one message in three.
func buildMessage(rng *rand.Rand, id, from, to string, size int) ([]byte, string) {
	var b bytes.Buffer
	utf8Body := rng.IntN(3) == 0
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: chaos %s\r\n", from, to, id)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s@chaos.test>\r\n", time.Now().Format(time.RFC1123Z), id)
	if utf8Body {
		fmt.Fprintf(&b, "%s: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", ChaosHeader, id)
	} else {
		fmt.Fprintf(&b, "%s: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", ChaosHeader, id)
	}
	if rng.IntN(3) == 0 {
		b.WriteString(".\r\n..\r\n.leading dot\r\n")
	}
	if rng.IntN(3) == 0 {
		long := make([]byte, 998)
		for i := range long {
			long[i] = bodyAlphabet[rng.IntN(len(bodyAlphabet)-1)] // no space: nothing to fold
		}
		b.Write(long)
		b.WriteString("\r\n")
	}
	line := make([]byte, 76)
	for n := 0; n < size; n += len(line) + 2 {
		if utf8Body && rng.IntN(4) == 0 {
			b.WriteString(eightBit[rng.IntN(len(eightBit))])
			b.WriteString("\r\n")
			continue
		}
		for i := range line {
			line[i] = bodyAlphabet[rng.IntN(len(bodyAlphabet))]
		}
		line[0] = 'x' // no leading space
		b.Write(line)
		b.WriteString("\r\n")
	}
	raw := b.Bytes()
	return raw, BodyHash(raw)
}

// Account is a test account the traffic sends to and reads.
type Account struct {
	Address  string
	Password string
}

// EventKind says what a client just went through; see Event.
type EventKind int

const (
	// EventData: the server answered 354 to DATA; the client has not
	// sent the message yet. It is "in DATA" until the final dot's reply.
	EventData EventKind = iota + 1
	// EventAck: the server answered 250 after DATA.
	EventAck
)

func (k EventKind) String() string {
	switch k {
	case EventData:
		return "data"
	case EventAck:
		return "ack"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a moment in one SMTP send, reported to the observer so a
// scenario can inject its fault at exactly that point (kill the node while
// a client is in DATA, or right after it answered 250).
type Event struct {
	Kind    EventKind
	Node    string
	OpID    int64
	ChaosID string
}

// TrafficConfig configures the traffic generators. Zero values are the
// defaults named on each field.
type TrafficConfig struct {
	// Nodes the clients spread over. Required.
	Nodes []NodeInfo
	// Accounts receive mail and are read over IMAP; at least one. The
	// submission senders log in as them.
	Accounts []Account
	// Senders is the number of concurrent SMTP senders; 0 = 3, <0 = none.
	Senders int
	// IMAPClients is the number of concurrent IMAP sessions; 0 = 2,
	// <0 = none.
	IMAPClients int
	// POP3Clients is the number of POP3 clients (UIDL, RETR, sometimes
	// DELE and QUIT); 0 = 1, <0 = none.
	POP3Clients int
	// Seed makes node, account and content choices reproducible.
	Seed int64
	// RoundRobin makes each client walk the nodes in turn instead of
	// picking one at random for each operation.
	RoundRobin bool
	// SubmissionShare is the share of sends over submission (STARTTLS +
	// AUTH PLAIN) rather than MX; 0 = 0.5, <0 = MX only.
	SubmissionShare float64
	// RemoteShare is the share of submission sends to a remote address
	// (they land in the outbound queue); 0 = 0.1, <0 = none.
	RemoteShare float64
	// OutsideShare is the share of remote sends that go to BounceDomain
	// and to DeferDomain each, rather than RemoteDomain; 0 = none (only
	// with a sink that serves them: see RunOptions.Outbound).
	OutsideShare float64
	// BodyBytes is the approximate body size; 0 = 1024.
	BodyBytes int
	// Timeout bounds every network step (connect, each command, the
	// reply after DATA); 0 = 10s.
	Timeout time.Duration
	// Pause is each client's pause between operations; 0 = 20ms.
	Pause time.Duration
	// Probe is how often a liveness probe starts on each node: an MX send
	// to that node alone (no fallback), in a goroutine of its own, so that
	// sends hanging on a node do not stop new ones from starting (at most
	// 16 in flight per node). 0 = 250ms, <0 = no probes. Probes are
	// ordinary sends to the checker, marked Op.Probe.
	Probe time.Duration
	// IDPrefix starts every chaos ID (lower-case letters, digits and
	// '-'); "" = "c" and 6 hex digits derived from Seed.
	IDPrefix string
	// OnAck, if set, sees every send answered 250 and every APPEND
	// answered OK once recorded, on the client's goroutine: it must not
	// block (Durability.Observe).
	OnAck func(Op)
}

func (cfg *TrafficConfig) defaults() error {
	if len(cfg.Nodes) == 0 {
		return errors.New("chaos: traffic: no nodes")
	}
	if len(cfg.Accounts) == 0 {
		return errors.New("chaos: traffic: no accounts")
	}
	if cfg.Senders == 0 {
		cfg.Senders = 3
	}
	if cfg.IMAPClients == 0 {
		cfg.IMAPClients = 2
	}
	if cfg.POP3Clients == 0 {
		cfg.POP3Clients = 1
	}
	if cfg.SubmissionShare == 0 {
		cfg.SubmissionShare = 0.5
	}
	if cfg.RemoteShare == 0 {
		cfg.RemoteShare = 0.1
	}
	if cfg.BodyBytes == 0 {
		cfg.BodyBytes = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Pause == 0 {
		cfg.Pause = 20 * time.Millisecond
	}
	if cfg.Probe == 0 {
		cfg.Probe = 250 * time.Millisecond
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = fmt.Sprintf("c%06x", uint64(cfg.Seed)*0x9E3779B97F4A7C15>>40)
	}
	return nil
}

// Traffic runs SMTP senders and IMAP sessions against a cluster and
// records every operation in a Recorder. Client numbers: 0 is the
// scenario itself (Send), 1..Senders the senders, then the IMAP sessions,
// the POP3 clients, and one per node for its probes.
type Traffic struct {
	cfg     TrafficConfig
	rec     *Recorder
	ctx     context.Context // aborts operations in flight
	cancel  context.CancelFunc
	stop    chan struct{} // no new operations
	stopped sync.Once
	wg      sync.WaitGroup
	seq     atomic.Int64
	observe atomic.Pointer[func(Event)]
	tls     *tls.Config

	mu struct {
		sync.Mutex
		rng *rand.Rand // client 0's
	}
}

// StartTraffic starts the clients; they run until Stop or until ctx ends
// (which also aborts operations in flight, recording them as unknown).
func StartTraffic(ctx context.Context, cfg TrafficConfig, rec *Recorder) (*Traffic, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	t := &Traffic{cfg: cfg, rec: rec, stop: make(chan struct{}),
		tls: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}
	t.ctx, t.cancel = context.WithCancel(ctx)
	t.mu.rng = t.rng(0)
	for i := range max(cfg.Senders, 0) {
		t.wg.Add(1)
		go t.sender(i + 1)
	}
	for i := range max(cfg.IMAPClients, 0) {
		t.wg.Add(1)
		go t.imapSessions(max(cfg.Senders, 0) + i + 1)
	}
	for i := range max(cfg.POP3Clients, 0) {
		t.wg.Add(1)
		go t.pop3Sessions(max(cfg.Senders, 0) + max(cfg.IMAPClients, 0) + i + 1)
	}
	if cfg.Probe > 0 {
		for i, n := range cfg.Nodes {
			t.wg.Add(1)
			go t.prober(max(cfg.Senders, 0)+max(cfg.IMAPClients, 0)+max(cfg.POP3Clients, 0)+i+1, n)
		}
	}
	return t, nil
}

// Stop lets every operation in flight finish (each is bounded by
// Timeout), starts no new one, and returns when all clients are done.
func (t *Traffic) Stop() {
	t.stopped.Do(func() { close(t.stop) })
	t.wg.Wait()
	t.cancel()
}

// SetObserver makes f see every Event from now on (nil: none). f runs on
// the client's goroutine, which waits for it: it may kill the node at
// that exact point, but must not block for long.
func (t *Traffic) SetObserver(f func(Event)) {
	if f == nil {
		t.observe.Store(nil)
		return
	}
	t.observe.Store(&f)
}

func (t *Traffic) emit(ev Event) {
	if f := t.observe.Load(); f != nil {
		(*f)(ev)
	}
}

// Send makes one send as client 0 to node over via ("mx" or
// "submission"), records it, and returns it.
func (t *Traffic) Send(ctx context.Context, node NodeInfo, via string) Op {
	return t.record(t.sendOnce(ctx, node, via))
}

// sendOnce is Send without recording (End is stamped).
func (t *Traffic) sendOnce(ctx context.Context, node NodeInfo, via string) Op {
	t.mu.Lock()
	seed := t.mu.rng.Uint64()
	t.mu.Unlock()
	return t.transact(ctx, 0, node, via, rand.New(rand.NewPCG(seed, 0)))
}

func (t *Traffic) rng(client int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(t.cfg.Seed), uint64(client)*0x9E3779B97F4A7C15+1))
}

func (t *Traffic) stopping() bool {
	select {
	case <-t.stop:
		return true
	case <-t.ctx.Done():
		return true
	default:
		return false
	}
}

// sleep waits d unless the traffic stops first; it reports whether to go on.
func (t *Traffic) sleep(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-t.stop:
		return false
	case <-t.ctx.Done():
		return false
	}
}

// picker chooses nodes for one client.
type picker struct {
	nodes []NodeInfo
	rr    bool
	next  int
}

func (p *picker) pick(rng *rand.Rand) NodeInfo {
	if p.rr {
		n := p.nodes[p.next%len(p.nodes)]
		p.next++
		return n
	}
	return p.nodes[rng.IntN(len(p.nodes))]
}

func (t *Traffic) sender(client int) {
	defer t.wg.Done()
	rng := t.rng(client)
	p := picker{nodes: t.cfg.Nodes, rr: t.cfg.RoundRobin, next: client}
	for !t.stopping() {
		via := "mx"
		if t.cfg.SubmissionShare > 0 && rng.Float64() < t.cfg.SubmissionShare {
			via = "submission"
		}
		op := t.send(t.ctx, client, p.pick(rng), via, rng)
		pause := t.cfg.Pause
		if op.Outcome != OK {
			pause = max(pause, 100*time.Millisecond) // do not spin on a dead node
		}
		if !t.sleep(pause) {
			return
		}
	}
}

// maxProbesInFlight bounds the probes hanging on one node.
const maxProbesInFlight = 16

// prober starts a probe send to node every Probe, each on its own
// goroutine, until the traffic stops.
func (t *Traffic) prober(client int, node NodeInfo) {
	defer t.wg.Done()
	rng := t.rng(client)
	sem := make(chan struct{}, maxProbesInFlight)
	var probes sync.WaitGroup
	defer probes.Wait()
	tick := time.NewTicker(t.cfg.Probe)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-t.stop:
			return
		case <-t.ctx.Done():
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // as many hanging as allowed: the wait is measured anyway
		}
		seed := rng.Uint64()
		probes.Add(1)
		go func() {
			defer probes.Done()
			defer func() { <-sem }()
			op := t.transactProbe(t.ctx, client, node, rand.New(rand.NewPCG(seed, uint64(client))))
			t.record(op)
		}()
	}
}

// send makes one SMTP transaction and records it. Outcomes: OK on 250
// after DATA; Fail on a 4xx/5xx reply to DATA or after it (Code set), or
// on any failure before DATA (connect, greeting, TLS, AUTH, MAIL, RCPT:
// no delivery is possible, Code 0, the reply in Detail); Unknown on a
// timeout or dropped connection once DATA was sent. A sender whose node
// refuses the connection tries the other nodes (see dial); Send does not.
func (t *Traffic) send(ctx context.Context, client int, node NodeInfo, via string, rng *rand.Rand) Op {
	return t.record(t.transact(ctx, client, node, via, rng))
}

// record records a send and then tells the observer of a 250.
func (t *Traffic) record(op Op) Op {
	t.rec.Finish(op)
	if op.Outcome == OK {
		if t.cfg.OnAck != nil {
			t.cfg.OnAck(op)
		}
		t.emit(Event{Kind: EventAck, Node: op.Node, OpID: op.ID, ChaosID: op.ChaosID})
	}
	return op
}

// transact is send without recording; it stamps End.
func (t *Traffic) transact(ctx context.Context, client int, node NodeInfo, via string, rng *rand.Rand) Op {
	return t.transactOp(ctx, t.rec.Begin(OpSend, node.Name, client), client != 0, node, via, rng)
}

// transactProbe is a probe: over MX to node, no fallback to other nodes.
func (t *Traffic) transactProbe(ctx context.Context, client int, node NodeInfo, rng *rand.Rand) Op {
	op := t.rec.Begin(OpSend, node.Name, client)
	op.Probe = true
	return t.transactOp(ctx, op, false, node, "mx", rng)
}

func (t *Traffic) transactOp(ctx context.Context, op Op, fallback bool, node NodeInfo, via string, rng *rand.Rand) Op {
	client := op.Client
	op.Via = via
	op.ChaosID = fmt.Sprintf("%s-%d-%d", t.cfg.IDPrefix, client, t.seq.Add(1))
	acct := t.cfg.Accounts[rng.IntN(len(t.cfg.Accounts))]
	from, addr := "chaos-sender@outside.test", node.SMTP
	op.Rcpt = acct.Address
	if via == "submission" {
		addr = node.Submission
		sender := t.cfg.Accounts[rng.IntN(len(t.cfg.Accounts))]
		from = sender.Address
		op.From = from
		if t.cfg.RemoteShare > 0 && rng.Float64() < t.cfg.RemoteShare {
			op.Rcpt, op.Remote = "chaos-"+op.ChaosID+"@"+t.remoteDomain(rng), true
		}
	}
	raw, hash := buildMessage(rng, op.ChaosID, from, op.Rcpt, t.cfg.BodyBytes)
	op.BodyHash = hash
	conn, err := t.dial(ctx, &op, node, addr, fallback)
	if err != nil {
		op.Outcome, op.Detail = Fail, "before DATA: connect: "+err.Error()
	} else {
		t.deliver(ctx, &op, conn, via, from, raw)
	}
	op.End = time.Now()
	return op
}

// dial connects to addr, node's MX or submission port. With fallback, a
// refused connection makes it try the other nodes in turn, as a sending
// MTA tries the next MX host (RFC 5321 §5.1): op.Node becomes the node
// that took the connection, and op.Detail names the ones that refused.
func (t *Traffic) dial(ctx context.Context, op *Op, node NodeInfo, addr string, fallback bool) (net.Conn, error) {
	d := net.Dialer{Timeout: t.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil || !fallback {
		return conn, err
	}
	refused := []string{node.Name}
	start := slices.IndexFunc(t.cfg.Nodes, func(n NodeInfo) bool { return n.Name == node.Name })
	for i := 1; i < len(t.cfg.Nodes); i++ {
		n := t.cfg.Nodes[(start+i+len(t.cfg.Nodes))%len(t.cfg.Nodes)]
		a := n.SMTP
		if op.Via == "submission" {
			a = n.Submission
		}
		c, err2 := d.DialContext(ctx, "tcp", a)
		if err2 == nil {
			op.Node = n.Name
			op.Detail = "(" + strings.Join(refused, ", ") + " refused the connection) "
			return c, nil
		}
		refused = append(refused, n.Name)
	}
	return nil, err
}

func (t *Traffic) deliver(ctx context.Context, op *Op, conn net.Conn, via, from string, raw []byte) {
	prefix := op.Detail // the nodes that refused, if any
	defer func() {
		if prefix != "" {
			op.Detail = prefix + op.Detail
		}
	}()
	before := func(stage string, err error) {
		op.Outcome, op.Detail = Fail, "before DATA: "+stage+": "+err.Error()
	}
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	var c *smtp.Client
	var err error
	if via == "submission" {
		c, err = smtp.NewClientStartTLS(conn, t.tls)
		if err != nil {
			conn.Close()
			before("starttls", err)
			return
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = t.cfg.Timeout, t.cfg.Timeout
	if via == "submission" {
		sender := ""
		for _, a := range t.cfg.Accounts {
			if a.Address == from {
				sender = a.Password
			}
		}
		if err := c.Auth(sasl.NewPlainClient("", from, sender)); err != nil {
			before("auth", err)
			return
		}
	} else if err := c.Hello("chaos.test"); err != nil {
		before("ehlo", err)
		return
	}
	if err := c.Mail(from, nil); err != nil {
		before("mail", err)
		return
	}
	if err := c.Rcpt(op.Rcpt, nil); err != nil {
		before("rcpt", err)
		return
	}
	w, err := c.Data()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			op.Outcome, op.Code, op.Detail = Fail, se.Code, "DATA: "+err.Error()
			return
		}
		op.Outcome, op.Detail = Unknown, "DATA: "+err.Error()
		return
	}
	t.emit(Event{Kind: EventData, Node: op.Node, OpID: op.ID, ChaosID: op.ChaosID})
	// go-smtp sets no deadline while the message is written.
	_ = conn.SetDeadline(time.Now().Add(t.cfg.Timeout))
	if _, err := w.Write(raw); err != nil {
		op.Outcome, op.Detail = Unknown, "writing the message: "+err.Error()
		return
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			op.Outcome, op.Code, op.Detail = Fail, se.Code, err.Error()
			return
		}
		op.Outcome, op.Detail = Unknown, "after DATA: "+err.Error()
		return
	}
	op.Outcome, op.Code, op.Detail = OK, 250, "250 "+resp.StatusText
	_ = c.Quit()
}

// QueueIDOf returns the queue ID of a "250 ... queued as ID" reply as
// recorded in Op.Detail, or "".
func QueueIDOf(detail string) string {
	_, id, ok := strings.Cut(detail, "queued as ")
	if !ok {
		return ""
	}
	if f := strings.Fields(id); len(f) > 0 {
		return f[0]
	}
	return ""
}

// IMAP sessions.

// imapConn is one logged-in IMAP session with a deadline on each command.
type imapConn struct {
	c       *imapclient.Client
	conn    net.Conn
	timeout time.Duration
}

// dialIMAP connects to node's IMAPS and logs in.
func dialIMAP(ctx context.Context, addr string, acct Account, tlsCfg *tls.Config, timeout time.Duration) (*imapConn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: tlsCfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	ic := &imapConn{c: imapclient.New(conn, nil), conn: conn, timeout: timeout}
	if err := ic.do(func() error { return ic.c.WaitGreeting() }); err != nil {
		ic.close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := ic.do(func() error { return ic.c.Login(acct.Address, acct.Password).Wait() }); err != nil {
		ic.close()
		return nil, fmt.Errorf("login: %w", err)
	}
	return ic, nil
}

// do runs one command under the deadline.
func (ic *imapConn) do(f func() error) error {
	_ = ic.conn.SetDeadline(time.Now().Add(ic.timeout))
	err := f()
	_ = ic.conn.SetDeadline(time.Time{})
	return err
}

func (ic *imapConn) close() {
	_ = ic.conn.SetDeadline(time.Now().Add(time.Second))
	_ = ic.c.Logout().Wait()
	_ = ic.c.Close()
}

// selectAndFetch selects (or examines) mailbox and reads every message
// below the UIDNEXT it reported, so that every UID in Seen is below
// UIDNext. It fills op's mailbox fields and Seen.
func (ic *imapConn) selectAndFetch(op *Op, mailbox string, readOnly bool) error {
	op.Mailbox = mailbox
	var sd *imap.SelectData
	err := ic.do(func() (err error) {
		sd, err = ic.c.Select(mailbox, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
		return err
	})
	if err != nil {
		return fmt.Errorf("select %s: %w", mailbox, err)
	}
	op.UIDValidity, op.UIDNext = sd.UIDValidity, uint32(sd.UIDNext)
	if sd.UIDNext <= 1 {
		return nil
	}
	var set imap.UIDSet
	set.AddRange(1, sd.UIDNext-1)
	section := &imap.FetchItemBodySection{Peek: true}
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	var msgs []*imapclient.FetchMessageBuffer
	err = ic.do(func() (err error) {
		msgs, err = ic.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section, header}}).Collect()
		return err
	})
	if err != nil {
		return fmt.Errorf("fetch %s: %w", mailbox, err)
	}
	for _, m := range msgs {
		body := m.FindBodySection(section)
		if m.UID == 0 || body == nil {
			// A FETCH without the body is an unsolicited flag update
			// (another session changed flags meanwhile), not the
			// message read.
			continue
		}
		op.Seen = append(op.Seen, readMsg(uint32(m.UID), body, m.FindBodySection(header)))
	}
	slices.SortFunc(op.Seen, func(a, b Msg) int { return int(a.UID) - int(b.UID) })
	return nil
}

// imapOutcome classifies a command's error: a NO or BAD is a refusal,
// anything else (timeout, dropped connection) leaves it unknown.
func imapOutcome(err error) Outcome {
	if err == nil {
		return OK
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return Fail
	}
	return Unknown
}

// imapSessions runs sessions one after the other: each on a node and
// account of its own, a few rounds of read, flag, expunge and move.
func (t *Traffic) imapSessions(client int) {
	t.sessions(client, t.cfg.Pause, t.imapSession)
}

// sessions runs session again and again, each time on a node and account
// of the client's choosing, pausing at least pause between them (and
// 100 ms after one that did not get to log in), until the traffic stops.
func (t *Traffic) sessions(client int, pause time.Duration, session func(client int, node NodeInfo, acct Account, rng *rand.Rand) bool) {
	defer t.wg.Done()
	rng := t.rng(client)
	p := picker{nodes: t.cfg.Nodes, rr: t.cfg.RoundRobin, next: client}
	for !t.stopping() {
		node := p.pick(rng)
		acct := t.cfg.Accounts[rng.IntN(len(t.cfg.Accounts))]
		wait := pause
		if !session(client, node, acct, rng) {
			wait = max(wait, 100*time.Millisecond)
		}
		if !t.sleep(wait) {
			return
		}
	}
}

// imapSession runs one session; it reports whether it got to log in.
func (t *Traffic) imapSession(client int, node NodeInfo, acct Account, rng *rand.Rand) bool {
	start := t.rec.Begin(OpFetch, node.Name, client)
	ic, err := dialIMAP(t.ctx, node.IMAPS, acct, t.tls, t.cfg.Timeout)
	if err != nil {
		// Recorded as a failed read: what a mail client would see.
		start.Account, start.Mailbox, start.Outcome, start.Detail = acct.Address, "INBOX", imapOutcome(err), err.Error()
		if start.Outcome == Unknown {
			start.Outcome = Fail // nothing was changed by a failed login
		}
		t.rec.Finish(start)
		return false
	}
	defer ic.close()
	defer context.AfterFunc(t.ctx, func() { ic.conn.Close() })()
	for round := 0; round < 3 && !t.stopping(); round++ {
		mailbox := "INBOX"
		if rng.IntN(5) == 0 {
			mailbox = "Archive"
		}
		var op Op
		if round == 0 {
			op = start // the session's first read starts at the connect
		} else {
			op = t.rec.Begin(OpFetch, node.Name, client)
		}
		op.Account = acct.Address
		err := ic.selectAndFetch(&op, mailbox, false)
		op.Outcome = imapOutcome(err)
		if err != nil {
			op.Detail = err.Error()
		}
		t.rec.Finish(op)
		if err != nil {
			return true
		}
		if !t.mutate(ic, client, node, acct, op, rng) {
			return true
		}
		if rng.IntN(3) == 0 && !t.appendOne(ic, client, node, acct, mailbox, rng) {
			return true
		}
		if rng.IntN(3) == 0 && !t.folderRound(ic, client, node, acct, rng) {
			return true
		}
		if !t.sleep(t.cfg.Pause) {
			return true
		}
	}
	return true
}

// mutate changes a few of the messages op saw: flags on up to two, an
// expunge of one now and then, a move of one to Archive now and then. It
// reports whether the session is still usable.
// appendOne APPENDs a new message to mailbox and records it; false if
// the session is no longer usable (the outcome is unknown).
func (t *Traffic) appendOne(ic *imapConn, client int, node NodeInfo, acct Account, mailbox string, rng *rand.Rand) bool {
	op := t.rec.Begin(OpAppend, node.Name, client)
	op.ChaosID = fmt.Sprintf("%s-%d-%d", t.cfg.IDPrefix, client, t.seq.Add(1))
	op.Account, op.Rcpt, op.Mailbox = acct.Address, acct.Address, mailbox
	raw, hash := buildMessage(rng, op.ChaosID, acct.Address, acct.Address, t.cfg.BodyBytes)
	op.BodyHash = hash
	blob := sha256.Sum256(raw)
	op.Blob = hex.EncodeToString(blob[:])
	err := ic.do(func() error {
		cmd := ic.c.Append(mailbox, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			_ = cmd.Close()
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		data, err := cmd.Wait()
		if err == nil && data != nil {
			op.UIDValidity = data.UIDValidity
			op.UIDs = []uint32{uint32(data.UID)}
		}
		return err
	})
	op.Outcome = imapOutcome(err)
	if err != nil {
		op.Detail = err.Error()
	}
	t.rec.Finish(op)
	if op.Outcome == OK && t.cfg.OnAck != nil {
		t.cfg.OnAck(op)
	}
	return op.Outcome != Unknown
}

func (t *Traffic) mutate(ic *imapConn, client int, node NodeInfo, acct Account, read Op, rng *rand.Rand) bool {
	if len(read.Seen) == 0 {
		return true
	}
	pick := func(n int) []uint32 {
		var out []uint32
		for _, i := range rng.Perm(len(read.Seen))[:min(n, len(read.Seen))] {
			out = append(out, read.Seen[i].UID)
		}
		slices.Sort(out)
		return out
	}
	begin := func(kind string, uids []uint32) Op {
		op := t.rec.Begin(kind, node.Name, client)
		op.Account, op.Mailbox, op.UIDValidity, op.UIDs = acct.Address, read.Mailbox, read.UIDValidity, uids
		return op
	}
	uidSet := func(uids []uint32) imap.UIDSet {
		var s imap.UIDSet
		for _, u := range uids {
			s.AddNum(imap.UID(u))
		}
		return s
	}
	finish := func(op Op, err error) bool {
		op.Outcome = imapOutcome(err)
		if err != nil {
			op.Detail = err.Error()
		}
		t.rec.Finish(op)
		return op.Outcome != Unknown
	}

	uids := pick(1 + rng.IntN(2))
	op := begin(OpStore, uids)
	flag := []imap.Flag{imap.FlagFlagged, imap.FlagSeen, imap.FlagAnswered}[rng.IntN(3)]
	storeOp := imap.StoreFlagsAdd
	if rng.IntN(2) == 0 {
		storeOp = imap.StoreFlagsDel
	}
	op.Detail = fmt.Sprintf("%s %s", map[imap.StoreFlagsOp]string{imap.StoreFlagsAdd: "+FLAGS", imap.StoreFlagsDel: "-FLAGS"}[storeOp], flag)
	err := ic.do(func() error {
		return ic.c.Store(uidSet(uids), &imap.StoreFlags{Op: storeOp, Silent: true, Flags: []imap.Flag{flag}}, nil).Close()
	})
	if !finish(op, err) {
		return false
	}

	if rng.IntN(4) == 0 {
		uids := pick(1)
		op := begin(OpExpunge, uids)
		err := ic.do(func() error {
			if err := ic.c.Store(uidSet(uids), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				return err
			}
			return ic.c.UIDExpunge(uidSet(uids)).Close()
		})
		if !finish(op, err) {
			return false
		}
	}

	if read.Mailbox == "INBOX" && rng.IntN(4) == 0 {
		uids := pick(1)
		op := begin(OpMove, uids)
		op.Target = "Archive"
		err := ic.do(func() error {
			_, err := ic.c.Move(uidSet(uids), "Archive").Wait()
			return err
		})
		if !finish(op, err) {
			return false
		}
	}
	return true
}
