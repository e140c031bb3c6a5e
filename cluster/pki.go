package cluster

// Cluster PKI: one ECDSA P-256 certificate authority per cluster, created by
// `raftmail init`, signs a certificate for every node. The certificates
// authenticate both ends of the cluster port (mutual TLS, TLS 1.3 only).
//
// Host names play no part in verification: nodes move between addresses,
// are reached by IP, or through NAT, so a client verifies the server's chain
// against the cluster CA and nothing else. The node's identity is the
// certificate's common name (NodeNameFromCert).
//
// A joining node has no certificate yet. Its join token carries the SHA-256
// fingerprint of the CA certificate, and PinnedTLSConfig accepts a server
// only if it presents that CA and a leaf it signed. The joiner then sends a
// public key (never a private key) and receives a certificate for it.

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
)

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertLifetime is how long a node certificate is valid unless
	// Config.CertLifetime says otherwise. Nodes renew theirs at two thirds
	// of it (certs.go), so a certificate that leaks is good for weeks, not
	// years, even if nobody revokes it.
	DefaultCertLifetime = 30 * 24 * time.Hour
	// clockSkew backdates NotBefore so a node whose clock is slightly
	// behind the CA's still accepts a freshly issued certificate.
	clockSkew = time.Hour

	maxNodeNameLen = 253
)

// ErrCAMismatch is returned by a PinnedTLSConfig handshake when the server
// does not present the CA certificate the join token names.
var ErrCAMismatch = errors.New("cluster CA fingerprint mismatch: this is not the cluster the token was made for")

// CA is the cluster certificate authority. Key and KeyPEM may be nil on a
// CA used only to verify; IssueNodeCert needs them.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	KeyPEM  []byte // PKCS#8 "PRIVATE KEY"
}

// NewCA creates a self-signed ECDSA P-256 CA valid for 10 years whose
// subject names the cluster.
func NewCA(clusterName string) (*CA, error) {
	clusterName = strings.TrimSpace(clusterName)
	if clusterName == "" {
		return nil, errors.New("cluster: new CA: empty cluster name")
	}
	key, keyPEM, err := NewNodeKey()
	if err != nil {
		return nil, fmt.Errorf("cluster: new CA: %w", err)
	}
	serial, err := randomCertSerial()
	if err != nil {
		return nil, fmt.Errorf("cluster: new CA: %w", err)
	}
	now := wallclock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Raftmail"},
			CommonName:   "Raftmail cluster CA " + clusterName,
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // node certificates only; no intermediates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("cluster: new CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster: new CA: parse certificate: %w", err)
	}
	return &CA{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:     key,
		KeyPEM:  keyPEM,
	}, nil
}

// LoadCA parses a CA certificate and its private key (PKCS#8, or SEC 1
// "EC PRIVATE KEY") and checks that they belong together.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster: load CA: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, errors.New("cluster: load CA: certificate is not a CA")
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster: load CA: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("cluster: load CA: private key does not match the certificate")
	}
	return &CA{
		Cert:    cert,
		CertPEM: bytes.Clone(certPEM),
		Key:     key,
		KeyPEM:  bytes.Clone(keyPEM),
	}, nil
}

// Fingerprint is the SHA-256 of the CA certificate's DER encoding. Join
// tokens carry it.
func (ca *CA) Fingerprint() [32]byte {
	return sha256.Sum256(ca.Cert.Raw)
}

// NewNodeKey creates an ECDSA P-256 key and returns it with its PKCS#8 PEM.
func NewNodeKey() (key crypto.Signer, keyPEM []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes a public key as PKIX "PUBLIC KEY" PEM. A
// joiner sends this, never its private key.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if err := checkNodePublicKey(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cluster: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PKIX "PUBLIC KEY" PEM block and accepts only
// key types fit for a node certificate.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("cluster: parse public key: no PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("cluster: parse public key: PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cluster: parse public key: %w", err)
	}
	if err := checkNodePublicKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// checkNodePublicKey accepts ECDSA on the NIST curves TLS 1.3 uses, Ed25519,
// and RSA of at least 2048 bits.
func checkNodePublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return errors.New("cluster: public key: unsupported ECDSA curve")
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("cluster: public key: bad Ed25519 key length")
		}
		return nil
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < 2048 {
			return errors.New("cluster: public key: RSA key shorter than 2048 bits")
		}
		return nil
	case nil:
		return errors.New("cluster: public key: missing")
	default:
		return fmt.Errorf("cluster: public key: unsupported type %T", pub)
	}
}

