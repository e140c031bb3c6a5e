package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/protocol/accept"
	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/protocol/connlimit"
	"github.com/raftmail/raftmail/protocol/delivery"
	"github.com/raftmail/raftmail/protocol/imap"
	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/protocol/pop3"
	"github.com/raftmail/raftmail/protocol/smtp"
)

// mailServers are a node's SMTP, submission, IMAP and POP3 listeners.
type mailServers struct {
	log       *slog.Logger
	accept    *accept.Pipeline
	wg        sync.WaitGroup
	shutdowns []func(context.Context) error
	listeners []net.Listener
}

// listenMail opens addr for what, with an error that says how to fix the
// usual problems.
func listenMail(addr, what, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	hint := fmt.Sprintf(`choose another address with --%s, or --%s off`, flag, flag)
	if errors.Is(err, syscall.EACCES) {
		hint = fmt.Sprintf("ports below 1024 need root or CAP_NET_BIND_SERVICE; or %s", hint)
	}
	return nil, fmt.Errorf("%s listener: %w (%s)", what, err, hint)
}

// startMail starts every mail listener that is not "off". On an error it
// stops what it started.
func startMail(cfg *nodeConfig, rt *runtime, log *slog.Logger) (*mailServers, error) {
	ms := &mailServers{log: log}
	tlsConf, err := mailTLS(cfg, log.With("component", "tls"))
	if err != nil {
		return nil, err
	}
	authCfg := auth.Config{Store: rt.store, Node: cfg.Name, Logger: log.With("component", "auth")}
	if rt.gossip != nil {
		authCfg.Peers = rt.gossip
	}
	checker := auth.New(authCfg)
	pipeline, err := accept.New(accept.Config{
		Cluster:         rt.node,
		SpoolDir:        cfg.path("spool"),
		MaxMessageBytes: int64(cfg.MaxMessageSize),
		SpoolMemory:     int64(cfg.SpoolMemory),
		UnauthInFlight:  int64(cfg.MXInFlight),
		Logger:          log.With("component", "accept"),
	})
	if err != nil {
		return nil, err
	}
	ms.accept = pipeline
	if rt.metrics != nil {
		if err := rt.metrics.Register(accept.NewCollector(cfg.Name, pipeline)); err != nil {
			return nil, fmt.Errorf("register accept metrics: %w", err)
		}
		if err := rt.metrics.Register(auth.NewCollector(cfg.Name, checker)); err != nil {
			return nil, fmt.Errorf("register login metrics: %w", err)
		}
	}
	resolver := mailauth.NewResolver(cfg.DNSResolver)
	inbound := &mailauth.Checker{Resolver: resolver, AuthServID: authServID(cfg, rt)}
	senderCheck, err := cfg.senderCheck()
	if err != nil {
		return nil, err
	}
	smtpServer := func(mode smtp.Mode, name string) (*smtp.Server, error) {
		c := smtp.Config{
			Mode: mode, Hostname: cfg.Hostname, NodeName: cfg.Name, TLS: tlsConf,
			Accept: pipeline, Store: rt.store, Auth: checker, MaxMessageBytes: int64(cfg.MaxMessageSize),
			SenderCheck: senderCheck, Logger: log.With("component", name),
		}
		if mode == smtp.ModeMX {
			c.MailAuth = inbound
		} else {
			c.DKIMKeys = func(domain string) []mailauth.DKIMKey { return dkimKeys(rt, domain) }
		}
		return smtp.New(c)
	}
	mx, err := smtpServer(smtp.ModeMX, "smtp")
	if err != nil {
		return nil, err
	}
	sub, err := smtpServer(smtp.ModeSubmission, "submission")
	if err != nil {
		return nil, err
	}
	pop, err := pop3.New(pop3.Config{
		Cluster: rt.node, Store: rt.store, Auth: checker, TLS: tlsConf,
		NodeName: cfg.Name, Hostname: cfg.Hostname, Logger: log.With("component", "pop3"),
		AllowInsecureAuth: loopbackOnly(cfg.POP3Addr),
		PreAuthTimeout:    cfg.POP3PreAuthTimeout.Duration,
	})
	if err != nil {
		return nil, err
	}
	ms.shutdowns = append(ms.shutdowns, mx.Shutdown, sub.Shutdown, pop.Shutdown)

	// Every mail listener is wrapped by its protocol's connection caps:
	// a client past one is refused before the server sees it.
	limiters, err := newConnLimiters(cfg, log)
	if err != nil {
		return nil, err
	}
	for _, l := range limiters {
		ms.shutdowns = append(ms.shutdowns, func(context.Context) error { l.Close(); return nil })
	}
	if rt.metrics != nil {
		ls := make([]*connlimit.Limiter, 0, len(limiters))
		for _, p := range []string{"smtp", "submission", "imap", "pop3"} {
			if l := limiters[p]; l != nil {
				ls = append(ls, l)
			}
		}
		if err := rt.metrics.Register(connlimit.NewCollector(cfg.Name, ls...)); err != nil {
			return nil, fmt.Errorf("register connection metrics: %w", err)
		}
	}
	listeners := []mailListener{
		{cfg.SMTPAddr, "SMTP MX", "smtp-addr", mx.Serve, limiters["smtp"], false},
		{cfg.SubmissionAddr, "submission", "submission-addr", sub.Serve, limiters["submission"], false},
		{cfg.SubmissionsAddr, "submissions", "submissions-addr", sub.ServeTLS, limiters["submission"], true},
		{cfg.POP3Addr, "POP3", "pop3-addr", func(ln net.Listener) error { return pop.Serve(ln) }, limiters["pop3"], false},
		{cfg.POP3SAddr, "POP3S", "pop3s-addr", func(ln net.Listener) error { return pop.Serve(ln, pop3.WithImplicitTLS()) }, limiters["pop3"], true},
	}
	imapLs, err := imapListeners(cfg, rt, checker, tlsConf, log, ms, limiters["imap"])
	if err != nil {
		return nil, err
	}
	listeners = append(listeners, imapLs...)
	// The saved throttle table is loaded before the first login.
	stopThrottle := startThrottle(cfg, rt, checker, log.With("component", "auth"))
	ms.shutdowns = append(ms.shutdowns, func(context.Context) error { stopThrottle(); return nil })
	for _, l := range listeners {
		if !listening(l.addr) {
			continue
		}
		ln, err := listenMail(l.addr, l.what, l.flag)
		if err != nil {
			ms.shutdown(context.Background())
			return nil, err
		}
		switch {
		case l.lim == nil:
		case l.implicitTLS:
			ln = l.lim.WrapTLS(ln)
		default:
			ln = l.lim.Wrap(ln)
		}
		ms.listeners = append(ms.listeners, ln)
		ms.wg.Add(1)
		go func(serve func(net.Listener) error, what string) {
			defer ms.wg.Done()
			if err := serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, pop3.ErrServerClosed) && !errors.Is(err, imap.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Error("mail listener stopped", "listener", what, "err", err)
			}
		}(l.serve, l.what)
		log.Info("listening", "listener", l.what, "addr", ln.Addr().String())
	}
	// Outbound delivery runs on every node: it delivers what the leader's
	// scheduler leases to this node.
	dc := delivery.Config{
		Hostname: cfg.Hostname, Cluster: rt.node, Accept: pipeline, Store: rt.store,
		Resolver: resolver, Port: cfg.SMTPOutPort,
		LeaseDuration: cfg.DeliveryLease.Duration,
		Logger:        log.With("component", "delivery"),
	}
	if d := cfg.DeliveryRetry.Duration; d > 0 {
		dc.RetrySchedule = []time.Duration{d}
	}
	out, err := delivery.New(dc)
	if err != nil {
		ms.shutdown(context.Background())
		return nil, err
	}
	out.Start()
	ms.shutdowns = append(ms.shutdowns, func(context.Context) error { out.Stop(); return nil })
	return ms, nil
}

