package ops

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/storage"
)

const testToken = "0123456789abcdef0123456789abcdef"

func startAdmin(t *testing.T) (*Admin, *Client) {
	t.Helper()
	c := clustertest.New(t, 1, nil)
	a, err := NewAdmin(AdminConfig{Addr: "127.0.0.1:0", Token: testToken, Node: c.Nodes[0].Node})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	return a, &Client{Addr: a.Addr(), Token: testToken}
}

func TestAdminRequiresToken(t *testing.T) {
	a, _ := startAdmin(t)
	for _, tok := range []string{"", "wrong-token-wrong-token-wrong-token"} {
		req, _ := http.NewRequest("GET", "http://"+a.Addr()+"/v1/status", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, resp.StatusCode)
		}
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + a.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200 without a token", path, resp.StatusCode)
		}
	}
}

func TestAdminAccounts(t *testing.T) {
	_, c := startAdmin(t)
	ctx := context.Background()
	apiStatus := func(err error) int {
		var ae *APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}
	if err := c.Do(ctx, "POST", "/v1/domains", DomainRequest{Name: "Example.TEST"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "POST", "/v1/domains", DomainRequest{Name: "example.test"}, nil); apiStatus(err) != http.StatusConflict {
		t.Errorf("duplicate domain: %v", err)
	}
	if err := c.Do(ctx, "POST", "/v1/domains", DomainRequest{Name: "not a domain"}, nil); apiStatus(err) != http.StatusBadRequest {
		t.Errorf("bad domain: %v", err)
	}
	var ds []storage.Domain
	if err := c.Do(ctx, "GET", "/v1/domains", nil, &ds); err != nil || len(ds) != 1 || ds[0].Name != "example.test" {
		t.Fatalf("domains: %+v %v", ds, err)
	}
	if err := c.Do(ctx, "POST", "/v1/users", UserRequest{Address: "u@example.test", Password: "short"}, nil); apiStatus(err) != http.StatusBadRequest {
		t.Errorf("short password: %v", err)
	}
	if err := c.Do(ctx, "POST", "/v1/users", UserRequest{Address: "u@nowhere.test", Password: "long-enough"}, nil); err == nil {
		t.Error("user in an unknown domain accepted")
	}
	if err := c.Do(ctx, "POST", "/v1/users", UserRequest{Address: "U@example.test", Password: "long-enough"}, nil); err != nil {
		t.Fatal(err)
	}
	var us []UserInfo
	if err := c.Do(ctx, "GET", "/v1/users", nil, &us); err != nil || len(us) != 1 || us[0].Address != "u@example.test" {
		t.Fatalf("users: %+v %v", us, err)
	}
	if err := c.Do(ctx, "POST", "/v1/aliases", AliasRequest{Address: "info@example.test", Targets: []string{"u@example.test"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "DELETE", "/v1/domains/example.test", nil, nil); err == nil {
		t.Error("domain with accounts removed")
	}
	if err := c.Do(ctx, "DELETE", "/v1/nodes/nosuchnode", nil, nil); apiStatus(err) != http.StatusNotFound {
		t.Errorf("remove unknown node: %v", err)
	}
	var tok TokenCreated
	if err := c.Do(ctx, "POST", "/v1/tokens", TokenCreateRequest{TTL: "1h"}, &tok); err != nil || tok.Token == "" {
		t.Fatalf("token create: %+v %v", tok, err)
	}
	if err := c.Do(ctx, "DELETE", "/v1/tokens/"+tok.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	var toks []TokenInfo
	if err := c.Do(ctx, "GET", "/v1/tokens", nil, &toks); err != nil {
		t.Fatal(err)
	}
	for _, ti := range toks {
		if ti.ID == tok.ID && ti.State != "revoked" {
			t.Errorf("revoked token listed as %s", ti.State)
		}
	}
}

func TestAdminProfilesNeedToken(t *testing.T) {
	a, _ := startAdmin(t)
	get := func(path, tok string) int {
		req, _ := http.NewRequest("GET", "http://"+a.Addr()+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/v1/debug/pprof/heap", ""); code != http.StatusUnauthorized {
		t.Errorf("heap profile without a token: %d", code)
	}
	if code := get("/v1/debug/pprof/heap", testToken); code != http.StatusOK {
		t.Errorf("heap profile with the token: %d", code)
	}
	if code := get("/debug/pprof/", ""); code == http.StatusOK {
		t.Error("the default pprof paths are served")
	}
}
