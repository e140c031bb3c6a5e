package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/ops"
	"github.com/raftmail/raftmail/protocol/mailauth"
)

// mailIP is the address this node advertises for its MX host's A/AAAA and
// PTR records (ops.MetaMailIP): the SMTP listener's address when it is a
// specific one, else the advertised cluster address. Behind NAT this is a
// private address, which `dns records` points out.
func (c *nodeConfig) mailIP() string {
	for _, hp := range []string{c.SMTPAddr, c.ClusterAdvertise} {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip.String()
		}
	}
	return ""
}

// dnsPlan asks the cluster for its nodes and the domain's DKIM keys and
// builds the records to publish.
func dnsPlan(cmd *cobra.Command, domain string) (ops.DNSPlan, error) {
	var sts []cluster.NodeStatus
	if err := call(cmd, "GET", "/v1/status", nil, &sts); err != nil {
		return ops.DNSPlan{}, err
	}
	var sels []ops.DKIMSelectorInfo
	if err := call(cmd, "GET", dkimPath(domain), nil, &sels); err != nil {
		return ops.DNSPlan{}, err
	}
	nodes, warnings := ops.DNSNodesFromStatus(sts)
	dc := ops.DNSCluster{Domain: domain, Nodes: nodes, Now: time.Now()}
	for _, s := range sels {
		if s.State != ops.DKIMRetired {
			dc.DKIM = append(dc.DKIM, ops.DNSDKIM{Selector: s.Selector, Algorithm: s.Algorithm, TXT: s.TXT})
		}
	}
	if len(dc.DKIM) == 0 {
		warnings = append(warnings, fmt.Sprintf("%s has no DKIM keys, so its mail is not signed: make some with `raftmail dkim rotate %s`", domain, domain))
	}
	plan, err := ops.PlanDNS(dc)
	if err != nil {
		return ops.DNSPlan{}, err
	}
	plan.Warnings = append(warnings, plan.Warnings...)
	return plan, nil
}

func newDNSCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dns",
		Short: "Show and check the DNS records a domain needs",
		Long: `The DNS records a domain served by the cluster needs: an MX for each node,
the nodes' addresses, SPF, a DKIM key record per selector, DMARC, MTA-STS and
TLS-RPT, and the reverse DNS (PTR) each node's address should have.

They are computed from the running cluster: each node's --hostname is its MX
host, and its SMTP listen address (or its advertised cluster address) is the
address of that host.`,
	}
	records := clientCmd("records DOMAIN", "Print the DNS records to publish for a domain (zone-file format)", exactArgs(1, "a domain name"), true, func(cmd *cobra.Command, args []string) error {
		plan, err := dnsPlan(cmd, args[0])
		if err != nil {
			return err
		}
		if wantJSON(cmd) {
			return printJSON(cmd.OutOrStdout(), plan)
		}
		return ops.WriteZone(cmd.OutOrStdout(), plan)
	})
	var resolver string
	check := clientCmd("check DOMAIN", "Check that a domain's DNS records are published and right", exactArgs(1, "a domain name"), true, func(cmd *cobra.Command, args []string) error {
		if resolver != "" {
			if _, _, err := net.SplitHostPort(resolver); err != nil {
				return usagef(cmd, "--resolver %q: want HOST:PORT, for example 127.0.0.1:53", resolver)
			}
		}
		plan, err := dnsPlan(cmd, args[0])
		if err != nil {
			return err
		}
		results := ops.CheckDNS(cmd.Context(), mailauth.NewResolver(resolver), plan)
		failed := 0
		for _, r := range results {
			if !r.OK {
				failed++
			}
		}
		if wantJSON(cmd) {
			if err := printJSON(cmd.OutOrStdout(), struct {
				Domain   string            `json:"domain"`
				Results  []ops.CheckResult `json:"results"`
				Warnings []string          `json:"warnings,omitempty"`
			}{plan.Domain, results, plan.Warnings}); err != nil {
				return err
			}
		} else {
			w := cmd.OutOrStdout()
			for _, warn := range plan.Warnings {
				fmt.Fprintf(w, "WARN  %s\n", warn)
			}
			for _, r := range results {
				fmt.Fprintln(w, r.String())
			}
			fmt.Fprintf(w, "\n%d of %d checks passed. The MTA-STS policy file (%s) is not checked.\n", len(results)-failed, len(results), plan.MTASTS.URL)
		}
		if failed > 0 {
			return fmt.Errorf("dns check %s: %d record(s) missing or wrong; `raftmail dns records %s` prints them all", strings.ToLower(args[0]), failed, strings.ToLower(args[0]))
		}
		return nil
	})
	check.Flags().StringVar(&resolver, "resolver", "", "DNS server to ask, HOST:PORT (default: the system's resolvers)")
	c.AddCommand(records, check)
	return c
}
