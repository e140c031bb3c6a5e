package accept

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/raftmail/raftmail/storage"
)

// nopCluster is for spool tests, which store nothing.
type nopCluster struct{}

func (nopCluster) StoreBlobFrom(context.Context, storage.BlobSource) error { return nil }
func (nopCluster) Propose(context.Context, storage.Command) (uint64, storage.Result, error) {
	return 0, storage.Result{}, nil
}
func (nopCluster) ProposeNoWait(context.Context, storage.Command) (uint64, storage.Result, error) {
	return 0, storage.Result{}, nil
}

func newTestPipeline(t *testing.T, cfg Config) *Pipeline {
	t.Helper()
	if cfg.Cluster == nil {
		cfg.Cluster = nopCluster{}
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func message(hdr string, body int) []byte {
	b := []byte(hdr)
	for i := 0; len(b) < len(hdr)+body; i++ {
		b = append(b, fmt.Sprintf("line %d of the body\r\n", i)...)
	}
	return b[:len(hdr)+body]
}

func readAll(t *testing.T, s *Spool, off int64) []byte {
	t.Helper()
	r, err := s.Open(off)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpool writes messages in pieces of several sizes, in memory and in a
// file, and reads them back with their header block.
func TestSpool(t *testing.T) {
	p := newTestPipeline(t, Config{SpoolMemoryMessage: 64 << 10})
	hdr := "Subject: spool\r\nFrom: a@example.test\r\n\r\n"
	for _, size := range []int{0, 10, 60 << 10, 200 << 10} {
		for _, step := range []int{1, 3, 4096, 1 << 20} {
			if size > 100<<10 && step < 4096 {
				continue
			}
			msg := message(hdr, size)
			s := p.NewSpool(1<<20, 0, false)
			for b := msg; len(b) > 0; {
				k := min(step, len(b))
				if _, err := s.Write(b[:k]); err != nil {
					t.Fatal(err)
				}
				b = b[k:]
			}
			h, err := s.Header()
			if err != nil || string(h) != hdr {
				t.Fatalf("size %d step %d: header %q, %v", size, step, h, err)
			}
			if got := readAll(t, s, 0); !bytes.Equal(got, msg) {
				t.Fatalf("size %d step %d: read %d bytes back, want %d", size, step, len(got), len(msg))
			}
			if got := readAll(t, s, int64(len(h))); !bytes.Equal(got, msg[len(h):]) {
				t.Fatalf("size %d step %d: body differs", size, step)
			}
			if inFile := s.f != nil; inFile != (len(msg) > 64<<10) {
				t.Fatalf("size %d: in a file: %v", len(msg), inFile)
			}
			s.Close()
		}
	}
	if st := p.Stats(); st.SpoolMemoryBytes != 0 {
		t.Fatalf("memory still held after every spool closed: %+v", st)
	}
	if left, _ := os.ReadDir(p.cfg.SpoolDir); len(left) != 0 {
		t.Fatalf("spool files left: %d", len(left))
	}
}

// TestSpoolHeader: header blocks of every shape, as storage sees them.
func TestSpoolHeader(t *testing.T) {
	p := newTestPipeline(t, Config{MaxHeaderBytes: 100})
	for _, tc := range []struct{ msg, hdr string }{
		{"A: b\r\n\r\nbody", "A: b\r\n\r\n"},
		{"A: b\n\nbody", "A: b\n\n"},
		{"\r\nbody", "\r\n"},
		{"A: b\r\nno body", "A: b\r\nno body"},
		{"", ""},
	} {
		for step := 1; step <= len(tc.msg)+1; step++ {
			s := p.NewSpool(0, 0, false)
			for b := []byte(tc.msg); len(b) > 0; {
				k := min(step, len(b))
				s.Write(b[:k])
				b = b[k:]
			}
			h, err := s.Header()
			if err != nil || string(h) != tc.hdr {
				t.Fatalf("%q in steps of %d: header %q, %v; want %q", tc.msg, step, h, err, tc.hdr)
			}
			if want, _ := storage.MessageHeader([]byte(tc.msg)); string(want) != tc.hdr {
				t.Fatalf("%q: storage says the header is %q", tc.msg, want)
			}
			s.Close()
		}
	}
	s := p.NewSpool(0, 0, false)
	s.Write(bytes.Repeat([]byte("X: y\r\n"), 30))
	if _, err := s.Header(); !errors.Is(err, ErrHeaderTooLong) {
		t.Fatalf("a header over the limit: %v", err)
	}
	s.Close()
}

// TestSpoolLimits: the size limit and the unauthenticated budget refuse
// the rest of a message, count it, and free what was held.
func TestSpoolLimits(t *testing.T) {
	p := newTestPipeline(t, Config{UnauthInFlight: 256 << 10, SpoolMemoryMessage: 16 << 10})
	s := p.NewSpool(1000, 0, false)
	if _, err := s.Write(make([]byte, 1001)); !errors.Is(err, ErrTooBig) {
		t.Fatalf("over the limit: %v", err)
	}
	s.Write(make([]byte, 10))
	if s.Size() != 1011 || !errors.Is(s.Err(), ErrTooBig) {
		t.Fatalf("size %d, err %v", s.Size(), s.Err())
	}
	s.Close()

	a := p.NewSpool(1<<20, 0, true)
	if _, err := a.Write(make([]byte, 200<<10)); err != nil {
		t.Fatal(err)
	}
	b := p.NewSpool(1<<20, 0, true)
	if _, err := b.Write(make([]byte, 100<<10)); !errors.Is(err, ErrBusy) {
		t.Fatalf("second sender past the budget: %v", err)
	}
	b.Close()
	auth := p.NewSpool(1<<20, 0, false)
	if _, err := auth.Write(make([]byte, 100<<10)); err != nil {
		t.Fatalf("an authenticated sender is not held by the budget: %v", err)
	}
	auth.Close()
	r, _ := a.Open(0)
	a.Close()
	// Answered: no longer in flight, though a reader (a copy to a slow
	// peer) still reads it.
	if st := p.Stats(); st.UnauthInFlightBytes != 0 || st.BusyRefusals != 1 {
		t.Fatalf("while a reader is open: %+v", st)
	}
	if n, err := io.Copy(io.Discard, r); n != 200<<10 || err != nil {
		t.Fatalf("reader after Close: %d bytes, %v", n, err)
	}
	r.Close()
	if st := p.Stats(); st.UnauthInFlightBytes != 0 || st.SpoolMemoryBytes != 0 {
		t.Fatalf("after the last reader: %+v", st)
	}
}

// TestSpoolMemoryBudget: past the node's memory budget, messages go to
// files, and the budget is never exceeded.
func TestSpoolMemoryBudget(t *testing.T) {
	p := newTestPipeline(t, Config{SpoolMemory: 100 << 10, SpoolMemoryMessage: 64 << 10})
	var spools []*Spool
	for range 5 {
		s := p.NewSpool(0, 0, false)
		for range 10 {
			s.Write(make([]byte, 4<<10))
		}
		if st := p.Stats(); st.SpoolMemoryBytes > 100<<10 {
			t.Fatalf("memory budget exceeded: %+v", st)
		}
		spools = append(spools, s)
	}
	files := 0
	for _, s := range spools {
		if s.f != nil {
			files++
		}
		if got := readAll(t, s, 0); len(got) != 40<<10 {
			t.Fatalf("read %d bytes", len(got))
		}
		s.Close()
	}
	if files < 3 {
		t.Fatalf("%d of 5 spools in files, want at least 3", files)
	}
	deadline := time.Now().Add(time.Second)
	for p.Stats().SpoolMemoryBytes != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := p.Stats(); st.SpoolMemoryBytes != 0 {
		t.Fatalf("memory held after close: %+v", st)
	}
}

func FuzzSpoolHeader(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody"), uint8(3))
	f.Add([]byte("a\n\nb"), uint8(1))
	f.Add([]byte("\r\n"), uint8(1))
	f.Add([]byte("X: y\r\n\r"), uint8(7))
	f.Fuzz(func(t *testing.T, msg []byte, step uint8) {
		p := &Pipeline{cfg: Config{MaxHeaderBytes: 1 << 20, SpoolMemoryMessage: 1 << 20, SpoolMemory: 1 << 30, MaxMessageBytes: 1 << 20}}
		s := p.NewSpool(0, 0, false)
		k := int(step%16) + 1
		for b := msg; len(b) > 0; {
			n := min(k, len(b))
			s.Write(b[:n])
			b = b[n:]
		}
		got, err := s.Header()
		want, ok := storage.MessageHeader(msg)
		if err != nil || !ok || !bytes.Equal(got, want) {
			t.Fatalf("header %q, %v; storage says %q, %v", got, err, want, ok)
		}
	})
}

// TestCollector: the metrics read the pipeline's figures.
func TestCollector(t *testing.T) {
	p := newTestPipeline(t, Config{UnauthInFlight: 64 << 10})
	s := p.NewSpool(0, 0, true)
	s.Write(make([]byte, 100<<10))
	s.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector("n1", p))
	want := `# HELP raftmail_accept_unauth_busy_refusals_total Messages from unauthenticated senders refused with 452 4.3.1 because --mx-inflight was spent.
# TYPE raftmail_accept_unauth_busy_refusals_total counter
raftmail_accept_unauth_busy_refusals_total{node="n1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "raftmail_accept_unauth_busy_refusals_total"); err != nil {
		t.Fatal(err)
	}
}
