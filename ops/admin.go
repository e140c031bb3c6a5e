package ops

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/storage"
)

// AdminConfig configures the admin HTTP server.
type AdminConfig struct {
	// Addr is the host:port to listen on (default port 7948). Required.
	Addr string
	// Token is the bearer token every /v1/ request must carry. Required.
	Token string
	// Node is the local cluster node. Required.
	Node *cluster.Node
	// Leave carries out POST /v1/leave: the node leaves the cluster
	// (cluster.Node.Leave) and then stops through its ordered shutdown.
	// It returns once the node has left (or could not: then it goes on as
	// a member); the shutdown follows after the answer. nil = 501.
	Leave func(ctx context.Context, force bool) error
	// Registry receives the node's metrics; nil = a new registry.
	Registry *prometheus.Registry
	// Logger; nil = discard.
	Logger *slog.Logger
}

// Validate reports the first missing field.
func (c AdminConfig) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("ops: admin: Addr is required")
	case len(c.Token) < 16:
		return errors.New("ops: admin: Token of at least 16 characters is required")
	case c.Node == nil:
		return errors.New("ops: admin: Node is required")
	}
	return nil
}

// Admin is the admin HTTP server: /healthz and /metrics without a token,
// /v1/... with it.
type Admin struct {
	cfg   AdminConfig
	log   *slog.Logger
	node  *cluster.Node
	store *storage.Store
	srv   *http.Server
	ln    net.Listener
	// accepted answers GET /v1/accepted/{queue_id} (SetAccepted).
	accepted atomic.Pointer[AcceptedLookup]
}

// NewAdmin validates cfg and builds the server; Start listens.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	a := &Admin{cfg: cfg, log: cfg.Logger, node: cfg.Node, store: cfg.Node.Store()}
	cfg.Registry.MustRegister(newNodeCollector(cfg.Node))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.health)
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/status", a.status)
	v1.HandleFunc("POST /v1/tokens", a.tokenCreate)
	v1.HandleFunc("GET /v1/tokens", a.tokenList)
	v1.HandleFunc("DELETE /v1/tokens/{id}", a.tokenRevoke)
	v1.HandleFunc("GET /v1/certs", a.certList)
	v1.HandleFunc("POST /v1/leave", a.leave)
	v1.HandleFunc("DELETE /v1/nodes/{name}", a.remove)
	v1.HandleFunc("GET /v1/domains", a.domainList)
	v1.HandleFunc("POST /v1/domains", a.domainAdd)
	v1.HandleFunc("DELETE /v1/domains/{name}", a.domainRemove)
	v1.HandleFunc("GET /v1/domains/{name}/dkim", a.dkimList)
	v1.HandleFunc("POST /v1/domains/{name}/dkim/rotate", a.dkimRotate)
	v1.HandleFunc("DELETE /v1/domains/{name}/dkim/{selector}", a.dkimRetire)
	v1.HandleFunc("GET /v1/users", a.userList)
	v1.HandleFunc("POST /v1/users", a.userAdd)
	v1.HandleFunc("PUT /v1/users/{addr}/password", a.userPasswd)
	v1.HandleFunc("DELETE /v1/users/{addr}", a.userRemove)
	v1.HandleFunc("GET /v1/aliases", a.aliasList)
	v1.HandleFunc("POST /v1/aliases", a.aliasAdd)
	v1.HandleFunc("DELETE /v1/aliases/{addr}", a.aliasRemove)
	v1.HandleFunc("GET /v1/queue", a.queueList)
	v1.HandleFunc("GET /v1/queue/{id}", a.queueShow)
	v1.HandleFunc("DELETE /v1/queue/{id}", a.queueDelete)
	v1.HandleFunc("POST /v1/queue/{id}/{op}", a.queueOp)
	v1.HandleFunc("POST /v1/queue/flush", a.queueFlush)
	v1.HandleFunc("GET /v1/blobs/{sha256}", a.blobShow)
	v1.HandleFunc("GET /v1/accepted/{queue_id}", a.acceptedShow)
	// Profiles of the running node (go tool pprof), behind the token:
	// go tool pprof -http : "http://ADMIN/v1/debug/pprof/profile?seconds=30"
	// with the header, or curl -H "Authorization: Bearer $TOKEN" > cpu.pprof.
	v1.Handle("/v1/debug/pprof/", http.StripPrefix("/v1", http.HandlerFunc(pprof.Index)))
	v1.HandleFunc("/v1/debug/pprof/cmdline", pprof.Cmdline)
	v1.HandleFunc("/v1/debug/pprof/profile", pprof.Profile)
	v1.HandleFunc("/v1/debug/pprof/symbol", pprof.Symbol)
	v1.HandleFunc("/v1/debug/pprof/trace", pprof.Trace)
	mux.Handle("/v1/", a.auth(v1))
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Start listens on cfg.Addr and serves in the background.
func (a *Admin) Start() error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops: admin listen on %s: %w", a.cfg.Addr, err)
	}
	a.ln = ln
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin API stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the listening address (useful with port 0).
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Shutdown stops the server, waiting for requests in flight.
func (a *Admin) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

