package cluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/raftmail/raftmail/internal/wallclock"
	"github.com/raftmail/raftmail/storage"
)

// Replicated cluster settings (storage.CmdSettingSet keys).
const (
	SettingClusterName = "cluster/name"
	SettingCACert      = "cluster/ca.crt"
	// SettingCAKeySealed is the CA's private key sealed under the
	// key-encryption key (SealCAKey), which is not in the store.
	SettingCAKeySealed = "cluster/ca.key.sealed"
	// SettingCAKey is the CA's private key in the clear, as clusters made
	// before the key was sealed keep it. Read, never written.
	SettingCAKey     = "cluster/ca.key"
	SettingGossipKey = "cluster/gossip.key"
)

// ErrJoinRefused wraps every reason the cluster gives for refusing a join.
var ErrJoinRefused = errors.New("cluster: join refused")

type joinRequest struct {
	TokenID     string   `json:"token_id"`
	Secret      []byte   `json:"secret"`
	NodeName    string   `json:"node"`
	PublicKey   []byte   `json:"public_key"` // PEM, PKIX
	ClusterAddr string   `json:"cluster_addr"`
	GossipAddr  string   `json:"gossip_addr"`
	DNSNames    []string `json:"dns_names,omitempty"`
	IPs         []string `json:"ips,omitempty"`
}

type joinResponse struct {
	ClusterName string   `json:"cluster_name"`
	CACert      []byte   `json:"ca_cert"`
	Cert        []byte   `json:"cert"`
	GossipKey   []byte   `json:"gossip_key"`
	CAKeyKEK    []byte   `json:"ca_kek,omitempty"`
	Seeds       []string `json:"seeds"` // gossip addresses of live members
}

// JoinRequest is what a new node tells the cluster about itself.
type JoinRequest struct {
	NodeName     string
	PublicKeyPEM []byte
	ClusterAddr  string // its advertised cluster address
	GossipAddr   string // its advertised gossip address
	DNSNames     []string
	IPs          []net.IP
}

// JoinResult is what the cluster gives a node it accepts.
type JoinResult struct {
	ClusterName string
	CACertPEM   []byte
	CertPEM     []byte
	GossipKey   []byte
	// CAKeyKEK opens the CA key in the replicated store, so that the new
	// node can admit others and renew its certificate (Config.CAKeyKEK).
	CAKeyKEK []byte
	Seeds    []string
}

