package ops

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate and key from files and picks up new
// files (a renewed certificate) without a restart: on a handshake it checks
// the files' modification times at most once per CheckInterval and reloads
// when they changed. A reload that fails keeps the previous certificate and
// logs the error.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	// CheckInterval bounds how often the files are stat'ed; default 10s.
	CheckInterval time.Duration

	mu struct {
		sync.Mutex
		cert      *tls.Certificate
		certMod   time.Time
		keyMod    time.Time
		lastCheck time.Time
	}
}

// NewCertReloader loads the pair once (an error here is fatal for the
// caller: a node must not start with a broken certificate).
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, CheckInterval: 10 * time.Second}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) reload() error {
	cs, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("ops: TLS certificate: %w", err)
	}
	ks, err := os.Stat(r.keyFile)
	if err != nil {
		return fmt.Errorf("ops: TLS key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("ops: load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.mu.cert = &cert
	r.mu.certMod, r.mu.keyMod = cs.ModTime(), ks.ModTime()
	r.mu.Unlock()
	return nil
}

// GetCertificate is the tls.Config hook.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	due := time.Since(r.mu.lastCheck) >= r.CheckInterval
	if due {
		r.mu.lastCheck = time.Now()
	}
	certMod, keyMod := r.mu.certMod, r.mu.keyMod
	r.mu.Unlock()
	if due {
		cs, err1 := os.Stat(r.certFile)
		ks, err2 := os.Stat(r.keyFile)
		if err1 == nil && err2 == nil && (!cs.ModTime().Equal(certMod) || !ks.ModTime().Equal(keyMod)) {
			if err := r.reload(); err != nil {
				r.log.Error("TLS certificate reload failed; keeping the previous one", "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "file", r.certFile)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.cert, nil
}

// MailTLSConfig is the server TLS configuration of the mail listeners:
// TLS 1.2 or later (mail clients in the field still need 1.2).
func MailTLSConfig(r *CertReloader) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// WriteSelfSigned creates a self-signed certificate and key for the mail
// listeners, valid for the given names and addresses for five years, so a
// first start just works. Clients will warn until a real certificate is
// configured.
func WriteSelfSigned(certFile, keyFile string, dnsNames []string, ips []net.IP) error {
	if len(dnsNames) == 0 {
		return errors.New("ops: self-signed certificate needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: dnsNames[0], Organization: []string{"Raftmail (self-signed)"}},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileSync(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileSync(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
