package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestCommandRoundTrip(t *testing.T) {
	bh, _ := blobOf("x")
	c, err := NewCommand(CmdDeliver, Deliver{Blob: bh, Size: 1, Targets: []DeliverTarget{{Account: "a@example.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == ([16]byte{}) || time.Since(c.Time) > time.Minute {
		t.Fatalf("NewCommand: %+v", c)
	}
	got, err := DecodeCommand(c.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != c.Type || got.ID != c.ID || !got.Time.Equal(c.Time) || !bytes.Equal(got.Payload, c.Payload) {
		t.Fatalf("round trip %+v != %+v", got, c)
	}
	var d Deliver
	if err := json.Unmarshal(got.Payload, &d); err != nil || d.Blob != bh {
		t.Fatalf("payload %+v %v", d, err)
	}
	zero := Command{Type: CmdNoop}
	if got, err := DecodeCommand(zero.Encode()); err != nil || !got.Time.IsZero() || got.Payload != nil {
		t.Fatalf("zero command: %+v %v", got, err)
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version":     {2, 1},
		"truncated":   {1, 1, 0, 0},
		"no time yet": append([]byte{1, 1}, make([]byte, 16)...),
	} {
		if _, err := DecodeCommand(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	bh, _ := blobOf("x")
	for _, p := range []struct {
		t CommandType
		v any
	}{
		{CmdNoop, nil},
		{CmdAccountAdd, AccountAdd{Address: "a@example.test", PasswordHash: "h"}},
		{CmdDeliver, Deliver{Blob: bh, Size: 9, Targets: []DeliverTarget{{Account: "a@example.test", Flags: []string{`\Seen`}}}}},
		{CmdFlags, Flags{MailboxID: 17, UIDs: []uint32{1, 2}, Op: FlagsAdd, Flags: []string{"x"}}},
	} {
		c, err := NewCommand(p.t, p.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := DecodeCommand(c.Encode())
		if err != nil || again.Type != c.Type || again.ID != c.ID || !again.Time.Equal(c.Time) || !bytes.Equal(again.Payload, c.Payload) {
			t.Fatalf("re-encode changed %+v -> %+v (%v)", c, again, err)
		}
	})
}

func TestResult(t *testing.T) {
	r := errResult(errors.Join(errors.New("mailbox \"x\""), ErrNotFound))
	if !errors.Is(r.Err(), ErrNotFound) || errors.Is(r.Err(), ErrExists) {
		t.Fatalf("Err %v", r.Err())
	}
	raw, _ := json.Marshal(r)
	var back Result
	if err := json.Unmarshal(raw, &back); err != nil || !errors.Is(back.Err(), ErrNotFound) {
		t.Fatalf("json round trip %s: %v", raw, back.Err())
	}
	if (Result{}).Err() != nil {
		t.Fatal("empty result is an error")
	}
	if err := (Result{}).Decode(&struct{}{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Decode without data: %v", err)
	}
	if err := (Result{Code: "from_the_future"}).Err(); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown code: %v", err)
	}
}

func TestHash(t *testing.T) {
	h, _ := blobOf("abc")
	p, err := ParseHash(h.String())
	if err != nil || p != h {
		t.Fatalf("ParseHash: %v %v", p, err)
	}
	raw, _ := json.Marshal(struct{ H Hash }{h})
	if string(raw) != `{"H":"`+h.String()+`"}` {
		t.Fatalf("json %s", raw)
	}
	var back struct{ H Hash }
	if err := json.Unmarshal(raw, &back); err != nil || back.H != h {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "zz", h.String()[:62] + "zz"} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseHash(%q) = %v", bad, err)
		}
	}
}

func TestPasswords(t *testing.T) {
	hash, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(hash, "s3cret") || CheckPassword(hash, "S3cret") || CheckPassword("garbage", "s3cret") {
		t.Fatal("CheckPassword")
	}
	app, _ := HashPassword("app-pw")
	h := newHarness(t)
	h.ok(CmdDomainAdd, DomainAdd{Name: "example.test"})
	h.ok(CmdAccountAdd, AccountAdd{Address: "a@example.test", PasswordHash: hash})
	h.ok(CmdAppPasswordAdd, AppPasswordAdd{Address: "a@example.test", Name: "phone", PasswordHash: app})
	for _, c := range []struct {
		addr, pw string
		ok       bool
	}{
		{"a@example.test", "s3cret", true},
		{"A@Example.Test", "app-pw", true},
		{"a@example.test", "wrong", false},
		{"nobody@example.test", "s3cret", false},
	} {
		a, err := h.s.Authenticate(c.addr, c.pw)
		if c.ok && (err != nil || a.Address != "a@example.test") {
			t.Errorf("Authenticate(%q) = %v", c.addr, err)
		}
		if !c.ok && !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrAuthFailed", c.addr, c.pw, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if err := (Config{Dir: "x", DedupWindow: -1}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open without Dir")
	}
}
