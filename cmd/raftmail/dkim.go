package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftmail/raftmail/ops"
)

func dkimPath(domain string, rest ...string) string {
	p := "/v1/domains/" + url.PathEscape(strings.ToLower(domain)) + "/dkim"
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// dkimZoneLine is a selector's DNS record in zone-file syntax.
func dkimZoneLine(s ops.DKIMSelectorInfo) string {
	return ops.Record{Name: s.Name, Type: "TXT", TTL: ops.DefaultDNSTTL, Value: s.TXT}.ZoneLine()
}

func newDKIMCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dkim",
		Short: "List, rotate and retire a domain's DKIM keys",
		Long: `Every domain has DKIM keys, made by 'raftmail domain add' and kept in the
replicated store: an ed25519 and an RSA key, both used to sign mail sent
through submission. Their public keys must be published in DNS (see
'raftmail dns records DOMAIN').

Rotation: 'dkim rotate' makes a new pair and signs with it from then on; the
old pair stays published, because mail signed with it may still be on its
way or in a queue. Publish the new records at once, and after a few days
remove the old ones with 'dkim retire'.`,
	}
	list := clientCmd("list DOMAIN", "Show a domain's DKIM selectors and their DNS records", exactArgs(1, "a domain name"), true, func(cmd *cobra.Command, args []string) error {
		var out []ops.DKIMSelectorInfo
		if err := call(cmd, "GET", dkimPath(args[0]), nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		w := cmd.OutOrStdout()
		if len(out) == 0 {
			fmt.Fprintf(w, "%s has no DKIM keys (it was added before Raftmail made them). Make some with:\n  raftmail dkim rotate %s\n", args[0], args[0])
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SELECTOR\tALGORITHM\tSTATE\tCREATED")
		for _, s := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Selector, s.Algorithm, s.State, s.Created.Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "\nDNS records to publish:")
		var retired []string
		for _, s := range out {
			if s.State == ops.DKIMRetired {
				retired = append(retired, s.Name)
				continue
			}
			fmt.Fprintln(w, dkimZoneLine(s))
		}
		if len(retired) > 0 {
			fmt.Fprintf(w, "\nRetired (remove from DNS if still there): %s\n", strings.Join(retired, ", "))
		}
		return nil
	})
	rotate := clientCmd("rotate DOMAIN", "Make new DKIM keys and sign with them; the old ones stay published", exactArgs(1, "a domain name"), true, func(cmd *cobra.Command, args []string) error {
		var out ops.DKIMRotated
		if err := call(cmd, "POST", dkimPath(args[0], "rotate"), nil, &out); err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), out)
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Mail from %s is now signed with %s. Publish now:\n", args[0], strings.Join(out.New, " and "))
		var old []string
		for _, s := range out.Selectors {
			switch s.State {
			case ops.DKIMSigning:
				fmt.Fprintln(w, dkimZoneLine(s))
			case ops.DKIMPublished:
				old = append(old, s.Selector)
			}
		}
		if len(old) > 0 {
			fmt.Fprintf(w, "\nKeep the records of %s published for a few days (mail signed with them is still\nbeing verified), then remove them with:\n", strings.Join(old, ", "))
			for _, s := range old {
				fmt.Fprintf(w, "  raftmail dkim retire %s %s\n", args[0], s)
			}
		}
		return nil
	})
	retire := clientCmd("retire DOMAIN SELECTOR", "Delete a DKIM key that no longer signs (after a rotation)", exactArgs(2, "a domain name and a selector (see `raftmail dkim list DOMAIN`)"), false, func(cmd *cobra.Command, args []string) error {
		if err := call(cmd, "DELETE", dkimPath(args[0], args[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Retired DKIM selector %s of %s. Remove its DNS record: %s._domainkey.%s TXT\n",
			strings.ToLower(args[1]), strings.ToLower(args[0]), strings.ToLower(args[1]), strings.ToLower(args[0]))
		return nil
	})
	c.AddCommand(list, rotate, retire)
	return c
}
