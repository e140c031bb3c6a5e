package cluster

import (
	"log/slog"
	"net"
	"testing"
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
