package cluster

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// Raft takes the stream layer's address as this node's own: it must be the
// advertised address, never the (possibly wildcard) bind address.
func TestRaftStreamAddrIsAdvertised(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &raftStream{mux: newMuxListener(ln, nil, slog.New(slog.DiscardHandler)), advertise: advertiseAddr("192.0.2.7:7947")}
	if got := s.Addr().String(); got != "192.0.2.7:7947" {
		t.Fatalf("Addr() = %s, want the advertised 192.0.2.7:7947", got)
	}
}

// failingLog is a raft log store whose appends fail while fail is set.
type failingLog struct {
	raft.LogStore
	fail bool
}

func (l *failingLog) StoreLogs([]*raft.Log) error {
	if l.fail {
		return errors.New("write raft.db: no space left on device")
	}
	return nil
}

// A Raft log that cannot be written is reported (Problems, RaftLogError)
// until an append works again, without a restart.
func TestRaftLogFailureReported(t *testing.T) {
	st, err := storage.Open(storage.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := &Node{log: slog.New(slog.DiscardHandler), store: st}
	bolt := &failingLog{fail: true}
	l := &raftLog{LogStore: bolt, n: n}
	if err := l.StoreLogs([]*raft.Log{{Index: 7}}); err == nil {
		t.Fatal("append did not fail")
	}
	if n.RaftLogError() == nil || n.RaftLogFailures() != 1 {
		t.Fatalf("after a failed append: error %v, failures %d", n.RaftLogError(), n.RaftLogFailures())
	}
	if p := n.Problems(); len(p) != 1 || !strings.Contains(p[0], "raft log") {
		t.Fatalf("Problems = %q", p)
	}
	bolt.fail = false
	if err := l.StoreLog(&raft.Log{Index: 7}); err != nil {
		t.Fatal(err)
	}
	if n.RaftLogError() != nil || len(n.Problems()) != 0 {
		t.Fatalf("after a working append: error %v, problems %q", n.RaftLogError(), n.Problems())
	}
}

// failingStable is a raft stable store whose writes fail.
type failingStable struct{ raft.StableStore }

func (failingStable) SetUint64([]byte, uint64) error { return errors.New("no space left on device") }

// raft panics when it cannot record its term; the node stops through
// OnFatal instead, and raft's goroutine does not go on.
func TestTermWriteFailureIsFatal(t *testing.T) {
	fatal := make(chan error, 1)
	n := &Node{log: slog.New(slog.DiscardHandler), cfg: Config{OnFatal: func(err error) { fatal <- err }}}
	s := &raftStable{StableStore: failingStable{}, n: n}
	if err := s.SetUint64([]byte("LastVoteTerm"), 3); err == nil {
		t.Fatal("a failed vote write did not fail")
	}
	returned := make(chan struct{})
	go func() {
		_ = s.SetUint64(keyCurrentTerm, 3)
		close(returned)
	}()
	select {
	case err := <-fatal:
		if !strings.Contains(err.Error(), "term 3") {
			t.Fatalf("OnFatal(%v)", err)
		}
	case <-returned:
		t.Fatal("a failed term write returned to raft")
	case <-time.After(time.Minute): // hang guard
		t.Fatal("OnFatal not called")
	}
	select {
	case <-returned:
		t.Fatal("a failed term write returned to raft")
	default:
	}
}
