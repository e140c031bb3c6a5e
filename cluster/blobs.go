package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
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

// StoreBlob stores data as a blob on a majority of voters and returns its
// hash (StoreBlobFrom). If the local store or peers refused it for lack of
// disk space, the error wraps storage.ErrInsufficientStorage too.
func (n *Node) StoreBlob(ctx context.Context, data []byte) (storage.Hash, error) {
	h := storage.Hash(sha256.Sum256(data))
	return h, n.StoreBlobFrom(ctx, storage.BlobSource{Hash: h, Size: int64(len(data)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}})
}

// StoreBlobFrom writes a blob locally (the caller vouches for its hash:
// this node does not hash it again) and streams it to the other voters in
// parallel, each copy read from the source chunk by chunk. It returns once
// copies on a majority of voters (counting this node) are durable; the
// remaining pushes go on in the background for up to blobPushTimeout. If a
// majority cannot be reached before ctx ends it returns an error wrapping
// ErrNoQuorum and the caller must not commit metadata that references the
// blob.
func (n *Node) StoreBlobFrom(ctx context.Context, src storage.BlobSource) error {
	voters, err := n.voters()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	need := len(voters)/2 + 1
	results := make(chan error, len(voters)+1)
	// Every copy's reader is opened here, before StoreBlobFrom can return:
	// the source may be released once it has (an SMTP session's spool),
	// while copies to slow peers go on.
	open := func() (io.ReadCloser, error) { return src.Open() }
	copies := 0
	startLocal := func(counted bool) {
		rd, err := open()
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err == nil {
				err = n.storeLocal(src, rd)
			} else {
				err = fmt.Errorf("local copy: %w", err)
			}
			if counted {
				results <- err
			}
		}()
	}
	if blobOne {
		// The chaos_blob_one negative control: this node's copy only.
		rd, err := open()
		if err == nil {
			err = n.storeLocal(src, rd)
		}
		return err
	}
	if _, ok := voters[n.cfg.NodeName]; ok {
		copies++
		startLocal(true)
	} else {
		// Not a voter (just joined, or removed): a local copy counts for
		// nothing, but FETCH here is faster with one.
		startLocal(false)
	}
	for id, addr := range voters {
		if id == n.cfg.NodeName {
			continue
		}
		copies++
		rd, err := open()
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err == nil {
				err = n.pushBlob(addr, src, rd, blobPushTimeout)
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", id, err)
			}
			results <- err
		}()
	}
	acks := 0
	full := 0 // copies refused for lack of disk space
	var errs []error
	// A node cut off from the others (no leader for NoLeaderTimeout) will
	// not reach a majority: say so instead of waiting for copies to peers
	// whose connections neither answer nor fail.
	var cutOff <-chan time.Time
	since, changed := n.leaders.leaderless()
	armCutOff := func() {
		cutOff = nil
		if !since.IsZero() {
			cutOff = time.After(n.cfg.NoLeaderTimeout - time.Since(since))
		}
	}
	armCutOff()
	for done := 0; done < copies; {
		select {
		case <-changed:
			since, changed = n.leaders.leaderless()
			armCutOff()
			continue
		case <-cutOff:
			return blobQuorumError(acks, len(voters), need, full, fmt.Errorf("no leader for %s", n.cfg.NoLeaderTimeout))
		case err := <-results:
			done++
			if err == nil {
				acks++
				if acks >= need {
					return nil
				}
			} else {
				errs = append(errs, err)
				if peerOutOfSpace(err) {
					full++
				}
			}
		case <-ctx.Done():
			return blobQuorumError(acks, len(voters), need, full, ctx.Err())
		case <-n.stop:
			return ErrShutdown
		}
	}
	return blobQuorumError(acks, len(voters), need, full, errors.Join(errs...))
}

// blobQuorumError says why a blob reached too few voters. When copies were
// refused for lack of disk space it wraps storage.ErrInsufficientStorage
// too, so that the client is told "insufficient storage" (SMTP 452 4.3.1).
func blobQuorumError(acks, voters, need, full int, last error) error {
	if last == nil {
		last = errors.New("no copy was written")
	}
	if full > 0 {
		return fmt.Errorf("%w: blob on %d of %d voters, %d needed, %d short of disk space: %w (%w)",
			ErrNoQuorum, acks, voters, need, full, storage.ErrInsufficientStorage, last)
	}
	return fmt.Errorf("%w: blob on %d of %d voters, %d needed: %w", ErrNoQuorum, acks, voters, need, last)
}

// storeLocal writes the source, read from rd, into the local store.
func (n *Node) storeLocal(src storage.BlobSource, rd io.ReadCloser) error {
	defer rd.Close()
	w, err := n.store.NewBlobWriter(src.Hash, src.Size, false)
	if err != nil {
		return fmt.Errorf("local copy: %w", err)
	}
	got, err := io.Copy(w, rd)
	if err != nil {
		w.Abort()
		return fmt.Errorf("local copy: %w", err)
	}
	if got != src.Size {
		w.Abort()
		return fmt.Errorf("local copy: source gave %d bytes, not %d", got, src.Size)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("local copy: %w", err)
	}
	return nil
}

