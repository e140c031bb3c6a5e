package ops

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

var dnsDay = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// longDKIM is a TXT value longer than one 255-byte string, like an RSA key.
var longDKIM = "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A", 12)

func testCluster() DNSCluster {
	return DNSCluster{
		Domain: "Example.TEST",
		Nodes: []DNSNode{ // out of order: priorities follow names
			{Name: "node2", Hostname: "node2.example.test", Addrs: addrs("192.0.2.2")},
			{Name: "node1", Hostname: "node1.example.test.", Addrs: addrs("192.0.2.1", "2001:db8::1")},
			{Name: "node3", Hostname: "node3.example.test", Addrs: addrs("192.0.2.3")},
		},
		DKIM: []DNSDKIM{
			{Selector: "rm20260304e", Algorithm: "ed25519", TXT: "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
			{Selector: "rm20260304r", Algorithm: "rsa", TXT: longDKIM},
		},
		Now: dnsDay,
	}
}

func recordLines(p DNSPlan) []string {
	var out []string
	for _, r := range p.Records {
		out = append(out, r.ZoneLine())
	}
	return out
}

func TestPlanDNS(t *testing.T) {
	p, err := PlanDNS(testCluster())
	if err != nil {
		t.Fatal(err)
	}
	mtaID := ""
	for _, r := range p.Records {
		if r.Purpose == PurposeMTASTS {
			mtaID = strings.TrimPrefix(r.Value, "v=STSv1; id=")
		}
	}
	if !strings.HasPrefix(mtaID, "20260304") || len(mtaID) > 32 {
		t.Fatalf("MTA-STS id %q: want the date first, at most 32 characters", mtaID)
	}
	want := []string{
		"example.test.\t3600\tIN\tMX\t10 node1.example.test.",
		"example.test.\t3600\tIN\tMX\t20 node2.example.test.",
		"example.test.\t3600\tIN\tMX\t30 node3.example.test.",
		"node1.example.test.\t3600\tIN\tA\t192.0.2.1",
		"node1.example.test.\t3600\tIN\tAAAA\t2001:db8::1",
		"node2.example.test.\t3600\tIN\tA\t192.0.2.2",
		"node3.example.test.\t3600\tIN\tA\t192.0.2.3",
		"example.test.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"",
		"rm20260304e._domainkey.example.test.\t3600\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"",
		"rm20260304r._domainkey.example.test.\t3600\tIN\tTXT\t\"" + longDKIM[:255] + "\" \"" + longDKIM[255:] + "\"",
		"_dmarc.example.test.\t3600\tIN\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test\"",
		"_mta-sts.example.test.\t3600\tIN\tTXT\t\"v=STSv1; id=" + mtaID + "\"",
		"_smtp._tls.example.test.\t3600\tIN\tTXT\t\"v=TLSRPTv1; rua=mailto:postmaster@example.test\"",
		"1.2.0.192.in-addr.arpa.\t3600\tIN\tPTR\tnode1.example.test.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.\t3600\tIN\tPTR\tnode1.example.test.",
		"2.2.0.192.in-addr.arpa.\t3600\tIN\tPTR\tnode2.example.test.",
		"3.2.0.192.in-addr.arpa.\t3600\tIN\tPTR\tnode3.example.test.",
	}
	if got := recordLines(p); !slices.Equal(got, want) {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings %q", p.Warnings)
	}
	wantPolicy := "version: STSv1\r\nmode: testing\r\nmx: node1.example.test\r\nmx: node2.example.test\r\nmx: node3.example.test\r\nmax_age: 86400\r\n"
	if p.MTASTS.Content != wantPolicy || p.MTASTS.URL != "https://mta-sts.example.test/.well-known/mta-sts.txt" {
		t.Fatalf("MTA-STS policy %+v", p.MTASTS)
	}
	// The id changes with the policy, not with the time of day.
	c := testCluster()
	c.Now = dnsDay.Add(time.Hour)
	if p2, _ := PlanDNS(c); !slices.Equal(recordLines(p2), want) {
		t.Fatal("records changed within the day")
	}
	c.Nodes = c.Nodes[:2]
	p3, _ := PlanDNS(c)
	if p3.MTASTS.Content == wantPolicy || slices.Contains(recordLines(p3), want[11]) {
		t.Fatal("MTA-STS policy or id unchanged after a node went away")
	}
}

func TestPlanDNSWarnings(t *testing.T) {
	cases := []struct {
		name      string
		nodes     []DNSNode
		wantMX    []string
		wantWarns []string // substrings, one per warning
	}{
		{name: "shared host name", nodes: []DNSNode{
			{Name: "a", Hostname: "mx.example.test", Addrs: addrs("192.0.2.1")},
			{Name: "b", Hostname: "MX.example.test", Addrs: addrs("192.0.2.2")},
		}, wantMX: []string{"10 mx.example.test."}},
		{name: "no host name", nodes: []DNSNode{
			{Name: "a", Addrs: addrs("192.0.2.1")},
			{Name: "b", Hostname: "b.example.test", Addrs: addrs("192.0.2.2")},
		}, wantMX: []string{"10 b.example.test."}, wantWarns: []string{"node a advertises no host name"}},
		{name: "make run", nodes: []DNSNode{
			{Name: "node1", Hostname: "localhost", Addrs: addrs("127.0.0.1")},
		}, wantMX: []string{"10 localhost."}, wantWarns: []string{`host name "localhost" is not a public DNS name`, "127.0.0.1 is not a public address"}},
		{name: "private and missing addresses", nodes: []DNSNode{
			{Name: "a", Hostname: "a.example.test", Addrs: addrs("10.1.2.3")},
			{Name: "b", Hostname: "b.example.test"},
		}, wantMX: []string{"10 a.example.test.", "20 b.example.test."},
			wantWarns: []string{"10.1.2.3 is not a public address", "node b advertises no mail address"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := PlanDNS(DNSCluster{Domain: "example.test", Nodes: c.nodes, Now: dnsDay})
			if err != nil {
				t.Fatal(err)
			}
			var mx []string
			for _, r := range p.Records {
				if r.Type == "MX" {
					mx = append(mx, strings.SplitN(r.ZoneLine(), "\t", 5)[4])
				}
			}
			if !slices.Equal(mx, c.wantMX) {
				t.Errorf("MX %q, want %q", mx, c.wantMX)
			}
			if len(p.Warnings) != len(c.wantWarns) {
				t.Fatalf("warnings %q, want %d", p.Warnings, len(c.wantWarns))
			}
			for i, w := range c.wantWarns {
				if !strings.Contains(p.Warnings[i], w) {
					t.Errorf("warning %q does not say %q", p.Warnings[i], w)
				}
			}
		})
	}
	for _, bad := range []string{"", "localhost", "a b.test", "user@example.test"} {
		if _, err := PlanDNS(DNSCluster{Domain: bad}); err == nil {
			t.Errorf("PlanDNS(%q): no error", bad)
		}
	}
}

// Every zone line parses as a record whose data is what was meant,
// including TXT values with quotes and values longer than 255 bytes.
func TestZoneLineParses(t *testing.T) {
	p, err := PlanDNS(testCluster())
	if err != nil {
		t.Fatal(err)
	}
	p.Records = append(p.Records, Record{Name: "q.example.test.", Type: "TXT", TTL: 60, Value: `say "hi" \ ` + strings.Repeat("x", 600)})
	for _, r := range p.Records {
		rr, err := dns.NewRR(r.ZoneLine())
		if err != nil {
			t.Fatalf("%s: %v", r.ZoneLine(), err)
		}
		if rr.Header().Name != r.Name {
			t.Errorf("%s: name %q", r.ZoneLine(), rr.Header().Name)
		}
		if txt, ok := rr.(*dns.TXT); ok {
			// miekg keeps the strings in presentation form (escaped).
			var joined string
			for _, s := range txt.Txt {
				s = unescapeTXT(s)
				if len(s) > 255 {
					t.Errorf("%s: string of %d bytes", r.Name, len(s))
				}
				joined += s
			}
			if joined != r.Value {
				t.Errorf("%s: TXT %q, want %q", r.Name, joined, r.Value)
			}
		}
	}
	var buf bytes.Buffer
	if err := WriteZone(&buf, p); err != nil {
		t.Fatal(err)
	}
	zp := dns.NewZoneParser(strings.NewReader(buf.String()), "", "")
	n := 0
	for _, ok := zp.Next(); ok; _, ok = zp.Next() {
		n++
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone file does not parse: %v\n%s", err, buf.String())
	}
	if want := len(p.Records) - 4; n != want { // PTRs are comments
		t.Fatalf("zone file has %d records, want %d:\n%s", n, want, buf.String())
	}
}

// unescapeTXT undoes the zone-file escapes \" \\ and \DDD.
func unescapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i+2 < len(s) && '0' <= s[i] && s[i] <= '9' {
			b.WriteByte((s[i]-'0')*100 + (s[i+1]-'0')*10 + s[i+2] - '0')
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestReverseName(t *testing.T) {
	for _, c := range []struct{ addr, name string }{
		{"192.0.2.1", "1.2.0.192.in-addr.arpa."},
		{"::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa."},
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."},
	} {
		a := netip.MustParseAddr(c.addr)
		got := reverseName(a)
		if got != c.name {
			t.Errorf("reverseName(%s) = %s, want %s", c.addr, got, c.name)
		}
		if want, _ := dns.ReverseAddr(a.Unmap().String()); got != want {
			t.Errorf("reverseName(%s) = %s, miekg says %s", c.addr, got, want)
		}
		if back := ptrAddr(got); back != a.Unmap().String() {
			t.Errorf("ptrAddr(%s) = %s, want %s", got, back, a.Unmap())
		}
	}
}

func TestDNSNodesFromStatus(t *testing.T) {
	nodes, warns := DNSNodesFromStatus([]cluster.NodeStatus{
		{Name: "n1", Reachable: true, Meta: map[string]string{MetaHostname: "n1.example.test", MetaMailIP: "192.0.2.1, 2001:db8::1"}},
		{Name: "n2", Error: "connection refused"},
		{Name: "n3", Reachable: true, Meta: map[string]string{MetaHostname: "n3.example.test", MetaMailIP: "nonsense"}},
	})
	if len(nodes) != 2 || nodes[0].Hostname != "n1.example.test" || !slices.Equal(nodes[0].Addrs, addrs("192.0.2.1", "2001:db8::1")) ||
		nodes[1].Name != "n3" || len(nodes[1].Addrs) != 0 {
		t.Fatalf("nodes %+v", nodes)
	}
	if len(warns) != 2 || !strings.Contains(warns[0], "node n2 did not answer (connection refused)") || !strings.Contains(warns[1], `"nonsense"`) {
		t.Fatalf("warnings %q", warns)
	}
}

// publish loads records into the test DNS server.
func publish(t *testing.T, srv *dnstest.Server, recs ...Record) {
	t.Helper()
	for _, r := range recs {
		srv.Add(t, r.ZoneLine())
	}
}

func checkLines(rs []CheckResult) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}

// What `dns records` prints, once published, makes `dns check` pass.
func TestCheckDNSAllPublished(t *testing.T) {
	p, err := PlanDNS(testCluster())
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t)
	publish(t, srv, p.Records...)
	res := CheckDNS(context.Background(), mailauth.NewResolver(srv.Addr), p)
	if len(res) != len(p.Records) {
		t.Fatalf("%d results for %d records:\n%s", len(res), len(p.Records), checkLines(res))
	}
	for _, r := range res {
		if !r.OK {
			t.Errorf("%s", r)
		}
	}
}

