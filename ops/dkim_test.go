package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/protocol/mailauth"
	"github.com/raftmail/raftmail/protocol/mailauth/dnstest"
)

func dkimStates(infos []DKIMSelectorInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.Selector+":"+i.State)
	}
	return out
}

// getRaw returns the body of an admin GET as text.
func getRaw(t *testing.T, a *Admin, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.Addr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAdminDKIM(t *testing.T) {
	a, c := startAdmin(t)
	ctx := context.Background()
	var added DomainAdded
	if err := c.Do(ctx, "POST", "/v1/domains", DomainRequest{Name: "Example.TEST"}, &added); err != nil {
		t.Fatal(err)
	}
	if len(added.DKIM) != 2 || !strings.HasSuffix(added.DKIM[0], "e") || !strings.HasSuffix(added.DKIM[1], "r") {
		t.Fatalf("added %+v: want an ed25519 and an RSA selector", added)
	}
	keys, err := a.store.DKIMKeys("example.test")
	if err != nil || len(keys) != 2 {
		t.Fatalf("DKIMKeys = %d keys, %v", len(keys), err)
	}
	for _, k := range keys {
		if _, err := (mailauth.DKIMKey{Selector: k.Selector, Algorithm: k.Algorithm, PrivateKeyPEM: k.PrivateKeyPEM}).Signer(); err != nil {
			t.Fatalf("stored key %s: %v", k.Selector, err)
		}
	}
	for _, path := range []string{"/v1/domains", "/v1/domains/example.test/dkim"} {
		if body := getRaw(t, a, path); strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "PrivateKeyPEM\": \"") {
			t.Fatalf("%s shows a private key:\n%s", path, body)
		}
	}

	var list []DKIMSelectorInfo
	if err := c.Do(ctx, "GET", "/v1/domains/example.test/dkim", nil, &list); err != nil {
		t.Fatal(err)
	}
	first := []string{added.DKIM[0] + ":signing", added.DKIM[1] + ":signing"}
	if got := dkimStates(list); !slices.Equal(got, first) {
		t.Fatalf("selectors %q, want %q", got, first)
	}
	if !strings.HasPrefix(list[0].TXT, "v=DKIM1; k=ed25519; p=") || !strings.HasPrefix(list[1].TXT, "v=DKIM1; k=rsa; p=") ||
		list[0].Name != added.DKIM[0]+"._domainkey.example.test." {
		t.Fatalf("list %+v", list)
	}

	// Rotating on the day of the first keys picks new names.
	var rot DKIMRotated
	if err := c.Do(ctx, "POST", "/v1/domains/example.test/dkim/rotate", nil, &rot); err != nil {
		t.Fatal(err)
	}
	if len(rot.New) != 2 || slices.Contains(added.DKIM, rot.New[0]) || slices.Contains(added.DKIM, rot.New[1]) {
		t.Fatalf("rotated to %q after %q", rot.New, added.DKIM)
	}
	want := []string{added.DKIM[0] + ":published", added.DKIM[1] + ":published", rot.New[0] + ":signing", rot.New[1] + ":signing"}
	if got := dkimStates(rot.Selectors); !slices.Equal(got, want) {
		t.Fatalf("after rotate %q, want %q", got, want)
	}

	apiErr := func(err error) *APIError {
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("error %v, want an API error", err)
		}
		return ae
	}
	err = c.Do(ctx, "DELETE", "/v1/domains/example.test/dkim/"+rot.New[0], nil, nil)
	if ae := apiErr(err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, "still signs new mail") {
		t.Fatalf("retiring a signing selector: %v", err)
	}
	if ae := apiErr(c.Do(ctx, "DELETE", "/v1/domains/example.test/dkim/nope", nil, nil)); ae.Status != http.StatusNotFound {
		t.Fatalf("retiring an unknown selector: %d %s", ae.Status, ae.Msg)
	}
	if ae := apiErr(c.Do(ctx, "GET", "/v1/domains/nope.test/dkim", nil, nil)); ae.Status != http.StatusNotFound {
		t.Fatalf("listing an unknown domain: %d %s", ae.Status, ae.Msg)
	}
	if err := c.Do(ctx, "DELETE", "/v1/domains/example.test/dkim/"+added.DKIM[0], nil, nil); err != nil {
		t.Fatal(err)
	}
	list = nil
	if err := c.Do(ctx, "GET", "/v1/domains/example.test/dkim", nil, &list); err != nil {
		t.Fatal(err)
	}
	want[0] = added.DKIM[0] + ":retired"
	if got := dkimStates(list); !slices.Equal(got, want) || list[0].TXT != "" {
		t.Fatalf("after retire %q (%+v), want %q", got, list[0], want)
	}
}

// The records planned from real keys, once published, pass the check; a
// missing DKIM record is reported with its fix.
func TestDNSWithRealKeys(t *testing.T) {
	_, c := startAdmin(t)
	ctx := context.Background()
	if err := c.Do(ctx, "POST", "/v1/domains", DomainRequest{Name: "example.test"}, nil); err != nil {
		t.Fatal(err)
	}
	var list []DKIMSelectorInfo
	if err := c.Do(ctx, "GET", "/v1/domains/example.test/dkim", nil, &list); err != nil {
		t.Fatal(err)
	}
	dc := DNSCluster{Domain: "example.test", Nodes: []DNSNode{{Name: "n1", Hostname: "n1.example.test", Addrs: addrs("192.0.2.1")}}}
	for _, s := range list {
		dc.DKIM = append(dc.DKIM, DNSDKIM{Selector: s.Selector, Algorithm: s.Algorithm, TXT: s.TXT})
	}
	plan, err := PlanDNS(dc)
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t)
	var rsa Record
	for _, r := range plan.Records {
		if r.Purpose == PurposeDKIM && strings.Contains(r.Value, "k=rsa") {
			rsa = r
			continue
		}
		srv.Add(t, r.ZoneLine())
	}
	res := mailauth.NewResolver(srv.Addr)
	var failed []CheckResult
	for _, r := range CheckDNS(ctx, res, plan) {
		if !r.OK {
			failed = append(failed, r)
		}
	}
	if len(failed) != 1 || failed[0].Record.Name != rsa.Name || !strings.Contains(failed[0].String(), "add `"+rsa.ZoneLine()+"`") {
		t.Fatalf("failures:\n%s", checkLines(failed))
	}
	srv.Add(t, rsa.ZoneLine())
	for _, r := range CheckDNS(ctx, res, plan) {
		if !r.OK {
			t.Errorf("%s", r)
		}
	}
}
