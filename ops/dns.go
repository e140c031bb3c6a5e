package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/protocol/mailauth"
)

// DNS records a domain served by the cluster needs, and checks that they
// are published. Building the records is pure (PlanDNS, from a description
// of the cluster); checking them goes through mailauth.Resolver, the one
// DNS seam, so tests point it at a server on loopback.
//
// What is published, and why:
//   - MX: one per node host, priorities 10, 20, 30... (every node accepts
//     mail, so senders fail over between them);
//   - A/AAAA of each MX host, and the PTR each address should have
//     (receivers check that the connecting address names the host, RFC 8601
//     "iprev"; the PTR is set by whoever owns the address);
//   - SPF "v=spf1 mx -all": the MX hosts are the only senders (RFC 7208);
//   - one DKIM key record per published selector (RFC 6376 §3.6.2);
//   - DMARC p=quarantine with aggregate reports to postmaster (RFC 7489);
//   - MTA-STS (RFC 8461): a TXT record and a policy file served over HTTPS
//     at mta-sts.<domain>, in "testing" mode (the nodes' certificates may
//     be self-signed);
//   - TLS-RPT reports to postmaster (RFC 8460).

// Gossip metadata keys a node advertises for its DNS records
// (cluster.Config.Meta, seen in NodeStatus.Meta).
const (
	// MetaHostname is the node's public host name: its MX target.
	MetaHostname = "hostname"
	// MetaMailIP is the node's mail address(es), comma separated.
	MetaMailIP = "mail_ip"
)

// DefaultDNSTTL is the TTL of the records PlanDNS makes.
const DefaultDNSTTL = 3600

// maxTXTString is the longest character-string of a TXT record (RFC 1035
// §3.3): longer values are published as several strings of one record.
const maxTXTString = 255

// Record purposes: what a record is for (Record.Purpose).
const (
	PurposeMX      = "mx"
	PurposeAddress = "address"
	PurposePTR     = "ptr"
	PurposeSPF     = "spf"
	PurposeDKIM    = "dkim"
	PurposeDMARC   = "dmarc"
	PurposeMTASTS  = "mta-sts"
	PurposeTLSRPT  = "tls-rpt"
)

// DNSNode is what the DNS records need to know about one node.
type DNSNode struct {
	Name     string       `json:"name"`
	Hostname string       `json:"hostname"` // public host name, the MX target
	Addrs    []netip.Addr `json:"addrs"`    // addresses Hostname resolves to
}

// DNSDKIM is one DKIM selector to publish.
type DNSDKIM struct {
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	TXT       string `json:"txt"` // the record value, "v=DKIM1; k=...; p=..."
}

// DNSCluster describes the cluster and the domain to make records for.
type DNSCluster struct {
	Domain string
	// Nodes get MX priorities 10, 20, 30... in name order; nodes sharing
	// a host name share its MX record.
	Nodes []DNSNode
	// DKIM: every selector whose key must be published.
	DKIM []DNSDKIM
	// Now dates the MTA-STS policy id; zero: the current time.
	Now time.Time
	// TTL of every record; 0: DefaultDNSTTL.
	TTL int
}

// Record is one DNS record to publish.
type Record struct {
	Name     string `json:"name"` // absolute, with the trailing dot
	Type     string `json:"type"` // MX, A, AAAA, TXT or PTR
	TTL      int    `json:"ttl"`
	Priority int    `json:"priority,omitempty"` // MX only
	// Value: the target host (absolute) of MX and PTR, the address of A
	// and AAAA, the whole text of TXT (ZoneLine splits it in strings).
	Value   string `json:"value"`
	Purpose string `json:"purpose"` // one of the Purpose constants
	Comment string `json:"comment,omitempty"`
}

// MTASTSPolicy is the MTA-STS policy file and where it must be served.
type MTASTSPolicy struct {
	URL     string `json:"url"`
	Content string `json:"content"`
}

// DNSPlan is what to publish for a domain.
type DNSPlan struct {
	Domain   string       `json:"domain"`
	Records  []Record     `json:"records"`
	MTASTS   MTASTSPolicy `json:"mta_sts_policy"`
	Warnings []string     `json:"warnings,omitempty"` // things to fix before the records are right
}

