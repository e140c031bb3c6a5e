package main

import (
	"errors"
	"strconv"

	"github.com/raftmail/raftmail/bench"
)

// byteSize is a size in bytes written as "50MiB", "1GiB" or a plain
// number of bytes, in flags and TOML: the syntax of bench.ParseSize, the
// same as `raftmail bench --size` (K, M, G, T are powers of 1024).
type byteSize int64

var errByteSize = errors.New("want a size such as 50MiB, 1GiB or 1048576")

func parseByteSize(s string) (byteSize, error) {
	n, err := bench.ParseSize(s)
	if err != nil {
		return 0, errByteSize
	}
	return byteSize(n), nil
}

// binaryUnits are the suffixes MarshalText writes, largest first.
var binaryUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

func (b byteSize) MarshalText() ([]byte, error) {
	for _, u := range binaryUnits {
		if b >= byteSize(u.mult) && int64(b)%u.mult == 0 {
			return []byte(strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(b), 10)), nil
}

func (b *byteSize) UnmarshalText(t []byte) error {
	v, err := parseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}