// authServID names this cluster in Authentication-Results headers: the
// same on every node, so each strips forged results claiming any of them.
// --authserv-id, else the cluster name given at init: as init and join
// recorded it in raftmail.toml (a joined node's store does not have it
// yet on its first run), else from the store (a data directory made before
// the name was recorded).
func authServID(cfg *nodeConfig, rt *runtime) string {
	if cfg.AuthServID != "" {
		return cfg.AuthServID
	}
	if cfg.ClusterName != "" {
		return cfg.ClusterName
	}
	if name, err := rt.store.Setting(cluster.SettingClusterName); err == nil && len(name) > 0 {
		return string(name)
	}
	return cfg.Hostname
}

// dkimKeys are the signing keys of domain from the replicated store.
func dkimKeys(rt *runtime, domain string) []mailauth.DKIMKey {
	sels, err := rt.store.DKIMKeys(strings.ToLower(domain))
	if err != nil {
		return nil
	}
	keys := make([]mailauth.DKIMKey, 0, len(sels))
	for _, s := range sels {
		keys = append(keys, mailauth.DKIMKey{Selector: s.Selector, Algorithm: s.Algorithm, PrivateKeyPEM: s.PrivateKeyPEM})
	}
	return keys
}

// shutdown says goodbye to clients (SMTP 421, IMAP BYE, POP3 -ERR) and
// waits for sessions in the middle of a commit, up to ctx.
func (ms *mailServers) shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, f := range ms.shutdowns {
		wg.Add(1)
		go func(f func(context.Context) error) {
			defer wg.Done()
			if err := f(ctx); err != nil {
				ms.log.Warn("mail shutdown", "err", err)
			}
		}(f)
	}
	wg.Wait()
	for _, ln := range ms.listeners {
		_ = ln.Close()
	}
	ms.wg.Wait()
}
