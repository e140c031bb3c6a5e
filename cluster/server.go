package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// rpcIdleTimeout closes an RPC connection nobody has used for a while.
const rpcIdleTimeout = 5 * time.Minute

// serveRPC answers requests on one mutual-TLS connection until it closes.
// A malformed frame closes the connection and is logged.
func (n *Node) serveRPC(c net.Conn) {
	defer c.Close()
	peer := c.RemoteAddr().String()
	r := bufio.NewReaderSize(c, rpcBufSize)
	w := bufio.NewWriterSize(c, rpcBufSize)
	for {
		_ = c.SetReadDeadline(time.Now().Add(rpcIdleTimeout))
		h, body, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				n.log.Warn("cluster rpc: closing connection", "peer", peer, "err", err)
			}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		resp, rbody := n.dispatch(h, body)
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		if err := writeFrame(w, resp, rbody); err != nil {
			n.log.Warn("cluster rpc: write failed", "peer", peer, "err", err)
			return
		}
	}
}

func (n *Node) dispatch(h *rpcHeader, body []byte) (*rpcHeader, []byte) {
	switch h.Method {
	case methodApply:
		return n.handleApply(h), nil
	case methodBlobPut:
		return n.handleBlobPut(h, body), nil
	case methodBlobGet:
		return n.handleBlobGet(h)
	case methodStatus:
		st := n.LocalStatus()
		return &rpcHeader{Status: &st}, nil
	case methodAddVoter:
		return n.handleAddVoter(h), nil
	case methodRemove:
		return n.handleRemove(h), nil
	case methodTransfer:
		if n.raft.State() != raft.Leader {
			return &rpcHeader{Code: errCodeNotLead, Error: "not the leader"}, nil
		}
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return &rpcHeader{Code: errCodeInternal, Error: err.Error()}, nil
		}
		return &rpcHeader{}, nil
	default:
		return &rpcHeader{Code: errCodeRefused, Error: "unknown method " + h.Method}, nil
	}
}

// onLeader runs fn on the leader: locally when this node leads, otherwise
// by forwarding req. Used by membership changes.
func (n *Node) onLeader(ctx context.Context, req *rpcHeader, local func() error) error {
	for {
		if n.raft.State() == raft.Leader {
			err := local()
			if err == nil || !errors.Is(err, raft.ErrNotLeader) {
				return err
			}
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			_, _, err := n.rpc.call(string(addr), req, nil, time.Until(deadlineOf(ctx)))
			var re *rpcError
			if err == nil {
				return nil
			}
			if !errors.As(err, &re) || re.Code != errCodeNotLead {
				if errors.As(err, &re) && re.Code == errCodeUnknownNode {
					return ErrUnknownNode
				}
				if errors.As(err, &re) {
					return errors.New(re.Msg)
				}
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
	return n.onLeader(ctx, &rpcHeader{Method: methodAddVoter, ID: id, Addr: addr}, func() error {
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

// RemoveServer removes a node from the Raft configuration, from any node.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return n.onLeader(ctx, &rpcHeader{Method: methodRemove, ID: id}, func() error {
		return n.removeLocal(id)
	})
}

// ErrUnknownNode: no such node in the Raft configuration.
var ErrUnknownNode = errors.New("cluster: no such node in the cluster")

func (n *Node) removeLocal(id string) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id {
			found = true
		}
	}
	if !found {
		return ErrUnknownNode
	}
	n.log.Info("removing server", "peer", id)
	return n.raft.RemoveServer(raft.ServerID(id), 0, 30*time.Second).Error()
}

func (n *Node) handleAddVoter(h *rpcHeader) *rpcHeader {
	if n.raft.State() != raft.Leader {
		return &rpcHeader{Code: errCodeNotLead, Error: "not the leader"}
	}
	if err := n.addVoterLocal(h.ID, h.Addr); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return &rpcHeader{Code: errCodeNotLead, Error: err.Error()}
		}
		return &rpcHeader{Code: errCodeInternal, Error: err.Error()}
	}
	return &rpcHeader{}
}

func (n *Node) handleRemove(h *rpcHeader) *rpcHeader {
	if n.raft.State() != raft.Leader {
		return &rpcHeader{Code: errCodeNotLead, Error: "not the leader"}
	}
	if err := n.removeLocal(h.ID); err != nil {
		if errors.Is(err, ErrUnknownNode) {
			return &rpcHeader{Code: errCodeUnknownNode, Error: err.Error()}
		}
		if errors.Is(err, raft.ErrNotLeader) {
			return &rpcHeader{Code: errCodeNotLead, Error: err.Error()}
		}
		return &rpcHeader{Code: errCodeRefused, Error: err.Error()}
	}
	return &rpcHeader{}
}

func (n *Node) handleBlobPut(h *rpcHeader, body []byte) *rpcHeader {
	hash, err := storage.ParseHash(h.Hash)
	if err != nil {
		return &rpcHeader{Code: errCodeRefused, Error: err.Error()}
	}
	if err := n.store.PutBlob(hash, body); err != nil {
		return blobPutError(err)
	}
	return &rpcHeader{}
}

func (n *Node) handleBlobGet(h *rpcHeader) (*rpcHeader, []byte) {
	hash, err := storage.ParseHash(h.Hash)
	if err != nil {
		return &rpcHeader{Code: errCodeRefused, Error: err.Error()}, nil
	}
	data, err := n.store.Blob(hash)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return &rpcHeader{Code: errCodeNotFound, Error: "blob not here"}, nil
		}
		return &rpcHeader{Code: errCodeInternal, Error: err.Error()}, nil
	}
	return &rpcHeader{}, data
}
