package authserver

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddyserver/certmagic"
)

const testIssuer = "https://auth.example"

// testNow is the fixed clock of a test run (whole seconds, near the real time so the
// replay sweeper, which runs on the real clock, agrees with it).
var testNow = time.Unix(time.Now().Unix(), 0)

func genSigner(t testing.TB, kid string) *keys.Signer {
	t.Helper()
	s, err := keys.Generate(keys.AlgEd25519, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// origin is a loopback party that publishes a metadata document and a JWKS: a resource
// (aauth-resource) or an agent (aauth-agent).
type origin struct {
	ID     string
	Signer *keys.Signer
	srv    *httptest.Server
	extra  map[string]any // more metadata members (set before the first fetch)
}

func newOrigin(t testing.TB, doc, member, kid string) *origin {
	return newOriginWith(t, doc, member, kid, nil)
}

// newOriginWith is newOrigin with extra metadata members (clarification_supported,
// callback_endpoint, scope_descriptions, …).
func newOriginWith(t testing.TB, doc, member, kid string, extra map[string]any) *origin {
	t.Helper()
	o := &origin{Signer: genSigner(t, kid), extra: extra}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/"+doc+".json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		md := map[string]any{member: o.ID, "jwks_uri": o.ID + "/jwks.json"}
		for k, v := range o.extra {
			md[k] = v
		}
		_ = json.NewEncoder(w).Encode(md)
	})
	mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(keystore.JWKS(o.Signer.Public))
	})
	o.srv = httptest.NewServer(mux)
	t.Cleanup(o.srv.Close)
	o.ID = o.srv.URL
	return o
}

// env is one auth server under test with a resource and an agent around it.
type env struct {
	t        *testing.T
	h        *Handler
	store    *testStorage
	client   *discovery.Client
	resource *origin
	agent    *origin
	clock    atomic.Int64 // the handlers' clock (unix seconds); testNow unless a test moves it
}

// now is the env's clock.
func (e *env) now() time.Time { return time.Unix(e.clock.Load(), 0) }

// advance moves the env's clock.
func (e *env) advance(d time.Duration) { e.clock.Add(int64(d / time.Second)) }

// testPolicy: data.* is granted directly, needs.consent asks the user, forbidden and the
// banned agent are refused, everything else is refused by default.
func testPolicy() *Policy {
	return &Policy{Rules: []Rule{
		{Effect: EffectAllow, Scopes: []string{"data.read", "data.write"}},
		{Effect: EffectConsent, Scopes: []string{"needs.consent"}},
		{Effect: EffectDeny, Scopes: []string{"forbidden"}},
	}}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, store: newTestStorage(t)}
	e.clock.Store(testNow.Unix())
	e.client = discovery.New(discovery.Config{Dev: true})
	t.Cleanup(e.client.Close)
	e.resource = newOrigin(t, "aauth-resource", "resource", "res-key-1")
	e.agent = newOrigin(t, "aauth-agent", "agent", "agent-key-1")
	e.h = e.handler(Handler{Issuer: testIssuer, Policy: testPolicy()}, e.store)
	return e
}

// handler provisions cfg over st the way Provision would, without Caddy. A policy that
// can ask for consent without users configured gets the test users.
func (e *env) handler(cfg Handler, st certmagic.Storage) *Handler {
	e.t.Helper()
	h := cfg
	if h.Policy.canConsent() && len(h.Users) == 0 && h.UserFrom == "" {
		h.Users = testUsers(e.t)
	}
	err := h.provision(context.Background(), deps{
		storage:   st,
		discovery: e.client,
		dev:       true,
		logger:    zaptest.NewLogger(e.t),
		now:       e.now,
	})
	if err != nil {
		e.t.Fatalf("provision: %v", err)
	}
	e.t.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		e.t.Fatalf("validate: %v", err)
	}
	return &h
}

// rtClaims are the claims of a good resource token for the env's agent key.
func (e *env) rtClaims() token.Claims {
	return token.Claims{
		Issuer:   e.resource.ID,
		Audience: token.Audience{testIssuer},
		ID:       token.NewID(),
		IssuedAt: testNow.Unix(),
		Expiry:   testNow.Add(5 * time.Minute).Unix(),
		Agent:    e.agent.ID,
		AgentJKT: e.agent.Signer.Public.Thumbprint,
		Scope:    "data.read data.write",
	}
}

func (e *env) mintRT(s *keys.Signer, c token.Claims) string {
	e.t.Helper()
	raw, err := token.Mint(s, token.TypResource, c)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func body(rt string) string {
	b, _ := json.Marshal(map[string]string{"resource_token": rt})
	return string(b)
}

// newRequest builds an unsigned POST /token.
func newRequest(method, path, body string) *http.Request {
	req := httptest.NewRequest(method, testIssuer+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

func signWith(t testing.TB, req *http.Request, s *keys.Signer, key httpsig.SigKey, created time.Time) {
	t.Helper()
	if err := httpsig.Sign(req, s, key, bodyOptions(t, req, httpsig.SignOptions{Created: created})); err != nil {
		t.Fatal(err)
	}
}

// bodyOptions covers a POST body with content-type and content-digest, as agents must
// for the token endpoint and clarification answers.
func bodyOptions(t testing.TB, req *http.Request, o httpsig.SignOptions) httpsig.SignOptions {
	t.Helper()
	if req.Method != http.MethodPost || req.Body == nil {
		return o
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	httpsig.SetContentDigest(req, b)
	o.Extra = append(o.Extra, "content-type", "content-digest")
	return o
}

func jwksKey(o *origin) httpsig.SigKey {
	return httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: o.ID}, {Name: "kid", Value: o.Signer.Public.KID}}}
}

// signedRequest is a POST /token with body, signed by the env's agent (jwks_uri).
func (e *env) signedRequest(body string) *http.Request {
	req := newRequest(http.MethodPost, PathToken, body)
	signWith(e.t, req, e.agent.Signer, jwksKey(e.agent), testNow)
	return req
}

type result struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
	Next   bool
}

func (r result) str(k string) string { s, _ := r.Body[k].(string); return s }

func serve(t testing.TB, h *Handler, req *http.Request) result {
	t.Helper()
	rec := httptest.NewRecorder()
	next := false
	err := h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		next = true
		w.WriteHeader(http.StatusTeapot)
		return nil
	}))
	if err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	res := rec.Result()
	raw, _ := io.ReadAll(res.Body)
	out := result{Status: res.StatusCode, Header: res.Header, Raw: raw, Next: next}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("response body %q: %v", raw, err)
		}
	}
	return out
}

// testStorage is a certmagic.FileStorage in a test's temporary directory that fails
// the Store or Load calls it is told to.
type testStorage struct {
	certmagic.Storage
	failStore func(key string) bool
	failLoad  func(key string) bool
}

func newTestStorage(t testing.TB) *testStorage {
	return &testStorage{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
}

func (m *testStorage) Store(ctx context.Context, key string, value []byte) error {
	if m.failStore != nil && m.failStore(key) {
		return fs.ErrPermission
	}
	return m.Storage.Store(ctx, key, value)
}

func (m *testStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if m.failLoad != nil && m.failLoad(key) {
		return nil, fs.ErrPermission
	}
	return m.Storage.Load(ctx, key)
}

// keys lists the keys under prefix.
func (m *testStorage) keys(prefix string) []string {
	out, _ := m.List(context.Background(), prefix, false)
	return out
}
