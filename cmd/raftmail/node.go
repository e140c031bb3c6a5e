package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/storage"
)

func newLogger(cfg *nodeConfig, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch cfg.LogFormat {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", cfg.LogFormat)
}

func writeSecret(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
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

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// certNames lists the names and addresses a node certificate is valid for.
func certNames(cfg *nodeConfig) ([]string, []net.IP) {
	dns := []string{cfg.Name, "localhost"}
	if h, err := os.Hostname(); err == nil && h != cfg.Name {
		dns = append(dns, h)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	for _, a := range []string{cfg.ClusterAdvertise, cfg.GossipAdvertise} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
				ips = append(ips, ip)
			}
		}
	}
	return dns, ips
}

// makeSelfSigned writes the self-signed certificate the mail listeners use
// until a real one is configured.
func makeSelfSigned(cfg *nodeConfig) error {
	if err := os.MkdirAll(cfg.path("tls"), 0o700); err != nil {
		return err
	}
	dns, ips := certNames(cfg)
	if cfg.Hostname != "" && cfg.Hostname != cfg.Name {
		dns = append([]string{cfg.Hostname}, dns...)
	}
	if err := ops.WriteSelfSigned(cfg.selfSignedCert(), cfg.selfSignedKey(), dns, ips); err != nil {
		return fmt.Errorf("create self-signed certificate: %w", err)
	}
	return nil
}

// mailTLS is the TLS configuration of the mail listeners: the configured
// certificate (reloaded when its files change), else the self-signed one.
func mailTLS(cfg *nodeConfig, log *slog.Logger) (*tls.Config, error) {
	cert, key := cfg.TLSCert, cfg.TLSKey
	if cert == "" {
		cert, key = cfg.selfSignedCert(), cfg.selfSignedKey()
		if _, err := os.Stat(cert); errors.Is(err, os.ErrNotExist) {
			if err := makeSelfSigned(cfg); err != nil {
				return nil, err
			}
		}
	}
	r, err := ops.NewCertReloader(cert, key, log)
	if err != nil {
		return nil, err
	}
	return ops.MailTLSConfig(r), nil
}

