package main

// End-to-end tests of what a node trusts and refuses: its configuration
// file, its data directory's permissions, the Authentication-Results of a
// freshly joined node, and the From header on submission.

import (
	"os"
	"path/filepath"
	"testing"
)

// TestE2EConfigTypo: `serve --config` with a misspelt key exits non-zero
// naming the key, the file and the nearest key, and starts nothing. On the
// old code the key was ignored and the node served on the defaults.
func TestE2EConfigTypo(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "node")
	conf := filepath.Join(root, "config.toml")
	if err := os.WriteFile(conf, []byte("smtp_adr = \"127.0.0.1:2525\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "", "serve", "--data-dir", dir, "--config", conf)
	assertFailure(t, res, "unknown key smtp_adr in "+conf+": did you mean smtp_addr?")
	assertNotInitialized(t, dir)
}