// IssueNodeCert signs a certificate for a node: CN and a DNS SAN are the
// node name, plus the given DNS names and IPs; usable for both TLS server
// and client authentication; valid for DefaultCertLifetime (never beyond
// the CA). It returns the leaf certificate only, as PEM.
func (ca *CA) IssueNodeCert(nodeName string, pub crypto.PublicKey, dnsNames []string, ips []net.IP) (certPEM []byte, err error) {
	return ca.IssueNodeCertFor(DefaultCertLifetime, nodeName, pub, dnsNames, ips)
}

// IssueNodeCertFor is IssueNodeCert for a certificate valid for lifetime
// from now (NotBefore is set clockSkew earlier).
func (ca *CA) IssueNodeCertFor(lifetime time.Duration, nodeName string, pub crypto.PublicKey, dnsNames []string, ips []net.IP) (certPEM []byte, err error) {
	if lifetime <= 0 {
		return nil, errors.New("cluster: issue node certificate: lifetime must be positive")
	}
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("cluster: issue node certificate: CA has no private key")
	}
	if err := CheckNodeName(nodeName); err != nil {
		return nil, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	if err := checkNodePublicKey(pub); err != nil {
		return nil, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	if k, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); ok && k.Equal(ca.Cert.PublicKey) {
		return nil, errors.New("cluster: issue node certificate: refusing to certify the CA's own key")
	}
	names := []string{nodeName}
	for _, n := range dnsNames {
		n = strings.TrimSpace(n)
		if n == "" || containsNameFold(names, n) {
			continue
		}
		if err := CheckNodeName(n); err != nil {
			return nil, fmt.Errorf("cluster: issue node certificate: DNS name: %w", err)
		}
		names = append(names, n)
	}
	var addrs []net.IP
	for _, ip := range ips {
		if ip == nil || ip.IsUnspecified() || containsIPAddr(addrs, ip) {
			continue
		}
		addrs = append(addrs, ip)
	}
	serial, err := randomCertSerial()
	if err != nil {
		return nil, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	now := wallclock.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Raftmail"},
			CommonName:   nodeName,
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              names,
		IPAddresses:           addrs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster: issue node certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// CheckNodeName returns an error unless name can be a node name: 1 to 253
// characters of ASCII letters, digits, '-', '_' and '.', not starting or
// ending with '.' or '-'. Node names go into certificates as DNS names.
func CheckNodeName(name string) error {
	if name == "" {
		return errors.New("empty node name")
	}
	if len(name) > maxNodeNameLen {
		return fmt.Errorf("node name longer than %d characters", maxNodeNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("node name %q: character %q not allowed (use letters, digits, '-', '_', '.')", name, c)
		}
	}
	if first, last := name[0], name[len(name)-1]; first == '.' || first == '-' || last == '.' || last == '-' {
		return fmt.Errorf("node name %q must not start or end with '.' or '-'", name)
	}
	return nil
}

// NodeNameFromCert returns the node name a certificate was issued for.
func NodeNameFromCert(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Subject.CommonName
}

// ServerTLSConfig is the cluster port's listener configuration. Client
// certificates are verified against ca when presented but not required:
// the join RPC is the one thing served without one, so every other handler
// must check len(ConnectionState().PeerCertificates) > 0. The server sends
// the chain [leaf, CA] so that a joiner can check the CA's fingerprint.
func ServerTLSConfig(ca *x509.Certificate, node tls.Certificate) *tls.Config {
	c := certWithCA(node, ca)
	return serverTLS(ca, tlsHooks{cert: func() *tls.Certificate { return &c }})
}

// ClientTLSConfig is for dialing another node's cluster port. The server is
// verified against the cluster CA, whatever address was dialed (host names
// are not checked), and must hold a server-auth certificate. The node's
// certificate is always sent, so a node with a certificate from the wrong
// CA fails the handshake instead of being taken for a joiner.
func ClientTLSConfig(ca *x509.Certificate, node tls.Certificate) *tls.Config {
	return clientTLS(ca, tlsHooks{cert: func() *tls.Certificate { return &node }})
}

// tlsHooks are what a running node plugs into its TLS configurations: its
// current certificate (renewed without a restart) and a check of the
// peer's certificate against the cluster's revocation list, made on every
// handshake, at both ends.
type tlsHooks struct {
	cert  func() *tls.Certificate
	check func(leaf *x509.Certificate) error // nil: none
}

func (h tlsHooks) checkPeer(chain []*x509.Certificate) error {
	if h.check == nil || len(chain) == 0 {
		return nil
	}
	return h.check(chain[0])
}

func serverTLS(ca *x509.Certificate, h tlsHooks) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return h.cert(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		// Go has verified a client chain against the CA by now; a joiner
		// sends none.
		VerifyConnection: func(cs tls.ConnectionState) error {
			return h.checkPeer(cs.PeerCertificates)
		},
	}
}

func clientTLS(ca *x509.Certificate, h tlsHooks) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Go's own verification checks the host name, which we do not
		// want; VerifyConnection below does the chain check instead.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return h.cert(), nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPeerChain(cs.PeerCertificates, pool, x509.ExtKeyUsageServerAuth); err != nil {
				return err
			}
			return h.checkPeer(cs.PeerCertificates)
		},
	}
}

