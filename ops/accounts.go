package ops

import (
	"net/http"
	"strings"

	"github.com/raftmail/raftmail/storage"
)

// DomainRequest is the body of POST /v1/domains.
type DomainRequest struct {
	Name string `json:"name"`
}

// UserRequest is the body of POST /v1/users and PUT /v1/users/{addr}/password.
type UserRequest struct {
	Address    string `json:"address,omitempty"`
	Password   string `json:"password"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
}

// UserInfo is an account as listed (never its password hash).
type UserInfo struct {
	Address      string   `json:"address"`
	QuotaBytes   int64    `json:"quota_bytes"`
	UsedBytes    int64    `json:"used_bytes"`
	AppPasswords []string `json:"app_passwords,omitempty"`
}

// AliasRequest is the body of POST /v1/aliases.
type AliasRequest struct {
	Address string   `json:"address"`
	Targets []string `json:"targets"`
}

// minPasswordLen is the shortest password the admin API accepts.
const minPasswordLen = 8

func normAddr(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func validAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n<>")
}

func (a *Admin) domainList(w http.ResponseWriter, r *http.Request) {
	ds, err := a.store.Domains()
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if ds == nil {
		ds = []storage.Domain{}
	}
	writeJSON(w, http.StatusOK, withoutKeys(ds))
}

func (a *Admin) domainAdd(w http.ResponseWriter, r *http.Request) {
	var req DomainRequest
	if !decodeBody(w, r, &req) {
		return
	}
	name := strings.TrimSuffix(normAddr(req.Name), ".")
	if name == "" || strings.ContainsAny(name, "@ /\\") || !strings.Contains(name, ".") {
		writeError(w, http.StatusBadRequest, "domain name "+req.Name+" is not a domain like example.com")
		return
	}
	// The domain's first DKIM keys are generated here, by the proposer.
	sels, err := newDKIMKeys(nil)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if _, ok := a.propose(w, r, storage.CmdDomainAdd, storage.DomainAdd{Name: name, DKIM: sels}); ok {
		writeJSON(w, http.StatusCreated, DomainAdded{Added: name, DKIM: selectorNames(sels)})
	}
}

func (a *Admin) domainRemove(w http.ResponseWriter, r *http.Request) {
	name := normAddr(r.PathValue("name"))
	if _, ok := a.propose(w, r, storage.CmdDomainRemove, struct{ Name string }{name}); ok {
		writeJSON(w, http.StatusOK, map[string]string{"removed": name})
	}
}

func (a *Admin) userList(w http.ResponseWriter, r *http.Request) {
	accts, err := a.store.Accounts(normAddr(r.URL.Query().Get("domain")))
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	out := []UserInfo{}
	for _, ac := range accts {
		ui := UserInfo{Address: ac.Address, QuotaBytes: ac.QuotaBytes, UsedBytes: ac.UsedBytes}
		for _, ap := range ac.AppPasswords {
			ui.AppPasswords = append(ui.AppPasswords, ap.Name)
		}
		out = append(out, ui)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Admin) userAdd(w http.ResponseWriter, r *http.Request) {
	var req UserRequest
	if !decodeBody(w, r, &req) {
		return
	}
	addr := normAddr(req.Address)
	if !validAddress(addr) {
		writeError(w, http.StatusBadRequest, "address "+req.Address+" is not an address like user@example.com")
		return
	}
	if len(req.Password) < minPasswordLen {
		writeError(w, http.StatusBadRequest, "password too short: use at least 8 characters")
		return
	}
	hash, err := storage.HashPassword(req.Password)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if _, ok := a.propose(w, r, storage.CmdAccountAdd, struct {
		Address      string
		PasswordHash string
		QuotaBytes   int64
	}{addr, hash, req.QuotaBytes}); ok {
		writeJSON(w, http.StatusCreated, map[string]string{"added": addr})
	}
}

func (a *Admin) userPasswd(w http.ResponseWriter, r *http.Request) {
	var req UserRequest
	if !decodeBody(w, r, &req) {
		return
	}
	addr := normAddr(r.PathValue("addr"))
	if len(req.Password) < minPasswordLen {
		writeError(w, http.StatusBadRequest, "password too short: use at least 8 characters")
		return
	}
	hash, err := storage.HashPassword(req.Password)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if _, ok := a.propose(w, r, storage.CmdAccountPassword, struct {
		Address      string
		PasswordHash string
	}{addr, hash}); ok {
		writeJSON(w, http.StatusOK, map[string]string{"changed": addr})
	}
}

func (a *Admin) userRemove(w http.ResponseWriter, r *http.Request) {
	addr := normAddr(r.PathValue("addr"))
	if _, ok := a.propose(w, r, storage.CmdAccountRemove, struct{ Address string }{addr}); ok {
		writeJSON(w, http.StatusOK, map[string]string{"removed": addr})
	}
}

func (a *Admin) aliasList(w http.ResponseWriter, r *http.Request) {
	as, err := a.store.Aliases(normAddr(r.URL.Query().Get("domain")))
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if as == nil {
		as = []storage.Alias{}
	}
	writeJSON(w, http.StatusOK, as)
}

func (a *Admin) aliasAdd(w http.ResponseWriter, r *http.Request) {
	var req AliasRequest
	if !decodeBody(w, r, &req) {
		return
	}
	addr := normAddr(req.Address)
	if !validAddress(addr) || len(req.Targets) == 0 {
		writeError(w, http.StatusBadRequest, "an alias needs an address like info@example.com and at least one target account")
		return
	}
	targets := make([]string, 0, len(req.Targets))
	for _, t := range req.Targets {
		targets = append(targets, normAddr(t))
	}
	if _, ok := a.propose(w, r, storage.CmdAliasAdd, storage.Alias{Address: addr, Targets: targets}); ok {
		writeJSON(w, http.StatusCreated, map[string]string{"added": addr})
	}
}

func (a *Admin) aliasRemove(w http.ResponseWriter, r *http.Request) {
	addr := normAddr(r.PathValue("addr"))
	if _, ok := a.propose(w, r, storage.CmdAliasRemove, struct{ Address string }{addr}); ok {
		writeJSON(w, http.StatusOK, map[string]string{"removed": addr})
	}
}

func (a *Admin) queueList(w http.ResponseWriter, r *http.Request) {
	q, err := a.store.QueueEntries()
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	if q == nil {
		q = []storage.QueueEntry{}
	}
	writeJSON(w, http.StatusOK, q)
}
