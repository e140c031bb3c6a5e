package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/storage"
)

// addClientFlags declares how a command reaches the admin API.
func addClientFlags(fs *pflag.FlagSet, withJSON bool) {
	fs.String("admin-addr", "", "admin API of the node to talk to (env RAFTMAIL_ADMIN_ADDR; default: the data directory's node, else 127.0.0.1:7948)")
	fs.String("admin-token", "", "admin API token (env RAFTMAIL_ADMIN_TOKEN; default: read from <data-dir>/admin.token)")
	if withJSON {
		fs.Bool("json", false, "print JSON")
	}
}

func adminClient(cmd *cobra.Command) (*ops.Client, error) {
	fs := cmd.Flags()
	cfg, err := loadNodeConfig(fs)
	if err != nil {
		return nil, err
	}
	c := &ops.Client{Addr: cfg.AdminAddr}
	if v, ok := flagOrEnv(fs, "admin-addr"); ok {
		c.Addr = v
	}
	if v, ok := flagOrEnv(fs, "admin-token"); ok {
		c.Token = v
	} else if b, err := os.ReadFile(cfg.path(adminTokenFile)); err == nil {
		c.Token = strings.TrimSpace(string(b))
	} else {
		return nil, fmt.Errorf("no admin token: pass --admin-token, set RAFTMAIL_ADMIN_TOKEN, or point --data-dir at the node's data directory (looked for %s)", cfg.path(adminTokenFile))
	}
	return c, nil
}

func wantJSON(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func call(cmd *cobra.Command, method, path string, in, out any) error {
	c, err := adminClient(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
	defer cancel()
	return c.Do(ctx, method, path, in, out)
}

// clientCmd builds an admin-API command.
func clientCmd(use, short string, args cobra.PositionalArgs, withJSON bool, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: args, RunE: run}
	addClientFlags(c.Flags(), withJSON)
	return c
}

func newTokenCmd() *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Create, list and revoke join tokens"}
	var ttl time.Duration
	var desc string
	var uses int
	create := clientCmd("create", "Create a join token (it admits one node, unless --uses says more)", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		if uses < 1 {
			return usagef(cmd, "--uses %d: give the number of nodes the token may admit, 1 or more", uses)
		}
		var out ops.TokenCreated
		if err := call(cmd, "POST", "/v1/tokens", ops.TokenCreateRequest{TTL: ttl.String(), Description: desc, Uses: uses}, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s\n\nOn the new node (the token admits %s):\n  raftmail join --token %s %s\n", out.Token, nodesText(out.Uses), out.Token, out.JoinVia)
		return nil
	})
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (0 = until revoked)")
	create.Flags().IntVar(&uses, "uses", 1, "how many nodes the token may admit")
	create.Flags().StringVar(&desc, "description", "", "a note shown by `token list`")
	list := clientCmd("list", "List join tokens", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		var out []ops.TokenInfo
		if err := call(cmd, "GET", "/v1/tokens", nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tCREATED\tEXPIRES\tUSES\tDESCRIPTION")
		for _, t := range out {
			exp := "never"
			if !t.Expires.IsZero() {
				exp = t.Expires.Format(time.RFC3339)
			}
			used := fmt.Sprintf("%d/%d", t.Uses, t.MaxUses)
			if len(t.UsedBy) > 0 {
				used += " (" + strings.Join(t.UsedBy, ", ") + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.State, t.Created.Format(time.RFC3339), exp, used, t.Description)
		}
		return tw.Flush()
	})
	revoke := clientCmd("revoke ID", "Revoke a join token and the certificates of the nodes it admitted", exactArgs(1, "a token ID (see `raftmail token list`)"), false, func(cmd *cobra.Command, args []string) error {
		var out ops.TokenRevoked
		if err := call(cmd, "DELETE", "/v1/tokens/"+url.PathEscape(args[0]), nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Revoked token %s", args[0])
		if len(out.Certificates) > 0 {
			fmt.Fprintf(cmd.OutOrStdout(), " and %d node certificate(s) issued through it: every node now refuses them", len(out.Certificates))
		}
		fmt.Fprintln(cmd.OutOrStdout(), ".")
		return nil
	})
	c.AddCommand(create, list, revoke)
	return c
}

func newLeaveCmd() *cobra.Command {
	var force bool
	c := clientCmd("leave", "Make the local node leave the cluster and stop", exactArgs(0, "no arguments"), false, func(cmd *cobra.Command, args []string) error {
		q := ""
		if force {
			q = "?force=true"
		}
		if err := call(cmd, "POST", "/v1/leave"+q, nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), "The node left the cluster and is stopping. It will not start again from its data directory; to bring it back, run `raftmail join` there with a new token.")
		return nil
	})
	c.Long = `Make the node behind the admin API leave the cluster: it hands over leadership
if it leads, the leader removes it from the voters, and it stops in order (mail
clients are told, gossip is told it left). The departure is recorded in its
data directory first, so a restart (a supervisor, Docker's restart policy) does
not bring it back: 'raftmail serve' there exits with status 3 until the node
joins again with a new token. Refused when the other voters would be left
without a quorum of live nodes, unless --force.`
	c.Flags().BoolVar(&force, "force", false, "leave even if the remaining voters have no quorum of live nodes")
	return c
}

