package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/protocol/connlimit"
	"github.com/raftmail/raftmail/protocol/smtp"
)

// nodeConfig is the node-local configuration: addresses, data directory,
// tuning. Everything else lives in the replicated store. Precedence, lowest
// first: defaults, <data-dir>/raftmail.toml (written by init and join), the
// file named by --config, RAFTMAIL_* environment variables, flags.
type nodeConfig struct {
	Name             string   `toml:"name"`
	ClusterAddr      string   `toml:"cluster_addr"`
	ClusterAdvertise string   `toml:"cluster_advertise,omitempty"`
	GossipAddr       string   `toml:"gossip_addr"`
	GossipAdvertise  string   `toml:"gossip_advertise,omitempty"`
	AdminAddr        string   `toml:"admin_addr"`
	Seeds            []string `toml:"seeds,omitempty"`
	Bootstrap        bool     `toml:"bootstrap,omitempty"`
	// Mail: the host name said in greetings and Received headers, the
	// listeners ("off" disables one), and the certificate ("" = the
	// self-signed one made at init, in <data-dir>/tls/).
	Hostname        string `toml:"hostname,omitempty"`
	SMTPAddr        string `toml:"smtp_addr"`
	SubmissionAddr  string `toml:"submission_addr"`
	SubmissionsAddr string `toml:"submissions_addr"`
	IMAPAddr        string `toml:"imap_addr"`
	IMAPSAddr       string `toml:"imaps_addr"`
	POP3Addr        string `toml:"pop3_addr"`
	POP3SAddr       string `toml:"pop3s_addr"`
	TLSCert         string `toml:"tls_cert,omitempty"`
	TLSKey          string `toml:"tls_key,omitempty"`
	// Outbound delivery: the DNS server for MX, address and TXT lookups
	// (host:port; "" = the system's resolver) and the port of remote MX
	// hosts (0 = 25; other values are for tests).
	DNSResolver string `toml:"dns_resolver,omitempty"`
	// AuthServID names the cluster in Authentication-Results; "" = the
	// cluster name given at init. Give every node the same value.
	AuthServID string `toml:"authserv_id,omitempty"`
	// ClusterName is the name given at init, recorded by init and join
	// (not a flag): the default authserv-id from a node's first run on,
	// before the replicated store has reached a joined node.
	ClusterName string `toml:"cluster_name,omitempty"`
	SMTPOutPort int    `toml:"smtp_out_port,omitempty"`
	// Accepting mail: the largest message (SMTP and IMAP APPEND), the
	// node's budget of bytes in flight from unauthenticated senders, and
	// of message bytes held in memory (0 = the defaults).
	MaxMessageSize byteSize `toml:"max_message_size,omitempty"`
	MXInFlight     byteSize `toml:"mx_inflight,omitempty"`
	SpoolMemory    byteSize `toml:"spool_memory,omitempty"`

	// SubmissionSenderCheck says what of a submitted message must name an
	// address of the authenticated user: "both" (MAIL FROM and the From
	// header field), "envelope", "header" or "off"; "" = "both".
	SubmissionSenderCheck string `toml:"submission_sender_check,omitempty"`

	// Connection caps of the mail listeners, per protocol: the most
	// connections one client address (…PerIP; 0 = no cap) and the whole
	// node (…ConnLimit; at least 1) hold at once. Submission counts 587
	// and 465 together, IMAP 143 and 993, POP3 110 and 995. The node caps
	// are scaled down at start when they do not fit RLIMIT_NOFILE.
	SMTPConnLimit            int `toml:"smtp_conn_limit"`
	SMTPConnLimitPerIP       int `toml:"smtp_conn_limit_per_ip"`
	SubmissionConnLimit      int `toml:"submission_conn_limit"`
	SubmissionConnLimitPerIP int `toml:"submission_conn_limit_per_ip"`
	IMAPConnLimit            int `toml:"imap_conn_limit"`
	IMAPConnLimitPerIP       int `toml:"imap_conn_limit_per_ip"`
	POP3ConnLimit            int `toml:"pop3_conn_limit"`
	POP3ConnLimitPerIP       int `toml:"pop3_conn_limit_per_ip"`
	// ConnLimitExempt lists the client networks not held to the per-IP
	// caps (still to the node caps): CIDRs or addresses, comma separated;
	// "" or "none" = none.
	ConnLimitExempt string `toml:"conn_limit_exempt"`
	// Timeouts before login (IMAP, POP3) and of an idle logged-in IMAP
	// session; 0 = the package default (60 s, 60 s, 30 min).
	IMAPPreAuthTimeout duration `toml:"imap_preauth_timeout,omitempty"`
	IMAPIdleTimeout    duration `toml:"imap_idle_timeout,omitempty"`
	POP3PreAuthTimeout duration `toml:"pop3_preauth_timeout,omitempty"`

	LogLevel  string `toml:"log_level,omitempty"`
	LogFormat string `toml:"log_format,omitempty"`

	// MinFreeSpace is the free-space floor of the data directory's file
	// system, below which the node refuses new mail: a size, a share
	// ("5%"), or both ("1GiB,5%": the smaller applies); "0" = none; "" =
	// defaultMinFreeSpace.
	MinFreeSpace string `toml:"min_free_space,omitempty"`
	// ShutdownTimeout bounds the ordered shutdown on SIGTERM; 0 =
	// defaultShutdownTimeout.
	ShutdownTimeout duration `toml:"shutdown_timeout,omitempty"`

	// Tuning, mostly for tests and the chaos suite.
	RaftTimeout       duration `toml:"raft_timeout,omitempty"` // heartbeat and election timeout
	SnapshotThreshold uint64   `toml:"snapshot_threshold,omitempty"`
	SnapshotInterval  duration `toml:"snapshot_interval,omitempty"`
	TrailingLogs      uint64   `toml:"trailing_logs,omitempty"`
	GossipInterval    duration `toml:"gossip_interval,omitempty"`
	DeadServerGrace   duration `toml:"dead_server_grace,omitempty"`
	CertLifetime      duration `toml:"cert_lifetime,omitempty"`
	// Outbound delivery: how long a node holds a queue entry for one
	// attempt, and the delay before a deferred entry is tried again (the
	// same after every attempt); 0 = the package defaults (5m, and 5m
	// doubling to hourly).
	DeliveryLease duration `toml:"delivery_lease,omitempty"`
	DeliveryRetry duration `toml:"delivery_retry,omitempty"`

	dataDir string
}

