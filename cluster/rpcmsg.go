package cluster

import (
	"encoding/binary"
	"fmt"

	"github.com/raftmail/raftmail/storage"
)

// Typed payloads of the internal RPC methods (rpc.go). Each encoder has a
// decoder that refuses anything it did not write (FuzzRPCMessages). Status
// and join, which are rare and carry nested structures, are JSON.

// apply: the request payload is the encoded storage.Command, unchanged.
// The response is the log index and the state machine's result, whose Data
// passes through untouched:
//
//	u64 index | uvarint len | code | uvarint len | msg | data
func encodeApplyResult(idx uint64, res storage.Result) []byte {
	b := make([]byte, 0, 8+2+len(res.Code)+2+len(res.Msg)+len(res.Data))
	b = binary.BigEndian.AppendUint64(b, idx)
	b = appendString(b, res.Code)
	b = appendString(b, res.Msg)
	return append(b, res.Data...)
}

func decodeApplyResult(b []byte) (uint64, storage.Result, error) {
	var res storage.Result
	if len(b) < 8 {
		return 0, res, fmt.Errorf("%w: apply result of %d bytes", errFrame, len(b))
	}
	idx := binary.BigEndian.Uint64(b)
	b = b[8:]
	var err error
	if res.Code, b, err = readString(b); err != nil {
		return 0, res, err
	}
	if res.Msg, b, err = readString(b); err != nil {
		return 0, res, err
	}
	if len(b) > 0 {
		res.Data = b
	}
	return idx, res, nil
}

// blob.put: the blob's hash and size, whether its bytes follow as a stream
// (larger than one chunk) or inline in the payload:
//
//	hash [32] | u64 size | u8 streamed | inline bytes
type blobPutRequest struct {
	hash     storage.Hash
	size     int64
	streamed bool
	inline   []byte
}

func (m blobPutRequest) encode() []byte {
	b := make([]byte, 0, 32+8+1+len(m.inline))
	b = append(b, m.hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.size))
	if m.streamed {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, m.inline...)
}

func decodeBlobPut(b []byte) (blobPutRequest, error) {
	var m blobPutRequest
	if len(b) < 41 {
		return m, fmt.Errorf("%w: blob.put of %d bytes", errFrame, len(b))
	}
	copy(m.hash[:], b)
	size := binary.BigEndian.Uint64(b[32:])
	if size > 1<<40 {
		return m, fmt.Errorf("%w: blob.put size %d", errFrame, size)
	}
	m.size = int64(size)
	switch b[40] {
	case 0:
		m.inline = b[41:]
		if int64(len(m.inline)) != m.size {
			return m, fmt.Errorf("%w: blob.put of %d inline bytes, size %d", errFrame, len(m.inline), m.size)
		}
	case 1:
		m.streamed = true
		if len(b) != 41 {
			return m, fmt.Errorf("%w: streamed blob.put with inline bytes", errFrame)
		}
	default:
		return m, fmt.Errorf("%w: blob.put flag %d", errFrame, b[40])
	}
	return m, nil
}

// blob.get: the hash; a successful response has an empty payload and the
// blob follows as a stream.
func decodeHash(b []byte) (storage.Hash, error) {
	var h storage.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%w: hash of %d bytes", errFrame, len(b))
	}
	copy(h[:], b)
	return h, nil
}

// addvoter: uvarint len | id | addr. remove: id.
func encodeAddVoter(id, addr string) []byte {
	return append(appendString(nil, id), addr...)
}

func decodeAddVoter(b []byte) (id, addr string, err error) {
	id, b, err = readString(b)
	if err != nil {
		return "", "", err
	}
	return id, string(b), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) || k != len(binary.AppendUvarint(nil, n)) {
		return "", nil, fmt.Errorf("%w: bad string length", errFrame)
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}