// prepareDataDir refuses to initialise over an existing node, and makes
// the data directory private (datadir.go).
func prepareDataDir(cfg *nodeConfig) error {
	if cfg.initialized() {
		return fmt.Errorf("%s already holds a node (%s): start it with `raftmail serve --data-dir %s`, or pick another --data-dir", cfg.dataDir, cfg.path(configFile), cfg.dataDir)
	}
	if err := prepareNewDataDir(cfg.dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.path("cluster"), 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	return nil
}

// clearDepartedNode deletes what a node that left or was removed kept in
// its data directory, before a new join there.
func clearDepartedNode(cfg *nodeConfig) error {
	for _, p := range []string{configFile, adminTokenFile, "cluster", "store", "tls"} {
		if err := os.RemoveAll(cfg.path(p)); err != nil {
			return fmt.Errorf("clear the departed node's data in %s: %w", cfg.dataDir, err)
		}
	}
	if err := cluster.ClearDeparture(cfg.dataDir); err != nil {
		return err
	}
	return prepareDataDir(cfg)
}

// initCluster creates a new cluster in cfg's data directory: CA, node
// certificate, gossip key, admin token, a bootstrapped one-node Raft with
// the secrets in the replicated store, and a first join token.
func initCluster(cfg *nodeConfig, clusterName string, tokenTTL time.Duration, log *slog.Logger) (cluster.Token, error) {
	if err := prepareDataDir(cfg); err != nil {
		return cluster.Token{}, err
	}
	ca, err := cluster.NewCA(clusterName)
	if err != nil {
		return cluster.Token{}, err
	}
	key, keyPEM, err := cluster.NewNodeKey()
	if err != nil {
		return cluster.Token{}, err
	}
	dns, ips := certNames(cfg)
	certPEM, err := ca.IssueNodeCertFor(cfg.certLifetime(), cfg.Name, key.Public(), dns, ips)
	if err != nil {
		return cluster.Token{}, err
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		return cluster.Token{}, err
	}
	kek, err := cluster.NewKEK()
	if err != nil {
		return cluster.Token{}, err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{cfg.kekFile(), []byte(hex.EncodeToString(kek))},
		{cfg.caFile(), ca.CertPEM},
		{cfg.certFile(), append(append([]byte{}, certPEM...), ca.CertPEM...)},
		{cfg.keyFile(), keyPEM},
		{cfg.gossipFile(), []byte(hex.EncodeToString(gossipKey))},
		{cfg.path(adminTokenFile), []byte(randomHex(24))},
	} {
		if err := writeSecret(f.path, f.data); err != nil {
			return cluster.Token{}, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	if err := makeSelfSigned(cfg); err != nil {
		return cluster.Token{}, err
	}
	cfg.Bootstrap = true
	rt, err := startRuntime(cfg, log, newLifecycle(log))
	if err != nil {
		return cluster.Token{}, err
	}
	defer rt.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.node.WaitLeading(ctx); err != nil {
		return cluster.Token{}, fmt.Errorf("the new one-node cluster did not elect itself leader: %w", err)
	}
	if err := rt.node.InstallSecrets(ctx, clusterName, ca, gossipKey); err != nil {
		return cluster.Token{}, fmt.Errorf("store cluster secrets: %w", err)
	}
	tok, _, err := rt.node.CreateToken(ctx, tokenTTL, 1, "created by init")
	if err != nil {
		return cluster.Token{}, fmt.Errorf("create join token: %w", err)
	}
	// Written last: a data directory with raftmail.toml is a complete node.
	cfg.ClusterName = clusterName
	if err := cfg.save(); err != nil {
		return cluster.Token{}, fmt.Errorf("write node configuration: %w", err)
	}
	return tok, nil
}

// runtime is a running node: store, cluster node, admin API and mail.
type runtime struct {
	store *storage.Store
	node  *cluster.Node
	admin *ops.Admin
	mail  *mailServers
	log   *slog.Logger
	// metrics is the registry the admin API serves (set by serve);
	// the mail listeners add their connection figures to it.
	metrics *prometheus.Registry
	lc      *lifecycle
	// gossip carries the login throttle records between the nodes.
	gossip *cluster.GossipChannel
	// step is what shutdown is doing, for the log when it takes too long.
	step shutdownStep
}

func loadClusterCreds(cfg *nodeConfig) (*cluster.Config, error) {
	if err := finishCertRenewal(cfg); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(cfg.caFile())
	if err != nil {
		return nil, fmt.Errorf("read cluster CA: %w (is %s a Raftmail data directory?)", err, cfg.dataDir)
	}
	ca, err := cluster.ParseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.caFile(), err)
	}
	cert, err := tls.LoadX509KeyPair(cfg.certFile(), cfg.keyFile())
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
	}
	gkHex, err := os.ReadFile(cfg.gossipFile())
	if err != nil {
		return nil, fmt.Errorf("read gossip key: %w", err)
	}
	gk, err := hex.DecodeString(strings.TrimSpace(string(gkHex)))
	if err != nil {
		return nil, fmt.Errorf("%s: not hex: %w", cfg.gossipFile(), err)
	}
	cc := &cluster.Config{CACert: ca, Cert: cert, GossipKey: gk}
	// A node joined before CA keys were sealed has no KEK: it runs, but
	// cannot sign (admit a join, renew its certificate).
	if b, err := os.ReadFile(cfg.kekFile()); err == nil {
		if cc.CAKeyKEK, err = hex.DecodeString(strings.TrimSpace(string(b))); err != nil {
			return nil, fmt.Errorf("%s: not hex: %w", cfg.kekFile(), err)
		}
		if len(cc.CAKeyKEK) == 0 {
			cc.CAKeyKEK = nil // joined through a node that had none
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the CA key-encryption key: %w", err)
	}
	return cc, nil
}

// keepRenewedCert replaces the node's certificate and key files with a
// renewed pair. Both are written next to the old ones first (".next"),
// then renamed key first; finishCertRenewal completes a replacement that
// a crash cut short, so the files always hold a matching pair.
func keepRenewedCert(cfg *nodeConfig, certPEM, keyPEM []byte) error {
	certNext, keyNext := cfg.certFile()+".next", cfg.keyFile()+".next"
	if err := writeSecret(certNext, certPEM); err != nil {
		return err
	}
	if err := writeSecret(keyNext, keyPEM); err != nil {
		return err
	}
	if err := os.Rename(keyNext, cfg.keyFile()); err != nil {
		return err
	}
	return os.Rename(certNext, cfg.certFile())
}

// finishCertRenewal completes or drops a replacement of the certificate
// files that keepRenewedCert did not finish.
func finishCertRenewal(cfg *nodeConfig) error {
	certNext, keyNext := cfg.certFile()+".next", cfg.keyFile()+".next"
	if _, err := os.Stat(certNext); err != nil {
		_ = os.Remove(keyNext)
		return nil
	}
	key := keyNext
	if _, err := os.Stat(keyNext); err != nil {
		key = cfg.keyFile() // renamed already
	}
	if _, err := tls.LoadX509KeyPair(certNext, key); err != nil {
		_ = os.Remove(certNext)
		_ = os.Remove(keyNext)
		return nil // cut short while being written: the old pair stands
	}
	if key == keyNext {
		if err := os.Rename(keyNext, cfg.keyFile()); err != nil {
			return fmt.Errorf("finish the renewal of the node certificate: %w", err)
		}
	}
	if err := os.Rename(certNext, cfg.certFile()); err != nil {
		return fmt.Errorf("finish the renewal of the node certificate: %w", err)
	}
	return nil
}

// startRuntime opens the store and starts the cluster node. The admin API
// is started by serve only. A store or Raft state that fails stops the
// process through lc.
func startRuntime(cfg *nodeConfig, log *slog.Logger, lc *lifecycle) (*runtime, error) {
	cc, err := loadClusterCreds(cfg)
	if err != nil {
		return nil, err
	}
	floorBytes, floorPct, err := cfg.freeSpaceFloor()
	if err != nil {
		return nil, err
	}
	store, err := storage.Open(storage.Config{
		Dir: cfg.storeDir(), Logger: log.With("component", "storage"), ApplyNoSync: true,
		MinFreeBytes: floorBytes, MinFreePercent: floorPct, OnFatal: lc.fatal,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.storeDir(), err)
	}
	cc.NodeName = cfg.Name
	cc.DataDir = cfg.dataDir
	cc.ClusterBind = cfg.ClusterAddr
	cc.ClusterAdvertise = cfg.ClusterAdvertise
	cc.GossipBind = cfg.GossipAddr
	cc.GossipAdvertise = cfg.GossipAdvertise
	cc.Bootstrap = cfg.Bootstrap
	cc.Seeds = cfg.Seeds
	cc.Meta = map[string]string{"admin": cfg.AdminAddr, ops.MetaHostname: cfg.Hostname, ops.MetaMailIP: cfg.mailIP()}
	cc.HeartbeatTimeout = cfg.RaftTimeout.Duration
	cc.ElectionTimeout = cfg.RaftTimeout.Duration
	cc.SnapshotThreshold = cfg.SnapshotThreshold
	cc.SnapshotInterval = cfg.SnapshotInterval.Duration
	cc.TrailingLogs = cfg.TrailingLogs
	cc.GossipInterval = cfg.GossipInterval.Duration
	cc.DeadServerGrace = cfg.DeadServerGrace.Duration
	cc.CertLifetime = cfg.certLifetime()
	cc.OnCertRenewed = func(certPEM, keyPEM []byte) error { return keepRenewedCert(cfg, certPEM, keyPEM) }
	cc.Logger = log
	cc.OnFatal = lc.fatal
	cc.OnRemoved = lc.removed
	cc.Gossip = cluster.NewGossipChannel()
	node, err := cluster.New(*cc, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	if err := node.Start(); err != nil {
		store.Close()
		if errors.Is(err, cluster.ErrDeparted) {
			return nil, &exitError{code: exitDeparted, err: err}
		}
		return nil, err
	}
	return &runtime{store: store, node: node, log: log, lc: lc, gossip: cc.Gossip}, nil
}

// close shuts down in reverse order: mail listeners (letting messages in
// the middle of a commit finish), admin API, cluster node, store, within
// about defaultShutdownTimeout (nothing bounds the cluster node and the
// store: serve bounds the whole).
func (rt *runtime) close() { rt.shutdown(defaultShutdownTimeout) }

// shutdown is close with the mail and admin steps fitted into timeout.
func (rt *runtime) shutdown(timeout time.Duration) {
	if rt.mail != nil {
		rt.step.set("mail listeners: sessions in the middle of a commit")
		ctx, cancel := context.WithTimeout(context.Background(), min(20*time.Second, timeout*2/3))
		rt.mail.shutdown(ctx)
		cancel()
	}
	if rt.admin != nil {
		rt.step.set("admin API: requests in flight")
		ctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, timeout/6))
		_ = rt.admin.Shutdown(ctx)
		cancel()
	}
	rt.step.set("cluster node: Raft, gossip, cluster port")
	if err := rt.node.Shutdown(); err != nil {
		rt.log.Warn("cluster shutdown", "err", err)
	}
	rt.step.set("store")
	if err := rt.store.Close(); err != nil {
		rt.log.Warn("store close", "err", err)
	}
	rt.step.set("done")
}