// CertSerial is a certificate's serial number as the cluster records it:
// lowercase hex.
func CertSerial(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}

// The CA's private key is kept in the replicated store only sealed with
// AES-256-GCM under a key-encryption key (KEK) that never enters the Raft
// log: it is made by `init`, kept in each node's data directory and handed
// to a joining node in the join answer. A copy of raft.db, of a snapshot
// or of the store alone does not give the CA key away.
//
//	sealed = "rmck1" | nonce [12] | AES-256-GCM(KEK, nonce, PKCS#8 PEM, AAD)
//	AAD    = "raftmail cluster CA key" | SHA-256 of the CA certificate
const (
	sealedCAKeyMagic = "rmck1"
	sealedCAKeyLabel = "raftmail cluster CA key"
	// KEKSize is the size of the CA key-encryption key.
	KEKSize = 32
)

// ErrKEKMismatch: the sealed CA key does not open with this KEK (another
// cluster's, or damaged).
var ErrKEKMismatch = errors.New("cluster: the CA key does not open with this node's key-encryption key")

// NewKEK makes a random CA key-encryption key.
func NewKEK() ([]byte, error) {
	k := make([]byte, KEKSize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cluster: new key-encryption key: %w", err)
	}
	return k, nil
}

func caKeyAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("cluster: key-encryption key is %d bytes, want %d", len(kek), KEKSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("cluster: key-encryption key: %w", err)
	}
	return cipher.NewGCM(block)
}

func sealedCAKeyAAD(caCert *x509.Certificate) []byte {
	fp := sha256.Sum256(caCert.Raw)
	return append([]byte(sealedCAKeyLabel), fp[:]...)
}

// SealCAKey encrypts the CA's private key under kek for the replicated
// store.
func SealCAKey(kek []byte, ca *CA) ([]byte, error) {
	if ca == nil || ca.Cert == nil || len(ca.KeyPEM) == 0 {
		return nil, errors.New("cluster: seal CA key: CA has no private key")
	}
	aead, err := caKeyAEAD(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(sealedCAKeyMagic)+aead.NonceSize(), len(sealedCAKeyMagic)+aead.NonceSize()+len(ca.KeyPEM)+aead.Overhead())
	copy(out, sealedCAKeyMagic)
	if _, err := rand.Read(out[len(sealedCAKeyMagic):]); err != nil {
		return nil, fmt.Errorf("cluster: seal CA key: %w", err)
	}
	nonce := out[len(sealedCAKeyMagic):]
	return aead.Seal(out, nonce, ca.KeyPEM, sealedCAKeyAAD(ca.Cert)), nil
}

// OpenCAKey decrypts a key sealed by SealCAKey and loads the CA with it.
func OpenCAKey(kek, caCertPEM, sealed []byte) (*CA, error) {
	cert, err := parseCertificatePEM(caCertPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster: open CA key: %w", err)
	}
	aead, err := caKeyAEAD(kek)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(sealed, []byte(sealedCAKeyMagic)) || len(sealed) < len(sealedCAKeyMagic)+aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("cluster: open CA key: not a sealed CA key")
	}
	nonce := sealed[len(sealedCAKeyMagic) : len(sealedCAKeyMagic)+aead.NonceSize()]
	keyPEM, err := aead.Open(nil, nonce, sealed[len(sealedCAKeyMagic)+aead.NonceSize():], sealedCAKeyAAD(cert))
	if err != nil {
		return nil, ErrKEKMismatch
	}
	return LoadCA(caCertPEM, keyPEM)
}