// duration is a time.Duration written as "500ms" in TOML.
type duration struct{ time.Duration }

func (d duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// defaultMinFreeSpace: 1 GiB holds, on a disk of any size, what the node
// must still write when it refuses mail (Raft log and snapshots, Pebble's
// flushes, compactions and blob-file rewrites, bodies in flight); 5 %
// keeps that floor from taking a large part of a small disk. DESIGN.md,
// "A node protects itself: disk".
const defaultMinFreeSpace = "1GiB,5%"

// defaultShutdownTimeout bounds the ordered shutdown: 20 s for mail
// sessions in the middle of a commit, then the admin API, Raft, gossip
// and the store.
const defaultShutdownTimeout = 30 * time.Second

const (
	configFile     = "raftmail.toml"
	adminTokenFile = "admin.token"
	envPrefix      = "RAFTMAIL_"
)

// Paths inside a data directory.
func (c *nodeConfig) path(parts ...string) string {
	return filepath.Join(append([]string{c.dataDir}, parts...)...)
}
func (c *nodeConfig) storeDir() string { return c.path("store") }
func (c *nodeConfig) caFile() string   { return c.path("cluster", "ca.crt") }
func (c *nodeConfig) certFile() string { return c.path("cluster", "node.crt") }
func (c *nodeConfig) keyFile() string  { return c.path("cluster", "node.key") }

// certLifetime is --cert-lifetime, or the default.
func (c *nodeConfig) certLifetime() time.Duration {
	if c.CertLifetime.Duration > 0 {
		return c.CertLifetime.Duration
	}
	return cluster.DefaultCertLifetime
}

// kekFile holds the key-encryption key of the CA key in the replicated
// store (cluster/DESIGN.md, "Certificates").
func (c *nodeConfig) kekFile() string { return c.path("cluster", "ca.kek") }
func (c *nodeConfig) gossipFile() string {
	return c.path("cluster", "gossip.key")
}
func (c *nodeConfig) initialized() bool {
	_, err := os.Stat(c.path(configFile))
	return err == nil
}

// fqdn is this host's name, as complete as the system knows it.
func fqdn() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

func (c *nodeConfig) selfSignedCert() string { return c.path("tls", "self-signed.crt") }
func (c *nodeConfig) selfSignedKey() string  { return c.path("tls", "self-signed.key") }

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/raftmail"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "raftmail")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "raftmail")
	}
	return "raftmail-data"
}