// pushBlob sends the source to the peer at addr: inline when it fits in one
// chunk, else as a stream.
func (n *Node) pushBlob(addr string, src storage.BlobSource, rd io.ReadCloser, timeout time.Duration) error {
	defer rd.Close()
	req := blobPutRequest{hash: src.Hash, size: src.Size, streamed: src.Size > storage.BlobChunkSize}
	if !req.streamed {
		req.inline = make([]byte, src.Size)
		if _, err := io.ReadFull(rd, req.inline); err != nil {
			return fmt.Errorf("read blob source: %w", err)
		}
	}
	return n.rpc.exchange(addr, timeout,
		func(w *bufio.Writer) error {
			if err := writeRequest(w, methodBlobPut, timeout, req.encode()); err != nil || !req.streamed {
				return err
			}
			bp := chunkBufs.Get().(*[]byte)
			defer chunkBufs.Put(bp)
			sent, err := copyChunks(w, rd, *bp)
			if err == nil && sent != src.Size {
				// Ended early: the peer refuses the short stream.
				n.log.Error("blob push: source shorter than its size", "hash", src.Hash.String(), "size", src.Size, "sent", sent)
			}
			return err
		},
		func(r *bufio.Reader) error {
			_, err := readResponse(r)
			return err
		})
}

// FetchBlob returns a blob from the local store, or fetches it from a peer
// that holds it (and keeps a local copy if it can).
func (n *Node) FetchBlob(ctx context.Context, h storage.Hash) ([]byte, error) {
	data, err := n.store.Blob(h)
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	var buf bytes.Buffer
	if err := n.fetchBlob(ctx, h, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// OpenBlob returns a reader of blob h, chunk by chunk: from the local
// store, else after copying it from a peer into the local store. When the
// local store refuses the copy (below its free-space floor) the blob is
// read from the peer into memory instead. The caller must close it.
func (n *Node) OpenBlob(ctx context.Context, h storage.Hash) (io.ReadCloser, error) {
	r, err := n.store.OpenBlob(h)
	if err == nil || !errors.Is(err, storage.ErrNotFound) {
		return r, err
	}
	var buf bytes.Buffer
	if err := n.fetchBlob(ctx, h, &buf); err != nil {
		return nil, err
	}
	if r, err := n.store.OpenBlob(h); err == nil {
		return r, nil
	}
	return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
}

// fetchBlob copies blob h from a peer that holds it into the local store,
// and into also (if not nil) whether or not the local copy could be
// written.
func (n *Node) fetchBlob(ctx context.Context, h storage.Hash, also *bytes.Buffer) error {
	voters, err := n.voters()
	if err != nil {
		return err
	}
	var lastErr error = storage.ErrNotFound
	for id, addr := range voters {
		if id == n.cfg.NodeName {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err := n.fetchFrom(addr, h, time.Until(deadlineOf(ctx)), also)
		if err == nil {
			return nil
		}
		if errors.Is(err, storage.ErrCorrupt) {
			n.log.Error("blob fetch: corrupt copy", "peer", id, "hash", h.String())
		}
		lastErr = fmt.Errorf("%s: %w", id, err)
	}
	return fmt.Errorf("cluster: fetch blob %s: %w", h, lastErr)
}

// fetchFrom asks one peer for blob h and writes what it sends to the local
// store (verified against h) and to also. When the local store refuses
// the copy (below its free-space floor) the bytes still go to also.
func (n *Node) fetchFrom(addr string, h storage.Hash, timeout time.Duration, also *bytes.Buffer) error {
	var storeErr error
	bw, err := n.store.NewBlobWriter(h, 0, true)
	if err != nil {
		if also == nil {
			return err
		}
		storeErr, bw = err, nil
	}
	abort := func() {
		if bw != nil {
			bw.Abort()
		}
	}
	if also != nil {
		also.Reset()
	}
	err = n.rpc.exchange(addr, timeout,
		func(w *bufio.Writer) error { return writeRequest(w, methodBlobGet, timeout, h[:]) },
		func(r *bufio.Reader) error {
			if _, err := readResponse(r); err != nil {
				return err
			}
			bp := chunkBufs.Get().(*[]byte)
			defer chunkBufs.Put(bp)
			var dst io.Writer
			switch {
			case also == nil:
				dst = bw
			case bw == nil:
				dst = also
			default:
				dst = io.MultiWriter(also, &errOnce{w: bw, err: &storeErr})
			}
			_, werr, err := readChunks(r, dst, -1, *bp)
			if werr != nil && storeErr == nil {
				storeErr = werr
			}
			return err
		})
	if err != nil {
		abort()
		return err
	}
	if storeErr != nil {
		abort()
		if also == nil {
			return storeErr
		}
		if sha256.Sum256(also.Bytes()) != h {
			return fmt.Errorf("%w: peer sent a blob that does not match %s", storage.ErrCorrupt, h)
		}
		n.log.Debug("blob fetch: no local copy kept", "hash", h.String(), "err", storeErr)
		return nil
	}
	return bw.Commit()
}

// errOnce passes writes to w until the first error, which it records in
// *err, and then drops them, so that a failed local copy does not stop a
// read that can still succeed.
type errOnce struct {
	w   io.Writer
	err *error
}

func (e *errOnce) Write(p []byte) (int, error) {
	if *e.err != nil {
		return len(p), nil
	}
	if _, err := e.w.Write(p); err != nil {
		*e.err = err
	}
	return len(p), nil
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
		if blobOne {
			continue // the chaos_blob_one negative control: never repair
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
		err := n.fetchBlob(ctx, h, nil)
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