func newRemoveCmd() *cobra.Command {
	var force bool
	c := clientCmd("remove NODE", "Remove a node from the cluster", exactArgs(1, "the name of the node to remove (see `raftmail status`)"), true, func(cmd *cobra.Command, args []string) error {
		q := ""
		if force {
			q = "?force=true"
		}
		var out ops.Removed
		if err := call(cmd, "DELETE", "/v1/nodes/"+url.PathEscape(args[0])+q, nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Removed node %s: it is no longer in the cluster's configuration (%d voters remain).\n", out.Removed, out.Voters)
		return nil
	})
	c.Long = `Remove a node from the cluster: the leader records that this node was removed
(a tombstone in the replicated store, so it is never added back), takes it
out of the Raft configuration, and the command returns once the configuration
no longer has it. If the node is still running, it stops serving (SMTP 421,
IMAP BYE, /healthz 503 "removed from cluster"), exits with status 3 and will
not start again from its data directory; it can come back only by joining
again with a new token.

Refused when the remaining voters would have fewer live nodes than a quorum
(for example a live node of three while another is dead), unless --force.`
	c.Flags().BoolVar(&force, "force", false, "remove even if the remaining voters have no quorum of live nodes")
	return c
}

// Exit statuses of `raftmail status`.
const (
	statusHealthy     = 0 // every node reachable, a voter, no problems; one leader
	statusDegraded    = 1 // some node unreachable, not a voter or with problems, or no leader
	statusUnreachable = 2 // the admin API did not answer
)

func newStatusCmd() *cobra.Command {
	c := clientCmd("status", "Show every node of the cluster", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		var out []cluster.NodeStatus
		if err := call(cmd, "GET", "/v1/status", nil, &out); err != nil {
			return &exitError{code: statusUnreachable, err: err}
		}
		degraded := statusDegradedWhy(out)
		if wantJSON(cmd) {
			if err := printJSON(cmd.OutOrStdout(), out); err != nil {
				return err
			}
		} else {
			if err := printStatus(cmd.OutOrStdout(), out); err != nil {
				return err
			}
			if err := printRevoked(cmd); err != nil {
				return err
			}
		}
		if len(degraded) > 0 {
			return &exitError{code: statusDegraded, err: fmt.Errorf("the cluster is degraded: %s", strings.Join(degraded, "; "))}
		}
		return nil
	})
	c.Long = `Ask every node of the cluster (through the node behind the admin API) for its
state: role, voter, leader, gossip state, last contact with the leader, applied
index, lag behind the leader, missing blobs, state hash, cluster certificate
expiry. A value a node did not report (it did not answer) is shown as "-"
(null with --json), never as 0.

Exit status: 0 every node is a reachable, healthy voter and there is one
leader; 1 the cluster is degraded (a node unreachable, not a voter or with
problems, or no leader; the reasons go to stderr); 2 the admin API could not
be reached.`
	return c
}

func newHealthCmd() *cobra.Command {
	c := clientCmd("health", "Say whether the local node is healthy (for container health checks)", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		c, err := adminClient(cmd)
		if err != nil {
			return &exitError{code: statusUnreachable, err: err}
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
		defer cancel()
		h, err := getHealth(ctx, c.Addr)
		if err != nil {
			return &exitError{code: statusUnreachable, err: err}
		}
		if wantJSON(cmd) {
			if err := printJSON(cmd.OutOrStdout(), h); err != nil {
				return err
			}
		} else if h.Healthy {
			fmt.Fprintf(cmd.OutOrStdout(), "%s is healthy (%s, leader %s).\n", h.Node, h.Role, h.Leader)
		}
		if !h.Healthy {
			return &exitError{code: statusDegraded, err: fmt.Errorf("node %s is not healthy: %s", h.Node, strings.Join(h.Problems, "; "))}
		}
		return nil
	})
	c.Long = `Ask the node behind the admin API for its /healthz: healthy when it knows a
leader, its store and Raft log can be written, it has free space above its
floor and it is still a member. Exit status: 0 healthy, 1 not healthy (the
problems go to stderr), 2 the admin API could not be reached. Unlike
'raftmail status', another node being down does not make this one unhealthy,
so it suits a container's health check.`
	return c
}

