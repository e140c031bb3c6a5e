package accept

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/raftmail/raftmail/storage"
)

// Errors of a Spool's Write. After either, the spool keeps counting what
// is written (Size) but stores none of it, so that the caller can read the
// rest of the message off the connection and then answer.
var (
	// ErrTooBig: the message passed its size limit.
	ErrTooBig = errors.New("accept: message exceeds the size limit")
	// ErrBusy: the node's budget of bytes in flight for unauthenticated
	// mail is spent. Temporary.
	ErrBusy = errors.New("accept: too much mail in flight on this node")
	// ErrHeaderTooLong: the header does not end within MaxHeaderBytes.
	ErrHeaderTooLong = errors.New("accept: message header too long")
)

// Spool holds one incoming message while it is checked and stored: in
// memory while it is small and the node's spool memory budget allows, then
// in an unlinked temporary file (so nothing is left behind by a crash). Its
// header block stays in memory. Writes are not safe for concurrent use;
// readers (Open) are, and may outlive Close: the bytes are released when
// the last reader is closed.
type Spool struct {
	p      *Pipeline
	limit  int64
	unauth bool // counts against the unauthenticated in-flight budget

	size   int64 // bytes written (also those over the limit)
	stored int64 // bytes kept
	err    error // ErrTooBig or ErrBusy once hit

	mem        []byte   // the message while in memory
	memHeld    int64    // bytes reserved from the spool memory budget
	f          *os.File // after spilling
	head       []byte   // the header block as it arrives (file spools)
	hdrEnd     int      // end of the header block, -1 until seen
	scanFrom   int      // where the header scan resumes
	flightHeld int64    // bytes reserved from the unauthenticated budget

	mu struct {
		sync.Mutex
		readers int
		closed  bool
	}
}

// NewSpool returns an empty spool for a message of at most limit bytes
// (0: the pipeline's MaxMessageBytes). sizeHint (a declared SIZE, or 0)
// sizes the first allocation. unauth counts the message against the
// budget of bytes in flight from unauthenticated senders.
func (p *Pipeline) NewSpool(limit, sizeHint int64, unauth bool) *Spool {
	if limit <= 0 {
		limit = p.cfg.MaxMessageBytes
	}
	s := &Spool{p: p, limit: limit, unauth: unauth, hdrEnd: -1}
	if sizeHint > 0 && sizeHint <= int64(p.cfg.SpoolMemoryMessage) {
		if p.reserveMem(sizeHint) {
			s.memHeld = sizeHint
			s.mem = make([]byte, 0, sizeHint)
		}
	}
	return s
}

// Write adds p to the message. It returns ErrTooBig past the limit,
// ErrBusy when the unauthenticated budget is spent, and an error from the
// spool file; afterwards bytes are counted but not kept.
func (s *Spool) Write(p []byte) (int, error) {
	s.size += int64(len(p))
	if s.err != nil {
		return len(p), s.err
	}
	if s.size > s.limit {
		s.err = ErrTooBig
		s.release()
		return len(p), s.err
	}
	if s.unauth {
		for s.flightHeld < s.size {
			step := max(int64(64<<10), s.size-s.flightHeld)
			if !s.p.reserveFlight(step) {
				s.err = ErrBusy
				s.release()
				return len(p), s.err
			}
			s.flightHeld += step
		}
	}
	if s.f == nil {
		need := int64(len(s.mem) + len(p))
		if need <= int64(s.p.cfg.SpoolMemoryMessage) && (need <= s.memHeld || s.growMem(need)) {
			s.mem = append(s.mem, p...)
			s.stored += int64(len(p))
			s.trackHeader(p)
			return len(p), nil
		}
		if err := s.spill(); err != nil {
			s.err = err
			s.release()
			return len(p), err
		}
	}
	if _, err := s.f.Write(p); err != nil {
		s.err = fmt.Errorf("accept: spool file: %w", err)
		s.release()
		return len(p), s.err
	}
	s.stored += int64(len(p))
	s.trackHeader(p)
	return len(p), nil
}

// growMem reserves memory for a message of need bytes in memory.
func (s *Spool) growMem(need int64) bool {
	want := max(need, min(2*s.memHeld, int64(s.p.cfg.SpoolMemoryMessage)), 4<<10)
	if !s.p.reserveMem(want - s.memHeld) {
		return false
	}
	s.memHeld = want
	if int64(cap(s.mem)) < need {
		m := make([]byte, len(s.mem), want)
		copy(m, s.mem)
		s.mem = m
	}
	return true
}