func (a *Admin) auth(next http.Handler) http.Handler {
	want := []byte("Bearer " + a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			a.log.Warn("admin API: refused request without a valid token", "peer", r.RemoteAddr, "path", r.URL.Path)
			writeError(w, http.StatusUnauthorized, "admin token missing or wrong: pass --admin-token or set RAFTMAIL_ADMIN_TOKEN (the token is in the node's data directory, file admin.token)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiError is the body of every non-2xx answer.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg})
}

// writeProposeError maps write-path errors to HTTP statuses.
func (a *Admin) writeProposeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, cluster.ErrWouldLoseQuorum):
		writeError(w, http.StatusConflict, err.Error()+"; bring the dead nodes back (or remove them) first, or pass --force")
	case errors.Is(err, cluster.ErrNoQuorum):
		writeError(w, http.StatusServiceUnavailable, "no quorum: the cluster cannot commit writes right now; check `raftmail status`")
	case errors.Is(err, cluster.ErrUnknownOutcome):
		writeError(w, http.StatusGatewayTimeout, "outcome unknown: the change may or may not have been applied; check before retrying")
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, storage.ErrExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, storage.ErrInvalid), errors.Is(err, storage.ErrNotEmpty):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		a.log.Error("admin API: request failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// propose commits one command and returns its result, writing the HTTP
// error itself when it fails (ok=false).
func (a *Admin) propose(w http.ResponseWriter, r *http.Request, t storage.CommandType, payload any) (storage.Result, bool) {
	cmd, err := storage.NewCommand(t, payload)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return storage.Result{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	_, res, err := a.node.Propose(ctx, cmd)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		a.writeProposeError(w, err)
		return res, false
	}
	return res, true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

// Health is the body of /healthz: 200 with Healthy, else 503 with the
// problems (no leader known, a failed store, free space below the floor,
// a Raft log that cannot be written) in words.
type Health struct {
	Node         string   `json:"node"`
	Healthy      bool     `json:"healthy"`
	Problems     []string `json:"problems,omitempty"`
	Role         string   `json:"role"`
	Leader       string   `json:"leader"`
	AppliedIndex uint64   `json:"applied_index"`
	Disk         string   `json:"disk"`
}

func (a *Admin) health(w http.ResponseWriter, r *http.Request) {
	st := a.node.QuickStatus()
	h := Health{Node: st.Name, Role: st.Role, Leader: st.Leader, AppliedIndex: st.AppliedIndex,
		Problems: st.Problems, Disk: a.store.Space().String()}
	if st.Leader == "" {
		h.Problems = append(h.Problems, "raft: no leader known")
	}
	h.Healthy = len(h.Problems) == 0
	status := http.StatusOK
	if !h.Healthy {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}

func (a *Admin) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, a.node.ClusterStatus(ctx))
}

// TokenCreateRequest is the body of POST /v1/tokens.
type TokenCreateRequest struct {
	TTL         string `json:"ttl"` // Go duration; "" = 24h, "0" = never expires
	Description string `json:"description"`
	Uses        int    `json:"uses,omitempty"` // nodes the token may admit; 0 = 1
}

// TokenCreated is the answer to POST /v1/tokens.
type TokenCreated struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires,omitzero"`
	Uses    int       `json:"uses"` // nodes it may admit
	JoinVia string    `json:"join_via"`
}

