package imap

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// coalescedPair is a loopback TCP connection whose server end coalesces.
func coalescedPair(t *testing.T) (server *coalescingConn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := coalescingListener{ln}.Accept()
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = (<-done).(*coalescingConn)
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

func TestCoalescingConn(t *testing.T) {
	server, client := coalescedPair(t)

	// Held until the server reads.
	for _, l := range []string{"* 1 FETCH (UID 1)\r\n", "* 2 FETCH (UID 2)\r\n", "a OK done\r\n"} {
		if _, err := server.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	_ = client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := client.Read(make([]byte, 10)); n != 0 {
		t.Fatal("output went out before the server waited for the client")
	}
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 100)
		n, _ := server.Read(b)
		got <- string(b[:n])
	}()
	if s := readN(t, client, 49); !strings.HasSuffix(s, "a OK done\r\n") {
		t.Fatalf("client read %q", s)
	}

	// While the server waits for the client, output goes out at once
	// (IDLE updates).
	if _, err := server.Write([]byte("* 3 EXISTS\r\n")); err != nil {
		t.Fatal(err)
	}
	if s := readN(t, client, 12); s != "* 3 EXISTS\r\n" {
		t.Fatalf("client read %q", s)
	}
	if _, err := client.Write([]byte("DONE\r\n")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "DONE\r\n" {
		t.Fatalf("server read %q", s)
	}

	// More than the limit is written without waiting.
	big := bytes.Repeat([]byte("x"), coalesceLimit+10)
	go func() { _, _ = server.Write(big) }()
	if s := readN(t, client, len(big)); s != string(big) {
		t.Fatal("large write mangled")
	}

	// Close writes what is held.
	if _, err := server.Write([]byte("* BYE\r\n")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(client); string(b) != "* BYE\r\n" {
		t.Fatalf("after close the client read %q", b)
	}
}

// TestCoalescingConnTLS: TLS runs over a coalescing connection.
func TestCoalescingConnTLS(t *testing.T) {
	server, client := coalescedPair(t)
	cert, _ := clustertest.SelfSignedTLS(t)
	srv := tls.Server(server, cert)
	cl := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() {
		if err := srv.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err := srv.Write([]byte("* OK hello\r\n"))
		if err == nil {
			_, err = srv.Read(make([]byte, 1)) // the server waits: the greeting goes out
		}
		errc <- err
	}()
	_ = cl.SetDeadline(time.Now().Add(10 * time.Second))
	if s := readN(t, cl, 12); s != "* OK hello\r\n" {
		t.Fatalf("client read %q", s)
	}
	if _, err := cl.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
