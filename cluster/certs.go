package cluster

// Node certificates at run time: the certificate this node presents
// (swapped when renewed, without a restart), the revocation list every
// handshake on the cluster port checks at both ends, the connections it
// closes when a peer is revoked, and the loop that records and renews this
// node's certificate. DESIGN.md, "Certificates", has the reasons.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
	"github.com/raftmail/raftmail/storage"
)

// ErrCertRevoked: the peer's node certificate is on the cluster's
// revocation list.
var ErrCertRevoked = errors.New("cluster: node certificate revoked")

// certState is the certificate this node presents, chain [leaf, CA].
type certState struct {
	mu struct {
		sync.Mutex
		cert *tls.Certificate
		leaf *x509.Certificate
	}
}

func newCertState(ca *x509.Certificate, c tls.Certificate) (*certState, error) {
	s := &certState{}
	if err := s.set(ca, c); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *certState) set(ca *x509.Certificate, c tls.Certificate) error {
	if len(c.Certificate) == 0 {
		return errors.New("cluster: node certificate: empty chain")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("cluster: node certificate: %w", err)
	}
	c = certWithCA(c, ca)
	c.Leaf = leaf
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.cert, s.mu.leaf = &c, leaf
	return nil
}

func (s *certState) current() *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.cert
}

func (s *certState) leaf() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.leaf
}

func (n *Node) tlsHooks() tlsHooks {
	return tlsHooks{cert: n.certs.current, check: n.checkPeerCert}
}

// CertNotAfter is when this node's current certificate expires.
func (n *Node) CertNotAfter() time.Time { return n.certs.leaf().NotAfter }

// CertSerial is the serial number of this node's current certificate.
func (n *Node) CertSerial() string { return CertSerial(n.certs.leaf()) }

