package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	return clientCmd("leave", "Make the local node leave the cluster and stop", exactArgs(0, "no arguments"), false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "POST", "/v1/leave", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), "The node left the cluster and is stopping.")
		return nil
	})
}

func newRemoveCmd() *cobra.Command {
	return clientCmd("remove NODE", "Remove a failed node from the cluster", exactArgs(1, "the name of the node to remove (see `raftmail status`)"), false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "DELETE", "/v1/nodes/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Removed node %s.\n", args[0])
		return nil
	})
}

func newStatusCmd() *cobra.Command {
	return clientCmd("status", "Show every node of the cluster", exactArgs(0, "no arguments"), true, func(cmd *cobra.Command, args []string) error {
		var out []cluster.NodeStatus
		if err := call(cmd, "GET", "/v1/status", nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tVOTER\tLEADER\tGOSSIP\tLAST CONTACT\tAPPLIED\tLAG\tMISSING BLOBS\tSTATE HASH\tCERT EXPIRES")
		for _, s := range out {
			role := s.Role
			if !s.Reachable {
				role = "unreachable"
			}
			hash := s.StateHash
			if len(hash) > 12 {
				hash = hash[:12]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Name, s.ClusterAddr, role, s.Voter, s.Leader, s.Gossip, s.LastContact, s.AppliedIndex, s.Lag, s.MissingBlobs, hash, certExpiry(s.CertNotAfter))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, s := range out {
			if s.Error != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", s.Name, s.Error)
			}
		}
		return printRevoked(cmd)
	})
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