// fqdn makes a name absolute and lower case.
func fqdn(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// PlanDNS returns the records to publish for c.Domain. It fails only on an
// unusable domain name; anything else that makes a record wrong (a node
// without a public host name or address) is a warning.
func PlanDNS(c DNSCluster) (DNSPlan, error) {
	domain := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(c.Domain)), ".")
	if domain == "" || !strings.Contains(domain, ".") || strings.ContainsAny(domain, " \t@/\\\"") {
		return DNSPlan{}, fmt.Errorf("ops: dns: %q is not a domain name like example.com", c.Domain)
	}
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultDNSTTL
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	zone := domain + "."
	plan := DNSPlan{Domain: domain}
	add := func(r Record) {
		r.TTL = ttl
		plan.Records = append(plan.Records, r)
	}

	// Hosts in node-name order; nodes that share a host name share its MX.
	nodes := slices.Clone(c.Nodes)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	type host struct {
		name  string
		nodes []string
		addrs []netip.Addr
	}
	var hosts []*host
	byName := map[string]*host{}
	for _, n := range nodes {
		if n.Hostname == "" {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("node %s advertises no host name, so it has no MX record: start it with --hostname set to its public name (and a version that advertises it)", n.Name))
			continue
		}
		hn := fqdn(n.Hostname)
		if !strings.Contains(strings.TrimSuffix(hn, "."), ".") || hn == "localhost." || strings.HasSuffix(hn, ".localhost.") {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("node %s's host name %q is not a public DNS name: start it with --hostname set to the name the world should reach it by (like mx1.%s)", n.Name, strings.TrimSuffix(hn, "."), domain))
		}
		h := byName[hn]
		if h == nil {
			h = &host{name: hn}
			byName[hn] = h
			hosts = append(hosts, h)
		}
		h.nodes = append(h.nodes, n.Name)
		for _, a := range n.Addrs {
			a = a.Unmap()
			if !slices.Contains(h.addrs, a) {
				h.addrs = append(h.addrs, a)
			}
		}
		if len(n.Addrs) == 0 {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("node %s advertises no mail address, so %s has no A/AAAA or PTR record here: listen for SMTP on its public address (--smtp-addr IP:25) or advertise it (--advertise IP)", n.Name, strings.TrimSuffix(hn, ".")))
		}
		for _, a := range n.Addrs {
			if !a.IsGlobalUnicast() || a.IsPrivate() {
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("node %s's mail address %s is not a public address: publish the public address that forwards port 25 to it instead", n.Name, a))
			}
		}
	}
	for i, h := range hosts {
		add(Record{Name: zone, Type: "MX", Priority: 10 * (i + 1), Value: h.name, Purpose: PurposeMX,
			Comment: "mail for " + domain + " goes to node " + strings.Join(h.nodes, ", ")})
	}
	for _, h := range hosts {
		for _, a := range h.addrs {
			typ := "A"
			if a.Is6() {
				typ = "AAAA"
			}
			add(Record{Name: h.name, Type: typ, Value: a.String(), Purpose: PurposeAddress,
				Comment: "address of MX host " + strings.TrimSuffix(h.name, ".")})
		}
	}
	add(Record{Name: zone, Type: "TXT", Value: "v=spf1 mx -all", Purpose: PurposeSPF,
		Comment: "SPF: only the MX hosts send mail for " + domain})
	for _, k := range c.DKIM {
		add(Record{Name: fqdn(k.Selector + "._domainkey." + domain), Type: "TXT", Value: k.TXT, Purpose: PurposeDKIM,
			Comment: "DKIM key, selector " + k.Selector + " (" + k.Algorithm + ")"})
	}
	add(Record{Name: "_dmarc." + zone, Type: "TXT", Value: "v=DMARC1; p=quarantine; rua=mailto:postmaster@" + domain, Purpose: PurposeDMARC,
		Comment: "DMARC: mail failing SPF and DKIM alignment goes to spam; reports to postmaster"})

	var mxs []string
	for _, h := range hosts {
		mxs = append(mxs, strings.TrimSuffix(h.name, "."))
	}
	plan.MTASTS = mtaSTSPolicy(domain, mxs)
	sum := sha256.Sum256([]byte(plan.MTASTS.Content))
	id := now.UTC().Format("20060102") + hex.EncodeToString(sum[:3])
	add(Record{Name: "_mta-sts." + zone, Type: "TXT", Value: "v=STSv1; id=" + id, Purpose: PurposeMTASTS,
		Comment: "MTA-STS: senders fetch the policy at " + plan.MTASTS.URL + "; change id whenever the policy changes"})
	add(Record{Name: "_smtp._tls." + zone, Type: "TXT", Value: "v=TLSRPTv1; rua=mailto:postmaster@" + domain, Purpose: PurposeTLSRPT,
		Comment: "TLS-RPT: senders report TLS failures to postmaster"})
	for _, h := range hosts {
		for _, a := range h.addrs {
			add(Record{Name: reverseName(a), Type: "PTR", Value: h.name, Purpose: PurposePTR,
				Comment: "reverse DNS of " + a.String() + ": set by the owner of the address (your provider), not in the " + domain + " zone"})
		}
	}
	return plan, nil
}

