package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/raftmail/raftmail/storage"
)

// FuzzRPCMessages feeds arbitrary bytes to every payload decoder and to the
// frame readers: none may panic, and what decodes must encode back to the
// same bytes.
func FuzzRPCMessages(f *testing.F) {
	f.Add(encodeApplyResult(42, storage.Result{Code: "over_quota", Msg: "storage: over quota", Data: []byte(`{"a":1}`)}))
	f.Add(blobPutRequest{size: 3, inline: []byte("abc")}.encode())
	f.Add(blobPutRequest{size: 1 << 20, streamed: true}.encode())
	f.Add(encodeAddVoter("node-2", "127.0.0.1:7947"))
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	_ = writeRequest(w, methodApply, time.Second, []byte("cmd"))
	_ = writeChunk(w, []byte("chunk"))
	_ = writeChunk(w, nil)
	_ = w.Flush()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		if idx, res, err := decodeApplyResult(b); err == nil {
			if got := encodeApplyResult(idx, res); !bytes.Equal(got, b) {
				t.Fatalf("apply result: %x re-encodes as %x", b, got)
			}
		}
		if m, err := decodeBlobPut(b); err == nil {
			if got := m.encode(); !bytes.Equal(got, b) {
				t.Fatalf("blob.put: %x re-encodes as %x", b, got)
			}
		}
		if id, addr, err := decodeAddVoter(b); err == nil {
			if got := encodeAddVoter(id, addr); !bytes.Equal(got, b) {
				t.Fatalf("addvoter: %x re-encodes as %x", b, got)
			}
		}
		r := bufio.NewReader(bytes.NewReader(b))
		if req, err := readRequest(r); err == nil {
			sink := make([]byte, maxChunkWire)
			_, _, _ = readChunks(r, nil, 1<<20, sink)
			_ = req
		}
		_, _ = readResponse(bufio.NewReader(bytes.NewReader(b)))
	})
}

// TestRPCVersionRefused: a request of another version is refused with a
// reply saying which version this node speaks.
func TestRPCVersionRefused(t *testing.T) {
	frame := []byte{1, 0, 0, 0, 12}
	_, err := readRequest(bufio.NewReader(bytes.NewReader(frame)))
	if !errors.Is(err, errVersion) {
		t.Fatalf("old frame: %v", err)
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	_ = writeResponse(w, codeVersion, []byte(err.Error()))
	_ = w.Flush()
	_, err = readResponse(bufio.NewReader(&buf))
	var re *rpcError
	if !errors.As(err, &re) || !errors.Is(err, errVersion) {
		t.Fatalf("refusal read back as %v", err)
	}
}

// TestBlobStreamLimits: a stream longer than announced, or with an
// oversized chunk, is a malformed frame; a failing writer does not stop the
// stream from being drained.
func TestBlobStreamLimits(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	src := bytes.Repeat([]byte("x"), 1000)
	if _, err := copyChunks(w, bytes.NewReader(src), make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	wire := buf.Bytes()
	sink := make([]byte, maxChunkWire)
	if _, _, err := readChunks(bufio.NewReader(bytes.NewReader(wire)), nil, 999, sink); !errors.Is(err, errFrame) {
		t.Fatalf("stream over its limit: %v", err)
	}
	var got bytes.Buffer
	n, werr, err := readChunks(bufio.NewReader(bytes.NewReader(wire)), &got, 1000, sink)
	if err != nil || werr != nil || n != 1000 || !bytes.Equal(got.Bytes(), src) {
		t.Fatalf("stream: %d bytes, %v, %v", n, werr, err)
	}
	n, werr, err = readChunks(bufio.NewReader(bytes.NewReader(wire)), failWriter{}, -1, sink)
	if err != nil || werr == nil || n != 1000 {
		t.Fatalf("stream into a failing writer: %d bytes, write error %v, %v", n, werr, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
