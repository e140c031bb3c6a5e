package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// newTestNodeCert goes through the joiner's path: make a key, send the
// public key as PEM, get a certificate back.
func newTestNodeCert(t testing.TB, ca *CA, name string) tls.Certificate {
	t.Helper()
	key, keyPEM, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.IssueNodeCert(name, pub, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestPKICARoundTrip(t *testing.T) {
	ca := newTestCA(t, "prod")
	if !ca.Cert.IsCA || !strings.Contains(ca.Cert.Subject.CommonName, "prod") {
		t.Fatalf("CA cert: IsCA=%v CN=%q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	if _, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("CA key type %T", ca.Cert.PublicKey)
	}
	if d := time.Until(ca.Cert.NotAfter); d < 9*365*24*time.Hour {
		t.Fatalf("CA valid for only %v", d)
	}
	if ca.Cert.SerialNumber.Sign() <= 0 {
		t.Fatal("CA serial not positive")
	}

	loaded, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != ca.Fingerprint() {
		t.Fatal("fingerprint changed across load")
	}
	if !bytes.Equal(loaded.CertPEM, ca.CertPEM) || !bytes.Equal(loaded.KeyPEM, ca.KeyPEM) {
		t.Fatal("PEM changed across load")
	}
	// A loaded CA can issue, and what it issues verifies against the original.
	key, _, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := loaded.IssueNodeCert("n1", key.Public(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	verifyLeaf(t, ca.Cert, certPEM, x509.ExtKeyUsageServerAuth)

	// An SEC 1 key is accepted too.
	ecKey, err := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(ca.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecKey})); err != nil {
		t.Fatalf("SEC 1 key: %v", err)
	}

	other := newTestCA(t, "prod")
	if other.Fingerprint() == ca.Fingerprint() {
		t.Fatal("two CAs with the same name have the same fingerprint")
	}
	if _, err := LoadCA(ca.CertPEM, other.KeyPEM); err == nil {
		t.Fatal("LoadCA accepted a key that does not match")
	}
	if _, err := LoadCA(certPEM, ca.KeyPEM); err == nil {
		t.Fatal("LoadCA accepted a node certificate")
	}
	if _, err := LoadCA([]byte("junk"), ca.KeyPEM); err == nil {
		t.Fatal("LoadCA accepted junk")
	}
	if _, err := LoadCA(ca.CertPEM, []byte("junk")); err == nil {
		t.Fatal("LoadCA accepted a junk key")
	}
	if _, err := NewCA("  "); err == nil {
		t.Fatal("NewCA accepted an empty name")
	}
}

func verifyLeaf(t *testing.T, ca *x509.Certificate, certPEM []byte, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	c, err := parseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("verify %v: %v", usage, err)
	}
	return c
}

func TestPKIIssueNodeCert(t *testing.T) {
	ca := newTestCA(t, "test")
	key, _, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::7"), net.ParseIP("192.0.2.7")}
	certPEM, err := ca.IssueNodeCert("node-1", key.Public(), []string{"mx1.example.test", "NODE-1", ""}, ips)
	if err != nil {
		t.Fatal(err)
	}
	verifyLeaf(t, ca.Cert, certPEM, x509.ExtKeyUsageServerAuth)
	c := verifyLeaf(t, ca.Cert, certPEM, x509.ExtKeyUsageClientAuth)
	if got := NodeNameFromCert(c); got != "node-1" {
		t.Fatalf("NodeNameFromCert = %q", got)
	}
	if want := []string{"node-1", "mx1.example.test"}; !slices.Equal(c.DNSNames, want) {
		t.Fatalf("DNSNames = %q, want %q", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 2 {
		t.Fatalf("IPAddresses = %v", c.IPAddresses)
	}
	if c.IsCA {
		t.Fatal("node certificate is a CA")
	}
	if d := time.Until(c.NotAfter); d < DefaultCertLifetime-time.Minute || d > DefaultCertLifetime || c.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("node certificate NotAfter %v", c.NotAfter)
	}
	if !c.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatal("certificate is for another key")
	}
	if NodeNameFromCert(nil) != "" {
		t.Fatal("NodeNameFromCert(nil)")
	}

	for _, name := range []string{"", "has space", "-lead", "trail.", "ünï", strings.Repeat("a", 254), "a\x00b"} {
		if _, err := ca.IssueNodeCert(name, key.Public(), nil, nil); err == nil {
			t.Errorf("IssueNodeCert(%q) accepted", name)
		}
	}
	if _, err := ca.IssueNodeCert("n", nil, nil, nil); err == nil {
		t.Error("IssueNodeCert accepted a nil key")
	}
	if _, err := ca.IssueNodeCert("n", ca.Key.Public(), nil, nil); err == nil {
		t.Error("IssueNodeCert certified the CA's own key")
	}
	weak, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueNodeCert("n", weak.Public(), nil, nil); err == nil {
		t.Error("IssueNodeCert accepted a P-224 key")
	}
	verifier := &CA{Cert: ca.Cert, CertPEM: ca.CertPEM}
	if _, err := verifier.IssueNodeCert("n", key.Public(), nil, nil); err == nil {
		t.Error("a CA without a key issued a certificate")
	}
}

func TestPKIPublicKeyPEM(t *testing.T) {
	key, keyPEM, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(pubPEM, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Fatalf("public key PEM: %s", pubPEM)
	}
	pub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatal("public key changed across PEM")
	}
	if !bytes.Contains(keyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("private key PEM type: %s", keyPEM[:30])
	}
	// A private key is not a public key: a confused joiner must not be able
	// to send its private key and have it accepted.
	if _, err := ParsePublicKeyPEM(keyPEM); err == nil {
		t.Fatal("ParsePublicKeyPEM accepted a private key")
	}
	for _, in := range []string{"", "junk", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := ParsePublicKeyPEM([]byte(in)); err == nil {
			t.Errorf("ParsePublicKeyPEM(%q) accepted", in)
		}
	}
	if _, err := MarshalPublicKeyPEM(nil); err == nil {
		t.Fatal("MarshalPublicKeyPEM(nil) accepted")
	}
}

type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake runs one TLS handshake over loopback TCP. The server writes one
// byte after its handshake and the client reads it, so a client
// certificate the server refuses (which in TLS 1.3 the client learns only
// after its own handshake finished) shows up as clientErr too.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, serverConf)
		if err := tc.Handshake(); err != nil {
			res.serverErr = err
			return
		}
		res.server = tc.ConnectionState()
		if _, err := tc.Write([]byte{1}); err != nil {
			res.serverErr = err
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, clientConf)
	if err := tc.Handshake(); err != nil {
		res.clientErr = err
	} else {
		res.client = tc.ConnectionState()
		var b [1]byte
		if _, err := tc.Read(b[:]); err != nil {
			res.clientErr = err
		}
	}
	c.Close()
	<-done
	return res
}

