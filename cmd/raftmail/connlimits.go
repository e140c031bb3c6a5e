package main

import (
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/raftmail/raftmail/protocol/connlimit"
	"github.com/raftmail/raftmail/protocol/imap"
	"github.com/raftmail/raftmail/protocol/pop3"
	"github.com/raftmail/raftmail/protocol/smtp"
)

// fdReserve is the part of the file descriptor limit a node keeps for
// everything but mail client connections: Pebble's sstables and WAL,
// Raft's log and snapshots, the cluster RPC pools, gossip, the admin API,
// outbound delivery.
const fdReserve = 2048

// fdBudget is how many descriptors the mail connections may take under a
// limit of limit: what fdReserve leaves, and at least half the limit
// (a limit below 4096 leaves little to reserve anyway).
func fdBudget(limit uint64) int {
	if limit > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(int(limit)-fdReserve, int(limit)/2)
}

// listening reports whether a listener address is not "off".
func listening(addr string) bool { return addr != "" && !strings.EqualFold(addr, "off") }

// newConnLimiters builds the connection limiter of each mail protocol
// that has a listener, keyed by protocol ("smtp", "submission", "imap",
// "pop3"). When the node caps of those protocols and fdReserve do not fit
// RLIMIT_NOFILE (its soft limit raised to the hard one first), the caps
// are scaled down to fit, with a warning saying how to raise the limit.
func newConnLimiters(cfg *nodeConfig, log *slog.Logger) (map[string]*connlimit.Limiter, error) {
	exempt, err := connlimit.ParseExempt(cfg.ConnLimitExempt)
	if err != nil {
		return nil, fmt.Errorf("--conn-limit-exempt: %w", err)
	}
	on := map[string]bool{
		"smtp":       listening(cfg.SMTPAddr),
		"submission": listening(cfg.SubmissionAddr) || listening(cfg.SubmissionsAddr),
		"imap":       listening(cfg.IMAPAddr) || listening(cfg.IMAPSAddr),
		"pop3":       listening(cfg.POP3Addr) || listening(cfg.POP3SAddr),
	}
	refuse := map[string][2]string{
		"smtp":       {smtp.TooManyFromAddress, smtp.TooManyToServer},
		"submission": {smtp.TooManyFromAddress, smtp.TooManyToServer},
		"imap":       {imap.TooManyFromAddress, imap.TooManyToServer},
		"pop3":       {pop3.TooManyFromAddress, pop3.TooManyToServer},
	}
	var settings []connLimitSetting
	var caps []int
	for _, s := range cfg.connLimitSettings() {
		if on[s.protocol] {
			settings = append(settings, s)
			caps = append(caps, s.perNode)
		}
	}
	limit, known := descriptorLimit()
	if known {
		if fitted, scaled := connlimit.Fit(caps, fdBudget(limit)); scaled {
			want := fdReserve
			args := []any{"rlimit_nofile", limit, "reserve", fdReserve}
			for i := range settings {
				want += settings[i].perNode
				args = append(args, settings[i].protocol, fmt.Sprintf("%d (configured %d)", fitted[i], settings[i].perNode))
				settings[i].perNode = fitted[i]
			}
			args = append(args, "hint", fmt.Sprintf("raise the limit to %d or more (systemd LimitNOFILE=%d, docker run --ulimit nofile=%d:%d, ulimit -n %d) or lower the --*-conn-limit flags", want, want, want, want, want))
			log.Warn("the node's connection caps do not fit its file descriptor limit: scaled down", args...)
		}
	}
	exemptText := connlimit.FormatExempt(exempt)
	if exemptText == "" {
		exemptText = "none"
	}
	ls := make(map[string]*connlimit.Limiter, len(settings))
	for _, s := range settings {
		l, err := connlimit.New(connlimit.Config{
			Protocol: s.protocol, PerIP: s.perIP, PerNode: s.perNode, Exempt: exempt,
			RefusePerIP: refuse[s.protocol][0], RefusePerNode: refuse[s.protocol][1],
			Logger: log.With("component", "connlimit"), NodeName: cfg.Name,
		})
		if err != nil {
			return nil, err
		}
		ls[s.protocol] = l
		log.Info("connection caps", "protocol", s.protocol, "per_ip", s.perIP, "per_node", s.perNode,
			"exempt", exemptText, "rlimit_nofile", limit)
	}
	return ls, nil
}
