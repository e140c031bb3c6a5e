package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftmail/raftmail/storage"
)

// blobPushTimeout bounds a push to one peer after the majority is reached,
// so stragglers still get their copy in the background.
const blobPushTimeout = 30 * time.Second

// voters returns the current voters (ID -> cluster address).
func (n *Node) voters() (map[string]string, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out[string(s.ID)] = string(s.Address)
		}
	}
	return out, nil
}

// StoreBlob writes data locally with fsync and pushes it to the other
// voters in parallel. It returns once copies on a majority of voters
// (counting this node) are durable; the remaining pushes go on in the
// background. If a majority cannot be reached before ctx ends it returns an
// error wrapping ErrNoQuorum and the caller must not commit metadata that
// references the blob; if the local store or peers refused it for lack of
// disk space, the error wraps storage.ErrInsufficientStorage too.
func (n *Node) StoreBlob(ctx context.Context, data []byte) (storage.Hash, error) {
	h := storage.Hash(sha256.Sum256(data))
	if err := n.store.PutBlob(h, data); err != nil {
		return h, fmt.Errorf("cluster: store blob locally: %w", err)
	}
	voters, err := n.voters()
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrNoQuorum, err)
	}
	need := len(voters)/2 + 1
	acks := 0
	if _, ok := voters[n.cfg.NodeName]; ok {
		acks = 1
	}
	if acks >= need {
		return h, nil
	}
	results := make(chan error, len(voters))
	peers := 0
	for id, addr := range voters {
		if id == n.cfg.NodeName {
			continue
		}
		peers++
		n.wg.Add(1)
		go func(addr string) {
			defer n.wg.Done()
			_, _, err := n.rpc.call(addr, &rpcHeader{Method: methodBlobPut, Hash: h.String()}, data, blobPushTimeout)
			results <- err
		}(addr)
	}
	var lastErr error
	full := 0 // peers that refused for lack of disk space
	for done := 0; done < peers; done++ {
		select {
		case err := <-results:
			if err == nil {
				acks++
				if acks >= need {
					return h, nil
				}
			} else {
				lastErr = err
				if peerOutOfSpace(err) {
					full++
				}
			}
		case <-ctx.Done():
			return h, blobQuorumError(acks, len(voters), need, full, ctx.Err())
		case <-n.stop:
			return h, ErrShutdown
		}
	}
	return h, blobQuorumError(acks, len(voters), need, full, lastErr)
}

// blobQuorumError says why a blob reached too few voters.
func blobQuorumError(acks, voters, need, full int, last error) error {
	if full > 0 {
		return fmt.Errorf("%w: blob on %d of %d voters, %d needed, %d short of disk space: %w (last error: %v)",
			ErrNoQuorum, acks, voters, need, full, storage.ErrInsufficientStorage, last)
	}
	return fmt.Errorf("%w: blob on %d of %d voters, %d needed (last error: %v)", ErrNoQuorum, acks, voters, need, last)
}

// FetchBlob returns a blob from the local store, or fetches it from a peer
// that holds it (and keeps a local copy).
func (n *Node) FetchBlob(ctx context.Context, h storage.Hash) ([]byte, error) {
	data, err := n.store.Blob(h)
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	voters, err := n.voters()
	if err != nil {
		return nil, err
	}
	var lastErr error = storage.ErrNotFound
	for id, addr := range voters {
		if id == n.cfg.NodeName {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_, body, err := n.rpc.call(addr, &rpcHeader{Method: methodBlobGet, Hash: h.String()}, nil, time.Until(deadlineOf(ctx)))
		if err != nil {
			lastErr = err
			continue
		}
		if sha256.Sum256(body) != h {
			lastErr = fmt.Errorf("peer %s sent a blob that does not match %s", id, h)
			n.log.Error("blob fetch: corrupt copy", "peer", id, "hash", h.String())
			continue
		}
		if err := n.store.PutBlob(h, body); err != nil {
			if !errors.Is(err, storage.ErrInsufficientStorage) {
				return nil, err
			}
			// Below the free-space floor: serve it without keeping a
			// copy; the repair loop tries again later.
			n.log.Debug("blob fetch: not kept, short of disk space", "hash", h.String(), "err", err)
		}
		return body, nil
	}
	return nil, fmt.Errorf("cluster: fetch blob %s: %w", h, lastErr)
}

// repairLoop pulls blobs that metadata references but this node lacks.
func (n *Node) repairLoop() {
	defer n.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.repairKick:
		}
		n.repairOnce()
	}
}

func (n *Node) repairOnce() {
	missing, total, err := n.store.MissingBlobs(64)
	if err != nil {
		n.log.Error("blob repair: list missing blobs", "err", err)
		return
	}
	if total == 0 {
		return
	}
	fixed := 0
	for _, h := range missing {
		select {
		case <-n.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := n.FetchBlob(ctx, h)
		cancel()
		if err != nil {
			n.log.Debug("blob repair: not yet", "hash", h.String(), "err", err)
			continue
		}
		fixed++
	}
	if fixed > 0 {
		n.log.Info("blob repair", "fetched", fixed, "missing", total-fixed)
		if fixed == len(missing) && total > fixed {
			kick(n.repairKick)
		}
	}
}
