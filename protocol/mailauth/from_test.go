package mailauth

import (
	"errors"
	"net/mail"
	"slices"
	"strings"
	"testing"
)

var fromSeeds = []string{
	"From: alice@example.test\n\n",
	"From: Alice <alice@example.test>\nTo: x@y\n\n",
	"from: \"Alice, A.\" <Alice@Example.Test> (work)\n\n",
	"From: =?UTF-8?B?w4Fsw61jZQ==?= <alice@example.test>\n\n",
	"From: =?x-unknown?Q?Al=E9?= <alice@example.test>\n\n",
	"From: Jöran <jöran@example.test>\n\n",
	"From: alice@example.test, Bob <bob@example.test>\nSender: alice@example.test\n\n",
	"From: Team: alice@example.test, Bob <bob@example.test>;\n\n",
	"From: Alice\n <alice@example.test>\n\n",
	"From: undisclosed-recipients:;\n\n",
	"To: x@y\n\nFrom: in@body.test\n",
	"From: a@b\nFrom: c@d\n\n",
	"From: Alice <alice@example.test\n\n",
	"From: alice\n\n",
	"From:\n\n",
	"From: <>\n\n",
	"From: alice@[127.0.0.1]\n\n",
	"From: \"john doe\"@example.test\n\n",
}

func TestFromAddresses(t *testing.T) {
	for _, tc := range []struct {
		hdr  string
		want []string
		err  error
	}{
		{fromSeeds[0], []string{"alice@example.test"}, nil},
		{fromSeeds[1], []string{"alice@example.test"}, nil},
		{fromSeeds[2], []string{"Alice@Example.Test"}, nil},
		{fromSeeds[3], []string{"alice@example.test"}, nil},
		{fromSeeds[4], []string{"alice@example.test"}, nil},
		{fromSeeds[5], []string{"jöran@example.test"}, nil},
		{fromSeeds[6], []string{"alice@example.test", "bob@example.test"}, nil},
		{fromSeeds[7], []string{"alice@example.test", "bob@example.test"}, nil},
		{fromSeeds[8], []string{"alice@example.test"}, nil},
		{fromSeeds[9], nil, ErrNoFrom},
		{fromSeeds[10], nil, ErrNoFrom}, // a From line in the body is not a field
		{fromSeeds[11], nil, ErrManyFrom},
		{fromSeeds[12], nil, ErrBadFrom},
		{fromSeeds[13], nil, ErrBadFrom},
		{fromSeeds[14], nil, ErrBadFrom},
		{fromSeeds[15], nil, ErrBadFrom},
		{fromSeeds[16], []string{"alice@[127.0.0.1]"}, nil},
		{fromSeeds[17], []string{"john doe@example.test"}, nil}, // unquoted, as go-smtp hands envelope addresses over
	} {
		for _, hdr := range [][]byte{[]byte(tc.hdr), crlf(tc.hdr)} {
			got, err := FromAddresses(hdr)
			if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
				t.Errorf("FromAddresses(%q) = %q, %v; want %q, %v", hdr, got, err, tc.want, tc.err)
			}
		}
	}
}

// FuzzFromAddresses: either an error or at least one address, each with
// an @ and no line break; an address written back alone in a From field
// (quoted where it needs it) reads back as itself.
func FuzzFromAddresses(f *testing.F) {
	for _, s := range append(slices.Clone(fromSeeds), fuzzSeeds...) {
		f.Add([]byte(s))
		f.Add(crlf(s))
	}
	f.Fuzz(func(t *testing.T, hdr []byte) {
		addrs, err := FromAddresses(hdr)
		if err != nil {
			if len(addrs) != 0 {
				t.Fatalf("addresses %q with error %v", addrs, err)
			}
			if !errors.Is(err, ErrNoFrom) && !errors.Is(err, ErrManyFrom) && !errors.Is(err, ErrBadFrom) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(addrs) == 0 {
			t.Fatal("no addresses and no error")
		}
		for _, a := range addrs {
			if !strings.Contains(a, "@") || strings.ContainsAny(a, "\r\n") {
				t.Fatalf("address %q", a)
			}
			again, err := FromAddresses([]byte("From: " + (&mail.Address{Address: a}).String() + "\r\n\r\n"))
			if err != nil || len(again) != 1 || again[0] != a {
				t.Fatalf("%q does not read back alone: %q, %v", a, again, err)
			}
		}
	})
}
