package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"
	"time"
)

// blackhole is a TLS listener that reads what it is sent and never
// answers: a peer cut off by a partition looks like this from the caller
// (nothing comes back, nothing fails).
func blackhole(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestForwardAbandonedOnAbort: a forwarded request to a peer that never
// answers ends as soon as the caller aborts it (the leader changed), as a
// "maybe sent" failure, instead of waiting out the caller's whole deadline.
func TestForwardAbandonedOnAbort(t *testing.T) {
	addr := blackhole(t)
	c := newRPCClient(&dialer{tlsConf: func() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }})
	defer c.close()
	abort := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.callAbort(addr, methodApply, []byte("cmd"), time.Hour, abort)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("returned before the abort: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(abort)
	err := <-done
	if !errors.Is(err, errAborted) || !errors.Is(err, errSent) {
		t.Fatalf("aborted forward: %v, want errAborted wrapping errSent", err)
	}
}

// TestLeaderWatchFires: every change closes the channel handed out before
// it, and only that one.
func TestLeaderWatchFires(t *testing.T) {
	w := newLeaderWatch()
	a := w.changed()
	w.fire("", time.Now())
	b := w.changed()
	select {
	case <-a:
	default:
		t.Fatal("channel taken before the change was not closed")
	}
	select {
	case <-b:
		t.Fatal("channel taken after the change was closed")
	default:
	}
}