// getHealth reads /healthz (200 or 503, both with a Health body).
func getHealth(ctx context.Context, addr string) (ops.Health, error) {
	var h ops.Health
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/healthz", nil)
	if err != nil {
		return h, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, fmt.Errorf("%w at %s (is `raftmail serve` running there?): %v", ops.ErrUnreachable, addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil {
		return h, fmt.Errorf("health of %s: answer %s: %w", addr, resp.Status, err)
	}
	return h, nil
}

// statusDegradedWhy lists why a status listing is not healthy.
func statusDegradedWhy(st []cluster.NodeStatus) []string {
	var why []string
	leaders := 0
	for _, s := range st {
		switch {
		case !s.Reachable:
			why = append(why, s.Name+" unreachable")
		case !s.Voter:
			why = append(why, s.Name+" not a voter")
		case len(s.Problems) > 0:
			why = append(why, s.Name+": "+strings.Join(s.Problems, ", "))
		}
		if s.Role == "Leader" {
			leaders++
		}
	}
	if leaders != 1 {
		why = append(why, fmt.Sprintf("%d leaders", leaders))
	}
	return why
}

func printStatus(w io.Writer, out []cluster.NodeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tVOTER\tLEADER\tGOSSIP\tLAST CONTACT\tAPPLIED\tLAG\tMISSING BLOBS\tSTATE HASH\tCERT EXPIRES")
	unknown := func(known bool, v any) string {
		if !known {
			return "-"
		}
		return fmt.Sprint(v)
	}
	for _, s := range out {
		role := s.Role
		if !s.Reachable {
			role = "unreachable"
		}
		hash := s.StateHash
		if len(hash) > 12 {
			hash = hash[:12]
		}
		gossip := s.Gossip
		if !s.GossipSince.IsZero() {
			gossip += " " + time.Since(s.GossipSince).Round(time.Second).String()
		}
		leader, contact, cert := s.Leader, s.LastContact, certExpiry(s.CertNotAfter)
		if !s.Reachable {
			leader, contact = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ClusterAddr, role, s.Voter, leader, gossip, contact,
			unknown(s.Reachable, s.AppliedIndex), unknown(s.Reachable && s.LagKnown, s.Lag), unknown(s.Reachable, s.MissingBlobs), unknown(s.Reachable, hash), cert)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range out {
		if s.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", s.Name, s.Error)
		}
		for _, p := range s.Problems {
			fmt.Fprintf(w, "%s: %s\n", s.Name, p)
		}
	}
	return nil
}

func certExpiry(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// printRevoked lists the revoked node certificates the cluster still
// records (until they expire), after the status table.
func printRevoked(cmd *cobra.Command) error {
	var certs []ops.CertInfo
	if err := call(cmd, "GET", "/v1/certs", nil, &certs); err != nil {
		return err
	}
	for _, c := range certs {
		if c.Revoked {
			fmt.Fprintf(cmd.OutOrStdout(), "revoked: node %s, certificate %s, at %s (refused by every node)\n", c.Node, c.Serial, c.RevokedAt.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func nodesText(n int) string {
	if n == 1 {
		return "one node"
	}
	return fmt.Sprintf("%d nodes", n)
}

func newDomainCmd() *cobra.Command {
	c := &cobra.Command{Use: "domain", Short: "Manage the mail domains the cluster serves"}
	add := clientCmd("add DOMAIN", "Add a domain", exactArgs(1, "a domain name"), false, func(cmd *cobra.Command, args []string) error {
		var out ops.DomainAdded
		if err := call(cmd, "POST", "/v1/domains", ops.DomainRequest{Name: args[0]}, &out); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Added domain %s with DKIM selectors %s.\nPublish its DNS records: raftmail dns records %s\n", out.Added, strings.Join(out.DKIM, ", "), out.Added)
		return nil
	})
	list := clientCmd("list", "List domains", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		var out []storage.Domain
		if err := call(cmd, "GET", "/v1/domains", nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		for _, d := range out {
			fmt.Fprintln(cmd.OutOrStdout(), d.Name)
		}
		return nil
	})
	remove := clientCmd("remove DOMAIN", "Remove a domain that has no accounts left", exactArgs(1, "a domain name"), false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "DELETE", "/v1/domains/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Removed domain %s.\n", args[0])
		return nil
	})
	c.AddCommand(add, list, remove)
	return c
}

// readPassword takes --password, or one line from stdin with
// --password-stdin, or generates one (generated=true).
func readPassword(cmd *cobra.Command) (pw string, generated bool, err error) {
	p, _ := cmd.Flags().GetString("password")
	fromStdin, _ := cmd.Flags().GetBool("password-stdin")
	switch {
	case p != "" && fromStdin:
		return "", false, usagef(cmd, "give either --password or --password-stdin, not both")
	case p != "":
		return p, false, nil
	case fromStdin:
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", false, usagef(cmd, "--password-stdin: no password on standard input")
		}
		return line, false, nil
	}
	return randomHex(10), true, nil
}

func newUserCmd() *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Manage mail accounts"}
	var quota int64
	add := clientCmd("add ADDRESS", "Add an account (prints a generated password unless one is given)", exactArgs(1, "an address like user@example.com"), false, func(cmd *cobra.Command, args []string) error {
		pw, gen, err := readPassword(cmd)
		if err != nil {
			return err
		}
		if err := call(cmd, "POST", "/v1/users", ops.UserRequest{Address: args[0], Password: pw, QuotaBytes: quota}, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Added %s.\n", strings.ToLower(args[0]))
		if gen {
			fmt.Fprintf(cmd.OutOrStdout(), "Password: %s\n", pw)
		}
		return nil
	})
	add.Flags().String("password", "", "the password (visible in the process list; prefer --password-stdin)")
	add.Flags().Bool("password-stdin", false, "read the password from standard input")
	add.Flags().Int64Var(&quota, "quota", 0, "mailbox quota in bytes (0 = unlimited)")
	passwd := clientCmd("passwd ADDRESS", "Change an account's password", exactArgs(1, "an address"), false, func(cmd *cobra.Command, args []string) error {
		pw, gen, err := readPassword(cmd)
		if err != nil {
			return err
		}
		if err := call(cmd, "PUT", "/v1/users/"+url.PathEscape(args[0])+"/password", ops.UserRequest{Password: pw}, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Changed the password of %s.\n", args[0])
		if gen {
			fmt.Fprintf(cmd.OutOrStdout(), "Password: %s\n", pw)
		}
		return nil
	})
	passwd.Flags().String("password", "", "the new password")
	passwd.Flags().Bool("password-stdin", false, "read the new password from standard input")
	list := clientCmd("list [DOMAIN]", "List accounts", cobra.MaximumNArgs(1), true, func(cmd *cobra.Command, args []string) error {
		q := ""
		if len(args) == 1 {
			q = "?domain=" + url.QueryEscape(args[0])
		}
		var out []ops.UserInfo
		if err := call(cmd, "GET", "/v1/users"+q, nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tUSED\tQUOTA")
		for _, u := range out {
			q := "unlimited"
			if u.QuotaBytes > 0 {
				q = fmt.Sprint(u.QuotaBytes)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\n", u.Address, u.UsedBytes, q)
		}
		return tw.Flush()
	})
	remove := clientCmd("remove ADDRESS", "Remove an account and its mail", exactArgs(1, "an address"), false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "DELETE", "/v1/users/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Removed %s.\n", args[0])
		return nil
	})
	c.AddCommand(add, passwd, list, remove)
	return c
}

func newAliasCmd() *cobra.Command {
	c := &cobra.Command{Use: "alias", Short: "Manage address aliases"}
	add := clientCmd("add ADDRESS TARGET...", "Deliver mail for ADDRESS to one or more accounts", func(cmd *cobra.Command, args []string) error {
		if len(args) < 2 {
			return usagef(cmd, "expected an alias address and at least one target account")
		}
		return nil
	}, false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "POST", "/v1/aliases", ops.AliasRequest{Address: args[0], Targets: args[1:]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Added alias %s -> %s.\n", args[0], strings.Join(args[1:], ", "))
		return nil
	})
	list := clientCmd("list [DOMAIN]", "List aliases", cobra.MaximumNArgs(1), true, func(cmd *cobra.Command, args []string) error {
		q := ""
		if len(args) == 1 {
			q = "?domain=" + url.QueryEscape(args[0])
		}
		var out []storage.Alias
		if err := call(cmd, "GET", "/v1/aliases"+q, nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		for _, a := range out {
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s\n", a.Address, strings.Join(a.Targets, ", "))
		}
		return nil
	})
	remove := clientCmd("remove ADDRESS", "Remove an alias", exactArgs(1, "an alias address"), false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "DELETE", "/v1/aliases/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Removed alias %s.\n", args[0])
		return nil
	})
	c.AddCommand(add, list, remove)
	return c
}

func newQueueCmd() *cobra.Command {
	c := &cobra.Command{Use: "queue", Short: "Inspect and manage the outbound queue"}
	list := clientCmd("list", "List queued outbound messages", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		var out []storage.QueueEntry
		if err := call(cmd, "GET", "/v1/queue", nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSIZE\tCREATED\tFROM\tRECIPIENTS")
		for _, q := range out {
			var rcpts []string
			for _, r := range q.Recipients {
				rcpts = append(rcpts, r.Address+" ("+r.Status+")")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", q.ID, q.Size, q.Created.Format(time.RFC3339), q.From, strings.Join(rcpts, ", "))
		}
		return tw.Flush()
	})
	c.AddCommand(list)
	addQueueCommands(c)
	return c
}
