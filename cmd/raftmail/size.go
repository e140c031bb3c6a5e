package main

import (
	"errors"
	"strconv"
	"strings"
)

// byteSize is a size in bytes written as "50MiB", "512MB", "1GiB" or a
// plain number of bytes, in flags and TOML.
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

func parseByteSize(s string) (byteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a size such as 50MiB, 512MB or 1048576")
	}
	if n > 0 && mult > (1<<62)/n {
		return 0, errors.New("size too large")
	}
	return byteSize(n * mult), nil
}

func (b byteSize) MarshalText() ([]byte, error) {
	for _, u := range sizeUnits[:4] {
		if b >= byteSize(u.mult) && int64(b)%u.mult == 0 && (u.mult == 1<<40 || int64(b)%(u.mult<<10) != 0) {
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