// mtaSTSPolicy is the policy file (RFC 8461 §3.2), in testing mode: a
// sender reports but still delivers when TLS to the MX fails, which is
// right until the nodes have certificates from a public CA.
func mtaSTSPolicy(domain string, mxs []string) MTASTSPolicy {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: testing\r\n")
	for _, mx := range mxs {
		b.WriteString("mx: " + mx + "\r\n")
	}
	b.WriteString("max_age: 86400\r\n")
	return MTASTSPolicy{URL: "https://mta-sts." + domain + "/.well-known/mta-sts.txt", Content: b.String()}
}

// reverseName is the in-addr.arpa or ip6.arpa name of a.
func reverseName(a netip.Addr) string {
	a = a.Unmap()
	var b strings.Builder
	if a.Is4() {
		v := a.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(v[i])) + ".")
		}
		return b.String() + "in-addr.arpa."
	}
	v := a.As16()
	const hexd = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hexd[v[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hexd[v[i]>>4])
		b.WriteByte('.')
	}
	return b.String() + "ip6.arpa."
}

// ZoneLine is the record in zone-file syntax on one line; a TXT value is
// quoted and split into strings of at most 255 bytes.
func (r Record) ZoneLine() string {
	rdata := r.Value
	switch r.Type {
	case "MX":
		rdata = strconv.Itoa(r.Priority) + " " + r.Value
	case "TXT":
		rdata = quoteTXT(r.Value)
	}
	return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, r.TTL, r.Type, rdata)
}

// quoteTXT splits s into quoted character-strings of at most 255 bytes.
func quoteTXT(s string) string {
	var parts []string
	for {
		n := min(len(s), maxTXTString)
		parts = append(parts, `"`+escapeTXT(s[:n])+`"`)
		s = s[n:]
		if s == "" {
			return strings.Join(parts, " ")
		}
	}
}

func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// WriteZone writes the plan as a zone-file fragment: warnings and the
// MTA-STS policy as comments, each record after a comment saying what it
// is for. PTR records are commented out: they belong in the reverse zone
// of the address's owner, not in the domain's zone.
func WriteZone(w io.Writer, p DNSPlan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "; DNS records for %s, made by raftmail from the cluster's current nodes.\n", p.Domain)
	for _, warn := range p.Warnings {
		fmt.Fprintf(&b, "; WARNING: %s\n", warn)
	}
	for _, r := range p.Records {
		fmt.Fprintf(&b, "\n; %s\n", r.Comment)
		if r.Purpose == PurposePTR {
			fmt.Fprintf(&b, "; %s\n", r.ZoneLine())
			continue
		}
		fmt.Fprintln(&b, r.ZoneLine())
	}
	fmt.Fprintf(&b, "\n; MTA-STS policy: serve this file over HTTPS at %s\n", p.MTASTS.URL)
	fmt.Fprintf(&b, "; (mta-sts.%s needs an address record and a certificate valid for that name):\n", p.Domain)
	for _, l := range strings.Split(strings.TrimRight(p.MTASTS.Content, "\r\n"), "\r\n") {
		fmt.Fprintf(&b, ";   %s\n", l)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// DNSNodesFromStatus describes the nodes of a cluster status (GET
// /v1/status) for PlanDNS, with a warning for each node that cannot be
// described (unreachable, or advertising no address).
func DNSNodesFromStatus(sts []cluster.NodeStatus) ([]DNSNode, []string) {
	var nodes []DNSNode
	var warnings []string
	for _, st := range sts {
		if st.Meta[MetaHostname] == "" && !st.Reachable {
			warnings = append(warnings, fmt.Sprintf("node %s did not answer (%s), so its records are missing: run this again when it is up", st.Name, st.Error))
			continue
		}
		n := DNSNode{Name: st.Name, Hostname: st.Meta[MetaHostname]}
		for _, s := range strings.Split(st.Meta[MetaMailIP], ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("node %s advertises a mail address %q that is not an IP address", st.Name, s))
				continue
			}
			n.Addrs = append(n.Addrs, a)
		}
		nodes = append(nodes, n)
	}
	return nodes, warnings
}

