package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckDataDirPerms(t *testing.T) {
	// t.TempDir may sit on a tmpfs of mode 1777: the data directories
	// are made below it.
	mk := func(t *testing.T, dirMode os.FileMode, files map[string]os.FileMode) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(filepath.Join(dir, "store"), 0o700); err != nil {
			t.Fatal(err)
		}
		for name, mode := range files {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name    string
		dirMode os.FileMode
		files   map[string]os.FileMode
		want    []string // in the error; none = no error
	}{
		{"private", 0o700, map[string]os.FileMode{"store/000001.sst": 0o600, "admin.token": 0o400}, nil},
		{"dir 0755", 0o755, nil, []string{"the directory itself is mode 0755", "chmod -R go-rwx"}},
		{"dir 1777", 0o777 | os.ModeSticky, nil, []string{"mode 1777"}},
		{"dir 0750", 0o750, nil, []string{"mode 0750"}},
		{"file 0644", 0o700, map[string]os.FileMode{"store/000001.sst": 0o644, "store/000002.sst": 0o604, "x": 0o600}, []string{
			"/store/000001.sst is mode 0644 (and 1 more entries)", "chmod -R go-rwx"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := mk(t, tc.dirMode, tc.files)
			err := checkDataDirPerms(dir)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, "data directory "+dir+" ", "`chmod -R go-rwx "+dir+"`") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	t.Run("symlinked_dir", func(t *testing.T) {
		dir := mk(t, 0o700, map[string]os.FileMode{"a": 0o600})
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		if err := checkDataDirPerms(link); err != nil {
			t.Errorf("a private directory behind a symlink refused: %v", err)
		}
	})
}

func TestPrepareNewDataDir(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	root := t.TempDir()

	missing := filepath.Join(root, "missing", "data")
	if err := prepareNewDataDir(missing); err != nil {
		t.Fatal(err)
	}
	// An empty directory (a volume's mount point) is made private.
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(empty, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := prepareNewDataDir(empty); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{missing, empty} {
		if fi, err := os.Stat(d); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != 0o700 {
			t.Errorf("%s: %v, %v; want 0700", d, fi.Mode(), err)
		}
	}
	// Created afterwards by anyone in this process: the owner's alone.
	f := filepath.Join(empty, "later")
	if err := os.WriteFile(f, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Errorf("a file created with 0666 after prepareNewDataDir is %v, want 0600", fi.Mode())
	}
	// A directory that holds something others can read is not changed.
	busy := filepath.Join(root, "busy")
	if err := os.Mkdir(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "notes"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareNewDataDir(busy); err == nil || !strings.Contains(err.Error(), "mode 0755") {
		t.Errorf("a non-empty 0755 directory: %v, want a refusal", err)
	}
}
