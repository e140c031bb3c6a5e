package main

import (
	"bufio"
	"crypto/tls"
	binenc "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
)

// nodeCreds is the node certificate and key a node keeps in its data
// directory, as a TLS client certificate.
func nodeCreds(t *testing.T, n *node) tls.Certificate {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(n.dir, "cluster", "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(n.dir, "cluster", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// statusRPC connects to a cluster port as a node would, presenting cert,
// and makes one internal RPC, `status` (cluster/rpc.go: tag 'C', then a
// version 2 frame: version, method 4, u32 timeout ms, u32 payload length).
// It returns nil when the node answered with success.
func statusRPC(addr string, cert tls.Certificate) error {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // a test client: the server's identity is not the point
		Certificates:       []tls.Certificate{cert},
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := []byte{'C', 2, 4, 0, 0, 0x13, 0x88, 0, 0, 0, 0}
	if _, err := c.Write(req); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fmt.Errorf("no answer: %w", err)
	}
	if h[0] != 2 || h[1] != 0 {
		return fmt.Errorf("answer version %d status %d", h[0], h[1])
	}
	if _, err := io.CopyN(io.Discard, r, int64(binenc.BigEndian.Uint32(h[2:]))); err != nil {
		return err
	}
	return nil
}

// A node's certificate stops working on every other node's cluster port
// once the node is removed, or once the token it joined with is revoked.
// On the old code both kept working (and could call apply, remove and
// addvoter).
func TestE2ECertRevocation(t *testing.T) {
	nodes := newCluster(t, 2)
	first, second := nodes[0], nodes[1]
	third := newNode(t, "node3")
	var tok ops.TokenCreated
	mustCLIJSON(t, &tok, append([]string{"token", "create", "--ttl", "10m", "--json"}, first.adminFlags()...)...)
	if res := third.join(tok.Token, first.clusterAddr); res.exitCode != 0 {
		t.Fatalf("join node3: %s", res)
	}
	third.start()
	waitHealthy(t, first, 3)

	secondCert, thirdCert := nodeCreds(t, second), nodeCreds(t, third)
	for _, c := range []struct {
		name string
		cert tls.Certificate
	}{{second.name, secondCert}, {third.name, thirdCert}} {
		waitFor(t, clusterTimeout, c.name+"'s certificate accepted by "+first.name, func() (bool, string) {
			err := statusRPC(first.clusterAddr, c.cert)
			return err == nil, fmt.Sprint(err)
		})
	}

	refused := func(cert tls.Certificate, by *node, what string) {
		t.Helper()
		d := waitFor(t, clusterTimeout, what+" refused by "+by.name, func() (bool, string) {
			err := statusRPC(by.clusterAddr, cert)
			return err != nil, "still answered"
		})
		err := statusRPC(by.clusterAddr, cert)
		t.Logf("%s refused by %s %s after the command: %v", what, by.name, d.Round(time.Millisecond), err)
	}

	// remove: node2's certificate is refused, on the node that ran the
	// command and on the other one.
	first.cli("remove", second.name)
	refused(secondCert, first, "removed node2's certificate")
	refused(secondCert, third, "removed node2's certificate")

	// token revoke: node3's certificate goes with the token.
	out := first.cli("token", "revoke", tok.ID)
	if !strings.Contains(out, "1 node certificate(s)") {
		t.Errorf("token revoke says: %q", out)
	}
	refused(thirdCert, first, "node3's certificate (token revoked)")

	// status lists the revoked certificates, and each node's expiry.
	res := first.tryCLI("", "status")
	for _, want := range []string{"revoked: node node2", "revoked: node node3", "CERT EXPIRES"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("status does not show %q:\n%s", want, res.stdout)
		}
	}
	var st []cluster.NodeStatus
	res = first.tryCLI("", "status", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, res)
	}
	for _, s := range st {
		if s.Name == first.name && time.Until(s.CertNotAfter) < 29*24*time.Hour {
			t.Errorf("status of %s: certificate expires %v, want about 30 days from now", s.Name, s.CertNotAfter)
		}
	}
}