func TestPKIMutualTLS(t *testing.T) {
	ca := newTestCA(t, "test")
	n1 := newTestNodeCert(t, ca, "node1")
	n2 := newTestNodeCert(t, ca, "node2")

	// The certificates name no address: dialing 127.0.0.1 works anyway.
	res := handshake(t, ServerTLSConfig(ca.Cert, n1), ClientTLSConfig(ca.Cert, n2))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("server: %v; client: %v", res.serverErr, res.clientErr)
	}
	if len(res.server.PeerCertificates) == 0 || NodeNameFromCert(res.server.PeerCertificates[0]) != "node2" {
		t.Fatalf("server sees peer %v", res.server.PeerCertificates)
	}
	if len(res.server.VerifiedChains) == 0 {
		t.Fatal("server did not verify the client certificate")
	}
	if NodeNameFromCert(res.client.PeerCertificates[0]) != "node1" {
		t.Fatalf("client sees peer %q", NodeNameFromCert(res.client.PeerCertificates[0]))
	}
	// The server presents [leaf, CA].
	if n := len(res.client.PeerCertificates); n != 2 || !res.client.PeerCertificates[1].Equal(ca.Cert) {
		t.Fatalf("server chain has %d certificates", n)
	}
	if res.client.Version != tls.VersionTLS13 || res.server.Version != tls.VersionTLS13 {
		t.Fatalf("versions %x %x", res.client.Version, res.server.Version)
	}

	// Nothing older than TLS 1.3.
	old := ClientTLSConfig(ca.Cert, n2)
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if res := handshake(t, ServerTLSConfig(ca.Cert, n1), old); res.serverErr == nil || res.clientErr == nil {
		t.Fatal("TLS 1.2 client accepted")
	}
	// ServerTLSConfig does not modify the caller's certificate.
	if len(n1.Certificate) != 1 {
		t.Fatalf("caller's chain grew to %d", len(n1.Certificate))
	}
}