// spill moves the message from memory to a new unlinked file.
func (s *Spool) spill() error {
	f, err := os.CreateTemp(s.p.cfg.SpoolDir, "spool-*")
	if err != nil {
		return fmt.Errorf("accept: spool file: %w", err)
	}
	_ = os.Remove(f.Name()) // the open file stays readable
	if _, err := f.Write(s.mem); err != nil {
		f.Close()
		return fmt.Errorf("accept: spool file: %w", err)
	}
	switch {
	case s.hdrEnd >= 0:
		s.head = append([]byte(nil), s.mem[:s.hdrEnd]...)
	case s.scanFrom <= s.p.cfg.MaxHeaderBytes:
		s.head = append([]byte(nil), s.mem...)
	}
	s.f = f
	s.mem = nil
	s.p.releaseMem(s.memHeld)
	s.memHeld = 0
	s.p.spilled.Add(1)
	return nil
}

// trackHeader follows the header block as bytes arrive (p was just
// stored): it ends at the first empty line (RFC 5322 §2.1), as
// storage.MessageHeader sees it. The search stops past MaxHeaderBytes.
func (s *Spool) trackHeader(p []byte) {
	if s.hdrEnd >= 0 || s.scanFrom > s.p.cfg.MaxHeaderBytes {
		return
	}
	buf := s.mem
	if s.f != nil {
		s.head = append(s.head, p...)
		buf = s.head
	}
	if end := storage.HeaderEnd(buf, s.scanFrom); end >= 0 {
		s.hdrEnd = end
		if s.f != nil {
			s.head = s.head[:end]
		}
		return
	}
	s.scanFrom = max(0, len(buf)-3)
}

// Size is how many bytes were written, including those over a limit.
func (s *Spool) Size() int64 { return s.size }

// Err is ErrTooBig, ErrBusy or a spool file error once one happened.
func (s *Spool) Err() error { return s.err }

// Header returns the message's header block, up to and including the empty
// line that ends it; for a message without one (all header, or no header
// at all) it is the whole message. ErrHeaderTooLong: the header does not
// end within MaxHeaderBytes.
func (s *Spool) Header() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	end := s.hdrEnd
	if end < 0 {
		if s.stored > int64(s.p.cfg.MaxHeaderBytes) {
			return nil, ErrHeaderTooLong
		}
		end = int(s.stored)
	}
	if end > s.p.cfg.MaxHeaderBytes {
		return nil, ErrHeaderTooLong
	}
	if s.f == nil {
		return s.mem[:end], nil
	}
	return s.head[:end], nil
}

// Open returns a reader of the stored message from byte off. Readers may
// outlive Close.
func (s *Spool) Open(off int64) (io.ReadCloser, error) {
	if s.err != nil {
		return nil, s.err
	}
	if off < 0 || off > s.stored {
		return nil, fmt.Errorf("accept: spool offset %d of %d", off, s.stored)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, errors.New("accept: spool closed")
	}
	s.mu.readers++
	var r io.Reader
	if s.f == nil {
		r = bytes.NewReader(s.mem[off:s.stored])
	} else {
		r = io.NewSectionReader(s.f, off, s.stored-off)
	}
	return &spoolReader{Reader: r, s: s}, nil
}

type spoolReader struct {
	io.Reader
	s    *Spool
	once sync.Once
}

func (r *spoolReader) Close() error {
	r.once.Do(func() {
		r.s.mu.Lock()
		r.s.mu.readers--
		last := r.s.mu.closed && r.s.mu.readers == 0
		r.s.mu.Unlock()
		if last {
			r.s.release()
		}
	})
	return nil
}

// Close ends the spool: the message no longer counts as in flight from an
// unauthenticated sender, and its memory and file are released once no
// reader is left (copies to slow peers may still be reading it).
func (s *Spool) Close() {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.mu.closed = true
	last := s.mu.readers == 0
	flight := s.flightHeld
	s.flightHeld = 0
	s.mu.Unlock()
	if flight > 0 {
		s.p.releaseFlight(flight)
	}
	if last {
		s.release()
	}
}

// release gives back memory, file and budgets. Only when no reader can
// still use them: after Close with no readers, or on a write error
// (before any Open).
func (s *Spool) release() {
	if s.memHeld > 0 {
		s.p.releaseMem(s.memHeld)
		s.memHeld = 0
	}
	s.mem = nil
	s.head = nil
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
	s.mu.Lock()
	flight := s.flightHeld
	s.flightHeld = 0
	s.mu.Unlock()
	if flight > 0 {
		s.p.releaseFlight(flight)
	}
}
