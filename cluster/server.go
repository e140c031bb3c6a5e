package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// rpcIdleTimeout closes an RPC connection nobody has used for a while.
const rpcIdleTimeout = 5 * time.Minute

// defaultRPCTimeout bounds serving a request whose caller sent no timeout.
const defaultRPCTimeout = 30 * time.Second

// serveRPC answers requests on one mutual-TLS connection until it closes.
// A malformed frame closes the connection and is logged; a request of
// another protocol version is answered with codeVersion first.
func (n *Node) serveRPC(c net.Conn) {
	defer c.Close()
	peer := c.RemoteAddr().String()
	r := bufio.NewReaderSize(c, rpcBufSize)
	w := bufio.NewWriterSize(c, rpcBufSize)
	for {
		_ = c.SetReadDeadline(time.Now().Add(rpcIdleTimeout))
		req, err := readRequest(r)
		if err != nil {
			if errors.Is(err, errVersion) {
				n.log.Warn("cluster rpc: refused a peer of another version", "peer", peer, "err", err)
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_ = writeResponse(w, codeVersion, []byte(err.Error()))
				_ = w.Flush()
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				n.log.Warn("cluster rpc: closing connection", "peer", peer, "err", err)
			}
			return
		}
		timeout := req.timeout
		if timeout == 0 {
			timeout = defaultRPCTimeout
		}
		deadline := time.Now().Add(timeout)
		_ = c.SetDeadline(deadline)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = n.dispatch(ctx, req, r, w)
		cancel()
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			n.log.Warn("cluster rpc: closing connection", "peer", peer, "method", req.method.String(), "err", err)
			return
		}
	}
}

// dispatch serves one request and writes its response (not flushed). An
// error means the connection can no longer be trusted and must close.
func (n *Node) dispatch(ctx context.Context, req *rpcRequest, r *bufio.Reader, w *bufio.Writer) error {
	answer := func(payload []byte, err error) error {
		if err != nil {
			var re *rpcError
			if errors.As(err, &re) {
				return writeResponse(w, re.Code, []byte(re.Msg))
			}
			return writeResponse(w, codeOf(err), []byte(err.Error()))
		}
		return writeResponse(w, statusOK, payload)
	}
	switch req.method {
	case methodApply:
		return answer(n.handleApply(ctx, req.payload))
	case methodBlobPut:
		return n.handleBlobPut(ctx, req.payload, r, w)
	case methodBlobGet:
		return n.handleBlobGet(req.payload, w)
	case methodStatus:
		st := n.LocalStatus()
		if string(req.payload) == statusQuick {
			st = n.QuickStatus()
		}
		b, err := json.Marshal(st)
		return answer(b, err)
	case methodAddVoter:
		id, addr, err := decodeAddVoter(req.payload)
		if err != nil {
			return err
		}
		return answer(nil, n.leaderOnly(func() error { return n.addVoterLocal(id, addr) }))
	case methodRemoveNode:
		rr, err := decodeRemoveRequest(req.payload)
		if err != nil {
			return err
		}
		return answer(nil, n.leaderOnly(func() error { return n.removeChecked(ctx, rr) }))
	case methodTransfer:
		return answer(nil, n.leaderOnly(func() error { return n.raft.LeadershipTransfer().Error() }))
	default:
		return writeResponse(w, codeUnknownMethod, []byte("unknown method "+req.method.String()))
	}
}

// leaderOnly runs f if this node leads, else answers "not the leader".
func (n *Node) leaderOnly(f func() error) error {
	if n.raft.State() != raft.Leader {
		return &rpcError{Code: codeNotLeader, Msg: "not the leader"}
	}
	if err := f(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, ErrUnknownNode), errors.Is(err, ErrWouldLoseQuorum):
			return err
		}
		return &rpcError{Code: codeRefused, Msg: err.Error()}
	}
	return nil
}