func defaultNodeConfig() nodeConfig {
	name, _ := os.Hostname()
	if name == "" {
		name = "raftmail1"
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	return nodeConfig{
		Name:            name,
		ClusterAddr:     "0.0.0.0:7947",
		GossipAddr:      "0.0.0.0:7946",
		AdminAddr:       "127.0.0.1:7948",
		Hostname:        fqdn(),
		SMTPAddr:        "0.0.0.0:25",
		SubmissionAddr:  "0.0.0.0:587",
		SubmissionsAddr: "0.0.0.0:465",
		IMAPAddr:        "0.0.0.0:143",
		IMAPSAddr:       "0.0.0.0:993",
		POP3Addr:        "0.0.0.0:110",
		POP3SAddr:       "0.0.0.0:995",
		LogLevel:        "info",
		LogFormat:       "text",

		SMTPConnLimit:            1000,
		SMTPConnLimitPerIP:       50,
		SubmissionConnLimit:      500,
		SubmissionConnLimitPerIP: 20,
		IMAPConnLimit:            8000,
		IMAPConnLimitPerIP:       50,
		POP3ConnLimit:            1000,
		POP3ConnLimitPerIP:       20,
		ConnLimitExempt:          connlimit.DefaultExempt,
	}
}

// addNodeFlags declares the node-local settings on a command.
func addNodeFlags(fs *pflag.FlagSet) {
	fs.String("name", "", "node name, unique in the cluster (default: the host name)")
	fs.String("cluster-addr", "", "listen address of the cluster port, Raft and RPC over mutual TLS (default 0.0.0.0:7947)")
	fs.String("gossip-addr", "", "listen address for gossip, TCP and UDP (default 0.0.0.0:7946)")
	fs.String("admin-addr", "", "listen address of the admin HTTP API (default 127.0.0.1:7948)")
	fs.String("advertise", "", "IP address other nodes use to reach this one (default: the listen address, or this host's first private IP)")
	fs.StringSlice("seeds", nil, "gossip addresses of existing members to join (comma separated)")
	fs.String("hostname", "", "host name in SMTP greetings and Received headers (default: this host's name)")
	fs.String("smtp-addr", "", `SMTP MX listener, or "off" (default 0.0.0.0:25)`)
	fs.String("submission-addr", "", `submission listener with STARTTLS, or "off" (default 0.0.0.0:587)`)
	fs.String("submissions-addr", "", `submission listener with implicit TLS, or "off" (default 0.0.0.0:465)`)
	fs.String("imap-addr", "", `IMAP listener with STARTTLS, or "off" (default 0.0.0.0:143)`)
	fs.String("imaps-addr", "", `IMAP listener with implicit TLS, or "off" (default 0.0.0.0:993)`)
	fs.String("pop3-addr", "", `POP3 listener with STLS, or "off" (default 0.0.0.0:110)`)
	fs.String("pop3s-addr", "", `POP3 listener with implicit TLS, or "off" (default 0.0.0.0:995)`)
	fs.String("tls-cert", "", "certificate file (PEM, full chain) for the mail listeners; reloaded when it changes (default: a self-signed one made at init)")
	fs.String("tls-key", "", "key file (PEM) for --tls-cert")
	fs.String("dns-resolver", "", `DNS server (host:port) for MX, address and TXT lookups (default: the system's resolver)`)
	fs.String("authserv-id", "", "name of this cluster in Authentication-Results headers, the same on every node (default: the cluster name given at init)")
	fs.Int("smtp-out-port", 0, "TCP port of remote MX hosts for outbound delivery; for tests (default 25)")
	fs.String("max-message-size", "", "largest message accepted by SMTP and IMAP APPEND, e.g. 50MiB (default 50MiB)")
	fs.String("mx-inflight", "", "bytes of mail from unauthenticated senders (MX) received or stored at once on this node; past it senders get 452 4.3.1 and retry later (default 512MiB)")
	fs.String("spool-memory", "", "bytes of incoming messages held in memory on this node; the rest go to spool files in the data directory (default 64MiB)")
	fs.String("submission-sender-check", "", `what of a submitted message must be the authenticated user's own address or an alias delivering to them: "both" (MAIL FROM, else 553 5.7.1, and every From header address, else 550 5.7.1; a missing or repeated From is 550 5.6.0), "envelope" (MAIL FROM only), "header" (From only) or "off" (default both)`)
	fs.Int("smtp-conn-limit", 0, "most SMTP MX connections (port 25) this node holds at once; past it clients get 421 4.7.0 (default 1000; scaled down at start if the node caps do not fit the file descriptor limit)")
	fs.Int("smtp-conn-limit-per-ip", 0, "most SMTP MX connections one client address holds at once, 0 = no cap (default 50, as Postfix's smtpd_client_connection_count_limit)")
	fs.Int("submission-conn-limit", 0, "most submission connections (587 and 465 together) this node holds at once (default 500)")
	fs.Int("submission-conn-limit-per-ip", 0, "most submission connections (587 and 465) one client address holds at once, 0 = no cap (default 20)")
	fs.Int("imap-conn-limit", 0, "most IMAP connections (143 and 993 together) this node holds at once; past it clients get * BYE [UNAVAILABLE] (default 8000)")
	fs.Int("imap-conn-limit-per-ip", 0, "most IMAP connections (143 and 993) one client address holds at once, 0 = no cap (default 50)")
	fs.Int("pop3-conn-limit", 0, "most POP3 connections (110 and 995 together) this node holds at once; past it clients get -ERR [SYS/TEMP] (default 1000)")
	fs.Int("pop3-conn-limit-per-ip", 0, "most POP3 connections (110 and 995) one client address holds at once, 0 = no cap (default 20)")
	fs.String("conn-limit-exempt", "", `client networks not held to the per-IP caps (still to the node caps): CIDRs or addresses, comma separated; "" or "none" for none. IPv6 clients count per /64 (default 127.0.0.0/8,::1)`)
	fs.Duration("imap-preauth-timeout", 0, "an IMAP connection not logged in this long after connecting gets * BYE and is closed (default 60s)")
	fs.Duration("imap-idle-timeout", 0, "a logged-in IMAP connection silent this long, in IDLE too, gets * BYE and is closed; RFC 9051 asks for at least 30m, go-imap ends silent connections itself at 35m (default 30m)")
	fs.Duration("pop3-preauth-timeout", 0, "a POP3 connection not logged in this long after connecting gets -ERR [SYS/TEMP] and is closed (default 60s)")
	fs.String("log-level", "", "debug, info, warn or error (default info)")
	fs.String("log-format", "", "text or json (default text)")
	fs.String("min-free-space", "", `free space to keep on the data directory's file system: below it the node refuses new mail (SMTP 452, IMAP NO [OVERQUOTA]) while Raft goes on; a size, a share ("5%"), both ("1GiB,5%": the smaller), or 0 for none (default `+defaultMinFreeSpace+`)`)
	fs.Duration("shutdown-timeout", 0, "bound on the ordered shutdown after SIGTERM or SIGINT: past it, or at a second signal, the node logs what is still running and exits with status 1 (default 30s)")
	fs.Duration("raft-timeout", 0, "Raft heartbeat and election timeout (default 500ms)")
	fs.Uint64("snapshot-threshold", 0, "Raft log entries between snapshots (default 8192)")
	fs.Duration("snapshot-interval", 0, "how often the snapshot threshold is checked (default 30s)")
	fs.Uint64("trailing-logs", 0, "log entries kept after a snapshot (default 20480)")
	fs.Duration("gossip-interval", 0, "gossip interval; lower for tests (default memberlist's LAN setting)")
	fs.Duration("dead-server-grace", 0, "how long a voter must be dead before the leader removes it (default 5m)")
	fs.Duration("delivery-lease", 0, "how long a node may hold an outbound queue entry for one delivery attempt before another node may take it over; for tests (default 5m)")
	fs.Duration("delivery-retry", 0, "delay before a deferred outbound message is tried again, the same after every attempt; for tests (default 5m, doubling to hourly)")
	fs.Duration("cert-lifetime", 0, "validity of the node certificates this node signs (at a join, and its own renewals, made at two thirds of it); at least 1m (default 720h)")
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagOrEnv returns a flag's value if set on the command line, else the
// RAFTMAIL_* environment variable, else "".
func flagOrEnv(fs *pflag.FlagSet, name string) (string, bool) {
	f := fs.Lookup(name)
	if f != nil && f.Changed {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			return strings.Join(sv.GetSlice(), ","), true
		}
		return f.Value.String(), true
	}
	if v, ok := os.LookupEnv(envName(name)); ok && v != "" {
		return v, true
	}
	return "", false
}

// loadNodeConfig builds the effective configuration for a command.
func loadNodeConfig(fs *pflag.FlagSet) (*nodeConfig, error) {
	cfg := defaultNodeConfig()
	cfg.dataDir = defaultDataDir()
	if v, ok := flagOrEnv(fs, "data-dir"); ok {
		cfg.dataDir = v
	}
	if abs, err := filepath.Abs(cfg.dataDir); err == nil {
		cfg.dataDir = abs
	}
	if cfg.initialized() {
		if err := decodeConfigFile(cfg.path(configFile), &cfg); err != nil {
			return nil, fmt.Errorf("%w (fix or remove the file)", err)
		}
	}
	if v, ok := flagOrEnv(fs, "config"); ok {
		if err := decodeConfigFile(v, &cfg); err != nil {
			return nil, err
		}
	}
	var advertise string
	var errs []error
	set := func(name string, apply func(string) error) {
		if fs.Lookup(name) == nil {
			return
		}
		if v, ok := flagOrEnv(fs, name); ok {
			if err := apply(v); err != nil {
				errs = append(errs, fmt.Errorf("--%s / %s %q: %w", name, envName(name), v, err))
			}
		}
	}
	str := func(dst *string) func(string) error { return func(v string) error { *dst = v; return nil } }
	dur := func(dst *duration) func(string) error {
		return func(v string) error { return dst.UnmarshalText([]byte(v)) }
	}
	integer := func(dst *int) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(v)
			*dst = n
			return err
		}
	}
	num := func(dst *uint64) func(string) error {
		return func(v string) error {
			n, err := strconv.ParseUint(v, 10, 64)
			*dst = n
			return err
		}
	}
	set("name", str(&cfg.Name))
	set("cluster-addr", str(&cfg.ClusterAddr))
	set("gossip-addr", str(&cfg.GossipAddr))
	set("admin-addr", str(&cfg.AdminAddr))
	set("advertise", str(&advertise))
	set("seeds", func(v string) error { cfg.Seeds = splitList(v); return nil })
	set("hostname", str(&cfg.Hostname))
	set("smtp-addr", str(&cfg.SMTPAddr))
	set("submission-addr", str(&cfg.SubmissionAddr))
	set("submissions-addr", str(&cfg.SubmissionsAddr))
	set("imap-addr", str(&cfg.IMAPAddr))
	set("imaps-addr", str(&cfg.IMAPSAddr))
	set("pop3-addr", str(&cfg.POP3Addr))
	set("pop3s-addr", str(&cfg.POP3SAddr))
	set("tls-cert", str(&cfg.TLSCert))
	set("tls-key", str(&cfg.TLSKey))
	set("dns-resolver", str(&cfg.DNSResolver))
	set("authserv-id", str(&cfg.AuthServID))
	set("smtp-out-port", func(v string) error {
		n, err := strconv.Atoi(v)
		if err == nil && (n < 0 || n > 65535) {
			err = errors.New("want a port number")
		}
		cfg.SMTPOutPort = n
		return err
	})
	size := func(dst *byteSize) func(string) error {
		return func(v string) error { return dst.UnmarshalText([]byte(v)) }
	}
	set("max-message-size", size(&cfg.MaxMessageSize))
	set("mx-inflight", size(&cfg.MXInFlight))
	set("spool-memory", size(&cfg.SpoolMemory))
	set("submission-sender-check", str(&cfg.SubmissionSenderCheck))
	set("smtp-conn-limit", integer(&cfg.SMTPConnLimit))
	set("smtp-conn-limit-per-ip", integer(&cfg.SMTPConnLimitPerIP))
	set("submission-conn-limit", integer(&cfg.SubmissionConnLimit))
	set("submission-conn-limit-per-ip", integer(&cfg.SubmissionConnLimitPerIP))
	set("imap-conn-limit", integer(&cfg.IMAPConnLimit))
	set("imap-conn-limit-per-ip", integer(&cfg.IMAPConnLimitPerIP))
	set("pop3-conn-limit", integer(&cfg.POP3ConnLimit))
	set("pop3-conn-limit-per-ip", integer(&cfg.POP3ConnLimitPerIP))
	set("conn-limit-exempt", str(&cfg.ConnLimitExempt))
	set("imap-preauth-timeout", dur(&cfg.IMAPPreAuthTimeout))
	set("imap-idle-timeout", dur(&cfg.IMAPIdleTimeout))
	set("pop3-preauth-timeout", dur(&cfg.POP3PreAuthTimeout))
	set("log-level", str(&cfg.LogLevel))
	set("log-format", str(&cfg.LogFormat))
	set("min-free-space", str(&cfg.MinFreeSpace))
	set("shutdown-timeout", dur(&cfg.ShutdownTimeout))
	set("raft-timeout", dur(&cfg.RaftTimeout))
	set("snapshot-threshold", num(&cfg.SnapshotThreshold))
	set("snapshot-interval", dur(&cfg.SnapshotInterval))
	set("trailing-logs", num(&cfg.TrailingLogs))
	set("gossip-interval", dur(&cfg.GossipInterval))
	set("dead-server-grace", dur(&cfg.DeadServerGrace))
	set("cert-lifetime", dur(&cfg.CertLifetime))
	set("delivery-lease", dur(&cfg.DeliveryLease))
	set("delivery-retry", dur(&cfg.DeliveryRetry))
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if _, _, err := cfg.freeSpaceFloor(); err != nil {
		return nil, err
	}
	if cfg.ShutdownTimeout.Duration < 0 {
		return nil, errors.New("--shutdown-timeout: want a positive duration, or 0 for the default")
	}
	if cfg.DeliveryLease.Duration < 0 || cfg.DeliveryRetry.Duration < 0 {
		return nil, errors.New("--delivery-lease, --delivery-retry: want a positive duration, or 0 for the default")
	}
	if d := cfg.CertLifetime.Duration; d != 0 && d < time.Minute {
		return nil, fmt.Errorf("--cert-lifetime %s: want at least 1m, or 0 for the default (720h)", d)
	}
	if err := cfg.resolveAdvertise(advertise); err != nil {
		return nil, err
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both, or neither for the self-signed certificate")
	}
	if err := cfg.validateConnLimits(); err != nil {
		return nil, err
	}
	if _, err := cfg.senderCheck(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// senderCheck is SubmissionSenderCheck for smtp.Config.
func (c *nodeConfig) senderCheck() (smtp.SenderCheck, error) {
	if c.SubmissionSenderCheck == "" {
		return smtp.SenderCheckBoth, nil
	}
	sc, err := smtp.ParseSenderCheck(c.SubmissionSenderCheck)
	if err != nil {
		return 0, fmt.Errorf("--submission-sender-check (submission_sender_check) %q: want both, envelope, header or off", c.SubmissionSenderCheck)
	}
	return sc, nil
}

// validateConnLimits checks the connection caps and timeouts, from
// whichever source they came.
func (c *nodeConfig) validateConnLimits() error {
	var errs []error
	for _, l := range c.connLimitSettings() {
		if l.perNode < 1 {
			errs = append(errs, fmt.Errorf("--%s-conn-limit (%s_conn_limit) %d: want at least 1", l.protocol, l.protocol, l.perNode))
		}
		if l.perIP < 0 {
			errs = append(errs, fmt.Errorf("--%s-conn-limit-per-ip (%s_conn_limit_per_ip) %d: want 0 (no cap) or more", l.protocol, l.protocol, l.perIP))
		}
	}
	if _, err := connlimit.ParseExempt(c.ConnLimitExempt); err != nil {
		errs = append(errs, fmt.Errorf("--conn-limit-exempt (conn_limit_exempt): %w", err))
	}
	for _, d := range []struct {
		v    duration
		name string
	}{{c.IMAPPreAuthTimeout, "imap-preauth-timeout"}, {c.IMAPIdleTimeout, "imap-idle-timeout"}, {c.POP3PreAuthTimeout, "pop3-preauth-timeout"}} {
		if d.v.Duration < 0 {
			errs = append(errs, fmt.Errorf("--%s %v: want a positive duration, or 0 for the default", d.name, d.v.Duration))
		}
	}
	return errors.Join(errs...)
}

// connLimitSetting is one protocol's caps as configured. protocol is the
// metric label, and the prefix of the flags and TOML keys.
type connLimitSetting struct {
	protocol       string
	perIP, perNode int
}

func (c *nodeConfig) connLimitSettings() []connLimitSetting {
	return []connLimitSetting{
		{"smtp", c.SMTPConnLimitPerIP, c.SMTPConnLimit},
		{"submission", c.SubmissionConnLimitPerIP, c.SubmissionConnLimit},
		{"imap", c.IMAPConnLimitPerIP, c.IMAPConnLimit},
		{"pop3", c.POP3ConnLimitPerIP, c.POP3ConnLimit},
	}
}

// freeSpaceFloor parses MinFreeSpace into storage.Config's MinFreeBytes
// and MinFreePercent.
func (c *nodeConfig) freeSpaceFloor() (bytes int64, percent float64, err error) {
	v := c.MinFreeSpace
	if v == "" {
		v = defaultMinFreeSpace
	}
	bad := func(why string) error {
		return fmt.Errorf("--min-free-space %q: %s (want a size like 1GiB, a share like 5%%, both as 1GiB,5%%, or 0)", v, why)
	}
	parts := splitList(v)
	if len(parts) == 0 || len(parts) > 2 {
		return 0, 0, bad("one size and one share at most")
	}
	var haveBytes, havePct bool
	for _, p := range parts {
		if num, ok := strings.CutSuffix(p, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f < 0 || f >= 100 || havePct {
				return 0, 0, bad("a share is one number from 0 to under 100")
			}
			percent, havePct = f, true
			continue
		}
		n, err := parseByteSize(p)
		if err != nil || haveBytes {
			return 0, 0, bad("not a size")
		}
		bytes, haveBytes = int64(n), true
	}
	return bytes, percent, nil
}

// shutdownTimeout is ShutdownTimeout or its default.
func (c *nodeConfig) shutdownTimeout() time.Duration {
	if c.ShutdownTimeout.Duration > 0 {
		return c.ShutdownTimeout.Duration
	}
	return defaultShutdownTimeout
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// resolveAdvertise fills the advertised cluster and gossip addresses: from
// --advertise, else from a specific listen address, else this host's first
// private IP.
func (c *nodeConfig) resolveAdvertise(ip string) error {
	for _, p := range []struct {
		bind string
		adv  *string
		name string
	}{{c.ClusterAddr, &c.ClusterAdvertise, "cluster-addr"}, {c.GossipAddr, &c.GossipAdvertise, "gossip-addr"}} {
		host, port, err := net.SplitHostPort(p.bind)
		if err != nil {
			return fmt.Errorf("--%s %q: want host:port, for example 0.0.0.0:7947", p.name, p.bind)
		}
		switch {
		case ip != "":
			if net.ParseIP(ip) == nil {
				return fmt.Errorf("--advertise %q: want an IP address", ip)
			}
			*p.adv = net.JoinHostPort(ip, port)
		case *p.adv != "":
		default:
			h := host
			if parsed := net.ParseIP(host); parsed == nil || parsed.IsUnspecified() {
				h = privateIP()
			}
			*p.adv = net.JoinHostPort(h, port)
		}
	}
	return nil
}

// privateIP is this host's first private (or else any global unicast)
// IPv4 address, or 127.0.0.1.
func privateIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	var global string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() {
			continue
		}
		if ipn.IP.IsPrivate() {
			return ipn.IP.String()
		}
		if global == "" && ipn.IP.IsGlobalUnicast() {
			global = ipn.IP.String()
		}
	}
	if global != "" {
		return global
	}
	return "127.0.0.1"
}

// save writes the node configuration into the data directory.
func (c *nodeConfig) save() error {
	f, err := os.OpenFile(c.path(configFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "# Raftmail node configuration (node-local settings only).\n"); err != nil {
		f.Close()
		return err
	}
	if err := toml.NewEncoder(f).Encode(c); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
