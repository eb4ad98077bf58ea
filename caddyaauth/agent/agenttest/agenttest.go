// Package agenttest provides a fake AAuth gateway (a resource whose routes require an
// auth token) and a fake auth server, each on a loopback httptest server, for testing
// agents end to end. Both verify requests with caddyaauth/reqverify, as the real ones
// do, but everything else is kept minimal, and knobs let a test make them misbehave
// (mint bad resource tokens, name another auth server, refuse, defer, issue bad auth
// tokens). They run with dev identifiers (http://127.0.0.1:PORT) and are meant for
// tests and local demos only.
package agenttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Paths the fakes serve.
const (
	PathResourceMetadata = "/.well-known/aauth-resource.json"
	PathResourceJWKS     = "/.well-known/aauth-resource/jwks.json"
	PathIssuerMetadata   = "/.well-known/aauth-issuer.json"
	PathIssuerJWKS       = "/jwks.json"
	PathToken            = "/token"
	PathInteract         = "/interact"
	PathPending          = "/pending/"
)

const maxBody = 1 << 20

// listen starts an httptest server on a loopback port known before it serves, so its
// identifier can be put in its own documents.
func listen(t testing.TB, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, "http://" + ln.Addr().String()
}

func newKey(t testing.TB, kid string) *keys.Signer {
	t.Helper()
	s, err := keys.Generate(keys.AlgEd25519, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newDiscovery(t testing.TB) *discovery.Client {
	d := discovery.New(discovery.Config{Dev: true})
	t.Cleanup(d.Close)
	return d
}

func target(r *http.Request) httpsig.Target {
	return httpsig.Target{
		Method:    r.Method,
		Authority: httpsig.Authority("http", r.Host),
		Path:      r.URL.EscapedPath(),
		Query:     r.URL.RawQuery,
		HasQuery:  r.URL.RawQuery != "",
		Header:    r.Header,
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, wire.Error{Code: code, Description: desc})
}

func jwks(k *keys.PublicKey) map[string]any {
	return map[string]any{"keys": []any{k.Members()}}
}

// Gateway is a fake resource: every path except its well-known documents requires an
// auth token from AuthServer carrying Scopes. Unsigned and hwk requests get
// require=identity; identified requests without a usable auth token get an auth-token
// challenge with a resource token minted after the signature verified.
type Gateway struct {
	ID     string // the resource identifier, http://127.0.0.1:PORT
	Key    *keys.Signer
	Server *httptest.Server

	verifier *reqverify.Verifier

	mu         sync.Mutex
	authServer string
	scopes     []string
	asParam    string
	mutate     func(*token.Claims)
	signWith   *keys.Signer
	reject     int
	seen       []string
	deferred   *deferState // nil until DeferAuthorized
}

// NewGateway starts a gateway that trusts authServer and requires scopes.
func NewGateway(t testing.TB, authServer string, scopes ...string) *Gateway {
	t.Helper()
	g := &Gateway{Key: newKey(t, "resource-key-1"), authServer: authServer, scopes: scopes}
	g.Server, g.ID = listen(t, g)
	g.verifier = &reqverify.Verifier{
		Discovery:  newDiscovery(t),
		Dev:        true,
		Self:       g.ID,
		AuthTokens: &reqverify.AuthTokenPolicy{Audience: g.ID, Issuers: []string{authServer}},
		Tokens:     token.NewCache(100),
	}
	return g
}

// SetScopes changes the scopes the routes require.
func (g *Gateway) SetScopes(s ...string) { g.mu.Lock(); g.scopes = s; g.mu.Unlock() }

// SetAuthServerParam makes challenges name as in their auth-server parameter (the
// resource token's aud stays the configured auth server).
func (g *Gateway) SetAuthServerParam(as string) { g.mu.Lock(); g.asParam = as; g.mu.Unlock() }

// MutateResourceTokens applies f to the claims of every resource token before it is
// signed.
func (g *Gateway) MutateResourceTokens(f func(*token.Claims)) {
	g.mu.Lock()
	g.mutate = f
	g.mu.Unlock()
}

// SignResourceTokensWith signs resource tokens with s instead of the published key.
func (g *Gateway) SignResourceTokensWith(s *keys.Signer) { g.mu.Lock(); g.signWith = s; g.mu.Unlock() }

// RejectAuthTokens makes the gateway refuse the next n valid auth tokens with a fresh
// auth-token challenge, as if they had been revoked or had expired.
func (g *Gateway) RejectAuthTokens(n int) { g.mu.Lock(); g.reject = n; g.mu.Unlock() }

// Seen returns how each API request so far was signed: "unsigned", "invalid", "hwk",
// "jwks_uri", "jwt:agent+jwt", "jwt:auth+jwt" (suffixed "!" when an auth token was
// refused), and resets the record.
func (g *Gateway) Seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.seen
	g.seen = nil
	return out
}

func (g *Gateway) record(s string) { g.mu.Lock(); g.seen = append(g.seen, s); g.mu.Unlock() }

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathResourceMetadata, "/.well-known/aauth-resource":
		writeJSON(w, http.StatusOK, wire.ResourceMetadata{
			Resource:              g.ID,
			JWKSURI:               g.ID + PathResourceJWKS,
			ResourceTokenEndpoint: g.ID + "/.well-known/aauth-resource/token",
		})
	case PathResourceJWKS:
		writeJSON(w, http.StatusOK, jwks(g.Key.Public))
	default:
		if strings.HasPrefix(r.URL.Path, PathResourcePending) {
			g.servePendingPoll(w, r)
			return
		}
		g.serveAPI(w, r)
	}
}