func newInitCmd() *cobra.Command {
	var clusterName string
	var tokenTTL time.Duration
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a new cluster with this node as its first member",
		Long: `Create a new cluster in the data directory: a cluster CA, this node's
certificate, the gossip key, an admin token, and a one-node Raft. Prints a
join token for the next nodes. Then start the node with 'raftmail serve'.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadNodeConfig(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := newLogger(cfg, io.Discard)
			if err != nil {
				return err
			}
			tok, err := initCluster(cfg, clusterName, tokenTTL, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), `Initialized cluster %q with node %q in %s.

Start this node:
  raftmail serve --data-dir %s

Join another node (token valid %s):
  raftmail join --token %s %s
`, clusterName, cfg.Name, cfg.dataDir, cfg.dataDir, ttlText(tokenTTL), tok.String(), cfg.ClusterAdvertise)
			return nil
		},
	}
	addNodeFlags(c.Flags())
	c.Flags().StringVar(&clusterName, "cluster-name", "raftmail", "name of the new cluster; also its authserv-id in Authentication-Results (your mail domain is a good choice)")
	c.Flags().DurationVar(&tokenTTL, "token-ttl", 24*time.Hour, "validity of the first join token (0 = no expiry)")
	return c
}

func ttlText(d time.Duration) string {
	if d == 0 {
		return "until revoked"
	}
	return "for " + d.String()
}

func newServeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run this node",
		Long: `Run the node whose data directory is --data-dir. A data directory that holds
no node yet becomes a new one-node cluster, so 'raftmail serve' alone just works.
Stops cleanly on SIGINT or SIGTERM, within --shutdown-timeout (else, or at a
second signal, it exits 1 and logs what was stuck). Below --min-free-space it
refuses new mail until space is freed; if a write to its disk fails anyway it
exits 74 (restart it once the disk has room). A node removed from the cluster
('raftmail remove') stops in order and exits 3; after 'raftmail leave' it stops
and exits 0. Either way it then refuses to start from this data directory
(exit 3) until it joins again with a new token.

Each mail protocol has two connection caps, per client address and per node
(--smtp-conn-limit-per-ip, --imap-conn-limit, ...). A client past one is
refused at once, before any session starts: SMTP 421 4.7.0, IMAP
* BYE [UNAVAILABLE], POP3 -ERR [SYS/TEMP]; on 465, 993 and 995 the connection
is just closed. Loopback is exempt from the per-address caps
(--conn-limit-exempt). At start the node caps plus 2048 descriptors for the
store, Raft and the cluster ports must fit RLIMIT_NOFILE (the soft limit is
raised to the hard one); if they do not, they are scaled down to fit and a
warning says how to raise the limit (systemd LimitNOFILE=, docker --ulimit).
IMAP and POP3 connections must log in within a minute
(--imap-preauth-timeout, --pop3-preauth-timeout); logged-in IMAP sessions are
closed after 30 minutes without input (--imap-idle-timeout).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadNodeConfig(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := newLogger(cfg, os.Stderr)
			if err != nil {
				return err
			}
			if !cfg.initialized() {
				log.Info("no node in the data directory: creating a one-node cluster", "data_dir", cfg.dataDir)
				tok, err := initCluster(cfg, "raftmail", 24*time.Hour, log)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "New cluster. Join other nodes with:\n  raftmail join --token %s %s\n", tok.String(), cfg.ClusterAdvertise)
			}
			return serve(cfg, log)
		},
	}
	addNodeFlags(c.Flags())
	return c
}

