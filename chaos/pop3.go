package chaos

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The POP3 traffic: a client that logs in over POP3S, lists the INBOX
// with UIDL (whose unique-ids are "UIDVALIDITY.UID", the IMAP identity of
// each message), RETRs a few messages, and on every other session DELEs
// one and QUITs, which expunges it (RFC 1939 §6). The reads are recorded
// as INBOX fetches (without a UIDNEXT: POP3 has none), so a UIDL that
// named another message than IMAP does, or a RETR that returned other
// bytes, fails uid-stability or no-phantom; the DELE+QUIT is recorded as
// an expunge of that UID.

func (t *Traffic) pop3Sessions(client int) {
	t.sessions(client, max(t.cfg.Pause, 50*time.Millisecond), t.pop3Session)
}

// pop3Conn is a minimal POP3 client: one command, one reply.
type pop3Conn struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// errPOP3 is a -ERR reply: the server refused.
type errPOP3 struct{ line string }

func (e *errPOP3) Error() string { return "pop3: " + e.line }

func (c *pop3Conn) status() (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "+OK") {
		return "", &errPOP3{line}
	}
	return line, nil
}

func (c *pop3Conn) cmd(format string, args ...any) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		return "", err
	}
	return c.status()
}

// maxPOP3Reply bounds a multi-line reply the client holds: far above any
// message the traffic sends (the server's size limit is 50 MiB).
const maxPOP3Reply = 64 << 20

// multi reads a multi-line body up to its terminating ".", undoing the
// dot-stuffing; lines keep their CRLF.
func (c *pop3Conn) multi() ([]byte, error) {
	var out []byte
	for {
		_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
		line, err := c.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == ".\r\n" {
			return out, nil
		}
		if out = append(out, strings.TrimPrefix(line, ".")...); len(out) > maxPOP3Reply {
			return nil, fmt.Errorf("pop3: a reply over %d bytes", maxPOP3Reply)
		}
	}
}

// pop3Msg is one line of UIDL.
type pop3Msg struct {
	num     int
	uv, uid uint32
}

func parseUIDL(body []byte) ([]pop3Msg, error) {
	var out []pop3Msg
	for _, line := range strings.Split(strings.TrimRight(string(body), "\r\n"), "\r\n") {
		if line == "" {
			continue
		}
		num, id, ok := strings.Cut(line, " ")
		uv, uid, ok2 := strings.Cut(id, ".")
		n, err1 := strconv.Atoi(num)
		v, err2 := strconv.ParseUint(uv, 10, 32)
		u, err3 := strconv.ParseUint(uid, 10, 32)
		if !ok || !ok2 || err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("pop3: UIDL line %q is not \"N UIDVALIDITY.UID\"", line)
		}
		out = append(out, pop3Msg{num: n, uv: uint32(v), uid: uint32(u)})
	}
	return out, nil
}

func pop3Outcome(err error) Outcome {
	if err == nil {
		return OK
	}
	var pe *errPOP3
	if errors.As(err, &pe) {
		return Fail
	}
	return Unknown
}

// pop3Session runs one session; it reports whether it got to log in.
func (t *Traffic) pop3Session(client int, node NodeInfo, acct Account, rng *rand.Rand) bool {
	read := t.rec.Begin(OpFetch, node.Name, client)
	read.Account, read.Mailbox, read.Detail = acct.Address, "INBOX", "pop3"
	fail := func(err error) bool {
		read.Outcome = pop3Outcome(err)
		if read.Outcome == Unknown {
			read.Outcome = Fail // a read changes nothing
		}
		read.Detail = "pop3: " + err.Error()
		t.rec.Finish(read)
		return false
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: t.cfg.Timeout}, Config: t.tls}
	conn, err := d.DialContext(t.ctx, "tcp", node.POP3S)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	defer context.AfterFunc(t.ctx, func() { conn.Close() })()
	c := &pop3Conn{conn: conn, r: bufio.NewReader(conn), timeout: t.cfg.Timeout}
	if _, err := c.status(); err != nil {
		return fail(err)
	}
	if _, err := c.cmd("USER %s", acct.Address); err != nil {
		return fail(err)
	}
	if _, err := c.cmd("PASS %s", acct.Password); err != nil {
		return fail(err)
	}
	var list []pop3Msg
	_, err = c.cmd("UIDL")
	if err == nil {
		var body []byte
		if body, err = c.multi(); err == nil {
			list, err = parseUIDL(body)
		}
	}
	if err != nil {
		fail(err)
		return true
	}
	if len(list) > 0 {
		read.UIDValidity = list[0].uv
	}
	// RETR up to three messages.
	var got []pop3Msg
	for _, i := range rng.Perm(len(list))[:min(3, len(list))] {
		m := list[i]
		if _, err = c.cmd("RETR %d", m.num); err != nil {
			break
		}
		var raw []byte
		if raw, err = c.multi(); err != nil {
			break
		}
		read.Seen = append(read.Seen, readMsg(m.uid, raw, nil))
		got = append(got, m)
	}
	if err != nil {
		read.Seen = nil
		fail(err)
		return true
	}
	slices.SortFunc(read.Seen, func(a, b Msg) int { return int(a.UID) - int(b.UID) })
	read.Outcome = OK
	t.rec.Finish(read)

	if len(got) == 0 || rng.IntN(2) == 0 {
		_, _ = c.cmd("QUIT")
		return true
	}
	m := got[rng.IntN(len(got))]
	del := t.rec.Begin(OpExpunge, node.Name, client)
	del.Account, del.Mailbox, del.UIDValidity, del.UIDs, del.Detail = acct.Address, "INBOX", m.uv, []uint32{m.uid}, "pop3 DELE+QUIT"
	if _, err := c.cmd("DELE %d", m.num); err != nil {
		// Nothing is expunged before QUIT: a refused or lost DELE
		// removes nothing.
		del.Outcome, del.Detail = Fail, "pop3 DELE: "+err.Error()
		t.rec.Finish(del)
		return true
	}
	_, err = c.cmd("QUIT")
	del.Outcome = pop3Outcome(err)
	if err != nil {
		del.Detail = "pop3 QUIT: " + err.Error()
	}
	t.rec.Finish(del)
	return true
}