func (g *Gateway) challenge(w http.ResponseWriter, c wire.Challenge, code, desc string) {
	if err := wire.Seed.SetChallenge(w.Header(), c); err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
		return
	}
	writeError(w, http.StatusUnauthorized, code, desc)
}

func (g *Gateway) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if !httpsig.Present(r.Header) {
		g.record("unsigned")
		g.challenge(w, wire.Challenge{Require: wire.RequireIdentity}, wire.CodeInvalidSignature, "missing signature")
		return
	}
	res, err := g.verifier.Verify(r.Context(), target(r))
	if err == nil && res.Signature.Covers("content-digest") {
		err = httpsig.CheckContentDigest(r.Header.Get("Content-Digest"), body)
	}
	if err != nil {
		g.record("invalid")
		g.challenge(w, wire.Challenge{Require: wire.RequireIdentity}, wire.CodeInvalidSignature, err.Error())
		return
	}
	kind := res.Scheme
	if res.TokenTyp != "" {
		kind += ":" + res.TokenTyp
	}
	if res.Level == reqverify.LevelPseudonym {
		g.record(kind)
		g.challenge(w, wire.Challenge{Require: wire.RequireIdentity}, wire.CodeInvalidSignature, "an agent identity is required")
		return
	}
	g.mu.Lock()
	scopes := g.scopes
	ok := res.Level == reqverify.LevelAuthorized && res.AuthTokenProblem == nil
	if ok {
		granted := strings.Fields(res.Token.Claims.Scope)
		for _, s := range scopes {
			ok = ok && slices.Contains(granted, s)
		}
	}
	if ok && g.reject > 0 {
		g.reject--
		ok = false
	}
	if !ok && res.Level == reqverify.LevelAuthorized {
		kind += "!"
	}
	g.seen = append(g.seen, kind)
	g.mu.Unlock()
	if ok {
		answer := map[string]string{
			"resource": g.ID, "agent": res.Agent, "delegate": res.Delegate,
			"scope": res.Token.Claims.Scope, "body": string(body),
		}
		if !g.deferRequest(w, res, answer) {
			writeJSON(w, http.StatusOK, answer)
		}
		return
	}
	rt, as, err := g.mint(res, scopes)
	if err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
		return
	}
	g.challenge(w, wire.Challenge{Require: wire.RequireAuthToken, ResourceToken: rt, AuthServer: as},
		wire.CodeAuthTokenRequired, "this route needs an auth token")
}