func serve(cfg *nodeConfig, log *slog.Logger) error {
	privateUmask()
	if err := checkDataDirPerms(cfg.dataDir); err != nil {
		return err
	}
	tokenBytes, err := os.ReadFile(cfg.path(adminTokenFile))
	if err != nil {
		return fmt.Errorf("read admin token: %w", err)
	}
	if d, err := cluster.ReadDeparture(cfg.dataDir); err != nil {
		return err
	} else if d != nil {
		return &exitError{code: exitDeparted, err: d}
	}
	lc := newLifecycle(log)
	rt, err := startRuntime(cfg, log, lc)
	if err != nil {
		return err
	}
	rt.metrics = prometheus.NewRegistry()
	admin, err := ops.NewAdmin(ops.AdminConfig{
		Addr:  cfg.AdminAddr,
		Token: strings.TrimSpace(string(tokenBytes)),
		Node:  rt.node,
		// Leave returns once the node has left; the ordered shutdown
		// follows (the answer is sent before the admin API stops).
		Leave: func(ctx context.Context, force bool) error {
			if err := rt.node.Leave(ctx, force); err != nil {
				return err
			}
			lc.requestStop(stopRequest{why: "left the cluster"})
			return nil
		},
		Registry: rt.metrics,
		Logger:   log.With("component", "admin"),
	})
	if err == nil {
		err = admin.Start()
	}
	if err != nil {
		rt.close()
		return err
	}
	rt.admin = admin
	mail, err := startMail(cfg, rt, log)
	if err != nil {
		rt.close()
		return err
	}
	rt.mail = mail
	lc.setMail(mail)
	// GET /v1/accepted/{queue_id}: from a sender's "queued as ID" to the
	// stored blob.
	admin.SetAccepted(func(id string) (storage.Hash, int64, time.Time, bool) {
		b, ok := mail.accept.Accepted(id)
		return b.Blob, b.Size, b.Time, ok
	})
	log.Info("node running", "name", cfg.Name, "cluster", cfg.ClusterAdvertise, "gossip", cfg.GossipAdvertise, "admin", admin.Addr(), "data_dir", cfg.dataDir,
		"space", rt.store.Space().String())

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var exitErr error
	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String(), "timeout", cfg.shutdownTimeout())
	case r := <-lc.stopReq:
		log.Warn("stopping: "+r.why, "timeout", cfg.shutdownTimeout())
		exitErr = r.err
	}
	if err := stopWithin(rt.shutdown, &rt.step, log, cfg.shutdownTimeout(), sig); err != nil {
		return err // main exits at once, whatever is still running
	}
	signal.Stop(sig)
	log.Info("stopped")
	return exitErr
}