// RequestJoin asks the node at addr (a cluster port) to admit a new node.
// The server must present a certificate chain whose CA matches the token's
// fingerprint; the token's secret proves the request is authorised.
func RequestJoin(ctx context.Context, addr string, tok Token, req JoinRequest) (*JoinResult, error) {
	d := &dialer{tlsConf: func() *tls.Config { return PinnedTLSConfig(tok.CAFingerprint) }}
	timeout := time.Until(deadlineOf(ctx))
	c, err := d.dial(addr, tagJoin, timeout)
	if err != nil {
		return nil, fmt.Errorf("cluster: join via %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	jr := &joinRequest{
		TokenID:     tok.ID,
		Secret:      tok.Secret[:],
		NodeName:    req.NodeName,
		PublicKey:   req.PublicKeyPEM,
		ClusterAddr: req.ClusterAddr,
		GossipAddr:  req.GossipAddr,
		DNSNames:    req.DNSNames,
	}
	for _, ip := range req.IPs {
		jr.IPs = append(jr.IPs, ip.String())
	}
	payload, err := json.Marshal(jr)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(c)
	if err := writeRequest(w, methodJoin, timeout, payload); err != nil {
		return nil, fmt.Errorf("cluster: join via %s: %w", addr, err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("cluster: join via %s: %w", addr, err)
	}
	out, err := readResponse(bufio.NewReader(c))
	var re *rpcError
	if errors.As(err, &re) {
		return nil, fmt.Errorf("%w: %s", ErrJoinRefused, re.Msg)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: join via %s: no answer: %w", addr, err)
	}
	var joined joinResponse
	if err := json.Unmarshal(out, &joined); err != nil {
		return nil, fmt.Errorf("cluster: join via %s: bad answer: %w", addr, err)
	}
	return &JoinResult{
		ClusterName: joined.ClusterName,
		CACertPEM:   joined.CACert,
		CertPEM:     joined.Cert,
		GossipKey:   joined.GossipKey,
		CAKeyKEK:    joined.CAKeyKEK,
		Seeds:       joined.Seeds,
	}, nil
}

// serveJoin answers one join request on a connection that may have no
// client certificate.
func (n *Node) serveJoin(c net.Conn) {
	defer c.Close()
	peer := c.RemoteAddr().String()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	w := bufio.NewWriter(c)
	defer w.Flush()
	req, err := readRequestLimit(bufio.NewReader(c), maxJoinPayload)
	if err != nil {
		n.log.Warn("join: bad request", "peer", peer, "err", err)
		if errors.Is(err, errVersion) {
			_ = writeResponse(w, codeVersion, []byte(err.Error()))
		}
		return
	}
	var jreq joinRequest
	if req.method != methodJoin || json.Unmarshal(req.payload, &jreq) != nil {
		_ = writeResponse(w, codeRefused, []byte("not a join request"))
		return
	}
	jr, err := n.admit(&jreq)
	if err != nil {
		n.log.Warn("join refused", "peer", peer, "node_name", jreq.NodeName, "err", err)
		_ = writeResponse(w, codeRefused, []byte(err.Error()))
		return
	}
	out, err := json.Marshal(jr)
	if err != nil {
		_ = writeResponse(w, codeInternal, []byte(err.Error()))
		return
	}
	n.log.Info("join accepted", "peer", peer, "node_name", jreq.NodeName)
	_ = writeResponse(w, statusOK, out)
}

func (n *Node) admit(req *joinRequest) (*joinResponse, error) {
	tok, err := n.store.Token(req.TokenID)
	if err != nil {
		return nil, errors.New("unknown join token: create one with `raftmail token create` on a cluster member")
	}
	var secret [32]byte
	if len(req.Secret) != len(secret) {
		return nil, errors.New("join token secret is malformed")
	}
	copy(secret[:], req.Secret)
	if !SecretMatches(tok.SecretHash, secret) {
		return nil, errors.New("join token secret does not match: check that the whole token was copied")
	}
	if tok.Revoked {
		return nil, fmt.Errorf("join token %s was revoked: create a new one with `raftmail token create`", tok.ID)
	}
	if !tok.Expires.IsZero() && wallclock.Now().After(tok.Expires) {
		return nil, fmt.Errorf("join token %s expired at %s: create a new one with `raftmail token create`", tok.ID, tok.Expires.UTC().Format(time.RFC3339))
	}
	if tok.Uses() >= tok.Limit() {
		return nil, fmt.Errorf("join token %s has been used already (%d of %d uses, by %s): create a new one with `raftmail token create` (--uses N for a token that admits N nodes)",
			tok.ID, tok.Uses(), tok.Limit(), strings.Join(tok.UsedBy, ", "))
	}
	if err := CheckNodeName(req.NodeName); err != nil {
		return nil, err
	}
	if voters, err := n.voters(); err == nil {
		if addr, ok := voters[req.NodeName]; ok && addr != req.ClusterAddr {
			return nil, fmt.Errorf("node name %q is already used by the member at %s: pick another --name, or `raftmail remove %s` first", req.NodeName, addr, req.NodeName)
		}
	}
	for _, a := range []string{req.ClusterAddr, req.GossipAddr} {
		host, _, err := net.SplitHostPort(a)
		if err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
			return nil, fmt.Errorf("advertised address %q must be a specific IP:port", a)
		}
	}
	ca, err := n.loadCA()
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKeyPEM(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	var ips []net.IP
	for _, s := range req.IPs {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		}
	}
	certPEM, err := ca.IssueNodeCertFor(n.cfg.CertLifetime, req.NodeName, pub, req.DNSNames, ips)
	if err != nil {
		return nil, err
	}
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	gk, err := n.store.Setting(SettingGossipKey)
	if err != nil {
		return nil, fmt.Errorf("cluster gossip key unavailable: %w", err)
	}
	name, _ := n.store.Setting(SettingClusterName)
	seeds := []string{n.cfg.GossipAdvertise}
	for _, m := range n.Members() {
		if m.State == "alive" && m.Name != n.cfg.NodeName {
			seeds = append(seeds, m.Addr)
		}
	}
	// Spend a use of the token and record the certificate, through Raft:
	// of two joins racing with a single-use token only one commits. The
	// certificate is handed out only after that.
	if err := n.useToken(tok.ID, certRecord(leaf)); err != nil {
		return nil, err
	}
	return &joinResponse{ClusterName: string(name), CACert: ca.CertPEM, Cert: certPEM, GossipKey: gk, CAKeyKEK: n.cfg.CAKeyKEK, Seeds: seeds}, nil
}

func (n *Node) useToken(id string, c storage.NodeCert) error {
	cmd, err := storage.NewCommand(storage.CmdTokenUse, storage.TokenUse{ID: id, Cert: c})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, res, err := n.Propose(ctx, cmd)
	if err != nil {
		return fmt.Errorf("the cluster cannot record the join right now (%w): try again when `raftmail status` shows a leader", err)
	}
	if err := res.Err(); err != nil {
		var re *storage.ResultError
		if errors.As(err, &re) {
			return errors.New(strings.TrimSuffix(re.Msg, ": "+storage.ErrInvalid.Error()))
		}
		return err
	}
	return nil
}

// loadCA opens the CA's private key from the store with this node's KEK
// (or reads it in the clear from a cluster made before keys were sealed).
func (n *Node) loadCA() (*CA, error) {
	certPEM, err := n.store.Setting(SettingCACert)
	if err != nil {
		return nil, fmt.Errorf("cluster CA not in the store yet: %w", err)
	}
	sealed, err := n.store.Setting(SettingCAKeySealed)
	if errors.Is(err, storage.ErrNotFound) {
		if keyPEM, lerr := n.store.Setting(SettingCAKey); lerr == nil {
			return LoadCA(certPEM, keyPEM)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster CA key not in the store yet: %w", err)
	}
	if n.cfg.CAKeyKEK == nil {
		return nil, errors.New("this node holds no CA key-encryption key, so it cannot sign certificates: join through another member")
	}
	return OpenCAKey(n.cfg.CAKeyKEK, certPEM, sealed)
}

// CAFingerprint is the SHA-256 of the cluster CA certificate.
func (n *Node) CAFingerprint() [32]byte {
	var fp [32]byte
	if n.cfg.CACert != nil {
		fp = sha256.Sum256(n.cfg.CACert.Raw)
	}
	return fp
}

// CreateToken makes a join token valid for ttl (0 = no expiry) that admits
// up to uses nodes (0 = 1), and stores its secret's hash in the replicated
// store.
func (n *Node) CreateToken(ctx context.Context, ttl time.Duration, uses int, description string) (Token, storage.JoinToken, error) {
	if uses < 0 {
		return Token{}, storage.JoinToken{}, fmt.Errorf("cluster: create token: %d uses: want 1 or more", uses)
	}
	tok, err := NewToken(n.CAFingerprint())
	if err != nil {
		return Token{}, storage.JoinToken{}, err
	}
	tok.Addrs = []string{n.cfg.ClusterAdvertise}
	now := wallclock.Now().UTC()
	jt := storage.JoinToken{ID: tok.ID, SecretHash: HashSecret(tok.Secret), Created: now, Description: description, MaxUses: max(uses, 1)}
	if ttl > 0 {
		jt.Expires = now.Add(ttl)
	}
	cmd, err := storage.NewCommand(storage.CmdTokenAdd, jt)
	if err != nil {
		return Token{}, jt, err
	}
	_, res, err := n.Propose(ctx, cmd)
	if err != nil {
		return Token{}, jt, err
	}
	if err := res.Err(); err != nil {
		return Token{}, jt, err
	}
	return tok, jt, nil
}

// InstallSecrets stores the cluster name, the CA, its key sealed under this
// node's key-encryption key (Config.CAKeyKEK, required) and the gossip key
// in the replicated store, and records this node's certificate (done once,
// by init).
func (n *Node) InstallSecrets(ctx context.Context, name string, ca *CA, gossipKey []byte) error {
	if n.cfg.CAKeyKEK == nil {
		return errors.New("cluster: install secrets: the node has no CA key-encryption key (Config.CAKeyKEK)")
	}
	sealed, err := SealCAKey(n.cfg.CAKeyKEK, ca)
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		k string
		v []byte
	}{{SettingClusterName, []byte(name)}, {SettingCACert, ca.CertPEM}, {SettingCAKeySealed, sealed}, {SettingGossipKey, gossipKey}} {
		cmd, err := storage.NewCommand(storage.CmdSettingSet, struct {
			Key   string
			Value []byte
		}{kv.k, kv.v})
		if err != nil {
			return err
		}
		_, res, err := n.Propose(ctx, cmd)
		if err != nil {
			return err
		}
		if err := res.Err(); err != nil {
			return fmt.Errorf("store %s: %w", kv.k, err)
		}
	}
	return n.recordCert(certRecord(n.certs.leaf()), "")
}

// ParseCertPEM parses the first certificate in a PEM block.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("cluster: no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