func (g *Gateway) mint(res *reqverify.Result, scopes []string) (string, string, error) {
	g.mu.Lock()
	as, mutate, signer := g.authServer, g.mutate, g.Key
	if g.asParam != "" {
		as = g.asParam
	}
	if g.signWith != nil {
		signer = g.signWith
	}
	aud := g.authServer
	g.mu.Unlock()
	now := time.Now().Unix()
	c := token.Claims{
		Issuer: g.ID, Audience: token.Audience{aud}, ID: token.NewID(),
		IssuedAt: now, Expiry: now + 300,
		Agent: res.Agent, AgentJKT: res.Key.Thumbprint, Scope: strings.Join(scopes, " "),
	}
	if mutate != nil {
		mutate(&c)
	}
	rt, err := token.Mint(signer, token.TypResource, c)
	return rt, as, err
}

// AuthServer is a fake auth server: metadata, JWKS and a token endpoint that verifies
// the signed request and the resource token and then issues an auth token for the
// resource token's scope (or answers as SetAnswer says).
type AuthServer struct {
	ID string // the issuer identifier, http://127.0.0.1:PORT
	// Key signs the auth tokens; after ReplaceKey, read it with Signer.
	Key    *keys.Signer
	Server *httptest.Server

	verifier     *reqverify.Verifier
	pollVerifier *reqverify.Verifier // polls are GETs: no body components
	disc         *discovery.Client

	mu            sync.Mutex
	consent       *consentState // nil unless EnableConsent was called
	tokenEndpoint string
	answer        func(http.ResponseWriter) bool
	jwksAnswer    func(http.ResponseWriter) bool
	mutate        func(*token.Claims)
	hits          int
	kinds         []string
	refreshAnswer func(http.ResponseWriter) bool
	purposes      []string
	errors        []string
}

// NewAuthServer starts an auth server.
func NewAuthServer(t testing.TB) *AuthServer {
	t.Helper()
	a := &AuthServer{Key: newKey(t, "auth-key-1"), disc: newDiscovery(t)}
	a.Server, a.ID = listen(t, a)
	a.tokenEndpoint = a.ID + PathToken
	a.verifier = &reqverify.Verifier{
		Discovery: a.disc,
		Dev:       true,
		Self:      a.ID,
		Policy:    httpsig.Policy{Extra: []string{"content-type", "content-digest"}},
		Tokens:    token.NewCache(100),
	}
	a.pollVerifier = &reqverify.Verifier{Discovery: a.disc, Dev: true, Self: a.ID, Tokens: token.NewCache(100)}
	return a
}

// SetTokenEndpoint changes the token_endpoint published in the metadata.
func (a *AuthServer) SetTokenEndpoint(u string) { a.mu.Lock(); a.tokenEndpoint = u; a.mu.Unlock() }

// SetAnswer installs f, called on a token request once it has been verified; when f
// returns true it has answered and no token is issued.
func (a *AuthServer) SetAnswer(f func(http.ResponseWriter) bool) {
	a.mu.Lock()
	a.answer = f
	a.mu.Unlock()
}

// MutateAuthTokens applies f to the claims of every auth token before it is signed.
func (a *AuthServer) MutateAuthTokens(f func(*token.Claims)) {
	a.mu.Lock()
	a.mutate = f
	a.mu.Unlock()
}

// SetJWKSAnswer installs f, called for each request of the JWKS; when f returns true it
// has answered (an outage: a 503, or panic(http.ErrAbortHandler) for a dropped
// connection). nil serves the JWKS again.
func (a *AuthServer) SetJWKSAnswer(f func(http.ResponseWriter) bool) {
	a.mu.Lock()
	a.jwksAnswer = f
	a.mu.Unlock()
}

// ReplaceKey makes s the signing key of the auth tokens issued from now on, and the only
// key of the JWKS (a rotation under the same kid when s has the old kid).
func (a *AuthServer) ReplaceKey(s *keys.Signer) {
	a.mu.Lock()
	a.Key = s
	a.mu.Unlock()
}

// Signer is the current signing key.
func (a *AuthServer) Signer() *keys.Signer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Key
}

// Hits is the number of requests the token endpoint received.
func (a *AuthServer) Hits() int { a.mu.Lock(); defer a.mu.Unlock(); return a.hits }

// Purposes are the purpose texts of the token requests received.
func (a *AuthServer) Purposes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.purposes)
}

