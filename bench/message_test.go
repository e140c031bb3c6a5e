package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// body is what follows the header block of a generated message.
func body(t *testing.T, m []byte) []byte {
	t.Helper()
	_, b, ok := bytes.Cut(m, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no header/body separator in %.200q", m)
	}
	return b
}

func TestMessageSpecSizes(t *testing.T) {
	for _, unique := range []bool{false, true} {
		for _, size := range []int{400, 1000, 10 << 10, 10<<10 + 1, 1 << 20, 1<<20 + 77, 3<<20 + 5} {
			for _, k := range []int{0, 1} {
				var buf bytes.Buffer
				spec := MessageSpec{From: DefaultFrom, To: testUser, Size: size, Unique: unique, Seed: 7}
				n, err := spec.WriteTo(&buf, k)
				if err != nil {
					t.Fatal(err)
				}
				m := buf.Bytes()
				if int(n) != len(m) || len(m) != size {
					t.Errorf("unique %v, size %d, k %d: wrote %d, got %d bytes", unique, size, k, n, len(m))
				}
				if !bytes.HasSuffix(m, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(m, []byte("\r\n"), nil), []byte("\n")) {
					t.Errorf("unique %v, size %d: not CRLF lines", unique, size)
				}
				if got := bytes.Contains(m, []byte(SearchWord)); got != (k%100 == 0) {
					t.Errorf("unique %v, k %d: search word present %v", unique, k, got)
				}
				if unique {
					// Every line of a unique body but the search word is
					// base64 text (the last one cut short, or a '.' longer).
					for _, l := range strings.Split(strings.TrimSuffix(string(body(t, m)), "\r\n"), "\r\n") {
						if l != SearchWord && !base64Line.MatchString(l) {
							t.Errorf("size %d: line %q is not base64 text", size, l)
						}
					}
				}
			}
		}
	}
	// The ordinary body is the one text line over and over, as before.
	m := Message(3, DefaultFrom, testUser, 10<<10)
	if b := body(t, m); !bytes.HasPrefix(b, []byte(textLine+textLine)) {
		t.Errorf("text body starts %.100q", b)
	}
}

// TestMessageSpecUnique: unique bodies differ between messages and
// between seeds, are the same for the same seed and message, and do not
// compress.
func TestMessageSpecUnique(t *testing.T) {
	gen := func(seed uint64, k int) []byte {
		var buf bytes.Buffer
		if _, err := (MessageSpec{From: DefaultFrom, To: testUser, Size: 256 << 10, Unique: true, Seed: seed}).WriteTo(&buf, k); err != nil {
			t.Fatal(err)
		}
		return body(t, buf.Bytes())
	}
	seen := map[[32]byte]string{}
	for _, seed := range []uint64{1, 2} {
		for k := 1; k <= 20; k++ {
			h := sha256.Sum256(gen(seed, k))
			if prev, ok := seen[h]; ok {
				t.Fatalf("seed %d, message %d: same body as %s", seed, k, prev)
			}
			seen[h] = "seed " + strconv.FormatUint(seed, 10) + " message " + strconv.Itoa(k)
		}
	}
	if !bytes.Equal(gen(5, 9), gen(5, 9)) {
		t.Error("the same seed and message gave two bodies")
	}
	// Not one repeated line: every 76-character line is new.
	lines := strings.Split(string(gen(3, 1)), "\r\n")
	uniq := map[string]bool{}
	for _, l := range lines {
		uniq[l] = true
	}
	if len(uniq) < len(lines)-2 {
		t.Errorf("%d distinct lines of %d", len(uniq), len(lines))
	}
}

// sink is an SMTP server that keeps a hash of every message it accepts
// and refuses with 451 the messages whose X-Bench-Seq is 2 mod 3.
type sink struct {
	addr string
	mu   sync.Mutex
	got  map[[32]byte]int // body hash → size
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{got: map[[32]byte]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.test"
	srv.MaxMessageBytes = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })
	return s
}

type sinkSession struct{ s *sink }

var base64Line = regexp.MustCompile(`^[A-Za-z0-9+/]{0,76}\.?$`)

var seqRe = regexp.MustCompile(`(?m)^X-Bench-Seq: (\d+)\r$`)

func (ss *sinkSession) Reset()                                    {}
func (ss *sinkSession) Logout() error                             { return nil }
func (ss *sinkSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	m, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	sm := seqRe.FindSubmatch(m)
	if sm == nil {
		return &smtp.SMTPError{Code: 554, Message: "no X-Bench-Seq"}
	}
	if k, _ := strconv.Atoi(string(sm[1])); k%3 == 2 {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}
	}
	_, b, _ := bytes.Cut(m, []byte("\r\n\r\n"))
	ss.s.mu.Lock()
	ss.s.got[sha256.Sum256(b)] = len(m)
	ss.s.mu.Unlock()
	return nil
}

// TestSMTPUniqueReplies: a unique-body MX workload over two servers
// counts every reply by code, overall and per server, and the servers
// receive as many different bodies as they accept, each of the size asked.
func TestSMTPUniqueReplies(t *testing.T) {
	a, b := startSink(t), startSink(t)
	const n, size = 12, 300 << 10
	r, err := RunSMTP(context.Background(), SMTPConfig{Addrs: []string{a.addr, b.addr}, To: testUser,
		Messages: n, Size: size, Concurrency: 4, Unique: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replies["250"] != 8 || r.Replies["451"] != 4 || len(r.Replies) != 2 {
		t.Errorf("replies %v, want 250 × 8, 451 × 4", r.Replies)
	}
	if r.Accepted != 8 || r.Errors["451"] != 4 || r.Seed == 0 || !r.Unique {
		t.Errorf("accepted %d, errors %v, seed %d, unique %v", r.Accepted, r.Errors, r.Seed, r.Unique)
	}
	total := 0
	for i, pa := range r.PerAddr {
		if pa.Addr != []string{a.addr, b.addr}[i] || pa.Elapsed <= 0 || pa.Elapsed > r.Elapsed {
			t.Errorf("per address %d: %+v (elapsed %.3f)", i, pa, r.Elapsed)
		}
		for _, c := range pa.Replies {
			total += c
		}
	}
	if total != n {
		t.Errorf("per-address replies add up to %d, want %d", total, n)
	}
	got := 0
	for _, s := range []*sink{a, b} {
		s.mu.Lock()
		for _, sz := range s.got {
			if sz != size {
				t.Errorf("a message of %d bytes, want %d", sz, size)
			}
		}
		got += len(s.got)
		s.mu.Unlock()
	}
	if got != 8 {
		t.Errorf("%d different bodies accepted, want 8", got)
	}
}