// stopWithin runs the ordered shutdown and returns nil once it finished,
// or an error (having logged the step it is at and where Raftmail's
// goroutines are) when timeout passes or another signal arrives on sig
// first. The caller then exits at once.
func stopWithin(shutdown func(time.Duration), step *shutdownStep, log *slog.Logger, timeout time.Duration, sig <-chan os.Signal) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		shutdown(timeout)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case s := <-sig:
		log.Error("second signal: exiting without finishing the shutdown", "signal", s.String(),
			"step", step.String(), "running", stuckSummary(12))
		return fmt.Errorf("stopped by a second %s during shutdown (at: %s)", s, step)
	case <-t.C:
		log.Error("shutdown did not finish in time: exiting", "timeout", timeout,
			"step", step.String(), "running", stuckSummary(12))
		return fmt.Errorf("shutdown did not finish within %s (--shutdown-timeout; at: %s)", timeout, step)
	}
}

func newJoinCmd() *cobra.Command {
	var token string
	c := &cobra.Command{
		Use:   "join --token TOKEN [HOST:PORT]",
		Short: "Join this node to an existing cluster",
		Long: `Join a new node to a cluster. HOST:PORT is the cluster port (7947) of any member;
without it the address recorded in the token is used. The token (from
'raftmail init' or 'raftmail token create') proves the node may join and pins the
cluster's CA, so the node only talks to the cluster the token was made for.
Then start the node with 'raftmail serve'; it becomes a voter within seconds.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef(cmd, "expected at most one HOST:PORT, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				token = os.Getenv("RAFTMAIL_TOKEN")
			}
			if token == "" {
				return usagef(cmd, "--token is required (create one on a member with `raftmail token create`)")
			}
			tok, err := cluster.ParseToken(token)
			if err != nil {
				return err
			}
			cfg, err := loadNodeConfig(cmd.Flags())
			if err != nil {
				return err
			}
			addrs := args
			if len(addrs) == 0 {
				addrs = tok.Addrs
			}
			if len(addrs) == 0 {
				return usagef(cmd, "give the cluster port of a member, for example 10.0.0.1:7947")
			}
			return joinCluster(cmd, cfg, tok, addrs)
		},
	}
	addNodeFlags(c.Flags())
	c.Flags().StringVar(&token, "token", "", "join token (env RAFTMAIL_TOKEN)")
	return c
}

func joinCluster(cmd *cobra.Command, cfg *nodeConfig, tok cluster.Token, addrs []string) error {
	departed, err := cluster.ReadDeparture(cfg.dataDir)
	if err != nil {
		return err
	}
	if departed == nil {
		if err := prepareDataDir(cfg); err != nil {
			return err
		}
	}
	key, keyPEM, err := cluster.NewNodeKey()
	if err != nil {
		return err
	}
	pubPEM, err := cluster.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	dns, ips := certNames(cfg)
	req := cluster.JoinRequest{
		NodeName: cfg.Name, PublicKeyPEM: pubPEM,
		ClusterAddr: cfg.ClusterAdvertise, GossipAddr: cfg.GossipAdvertise,
		DNSNames: dns, IPs: ips,
	}
	var res *cluster.JoinResult
	var errs []error
	for _, addr := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err = cluster.RequestJoin(ctx, addr, tok, req)
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, cluster.ErrJoinRefused) {
			return err
		}
		errs = append(errs, err)
	}
	if res == nil {
		return errors.Join(errs...)
	}
	if departed != nil {
		// The node that lived here left or was removed: its state goes,
		// the new node starts afresh.
		if err := clearDepartedNode(cfg); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{cfg.kekFile(), []byte(hex.EncodeToString(res.CAKeyKEK))},
		{cfg.caFile(), res.CACertPEM},
		{cfg.certFile(), append(append([]byte{}, res.CertPEM...), res.CACertPEM...)},
		{cfg.keyFile(), keyPEM},
		{cfg.gossipFile(), []byte(hex.EncodeToString(res.GossipKey))},
		{cfg.path(adminTokenFile), []byte(randomHex(24))},
	} {
		if err := writeSecret(f.path, f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	if err := makeSelfSigned(cfg); err != nil {
		return err
	}
	cfg.Seeds = res.Seeds
	cfg.Bootstrap = false
	cfg.ClusterName = res.ClusterName
	if err := cfg.save(); err != nil {
		return fmt.Errorf("write node configuration: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), `Joined cluster %q as node %q (data in %s).

Start this node:
  raftmail serve --data-dir %s
`, res.ClusterName, cfg.Name, cfg.dataDir, cfg.dataDir)
	return nil
}
