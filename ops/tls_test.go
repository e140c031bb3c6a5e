package ops

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCertReloaderPicksUpNewFiles(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := WriteSelfSigned(cf, kf, []string{"first.test"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	r, err := NewCertReloader(cf, kf, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.CheckInterval = 0
	name := func() string {
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	if got := name(); got != "first.test" {
		t.Fatalf("first cert: %s", got)
	}
	if err := WriteSelfSigned(cf, kf, []string{"second.test"}, nil); err != nil {
		t.Fatal(err)
	}
	// Make sure the modification time differs on coarse file systems.
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(cf, later, later)
	_ = os.Chtimes(kf, later, later)
	if got := name(); got != "second.test" {
		t.Fatalf("after renewal: %s", got)
	}
	// A broken file keeps the last good certificate.
	if err := os.WriteFile(cf, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	evenLater := later.Add(2 * time.Second)
	_ = os.Chtimes(cf, evenLater, evenLater)
	if got := name(); got != "second.test" {
		t.Fatalf("after a broken file: %s", got)
	}
	if _, err := NewCertReloader(cf, kf, nil); err == nil {
		t.Fatal("a broken pair loaded at start")
	}
}
