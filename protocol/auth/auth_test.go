package auth

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/raftmail/raftmail/storage"
)

func newStore(t *testing.T) *storage.Store {
	t.Helper()
	st, err := storage.Open(storage.Config{Dir: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	apply := func(i uint64, typ storage.CommandType, payload any) {
		cmd, err := storage.NewCommand(typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		if res := st.Apply(storage.Entry{Index: i, Data: cmd.Encode()}); res.Err() != nil {
			t.Fatal(res.Err())
		}
	}
	hash, err := storage.HashPassword("right-password")
	if err != nil {
		t.Fatal(err)
	}
	apply(1, storage.CmdDomainAdd, struct{ Name string }{"example.test"})
	apply(2, storage.CmdAccountAdd, struct {
		Address, PasswordHash string
		QuotaBytes            int64
	}{"u@example.test", hash, 0})
	return st
}

func TestLoginServer(t *testing.T) {
	var gotU, gotP string
	s := NewLoginServer(func(u, p string) error { gotU, gotP = u, p; return nil })
	ch, done, err := s.Next(nil)
	if string(ch) != "Username:" || done || err != nil {
		t.Fatalf("step 0: %q %v %v", ch, done, err)
	}
	ch, done, err = s.Next([]byte("user"))
	if string(ch) != "Password:" || done || err != nil {
		t.Fatalf("step 1: %q %v %v", ch, done, err)
	}
	if _, done, err = s.Next([]byte("pass")); !done || err != nil || gotU != "user" || gotP != "pass" {
		t.Fatalf("step 2: %v %v %q %q", done, err, gotU, gotP)
	}
	// Initial response carries the user name.
	s = NewLoginServer(func(u, p string) error { gotU = u; return errors.New("no") })
	if ch, _, _ := s.Next([]byte("ir-user")); string(ch) != "Password:" {
		t.Fatalf("initial response: %q", ch)
	}
	if _, done, err := s.Next([]byte("x")); !done || err == nil || gotU != "ir-user" {
		t.Fatalf("initial response auth: %v %v %q", done, err, gotU)
	}
	s = NewLoginServer(func(u, p string) error { return nil })
	if _, done, err := s.Next([]byte{}); !done || !errors.Is(err, ErrLoginSyntax) {
		t.Fatalf("empty user: %v %v", done, err)
	}
}

func FuzzLoginServer(f *testing.F) {
	f.Add([]byte("user"), []byte("pass"), true)
	f.Add([]byte{}, []byte{0xff}, false)
	f.Fuzz(func(t *testing.T, a, b []byte, initial bool) {
		s := NewLoginServer(func(u, p string) error { return nil })
		first := a
		if !initial {
			first = nil
		}
		for _, r := range [][]byte{first, a, b, b} {
			if _, done, _ := s.Next(r); done {
				return
			}
		}
	})
}