// CheckResult is the outcome of checking one record.
type CheckResult struct {
	Record  Record   `json:"record"`
	OK      bool     `json:"ok"`
	Found   []string `json:"found,omitempty"`   // what DNS answered, for that name and kind
	Problem string   `json:"problem,omitempty"` // what differs
	Fix     string   `json:"fix,omitempty"`     // what to change
}

// label names a record's kind in reports: MX, A, SPF, DKIM...
func (r Record) label() string {
	switch r.Purpose {
	case PurposeSPF, PurposeDKIM, PurposeDMARC:
		return strings.ToUpper(r.Purpose)
	case PurposeMTASTS:
		return "MTA-STS"
	case PurposeTLSRPT:
		return "TLS-RPT"
	}
	return r.Type
}

// String is one line: "PASS MX example.com. 10 mx1.example.com." or
// "FAIL MX: <problem>: <fix>".
func (c CheckResult) String() string {
	if c.OK {
		return "PASS  " + c.Record.label() + "  " + c.Record.ZoneLine()
	}
	s := "FAIL  " + c.Record.label() + ": " + c.Problem
	if c.Fix != "" {
		s += ": " + c.Fix
	}
	return s
}

// CheckDNS resolves every record of plan through res and says, per record,
// whether DNS has it, or what differs and how to fix it. An MX host of the
// domain that is not in the plan is reported too (it would receive some of
// the domain's mail). The MTA-STS policy file itself is not fetched.
func CheckDNS(ctx context.Context, res mailauth.Resolver, plan DNSPlan) []CheckResult {
	ck := &checker{res: res, txt: map[string]txtAnswer{}}
	var out []CheckResult
	var wantMX []Record
	for _, r := range plan.Records {
		switch r.Purpose {
		case PurposeMX:
			wantMX = append(wantMX, r)
		case PurposeAddress:
			out = append(out, ck.address(ctx, r))
		case PurposePTR:
			out = append(out, ck.ptr(ctx, r))
		default:
			out = append(out, ck.text(ctx, r))
		}
	}
	if len(wantMX) > 0 {
		out = append(ck.mx(ctx, plan.Domain, wantMX), out...)
	}
	return out
}

type txtAnswer struct {
	txts []string
	err  error
}

type checker struct {
	res mailauth.Resolver
	txt map[string]txtAnswer // by name: SPF and MTA-STS... share lookups
}

// lookupFailed describes an error that is not "no such record".
func lookupFailed(r Record, what string, err error) CheckResult {
	return CheckResult{Record: r, Problem: fmt.Sprintf("looking up %s failed: %v", what, err),
		Fix: "check that the resolver answers (see --resolver) and try again"}
}

func addFix(r Record) string { return "add `" + r.ZoneLine() + "`" }