func TestPKIClientWithoutCert(t *testing.T) {
	ca := newTestCA(t, "test")
	n1 := newTestNodeCert(t, ca, "node1")
	for name, conf := range map[string]*tls.Config{
		"pinned":       PinnedTLSConfig(ca.Fingerprint()),
		"empty client": ClientTLSConfig(ca.Cert, tls.Certificate{}),
	} {
		res := handshake(t, ServerTLSConfig(ca.Cert, n1), conf)
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("%s: server: %v; client: %v", name, res.serverErr, res.clientErr)
		}
		if n := len(res.server.PeerCertificates); n != 0 {
			t.Fatalf("%s: server sees %d peer certificates", name, n)
		}
	}
}

func TestPKIForeignCA(t *testing.T) {
	ca := newTestCA(t, "test")
	n1 := newTestNodeCert(t, ca, "node1")
	n2 := newTestNodeCert(t, ca, "node2")
	// Same cluster name, so the subject names match: only the keys differ.
	for _, otherName := range []string{"test", "other"} {
		other := newTestCA(t, otherName)
		foreign := newTestNodeCert(t, other, "node2")

		res := handshake(t, ServerTLSConfig(ca.Cert, n1), ClientTLSConfig(ca.Cert, foreign))
		if res.serverErr == nil || res.clientErr == nil {
			t.Fatalf("%s: server accepted a client certificate from another CA (server %v, client %v)", otherName, res.serverErr, res.clientErr)
		}

		res = handshake(t, ServerTLSConfig(other.Cert, foreign), ClientTLSConfig(ca.Cert, n2))
		if res.clientErr == nil {
			t.Fatalf("%s: client accepted a server from another CA", otherName)
		}
		if !strings.Contains(res.clientErr.Error(), "not signed by the cluster CA") {
			t.Fatalf("%s: client error %v", otherName, res.clientErr)
		}
	}
}