// PinnedTLSConfig is for a joiner that has no certificate yet. It accepts
// the server only if the presented chain contains a CA certificate whose
// SHA-256 is caFingerprint and the leaf verifies against that CA; otherwise
// the handshake fails with ErrCAMismatch (or a verification error).
func PinnedTLSConfig(caFingerprint [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // see VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPinnedChain(cs.PeerCertificates, caFingerprint)
			return err
		},
	}
}

// verifyPinned finds the pinned CA in chain and verifies the leaf with it.
func verifyPinnedChain(chain []*x509.Certificate, fp [32]byte) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("cluster: server presented no certificate")
	}
	for _, c := range chain[1:] {
		if sha256.Sum256(c.Raw) != fp {
			continue
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, ErrCAMismatch
		}
		pool := x509.NewCertPool()
		pool.AddCert(c)
		if err := verifyPeerChain(chain, pool, x509.ExtKeyUsageServerAuth); err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, ErrCAMismatch
}

// verifyChain verifies chain[0] against roots, using the rest of chain as
// intermediates, for the given extended key usage. No host name check.
func verifyPeerChain(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errors.New("cluster: peer presented no certificate")
	}
	if chain[0].IsCA {
		return errors.New("cluster: peer presented a CA certificate as its own")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
		CurrentTime:   wallclock.Now(),
	})
	if err != nil {
		return fmt.Errorf("cluster: peer certificate %q not signed by the cluster CA: %w", NodeNameFromCert(chain[0]), err)
	}
	return nil
}

// withCA returns node with the CA's DER appended to its chain, unless the
// chain already ends with it.
func certWithCA(node tls.Certificate, ca *x509.Certificate) tls.Certificate {
	if n := len(node.Certificate); n == 0 || bytes.Equal(node.Certificate[n-1], ca.Raw) {
		return node
	}
	chain := make([][]byte, 0, len(node.Certificate)+1)
	chain = append(chain, node.Certificate...)
	node.Certificate = append(chain, ca.Raw)
	return node
}

func parseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return c, nil
	}
}

func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse private key: %T is not a signer", key)
		}
		return s, nil
	}
}

func randomCertSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}

func containsNameFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func containsIPAddr(list []net.IP, ip net.IP) bool {
	for _, x := range list {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

// Join tokens.
//
// A token is "rmj1." followed by the unpadded base64url of:
//
//	byte     format (1)
//	byte     ID length (8), then the ID's 8 bytes
//	[32]byte secret
//	[32]byte CA fingerprint
//	uvarint  number of addresses, then each as uvarint length + bytes
//	[4]byte  first 4 bytes of SHA-256 of everything above
//
// The checksum catches a token cut short or mistyped while being copied
// between terminals; it is not a security measure (the secret is).

const (
	tokenPrefix      = "rmj1."
	tokenFormat      = 1
	tokenIDLen       = 8
	tokenChecksumLen = 4
	maxTokenLen      = 4096 // characters, after trimming
	maxTokenAddrs    = 32
	maxTokenAddrLen  = 255
)

// Errors from ParseToken. Every error it returns matches one of them with
// errors.Is.
var (
	ErrNotToken     = errors.New("join token: not a Raftmail join token (expected " + tokenPrefix + "…)")
	ErrTokenDamaged = errors.New("join token: damaged")
)

// Token is a join token. ID names it in listings and revocations; Secret
// proves the joiner was given it (the cluster stores only HashSecret of
// it); CAFingerprint lets the joiner check it talks to the right cluster;
// Addrs are optional cluster-port addresses to try.
type Token struct {
	ID            string // 16 lowercase hex digits (8 random bytes)
	Secret        [32]byte
	CAFingerprint [32]byte
	Addrs         []string // optional hint, may be empty
}

// NewToken makes a token with a random ID and secret for the cluster whose
// CA has the given fingerprint.
func NewToken(caFingerprint [32]byte) (Token, error) {
	var id [tokenIDLen]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("cluster: new token: %w", err)
	}
	t := Token{ID: hex.EncodeToString(id[:]), CAFingerprint: caFingerprint}
	if _, err := rand.Read(t.Secret[:]); err != nil {
		return Token{}, fmt.Errorf("cluster: new token: %w", err)
	}
	return t, nil
}

// String encodes the token for the operator to copy ("rmj1.…"). It
// contains the secret: print it for the operator, never log it (LogValue
// keeps slog from doing so). ParseToken(t.String()) gives t back for any
// token NewToken made, with or without Addrs.
func (t Token) String() string {
	id, err := hex.DecodeString(t.ID)
	if err != nil || len(id) != tokenIDLen {
		id = nil // encodes as length 0, which ParseToken refuses
	}
	b := make([]byte, 0, 2+len(id)+64+1+4+16*len(t.Addrs))
	b = append(b, tokenFormat, byte(len(id)))
	b = append(b, id...)
	b = append(b, t.Secret[:]...)
	b = append(b, t.CAFingerprint[:]...)
	b = binary.AppendUvarint(b, uint64(len(t.Addrs)))
	for _, a := range t.Addrs {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	sum := sha256.Sum256(b)
	b = append(b, sum[:tokenChecksumLen]...)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// LogValue keeps the secret out of logs: a token logs as its ID.
func (t Token) LogValue() slog.Value {
	return slog.StringValue("join-token:" + t.ID)
}

type tokenError struct {
	kind error
	msg  string
}

func (e *tokenError) Error() string { return e.msg }
func (e *tokenError) Unwrap() error { return e.kind }

func tokenDamaged(detail string) error {
	return &tokenError{kind: ErrTokenDamaged, msg: ErrTokenDamaged.Error() + " (" + detail + ")"}
}

// ParseToken decodes a token made by Token.String. Surrounding white space
// is ignored.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		if v, ok := otherTokenVersion(s); ok {
			return Token{}, &tokenError{kind: ErrNotToken, msg: fmt.Sprintf(
				"join token: format %q is not supported by this Raftmail (expected %s…); was it made by a different version?", v, tokenPrefix)}
		}
		return Token{}, ErrNotToken
	}
	if len(s) > maxTokenLen {
		return Token{}, tokenDamaged(fmt.Sprintf("longer than %d characters", maxTokenLen))
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s[len(tokenPrefix):])
	if err != nil {
		return Token{}, tokenDamaged("not valid base64url; was it copied completely?")
	}
	if len(b) < 2+tokenIDLen+64+1+tokenChecksumLen {
		return Token{}, tokenDamaged("too short; was it copied completely?")
	}
	body, sum := b[:len(b)-tokenChecksumLen], b[len(b)-tokenChecksumLen:]
	want := sha256.Sum256(body)
	if !bytes.Equal(sum, want[:tokenChecksumLen]) {
		return Token{}, tokenDamaged("checksum mismatch; was it copied completely?")
	}
	if body[0] != tokenFormat {
		return Token{}, tokenDamaged(fmt.Sprintf("unknown format %d", body[0]))
	}
	if body[1] != tokenIDLen {
		return Token{}, tokenDamaged(fmt.Sprintf("token ID is %d bytes, want %d", body[1], tokenIDLen))
	}
	body = body[2:]
	var t Token
	t.ID = hex.EncodeToString(body[:tokenIDLen])
	body = body[tokenIDLen:]
	copy(t.Secret[:], body[:32])
	copy(t.CAFingerprint[:], body[32:64])
	body = body[64:]
	if t.Secret == [32]byte{} {
		return Token{}, tokenDamaged("empty secret")
	}
	n, k := binary.Uvarint(body)
	if k <= 0 || n > maxTokenAddrs {
		return Token{}, tokenDamaged("bad address count")
	}
	body = body[k:]
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(body)
		if k <= 0 || l == 0 || l > maxTokenAddrLen || l > uint64(len(body)-k) {
			return Token{}, tokenDamaged("bad address")
		}
		a := string(body[k : k+int(l)])
		for j := 0; j < len(a); j++ {
			if a[j] <= ' ' || a[j] >= 0x7f {
				return Token{}, tokenDamaged("bad address")
			}
		}
		t.Addrs = append(t.Addrs, a)
		body = body[k+int(l):]
	}
	if len(body) != 0 {
		return Token{}, tokenDamaged("trailing bytes")
	}
	return t, nil
}

// otherTokenVersion recognises "rmjN." for another N.
func otherTokenVersion(s string) (string, bool) {
	rest, ok := strings.CutPrefix(s, "rmj")
	if !ok {
		return "", false
	}
	i := 0
	for i < len(rest) && i < 4 && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(rest) || rest[i] != '.' {
		return "", false
	}
	return "rmj" + rest[:i], true
}

// HashSecret is what the cluster stores for a token: SHA-256 of the secret.
// The secret has 256 random bits, so a fast hash is enough.
func HashSecret(secret [32]byte) []byte {
	h := sha256.Sum256(secret[:])
	return h[:]
}

// SecretMatches reports, in constant time, whether secret hashes to hash.
func SecretMatches(hash []byte, secret [32]byte) bool {
	return subtle.ConstantTimeCompare(hash, HashSecret(secret)) == 1
}