// checkPeerCert refuses a peer whose certificate is revoked.
func (n *Node) checkPeerCert(leaf *x509.Certificate) error {
	m := n.revoked.Load()
	if m == nil {
		return nil
	}
	if c, ok := (*m)[CertSerial(leaf)]; ok {
		return fmt.Errorf("%w: node %s, serial %s, revoked at %s", ErrCertRevoked, c.Node, c.Serial, c.RevokedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// nodeRevoked reports whether every certificate recorded for node is
// revoked (and there is one): such a node cannot take part, so the leader
// does not make it a voter again. A node that joins again under the same
// name has a new certificate.
func (n *Node) nodeRevoked(node string) bool {
	recorded, unrevoked, err := n.certRecords(node)
	return err == nil && recorded && !unrevoked
}

// certRecords reports whether the store records a certificate of node,
// and whether one of them is not revoked.
func (n *Node) certRecords(node string) (recorded, unrevoked bool, err error) {
	certs, err := n.store.NodeCerts()
	if err != nil {
		return false, false, err
	}
	for _, c := range certs {
		if c.Node == node {
			recorded = true
			unrevoked = unrevoked || !c.Revoked
		}
	}
	return recorded, unrevoked, nil
}

// loadRevocations reads the revocation list from the store; the cert loop
// then closes the connections of revoked peers. Called at start, after a
// revocation is applied and after a snapshot is restored.
func (n *Node) loadRevocations() {
	certs, err := n.store.NodeCerts()
	if err != nil {
		n.log.Error("cannot read the certificate revocation list", "err", err)
		return
	}
	m := make(map[string]storage.NodeCert)
	for _, c := range certs {
		if c.Revoked {
			m[c.Serial] = c
		}
	}
	n.revoked.Store(&m)
	if m[n.CertSerial()].Revoked {
		n.log.Error("this node's certificate is revoked: the other nodes refuse it; join again with a new token", "serial", n.CertSerial())
	}
	kick(n.certKick)
}

// connSet holds the open cluster connections that carry a node
// certificate (accepted and dialed), by the peer's serial, so that a
// revocation also ends the connections made before it.
type connSet struct {
	mu struct {
		sync.Mutex
		conns map[*trackedConn]struct{}
	}
}

func newConnSet() *connSet {
	s := &connSet{}
	s.mu.conns = make(map[*trackedConn]struct{})
	return s
}

type trackedConn struct {
	net.Conn
	serial string
	set    *connSet
	once   sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.mu.conns, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

// track wraps c, whose peer presented the certificate with serial, so
// that closeRevoked can end it.
func (s *connSet) track(c net.Conn, serial string) net.Conn {
	if s == nil || serial == "" {
		return c
	}
	tc := &trackedConn{Conn: c, serial: serial, set: s}
	s.mu.Lock()
	s.mu.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

// closeRevoked closes every connection whose peer is in revoked and
// returns how many.
func (s *connSet) closeRevoked(revoked map[string]storage.NodeCert) int {
	var victims []*trackedConn
	s.mu.Lock()
	for c := range s.mu.conns {
		if _, ok := revoked[c.serial]; ok {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
	return len(victims)
}

// peerSerial is the serial of the certificate a TLS peer presented, or "".
func peerSerial(c *tls.Conn) string {
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return CertSerial(st.PeerCertificates[0])
}

// certRecord is how the cluster records a certificate it issued.
func certRecord(leaf *x509.Certificate) storage.NodeCert {
	return storage.NodeCert{Serial: CertSerial(leaf), Node: NodeNameFromCert(leaf), NotAfter: leaf.NotAfter.UTC()}
}

// renewAt is when a node renews leaf: at two thirds of its life, counted
// from when it was issued (NotBefore is backdated by clockSkew), and of
// no more than lifetime (a certificate from before certificates were
// short-lived is renewed soon after start).
func renewAt(leaf *x509.Certificate, lifetime time.Duration) time.Time {
	issued := leaf.NotBefore.Add(clockSkew)
	life := min(leaf.NotAfter.Sub(issued), lifetime)
	return issued.Add(life * 2 / 3)
}

// certLoop records this node's certificate in the replicated list if it is
// not there (the first node's, or one from an older version), renews it
// at renewAt, and closes connections of peers revoked meanwhile.
func (n *Node) certLoop() {
	defer n.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	registered := false
	for {
		select {
		case <-n.stop:
			return
		case <-n.certKick:
			if m := n.revoked.Load(); m != nil {
				if k := n.conns.closeRevoked(*m); k > 0 {
					n.log.Warn("closed connections of revoked peers", "connections", k)
				}
			}
			continue
		case <-timer.C:
		}
		timer.Reset(n.certStep(&registered))
	}
}

// certStep does what is due and returns when to look again.
func (n *Node) certStep(registered *bool) time.Duration {
	leaf := n.certs.leaf()
	retry := min(max(n.cfg.CertLifetime/30, time.Second), time.Minute)
	if !*registered {
		if ok, err := n.certRecorded(leaf); err != nil || !ok {
			if err := n.recordCert(certRecord(leaf), ""); err != nil {
				n.log.Debug("cannot record this node's certificate yet", "err", err)
				return retry
			}
		}
		*registered = true
	}
	at := renewAt(leaf, n.cfg.CertLifetime)
	if wait := wallclock.Until(at); wait > 0 {
		return min(wait, time.Hour)
	}
	if n.cfg.CAKeyKEK == nil {
		n.log.Warn("node certificate due for renewal, but this node holds no CA key-encryption key: join the node again to get one",
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		return time.Hour
	}
	if err := n.renewCert(leaf); err != nil {
		if errors.Is(err, storage.ErrInvalid) {
			n.log.Error("node certificate renewal refused", "err", err)
			return time.Hour
		}
		n.log.Warn("node certificate renewal failed; will retry", "err", err, "retry_in", retry)
		return retry
	}
	return 0
}

func (n *Node) certRecorded(leaf *x509.Certificate) (bool, error) {
	certs, err := n.store.NodeCerts()
	if err != nil {
		return false, err
	}
	for _, c := range certs {
		if c.Serial == CertSerial(leaf) {
			return true, nil
		}
	}
	return false, nil
}

func (n *Node) recordCert(c storage.NodeCert, renews string) error {
	cmd, err := storage.NewCommand(storage.CmdCertAdd, storage.CertAdd{Cert: c, Renews: renews})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ProposeTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, res, err := n.Propose(ctx, cmd)
	if err != nil {
		return fmt.Errorf("record certificate %s: %w", c.Serial, err)
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("record certificate %s: %w", c.Serial, err)
	}
	return nil
}

// renewCert signs a new certificate for a new key, with the names of the
// current one, records it (refused if the current one is revoked), hands
// it to OnCertRenewed and starts presenting it.
func (n *Node) renewCert(old *x509.Certificate) error {
	ca, err := n.loadCA()
	if err != nil {
		return err
	}
	key, keyPEM, err := NewNodeKey()
	if err != nil {
		return err
	}
	certPEM, err := ca.IssueNodeCertFor(n.cfg.CertLifetime, NodeNameFromCert(old), key.Public(), old.DNSNames, old.IPAddresses)
	if err != nil {
		return err
	}
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return err
	}
	if err := n.recordCert(certRecord(leaf), CertSerial(old)); err != nil {
		return err
	}
	chainPEM := append(append([]byte{}, certPEM...), ca.CertPEM...)
	if n.cfg.OnCertRenewed != nil {
		if err := n.cfg.OnCertRenewed(chainPEM, keyPEM); err != nil {
			return fmt.Errorf("keep the renewed certificate: %w", err)
		}
	}
	c, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return err
	}
	if err := n.certs.set(n.cfg.CACert, c); err != nil {
		return err
	}
	n.log.Info("renewed the node certificate", "serial", CertSerial(leaf), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "replaces", CertSerial(old))
	return nil
}

// RevokeNode puts every recorded certificate of node on the revocation
// list and returns their serials.
func (n *Node) RevokeNode(ctx context.Context, node string) ([]string, error) {
	return n.revoke(ctx, storage.CertRevoke{Node: node})
}

// RevokeToken revokes a join token and every certificate issued through
// it (the nodes it admitted, and their renewals), and returns their
// serials.
func (n *Node) RevokeToken(ctx context.Context, id string) ([]string, error) {
	return n.revoke(ctx, storage.CertRevoke{Token: id})
}

func (n *Node) revoke(ctx context.Context, p storage.CertRevoke) ([]string, error) {
	cmd, err := storage.NewCommand(storage.CmdCertRevoke, p)
	if err != nil {
		return nil, err
	}
	// Not waiting for this node to apply it: a node revoking itself (leave)
	// is cut off by the entry it waits for.
	_, res, err := n.ProposeNoWait(ctx, cmd)
	if err != nil {
		return nil, err
	}
	var out storage.CertRevokeResult
	if err := res.Decode(&out); err != nil {
		return nil, err
	}
	return out.Serials, nil
}