func TestPKIPinned(t *testing.T) {
	ca := newTestCA(t, "test")
	n1 := newTestNodeCert(t, ca, "node1")

	res := handshake(t, ServerTLSConfig(ca.Cert, n1), PinnedTLSConfig(ca.Fingerprint()))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("server: %v; client: %v", res.serverErr, res.clientErr)
	}
	if NodeNameFromCert(res.client.PeerCertificates[0]) != "node1" {
		t.Fatal("wrong peer")
	}

	other := newTestCA(t, "test")
	res = handshake(t, ServerTLSConfig(ca.Cert, n1), PinnedTLSConfig(other.Fingerprint()))
	if !errors.Is(res.clientErr, ErrCAMismatch) {
		t.Fatalf("client error %v, want ErrCAMismatch", res.clientErr)
	}
	if got, want := res.clientErr.Error(), "cluster CA fingerprint mismatch: this is not the cluster the token was made for"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}

	// A server that sends only its leaf cannot prove which CA it has.
	leafOnly := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{n1}}
	if res := handshake(t, leafOnly, PinnedTLSConfig(ca.Fingerprint())); !errors.Is(res.clientErr, ErrCAMismatch) {
		t.Fatalf("leaf only: client error %v", res.clientErr)
	}

	// An impostor that sends the real CA certificate (it is public) with a
	// leaf from its own CA is refused.
	evil := newTestNodeCert(t, other, "node1")
	evil.Certificate = append(evil.Certificate, ca.Cert.Raw)
	impostor := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{evil}}
	res = handshake(t, impostor, PinnedTLSConfig(ca.Fingerprint()))
	if res.clientErr == nil {
		t.Fatal("pinned client accepted a leaf not signed by the pinned CA")
	}
	// Nor can it pass off the real CA's certificate as its leaf.
	fake := tls.Certificate{Certificate: [][]byte{ca.Cert.Raw, ca.Cert.Raw}, PrivateKey: other.Key}
	res = handshake(t, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{fake}}, PinnedTLSConfig(ca.Fingerprint()))
	if res.clientErr == nil {
		t.Fatal("pinned client accepted a server without the CA's key")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	ca := newTestCA(t, "test")
	tok, err := NewToken(ca.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.ID) != 16 || tok.CAFingerprint != ca.Fingerprint() || tok.Secret == [32]byte{} {
		t.Fatalf("token %+v", tok.LogValue())
	}
	tok2, err := NewToken(ca.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if tok2.ID == tok.ID || tok2.Secret == tok.Secret {
		t.Fatal("two tokens share ID or secret")
	}

	withAddrs := tok
	withAddrs.Addrs = []string{"192.0.2.1:7947", "[2001:db8::1]:7947", "node3.example.test:7947"}
	for _, want := range []Token{tok, withAddrs} {
		s := want.String()
		if !strings.HasPrefix(s, "rmj1.") {
			t.Fatalf("token %q lacks prefix", s)
		}
		if strings.ContainsAny(s[5:], "+/=. \n") {
			t.Fatalf("token %q is not unpadded base64url", s)
		}
		for _, in := range []string{s, "  " + s + "\n", "\t" + s + "\r\n"} {
			got, err := ParseToken(in)
			if err != nil {
				t.Fatalf("ParseToken(%q): %v", in, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip: got %+v, want %+v", got, want)
			}
		}
	}
}

func TestTokenErrors(t *testing.T) {
	tok, err := NewToken([32]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	tok.Addrs = []string{"192.0.2.1:7947"}
	s := tok.String()

	if got, want := ErrNotToken.Error(), "join token: not a Raftmail join token (expected rmj1.…)"; got != want {
		t.Fatalf("ErrNotToken = %q, want %q", got, want)
	}
	for _, in := range []string{"", "   ", "hello", "rmj1", "RMJ1." + s[5:], s[5:], "rmj2." + s[5:], "rmj10.abc", "Bearer " + s} {
		_, err := ParseToken(in)
		if !errors.Is(err, ErrNotToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrNotToken", in, err)
		}
	}
	if _, err := ParseToken("rmj2." + s[5:]); err == nil || !strings.Contains(err.Error(), `"rmj2"`) {
		t.Errorf("newer version: %v", err)
	}

	damaged := func(in string) {
		t.Helper()
		_, err := ParseToken(in)
		if !errors.Is(err, ErrTokenDamaged) {
			t.Fatalf("ParseToken(%q) = %v, want ErrTokenDamaged", in, err)
		}
		if !strings.HasPrefix(err.Error(), "join token: damaged (") || !strings.HasSuffix(err.Error(), ")") {
			t.Fatalf("error text %q", err)
		}
	}
	for i := len("rmj1."); i < len(s); i++ {
		damaged(s[:i]) // cut short while copying
	}
	for i := len("rmj1."); i < len(s); i++ {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		damaged(string(b)) // one character mistyped
	}
	damaged(s + "A")
	damaged(s + "AA")
	damaged(s[:20] + " " + s[20:])
	damaged("rmj1.!!!!")
	damaged("rmj1." + strings.Repeat("A", 5000))

	// A token with a malformed ID encodes to something ParseToken refuses,
	// rather than to a different valid token.
	bad := tok
	bad.ID = "not-hex"
	damaged(bad.String())
	zero := tok
	zero.Secret = [32]byte{}
	damaged(zero.String())
	many := tok
	many.Addrs = make([]string, maxTokenAddrs+1)
	for i := range many.Addrs {
		many.Addrs[i] = "a:1"
	}
	damaged(many.String())
	for _, addr := range []string{"", "has space:1", "tab\t:1", strings.Repeat("a", 256)} {
		b := tok
		b.Addrs = []string{addr}
		damaged(b.String())
	}
}

func TestTokenSecret(t *testing.T) {
	tok, err := NewToken([32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	h := HashSecret(tok.Secret)
	if len(h) != 32 || bytes.Equal(h, tok.Secret[:]) {
		t.Fatalf("hash %x", h)
	}
	if !SecretMatches(h, tok.Secret) {
		t.Fatal("secret does not match its own hash")
	}
	wrong := tok.Secret
	wrong[31] ^= 1
	if SecretMatches(h, wrong) {
		t.Fatal("wrong secret matches")
	}
	if SecretMatches(h[:16], tok.Secret) || SecretMatches(nil, tok.Secret) {
		t.Fatal("truncated hash matches")
	}
}

func TestTokenNotLogged(t *testing.T) {
	tok, err := NewToken([32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("made token", "token", tok)
	if strings.Contains(buf.String(), tok.String()[5:20]) {
		t.Fatalf("token secret in log: %s", buf.String())
	}
	if !strings.Contains(buf.String(), tok.ID) {
		t.Fatalf("token ID not in log: %s", buf.String())
	}
}

func FuzzParseToken(f *testing.F) {
	tok := Token{ID: "0123456789abcdef", Secret: [32]byte{1}, CAFingerprint: [32]byte{2}}
	f.Add(tok.String())
	tok.Addrs = []string{"192.0.2.1:7947", "[::1]:10147"}
	f.Add(tok.String())
	f.Add("")
	f.Add("rmj1.")
	f.Add("rmj1.AQgBI0VniavN7w")
	f.Add("rmj2.abc")
	f.Add("  rmj1.AAAA  ")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrNotToken) && !errors.Is(err, ErrTokenDamaged) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		again, err := ParseToken(got.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", got.String(), err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("re-parse: %+v != %+v", again, got)
		}
	})
}

func TestSealCAKey(t *testing.T) {
	ca := newTestCA(t, "seal")
	kek, err := NewKEK()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := SealCAKey(kek, ca)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, ca.KeyPEM) || bytes.Contains(sealed, []byte("PRIVATE KEY")) {
		t.Fatal("sealed CA key holds the key in the clear")
	}
	got, err := OpenCAKey(kek, ca.CertPEM, sealed)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !bytes.Equal(got.KeyPEM, ca.KeyPEM) {
		t.Fatal("opened key differs")
	}
	other, _ := NewKEK()
	if _, err := OpenCAKey(other, ca.CertPEM, sealed); !errors.Is(err, ErrKEKMismatch) {
		t.Errorf("wrong KEK: %v", err)
	}
	// The sealed key is bound to its CA certificate.
	if _, err := OpenCAKey(kek, newTestCA(t, "other").CertPEM, sealed); !errors.Is(err, ErrKEKMismatch) {
		t.Errorf("other CA: %v", err)
	}
	if _, err := OpenCAKey(kek[:16], ca.CertPEM, sealed); err == nil {
		t.Error("short KEK accepted")
	}
	if _, err := OpenCAKey(kek, ca.CertPEM, sealed[:len(sealed)-1]); err == nil {
		t.Error("cut sealed key opened")
	}
}

func FuzzOpenCAKey(f *testing.F) {
	ca := newTestCA(f, "fuzz")
	kek := bytes.Repeat([]byte{7}, KEKSize)
	sealed, err := SealCAKey(kek, ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add([]byte(sealedCAKeyMagic))
	f.Add([]byte{})
	f.Add(append([]byte(sealedCAKeyMagic), make([]byte, 28)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := OpenCAKey(kek, ca.CertPEM, b)
		if err != nil {
			return
		}
		if !bytes.Equal(got.KeyPEM, ca.KeyPEM) {
			t.Fatalf("opened %q to another key", b)
		}
	})
}

func TestRenewAt(t *testing.T) {
	now := time.Now()
	leaf := &x509.Certificate{NotBefore: now.Add(-clockSkew), NotAfter: now.Add(30 * time.Hour)}
	if got := renewAt(leaf, 30*time.Hour); got.Sub(now) != 20*time.Hour {
		t.Errorf("renewAt of a 30h certificate: %v after issue, want 20h", got.Sub(now))
	}
	// A certificate longer-lived than the lifetime (from an older version)
	// is renewed at two thirds of the lifetime.
	leaf.NotAfter = now.Add(5 * 365 * 24 * time.Hour)
	if got := renewAt(leaf, 30*time.Hour); got.Sub(now) != 20*time.Hour {
		t.Errorf("renewAt of a 5-year certificate: %v after issue, want 20h", got.Sub(now))
	}
}