// Errors are the errors the token endpoint answered with (code: description).
func (a *AuthServer) Errors() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.errors)
}

// Deny is a SetAnswer function refusing with status, code and description.
func Deny(status int, code, desc string) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		writeError(w, status, code, desc)
		return true
	}
}

// Pending is a SetAnswer function deferring the request (202) with an interaction code.
func Pending(location, code string, retryAfter int) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		if err := wire.Seed.WriteInteraction(w, location, code, fmt.Sprint(retryAfter)); err != nil {
			writeError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
		}
		return true
	}
}

func (a *AuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathIssuerMetadata, "/.well-known/aauth-issuer":
		a.mu.Lock()
		te := a.tokenEndpoint
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, wire.AuthServerMetadata{
			Issuer: a.ID, TokenEndpoint: te,
			InteractionEndpoint: a.ID + PathInteract, JWKSURI: a.ID + PathIssuerJWKS,
		})
	case PathIssuerJWKS:
		a.mu.Lock()
		f := a.jwksAnswer
		a.mu.Unlock()
		if f != nil && f(w) {
			return
		}
		writeJSON(w, http.StatusOK, jwks(a.Signer().Public))
	case PathToken:
		a.mu.Lock()
		a.hits++
		a.mu.Unlock()
		a.serveToken(w, r)
	default:
		if strings.HasPrefix(r.URL.Path, PathPending) {
			a.servePending(w, r)
			return
		}
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "no such endpoint")
	}
}

func (a *AuthServer) fail(w http.ResponseWriter, status int, code, desc string) {
	a.mu.Lock()
	a.errors = append(a.errors, code+": "+desc)
	a.mu.Unlock()
	writeError(w, status, code, desc)
}

func (a *AuthServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		a.fail(w, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "use POST")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	res, err := a.verifier.Verify(r.Context(), target(r))
	if err == nil {
		err = httpsig.CheckContentDigest(r.Header.Get("Content-Digest"), body)
	}
	if err != nil {
		a.fail(w, http.StatusUnauthorized, wire.CodeInvalidSignature, err.Error())
		return
	}
	if res.Level != reqverify.LevelIdentity || res.Agent == "" {
		a.fail(w, http.StatusUnauthorized, wire.CodeInvalidSignature, "an agent identity is required")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidRequest, "the body must be JSON")
		return
	}
	var req tokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidRequest, "the body is not JSON")
		return
	}
	a.mu.Lock()
	a.kinds = append(a.kinds, req.kind())
	a.mu.Unlock()
	switch req.kind() {
	case KindRefresh:
		a.serveRefresh(w, r, res, req.AuthToken)
		return
	case KindSelfAccess:
		a.serveSelfAccess(w, res, req.Scope)
		return
	case "":
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidRequest, "resource_token, scope or auth_token is required")
		return
	}
	now := time.Now()
	rt, err := token.VerifyResourceToken(r.Context(), req.ResourceToken, token.Options{Now: now, Audience: a.ID},
		func(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
			if err := discovery.ValidateIdentifier(iss, true); err != nil {
				return nil, err
			}
			return a.disc.Key(ctx, iss, discovery.DocResource, kid)
		})
	if err != nil {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidResourceToken, err.Error())
		return
	}
	if rt.Claims.Agent != res.Agent || rt.Claims.AgentJKT != res.Key.Thumbprint {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidResourceToken, "the resource token is for another agent or key")
		return
	}
	a.mu.Lock()
	a.purposes = append(a.purposes, req.Purpose)
	answer, consent := a.answer, a.consent != nil
	a.mu.Unlock()
	if answer != nil && answer(w) {
		return
	}
	c := token.Claims{
		Issuer: a.ID, Audience: token.Audience{rt.Claims.Issuer}, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(),
		Agent: res.Agent, Scope: rt.Claims.Scope, Txn: rt.Claims.Txn,
		Confirmation: &token.Confirmation{Key: res.Key},
	}
	if res.TokenTyp == token.TypAgent {
		c.AgentDelegate = res.Delegate
	}
	if consent {
		a.deferRequest(w, res, c)
		return
	}
	a.issue(w, c)
}