func TestCheckDNSFindsMistakes(t *testing.T) {
	p, err := PlanDNS(testCluster())
	if err != nil {
		t.Fatal(err)
	}
	find := func(purpose, name string) Record {
		for _, r := range p.Records {
			if r.Purpose == purpose && (name == "" || r.Name == name || r.Value == name) {
				return r
			}
		}
		t.Fatalf("no %s record %s", purpose, name)
		return Record{}
	}
	srv := dnstest.Start(t)
	var published []Record
	for _, r := range p.Records {
		switch {
		case r.Purpose == PurposeMX && r.Value == "node1.example.test.": // replaced below
		case r.Purpose == PurposeMX && r.Value == "node2.example.test.":
			r.Priority = 50
			published = append(published, r)
		case r.Purpose == PurposeDKIM && strings.HasPrefix(r.Name, "rm20260304r."): // missing
		case r.Purpose == PurposeDKIM: // a different key
			r.Value = "v=DKIM1; k=ed25519; p=AAAAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
			published = append(published, r)
		case r.Purpose == PurposeSPF: // right, but twice
			published = append(published, r, Record{Name: r.Name, Type: "TXT", TTL: 60, Value: "v=spf1 a -all"})
		case r.Purpose == PurposeDMARC: // stricter and with more tags: fine
			r.Value = "v=DMARC1; p=quarantine; pct=100; rua=mailto:postmaster@example.test; ruf=mailto:x@example.test"
			published = append(published, r)
		case r.Purpose == PurposeTLSRPT:
			r.Value = "v=TLSRPTv1; rua=mailto:tls@elsewhere.test"
			published = append(published, r)
		case r.Purpose == PurposeMTASTS: // another id: fine
			r.Value = "v=STSv1; id=20240101"
			published = append(published, r)
		case r.Purpose == PurposeAddress && r.Value == "192.0.2.3": // a wrong address
			r.Value = "192.0.2.99"
			published = append(published, r)
		case r.Purpose == PurposePTR && r.Value == "node2.example.test.":
			r.Value = "static-2.provider.test."
			published = append(published, r)
		default:
			published = append(published, r)
		}
	}
	published = append(published, Record{Name: "example.test.", Type: "MX", TTL: 60, Priority: 10, Value: "mx.other.test."})
	// Unrelated TXT records at the same names are ignored.
	published = append(published, Record{Name: "example.test.", Type: "TXT", TTL: 60, Value: "google-site-verification=abc"})
	publish(t, srv, published...)

	res := CheckDNS(context.Background(), mailauth.NewResolver(srv.Addr), p)
	got := map[string]CheckResult{}
	for _, r := range res {
		got[r.Record.Purpose+" "+r.Record.Name+" "+r.Record.Value] = r
	}
	key := func(r Record) string { return r.Purpose + " " + r.Name + " " + r.Value }
	type want struct {
		rec  Record
		ok   bool
		says []string // substrings of String()
	}
	mx1 := find(PurposeMX, "node1.example.test.")
	wants := []want{
		{mx1, false, []string{"FAIL  MX: found 10 mx.other.test., 30 node3.example.test., 50 node2.example.test., want node1.example.test. (priority 10): add `example.test.\t3600\tIN\tMX\t10 node1.example.test.`"}},
		{find(PurposeMX, "node2.example.test."), false, []string{"node2.example.test. has priority 50, want 20", "replace it with"}},
		{find(PurposeMX, "node3.example.test."), true, nil},
		{Record{Name: "example.test.", Type: "MX", Value: "mx.other.test.", Purpose: PurposeMX}, false,
			[]string{"found mx.other.test., which is not a node of this cluster", "remove `example.test.\t3600\tIN\tMX\t10 mx.other.test.`"}},
		{find(PurposeAddress, "192.0.2.1"), true, nil},
		{find(PurposeAddress, "2001:db8::1"), true, nil},
		{find(PurposeAddress, "192.0.2.3"), false, []string{"node3.example.test. has no A record 192.0.2.3 (found 192.0.2.99)", "add `node3.example.test.\t3600\tIN\tA\t192.0.2.3`"}},
		{find(PurposeSPF, ""), false, []string{"has 2 SPF records", "keep only `example.test.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"`"}},
		{find(PurposeDKIM, "rm20260304e._domainkey.example.test."), false, []string{"FAIL  DKIM: found", "a different public key (p=)", "replace it with"}},
		{find(PurposeDKIM, "rm20260304r._domainkey.example.test."), false, []string{"FAIL  DKIM: rm20260304r._domainkey.example.test. has no DKIM record: add `rm20260304r._domainkey.example.test.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p="}},
		{find(PurposeDMARC, ""), true, nil},
		{find(PurposeMTASTS, ""), true, nil},
		{find(PurposeTLSRPT, ""), false, []string{"rua=mailto:tls@elsewhere.test instead of mailto:postmaster@example.test"}},
		{find(PurposePTR, "1.2.0.192.in-addr.arpa."), true, nil},
		{find(PurposePTR, "2.2.0.192.in-addr.arpa."), false, []string{"192.0.2.2 points back to static-2.provider.test., want node2.example.test.", "ask the owner of 192.0.2.2"}},
		{find(PurposePTR, "3.2.0.192.in-addr.arpa."), true, nil},
	}
	for _, w := range wants {
		r, ok := got[key(w.rec)]
		if !ok {
			t.Errorf("no result for %s\n%s", key(w.rec), checkLines(res))
			continue
		}
		if r.OK != w.ok {
			t.Errorf("%s: OK=%v, want %v", r, r.OK, w.ok)
		}
		for _, s := range w.says {
			if !strings.Contains(r.String(), s) {
				t.Errorf("%q does not say %q", r.String(), s)
			}
		}
	}
	if len(res) != len(p.Records)+1 {
		t.Errorf("%d results, want %d:\n%s", len(res), len(p.Records)+1, checkLines(res))
	}
}

// A resolver that cannot answer is a failure to check, not a missing record.
func TestCheckDNSLookupFailure(t *testing.T) {
	p, err := PlanDNS(DNSCluster{Domain: "example.test", Now: dnsDay,
		Nodes: []DNSNode{{Name: "a", Hostname: "a.example.test", Addrs: addrs("192.0.2.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t)
	publish(t, srv, p.Records...)
	srv.ServFail("_dmarc.example.test", true)
	for _, r := range CheckDNS(context.Background(), mailauth.NewResolver(srv.Addr), p) {
		if r.Record.Purpose == PurposeDMARC {
			if r.OK || !strings.Contains(r.Problem, "looking up TXT _dmarc.example.test. failed") || !strings.Contains(r.Fix, "--resolver") {
				t.Fatalf("%s", r)
			}
		} else if !r.OK {
			t.Errorf("%s", r)
		}
	}
}
