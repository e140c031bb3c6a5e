package main

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/raftmail/raftmail/protocol/auth"
)

// imapListeners is filled in when protocol/imap lands.
func imapListeners(cfg *nodeConfig, rt *runtime, checker *auth.Checker, tlsConf *tls.Config, log *slog.Logger, ms *mailServers) []struct {
	addr, what, flag string
	serve            func(net.Listener) error
} {
	return nil
}
