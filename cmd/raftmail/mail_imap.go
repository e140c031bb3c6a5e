package main

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/raftmail/raftmail/protocol/auth"
	"github.com/raftmail/raftmail/protocol/imap"
)

// mailListener is one mail port: where, what (for logs and errors), the
// flag that sets it, and the server loop.
type mailListener struct {
	addr, what, flag string
	serve            func(net.Listener) error
}

// imapListeners builds the node's IMAP server and its two listeners.
func imapListeners(cfg *nodeConfig, rt *runtime, checker *auth.Checker, tlsConf *tls.Config, log *slog.Logger, ms *mailServers) ([]mailListener, error) {
	srv, err := imap.New(imap.Config{
		Cluster: rt.node, Store: rt.store, Auth: checker, TLS: tlsConf,
		NodeName: cfg.Name, Logger: log.With("component", "imap"),
	})
	if err != nil {
		return nil, err
	}
	ms.shutdowns = append(ms.shutdowns, srv.Shutdown)
	return []mailListener{
		{cfg.IMAPAddr, "IMAP", "imap-addr", srv.Serve},
		{cfg.IMAPSAddr, "IMAPS", "imaps-addr", srv.ServeTLS},
	}, nil
}