func (a *Admin) tokenCreate(w http.ResponseWriter, r *http.Request) {
	var req TokenCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ttl := 24 * time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a duration like 1h or 30m, or 0 for no expiry", req.TTL))
			return
		}
		ttl = d
	}
	if req.Uses < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("uses %d: want the number of nodes the token may admit (1 or more)", req.Uses))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	tok, jt, err := a.node.CreateToken(ctx, ttl, req.Uses, req.Description)
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	st := a.node.QuickStatus()
	writeJSON(w, http.StatusCreated, TokenCreated{Token: tok.String(), ID: jt.ID, Expires: jt.Expires, Uses: jt.Limit(), JoinVia: st.ClusterAddr})
}

// TokenInfo is a token as listed (never its secret).
type TokenInfo struct {
	ID          string    `json:"id"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	State       string    `json:"state"`    // valid, used, expired, revoked
	Uses        int       `json:"uses"`     // nodes admitted with it
	MaxUses     int       `json:"max_uses"` // nodes it may admit
	UsedBy      []string  `json:"used_by,omitempty"`
}

func (a *Admin) tokenList(w http.ResponseWriter, r *http.Request) {
	toks, err := a.store.Tokens()
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	out := []TokenInfo{}
	now := time.Now()
	for _, t := range toks {
		ti := TokenInfo{ID: t.ID, Description: t.Description, Created: t.Created, Expires: t.Expires, State: "valid",
			Uses: t.Uses(), MaxUses: t.Limit(), UsedBy: t.UsedBy}
		switch {
		case t.Revoked:
			ti.State = "revoked"
		case t.Uses() >= t.Limit():
			ti.State = "used"
		case !t.Expires.IsZero() && now.After(t.Expires):
			ti.State = "expired"
		}
		out = append(out, ti)
	}
	writeJSON(w, http.StatusOK, out)
}

// TokenRevoked is the answer to DELETE /v1/tokens/{id}: the token and
// the node certificates issued through it are revoked.
type TokenRevoked struct {
	Revoked      string   `json:"revoked"`
	Certificates []string `json:"certificates"` // serials revoked with it
}

func (a *Admin) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	serials, err := a.node.RevokeToken(ctx, r.PathValue("id"))
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenRevoked{Revoked: r.PathValue("id"), Certificates: append([]string{}, serials...)})
}

// CertInfo is a node certificate the cluster issued, as GET /v1/certs
// lists it. Records are dropped once their certificate has expired.
type CertInfo struct {
	Node      string    `json:"node"`
	Serial    string    `json:"serial"`
	Token     string    `json:"token,omitempty"` // the join token it descends from
	NotAfter  time.Time `json:"not_after"`
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

func (a *Admin) certList(w http.ResponseWriter, r *http.Request) {
	certs, err := a.store.NodeCerts()
	if err != nil {
		a.writeProposeError(w, err)
		return
	}
	out := []CertInfo{}
	for _, c := range certs {
		out = append(out, CertInfo{Node: c.Node, Serial: c.Serial, Token: c.Token, NotAfter: c.NotAfter, Revoked: c.Revoked, RevokedAt: c.RevokedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *Admin) leave(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Leave == nil {
		writeError(w, http.StatusNotImplemented, "this node cannot leave through the admin API")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.cfg.Leave(ctx, r.URL.Query().Get("force") == "true"); err != nil {
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"left": a.node.Name()})
}

// Removed is the answer to DELETE /v1/nodes/{name}.
type Removed struct {
	Removed string `json:"removed"`
	Voters  int    `json:"voters"` // voters left in the configuration
}

func (a *Admin) remove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.node.Remove(ctx, name, r.URL.Query().Get("force") == "true"); err != nil {
		if errors.Is(err, cluster.ErrUnknownNode) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no node named %q in the cluster; see `raftmail status`", name))
			return
		}
		a.writeProposeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Removed{Removed: name, Voters: len(a.node.VoterNames())})
}
