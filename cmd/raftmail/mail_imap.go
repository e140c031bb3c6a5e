package main

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"

	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/protocol/connlimit"
	"github.com/raftmail/raftmail/protocol/imap"
)

// mailListener is one mail port: where, what (for logs and errors), the
// flag that sets it, the server loop, and the connection caps of its
// protocol (nil: none), which refuse silently on an implicit-TLS port.
type mailListener struct {
	addr, what, flag string
	serve            func(net.Listener) error
	lim              *connlimit.Limiter
	implicitTLS      bool
}

// imapListeners builds the node's IMAP server and its two listeners.
func imapListeners(cfg *nodeConfig, rt *runtime, checker *auth.Checker, tlsConf *tls.Config, log *slog.Logger, ms *mailServers, lim *connlimit.Limiter) ([]mailListener, error) {
	srv, err := imap.New(imap.Config{
		Cluster: rt.node, Accept: ms.accept, Store: rt.store, Auth: checker, TLS: tlsConf,
		AppendLimit: int64(cfg.MaxMessageSize),
		NodeName:    cfg.Name, Logger: log.With("component", "imap"),
		InsecureAuth:   loopbackOnly(cfg.IMAPAddr),
		PreAuthTimeout: cfg.IMAPPreAuthTimeout.Duration,
		IdleTimeout:    cfg.IMAPIdleTimeout.Duration,
	})
	if err != nil {
		return nil, err
	}
	ms.shutdowns = append(ms.shutdowns, srv.Shutdown)
	return []mailListener{
		{cfg.IMAPAddr, "IMAP", "imap-addr", srv.Serve, lim, false},
		{cfg.IMAPSAddr, "IMAPS", "imaps-addr", srv.ServeTLS, lim, true},
	}, nil
}

// loopbackOnly reports whether a listener address can only be reached from
// this host (127.0.0.0/8, ::1, localhost). As with Dovecot, which counts
// loopback connections as secure, such a plain IMAP or POP3 listener
// accepts a password without TLS: a local webmail or proxy needs no
// certificate, and nothing on loopback crosses a network.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
