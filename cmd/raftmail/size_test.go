package main

import "testing"

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "50MiB": 50 << 20, "50 MiB": 50 << 20, "512mb": 512 << 20, "1G": 1 << 30, "3KiB": 3 << 10, "7B": 7} {
		got, err := parseByteSize(in)
		if err != nil || int64(got) != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
		txt, _ := got.MarshalText()
		back, err := parseByteSize(string(txt))
		if err != nil || back != got {
			t.Errorf("%q: %q reads back as %d, %v", in, txt, back, err)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "12QB", "99999999999TiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzByteSize(f *testing.F) {
	for _, s := range []string{"50MiB", "1048576", "1 GB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseByteSize(s)
		if err != nil {
			return
		}
		txt, _ := v.MarshalText()
		if back, err := parseByteSize(string(txt)); err != nil || back != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, v, txt, back, err)
		}
	})
}