func (ck *checker) mx(ctx context.Context, domain string, want []Record) []CheckResult {
	mxs, err := ck.res.LookupMX(ctx, domain)
	if err != nil && !mailauth.IsNotFound(err) {
		var out []CheckResult
		for _, r := range want {
			out = append(out, lookupFailed(r, "MX "+domain, err))
		}
		return out
	}
	var found []string
	for _, m := range mxs {
		found = append(found, fmt.Sprintf("%d %s", m.Pref, fqdn(m.Host)))
	}
	foundText := "no MX record"
	if len(found) > 0 {
		foundText = "found " + strings.Join(found, ", ")
	}
	var out []CheckResult
	matched := make([]bool, len(mxs))
	for _, r := range want {
		c := CheckResult{Record: r, Found: found}
		idx := -1
		for i, m := range mxs {
			if fqdn(m.Host) == r.Value {
				idx = i
			}
		}
		switch {
		case idx < 0:
			c.Problem = fmt.Sprintf("%s, want %s (priority %d)", foundText, r.Value, r.Priority)
			c.Fix = addFix(r)
		case int(mxs[idx].Pref) != r.Priority:
			matched[idx] = true
			c.Problem = fmt.Sprintf("%s has priority %d, want %d", r.Value, mxs[idx].Pref, r.Priority)
			c.Fix = "replace it with `" + r.ZoneLine() + "`"
		default:
			matched[idx] = true
			c.OK = true
		}
		out = append(out, c)
	}
	for i, m := range mxs {
		if matched[i] {
			continue
		}
		extra := Record{Name: fqdn(domain), Type: "MX", TTL: want[0].TTL, Priority: int(m.Pref), Value: fqdn(m.Host), Purpose: PurposeMX}
		out = append(out, CheckResult{Record: extra, Found: found,
			Problem: fmt.Sprintf("found %s, which is not a node of this cluster: it receives part of %s's mail", fqdn(m.Host), domain),
			Fix:     "remove `" + extra.ZoneLine() + "` unless it is a backup MX you run on purpose"})
	}
	return out
}

func (ck *checker) address(ctx context.Context, r Record) CheckResult {
	c := CheckResult{Record: r}
	addrs, err := ck.res.LookupIPAddr(ctx, r.Name)
	if err != nil && !mailauth.IsNotFound(err) {
		return lookupFailed(r, "the addresses of "+r.Name, err)
	}
	want, _ := netip.ParseAddr(r.Value)
	for _, a := range addrs {
		got, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		got = got.Unmap()
		if got.Is6() == want.Is6() {
			c.Found = append(c.Found, got.String())
		}
		if got == want {
			c.OK = true
		}
	}
	if !c.OK {
		c.Problem = fmt.Sprintf("%s has no %s record %s", r.Name, r.Type, r.Value)
		if len(c.Found) > 0 {
			c.Problem += " (found " + strings.Join(c.Found, ", ") + ")"
		}
		c.Fix = addFix(r)
	}
	return c
}

func (ck *checker) ptr(ctx context.Context, r Record) CheckResult {
	c := CheckResult{Record: r}
	ip := ptrAddr(r.Name)
	names, err := ck.res.LookupAddr(ctx, ip)
	if err != nil && !mailauth.IsNotFound(err) {
		return lookupFailed(r, "the reverse DNS of "+ip, err)
	}
	for _, n := range names {
		c.Found = append(c.Found, fqdn(n))
		if fqdn(n) == r.Value {
			c.OK = true
		}
	}
	if !c.OK {
		if len(c.Found) == 0 {
			c.Problem = fmt.Sprintf("%s has no reverse DNS, want %s", ip, r.Value)
		} else {
			c.Problem = fmt.Sprintf("%s points back to %s, want %s", ip, strings.Join(c.Found, ", "), r.Value)
		}
		c.Fix = "ask the owner of " + ip + " (your hosting provider) to set its reverse DNS to " + r.Value
	}
	return c
}

// ptrAddr turns a reverse name made by reverseName back into an address.
func ptrAddr(name string) string {
	name = strings.TrimSuffix(name, ".")
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		p := strings.Split(v4, ".")
		slices.Reverse(p)
		return strings.Join(p, ".")
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		nib := strings.Split(v6, ".")
		slices.Reverse(nib)
		var b strings.Builder
		for i, n := range nib {
			if i > 0 && i%4 == 0 {
				b.WriteByte(':')
			}
			b.WriteString(n)
		}
		if a, err := netip.ParseAddr(b.String()); err == nil {
			return a.String()
		}
	}
	return name
}

// txtVersion is the tag that starts each kind of TXT record ("" for DKIM,
// whose v= is optional).
var txtVersion = map[string]string{
	PurposeSPF:    "v=spf1",
	PurposeDMARC:  "v=DMARC1",
	PurposeMTASTS: "v=STSv1",
	PurposeTLSRPT: "v=TLSRPTv1",
}

