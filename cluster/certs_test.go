package cluster_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
)

func joinRequest(t *testing.T, name string) cluster.JoinRequest {
	t.Helper()
	key, _, err := cluster.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cluster.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return cluster.JoinRequest{NodeName: name, PublicKeyPEM: pub, ClusterAddr: "127.0.0.1:1", GossipAddr: "127.0.0.1:2"}
}

// A single-use token admits one node even when two joins race with it;
// --uses 2 admits two. Fails on the old code, where a token admitted any
// number of nodes until it expired.
func TestJoinTokenSingleUse(t *testing.T) {
	tc := clustertest.New(t, 1, nil)
	n := tc.Nodes[0].Node
	addr := tc.Nodes[0].Cfg.ClusterBind
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	once, _, err := n.CreateToken(ctx, time.Hour, 1, "once")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = cluster.RequestJoin(ctx, addr, once, joinRequest(t, fmt.Sprintf("racer%d", i)))
		}()
	}
	wg.Wait()
	admitted := 0
	for _, err := range errs {
		switch {
		case err == nil:
			admitted++
		case errors.Is(err, cluster.ErrJoinRefused) && strings.Contains(err.Error(), "used already"):
		default:
			t.Errorf("racing join: %v", err)
		}
	}
	if admitted != 1 {
		t.Fatalf("a single-use token admitted %d of two racing nodes: %v", admitted, errs)
	}
	_, err = cluster.RequestJoin(ctx, addr, once, joinRequest(t, "late"))
	if !errors.Is(err, cluster.ErrJoinRefused) || !strings.Contains(err.Error(), "used already (1 of 1 uses") {
		t.Fatalf("third join with a single-use token: %v", err)
	}
	t.Logf("refused: %v", err)

	twice, _, err := n.CreateToken(ctx, time.Hour, 2, "twice")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := cluster.RequestJoin(ctx, addr, twice, joinRequest(t, name)); err != nil {
			t.Fatalf("join %s with a two-use token: %v", name, err)
		}
	}
	if _, err := cluster.RequestJoin(ctx, addr, twice, joinRequest(t, "c")); !errors.Is(err, cluster.ErrJoinRefused) {
		t.Fatalf("third join with a two-use token: %v", err)
	}
	tok, err := n.Store().Token(twice.ID)
	if err != nil || strings.Join(tok.UsedBy, ",") != "a,b" {
		t.Fatalf("token after two uses: %+v, %v", tok, err)
	}
}

// Nodes renew their certificates before they expire, keep them through
// OnCertRenewed, and present the new ones without a restart; a node
// restarted on the kept certificate rejoins. Fails on the old code (no
// renewal: certificates were valid for 5 years).
func TestCertRenewal(t *testing.T) {
	const lifetime = 4 * time.Second
	var mu sync.Mutex
	kept := map[string][]tls.Certificate{}
	tc := clustertest.New(t, 2, func(c *cluster.Config) {
		name := c.NodeName
		c.CertLifetime = lifetime
		c.OnCertRenewed = func(certPEM, keyPEM []byte) error {
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			kept[name] = append(kept[name], cert)
			return nil
		}
	})
	latest := func(name string) (tls.Certificate, int) {
		mu.Lock()
		defer mu.Unlock()
		k := kept[name]
		if len(k) == 0 {
			return tls.Certificate{}, 0
		}
		return k[len(k)-1], len(k)
	}
	// Three renewals each: the first renewed certificates have expired by
	// then, so every connection made since uses a later one.
	for _, tn := range tc.Nodes {
		clustertest.WaitFor(t, 30*time.Second, tn.Name+" renewed three times", func() bool {
			_, k := latest(tn.Name)
			return k >= 3
		})
	}
	for _, tn := range tc.Nodes {
		cert, _ := latest(tn.Name)
		leaf, err := cluster.ParseCertPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
		if err != nil {
			t.Fatal(err)
		}
		if cluster.NodeNameFromCert(leaf) != tn.Name || time.Until(leaf.NotAfter) > lifetime {
			t.Errorf("%s renewed to %s, valid until %s", tn.Name, cluster.NodeNameFromCert(leaf), leaf.NotAfter)
		}
		clustertest.WaitFor(t, 10*time.Second, tn.Name+" presents a renewed certificate", func() bool {
			return time.Until(tn.Node.CertNotAfter()) <= lifetime
		})
	}
	if err := addDomain(t, tc.Follower().Node, "renewed.test"); err != nil {
		t.Fatalf("write through a follower after renewals: %v", err)
	}

	// Restart the second node on the certificate it kept.
	second := tc.Nodes[1]
	tc.Stop(second)
	second.Cfg.Cert, _ = latest(second.Name)
	tc.Start(second)
	clustertest.WaitFor(t, 20*time.Second, "a write through the restarted node", func() bool {
		return addDomain(t, second.Node, "restarted.test") == nil
	})
	certs, err := tc.Nodes[0].Store.NodeCerts()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.Revoked {
			t.Errorf("renewal revoked %+v", c)
		}
	}
}