// onLeader runs fn on the leader: locally when this node leads, otherwise
// by forwarding m with payload. Used by membership changes.
func (n *Node) onLeader(ctx context.Context, m method, payload []byte, local func() error) error {
	for {
		if n.raft.State() == raft.Leader {
			err := local()
			if err == nil || !errors.Is(err, raft.ErrNotLeader) {
				return err
			}
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			_, err := n.rpc.call(string(addr), m, payload, time.Until(deadlineOf(ctx)))
			if err == nil {
				return nil
			}
			if !errors.Is(err, raft.ErrNotLeader) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ErrNoQuorum
		case <-n.stop:
			return ErrShutdown
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AddVoter makes id (at cluster address addr) a voter, from any node.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return n.onLeader(ctx, methodAddVoter, encodeAddVoter(id, addr), func() error {
		return n.addVoterLocal(id, addr)
	})
}

func (n *Node) addVoterLocal(id, addr string) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id && string(s.Address) == addr && s.Suffrage == raft.Voter {
			return nil
		}
	}
	n.log.Info("adding voter", "peer", id, "addr", addr)
	return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 30*time.Second).Error()
}

// statusQuick, as a status request's payload, asks for QuickStatus (no
// state hash): cheap enough to poll.
const statusQuick = "quick"

// ErrUnknownNode: no such node in the Raft configuration.
var ErrUnknownNode = errors.New("cluster: no such node in the cluster")

// handleBlobPut stores a blob a peer pushes: inline in the request, or as
// a stream that goes to the store chunk by chunk as it arrives, hashed on
// the way (the only hash this node computes for it). A refusal still reads
// the whole stream, so the connection stays usable.
func (n *Node) handleBlobPut(ctx context.Context, payload []byte, r *bufio.Reader, w *bufio.Writer) error {
	m, err := decodeBlobPut(payload)
	if err != nil {
		return err
	}
	bw, err := n.store.NewBlobWriter(m.hash, m.size, true)
	if err != nil {
		if m.streamed {
			// Read the stream and drop it, so the connection stays usable.
			bp := chunkBufs.Get().(*[]byte)
			_, _, rerr := readChunks(r, nil, m.size, *bp)
			chunkBufs.Put(bp)
			if rerr != nil {
				return rerr
			}
		}
		return n.blobPutFailed(w, m, err)
	}
	if !m.streamed {
		if _, err := bw.Write(m.inline); err != nil {
			bw.Abort()
			return n.blobPutFailed(w, m, err)
		}
	} else {
		bp := chunkBufs.Get().(*[]byte)
		got, werr, err := readChunks(r, bw, m.size, *bp)
		chunkBufs.Put(bp)
		if err != nil {
			bw.Abort()
			return err
		}
		if werr != nil {
			bw.Abort()
			return n.blobPutFailed(w, m, werr)
		}
		if got != m.size {
			bw.Abort()
			return writeResponse(w, codeRefused, fmt.Appendf(nil, "blob %s: %d bytes sent, %d announced", m.hash, got, m.size))
		}
	}
	if err := bw.Commit(); err != nil {
		return n.blobPutFailed(w, m, err)
	}
	return writeResponse(w, statusOK, nil)
}

func (n *Node) blobPutFailed(w *bufio.Writer, m blobPutRequest, err error) error {
	n.log.Warn("cluster rpc: blob not stored", "hash", m.hash.String(), "size", m.size, "err", err)
	return writeResponse(w, codeOf(err), []byte(err.Error()))
}

// handleBlobGet answers with the blob as a stream, read chunk by chunk
// from the store.
func (n *Node) handleBlobGet(payload []byte, w *bufio.Writer) error {
	h, err := decodeHash(payload)
	if err != nil {
		return err
	}
	rd, err := n.store.OpenBlob(h)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return writeResponse(w, codeNotFound, []byte("blob not here"))
		}
		return writeResponse(w, codeOf(err), []byte(err.Error()))
	}
	defer rd.Close()
	if err := writeResponse(w, statusOK, nil); err != nil {
		return err
	}
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	_, err = copyChunks(w, rd, *bp)
	return err
}
