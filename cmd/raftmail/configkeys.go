package main

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// decodeConfigFile reads the TOML file at path into cfg. A key nodeConfig
// does not have is an error naming it and the nearest known key: a typo
// (smtp_adr) would otherwise leave the setting at its default (a listener
// on 0.0.0.0:25) without a word.
func decodeConfigFile(path string, cfg *nodeConfig) error {
	md, err := toml.DecodeFile(path, cfg)
	if err != nil {
		return fmt.Errorf("read config file %s: %w", path, err)
	}
	var errs []error
	seen := map[string]bool{}
	for _, k := range md.Undecoded() {
		// A table's keys are undecoded with it: name the table only.
		if len(k) > 1 && seen[k[0]] {
			continue
		}
		seen[k[0]] = true
		errs = append(errs, unknownKeyError(k.String(), path))
	}
	return errors.Join(errs...)
}

// unknownKeyError says that key is not a setting, and which one is
// nearest.
func unknownKeyError(key, path string) error {
	if near := nearestKey(key, configKeys()); near != "" {
		return fmt.Errorf("unknown key %s in %s: did you mean %s?", key, path, near)
	}
	return fmt.Errorf("unknown key %s in %s: the keys are the flags of `raftmail serve --help` with _ for - (smtp_addr for --smtp-addr)", key, path)
}

// configKeys are the TOML keys of nodeConfig, from its field tags.
func configKeys() []string {
	var keys []string
	t := reflect.TypeFor[nodeConfig]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// nearestKey is the key of known closest to key (edit distance, after
// folding case and - to _), or "" when none is close enough to be what
// was meant: at most 2 edits or a third of key's length, whichever is
// more, and fewer than half of it.
func nearestKey(key string, known []string) string {
	norm := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	best, bestD := "", 0
	for _, k := range known {
		d := editDistance(norm, k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(norm)/3) || 2*bestD >= len(norm) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = slices.Min([]int{prev[j] + 1, cur[j-1] + 1, prev[j-1] + cost})
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