func (ck *checker) lookupTXT(ctx context.Context, name string) ([]string, error) {
	if a, ok := ck.txt[name]; ok {
		return a.txts, a.err
	}
	txts, err := ck.res.LookupTXT(ctx, name)
	ck.txt[name] = txtAnswer{txts, err}
	return txts, err
}

// text checks a TXT record: among the name's TXT records, those of the
// record's kind (by their version tag) must be exactly one, and match.
func (ck *checker) text(ctx context.Context, r Record) CheckResult {
	c := CheckResult{Record: r}
	txts, err := ck.lookupTXT(ctx, r.Name)
	if err != nil && !mailauth.IsNotFound(err) {
		return lookupFailed(r, "TXT "+r.Name, err)
	}
	var mine []string
	for _, t := range txts {
		if isKind(r.Purpose, t) {
			mine = append(mine, t)
		}
	}
	c.Found = mine
	switch {
	case len(mine) == 0:
		c.Problem = fmt.Sprintf("%s has no %s record", r.Name, r.label())
		c.Fix = addFix(r)
	case len(mine) > 1:
		c.Problem = fmt.Sprintf("%s has %d %s records (%s); receivers treat that as an error", r.Name, len(mine), r.label(), quoteList(mine))
		c.Fix = "keep only `" + r.ZoneLine() + "`"
	default:
		if diff := txtDiff(r.Purpose, mine[0], r.Value); diff != "" {
			c.Problem = fmt.Sprintf("found %q, want %q: %s", mine[0], r.Value, diff)
			c.Fix = "replace it with `" + r.ZoneLine() + "`"
		} else {
			c.OK = true
		}
	}
	return c
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// isKind reports whether TXT text t is a record of the purpose's kind.
func isKind(purpose, t string) bool {
	if v, ok := txtVersion[purpose]; ok {
		if purpose == PurposeSPF {
			f := strings.Fields(t)
			return len(f) > 0 && strings.EqualFold(f[0], v)
		}
		tags, _ := parseTags(t)
		return len(tags) > 0 && tags[0].k == "v" && strings.EqualFold(tags[0].v, strings.TrimPrefix(v, "v="))
	}
	// DKIM: v=DKIM1 first if present; a key record has p=.
	tags, ok := parseTags(t)
	if !ok {
		return false
	}
	for _, tg := range tags {
		if tg.k == "p" {
			return true
		}
	}
	return len(tags) > 0 && tags[0].k == "v" && strings.EqualFold(tags[0].v, "DKIM1")
}

type tag struct{ k, v string }

// parseTags parses a tag list "k=v; k=v" (RFC 6376 §3.2), removing all
// whitespace from values (folded base64 keys). ok=false if not a tag list.
func parseTags(s string) ([]tag, bool) {
	var out []tag
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, found := strings.Cut(part, "=")
		if !found {
			return out, false
		}
		out = append(out, tag{strings.ToLower(strings.TrimSpace(k)), strings.Join(strings.Fields(v), "")})
	}
	return out, true
}

// txtDiff says how found differs from want, or "" if it is as good: SPF
// must be the same mechanisms; a tag record must have every wanted tag with
// the same value (other tags may be added), except MTA-STS's id, which only
// has to be there.
func txtDiff(purpose, found, want string) string {
	if purpose == PurposeSPF {
		if !strings.EqualFold(strings.Join(strings.Fields(found), " "), strings.Join(strings.Fields(want), " ")) {
			return "different mechanisms"
		}
		return ""
	}
	got, ok := parseTags(found)
	if !ok {
		return "not a tag=value list"
	}
	wantTags, _ := parseTags(want)
	var diffs []string
	for _, w := range wantTags {
		var g *tag
		for i := range got {
			if got[i].k == w.k {
				g = &got[i]
			}
		}
		switch {
		case g == nil:
			diffs = append(diffs, w.k+"= missing")
		case purpose == PurposeMTASTS && w.k == "id":
			if g.v == "" {
				diffs = append(diffs, "id= empty")
			}
		case purpose == PurposeDKIM && w.k == "p":
			if g.v != w.v {
				diffs = append(diffs, "a different public key (p=)")
			}
		case !strings.EqualFold(g.v, w.v):
			diffs = append(diffs, fmt.Sprintf("%s=%s instead of %s", w.k, g.v, w.v))
		}
	}
	return strings.Join(diffs, ", ")
}