// The CA's private key is in no Raft log, snapshot or store of a running
// cluster, in any encoding it could take there. Fails on the old code,
// which kept it in the clear in the replicated settings.
func TestCAKeyNotInRaftLogOrSnapshot(t *testing.T) {
	tc := clustertest.New(t, 3, nil)
	ca := tc.CA()
	for _, tn := range tc.Nodes {
		clustertest.WaitFor(t, 10*time.Second, tn.Name+" has the CA", func() bool {
			_, err := tn.Store.Setting(cluster.SettingCACert)
			return err == nil
		})
		if err := tn.Node.SnapshotNow(); err != nil {
			t.Fatalf("snapshot %s: %v", tn.Name, err)
		}
	}
	der, _ := pem.Decode(ca.KeyPEM)
	scalar, err := ca.Key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"PEM":                  ca.KeyPEM,
		"base64 of the PEM":    []byte(base64.StdEncoding.EncodeToString(ca.KeyPEM)),
		"PKCS#8 DER":           der.Bytes,
		"private scalar":       scalar,
		"base64 of the scalar": []byte(base64.StdEncoding.EncodeToString(scalar)),
	}
	// What the files must hold, so the scan is known to read the right
	// bytes: the CA certificate, raw in snapshots, base64 in the log.
	controls := map[string][]byte{
		"snapshot": ca.CertPEM,
		"raft.db":  []byte(base64.StdEncoding.EncodeToString(ca.CertPEM)),
	}
	for _, tn := range tc.Nodes {
		raftDir := filepath.Join(tn.Cfg.DataDir, "raft")
		files := map[string]string{filepath.Join(raftDir, "raft.db"): "raft.db"}
		var snaps []string
		_ = filepath.WalkDir(filepath.Join(raftDir, "snapshots"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "state.bin" {
				snaps = append(snaps, p)
			}
			return nil
		})
		if len(snaps) == 0 {
			t.Fatalf("%s: no snapshot in %s", tn.Name, raftDir)
		}
		for _, s := range snaps {
			files[s] = "snapshot"
		}
		storeFiles, _ := filepath.Glob(filepath.Join(filepath.Dir(tn.Cfg.DataDir), "store", "*"))
		for _, s := range storeFiles {
			files[s] = "store"
		}
		for path, kind := range files {
			b, err := os.ReadFile(path)
			if err != nil {
				continue // a store file removed meanwhile
			}
			for what, secret := range secrets {
				if bytes.Contains(b, secret) {
					t.Errorf("%s: the CA private key (%s) is readable in %s", tn.Name, what, path)
				}
			}
			if c, ok := controls[kind]; ok && !bytes.Contains(b, c) {
				t.Errorf("%s: %s does not hold the CA certificate: the scan reads the wrong bytes", tn.Name, path)
			}
		}
	}
}
