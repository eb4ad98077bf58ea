package authserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// asKey reads the handler's published JWKS and returns its only key.
func asKey(t *testing.T, h *Handler) *keys.PublicKey {
	t.Helper()
	res := serve(t, h, newRequest(http.MethodGet, PathJWKS, ""))
	if res.Status != http.StatusOK {
		t.Fatalf("jwks status %d", res.Status)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(res.Raw, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", res.Raw, err)
	}
	k, err := keys.FromAny(set.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// verifyAuthToken checks an issued token against the AS JWKS as a resource would.
func verifyAuthToken(t *testing.T, h *Handler, raw, audience string) *token.Token {
	t.Helper()
	k := asKey(t, h)
	tok, err := token.VerifyAuthToken(context.Background(), raw, token.Options{Now: testNow, Audience: audience, Issuers: []string{testIssuer}},
		func(_ context.Context, iss, kid string) (*keys.PublicKey, error) {
			if iss != testIssuer || kid != k.KID {
				t.Errorf("resolver asked for %s %s", iss, kid)
			}
			return k, nil
		})
	if err != nil {
		t.Fatalf("auth token does not verify: %v", err)
	}
	return tok
}

func TestTokenEndpointAllow(t *testing.T) {
	e := newEnv(t)
	c := e.rtClaims()
	c.Txn = "txn-42"
	res := serve(t, e.h, e.signedRequest(body(e.mintRT(e.resource.Signer, c))))
	if res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}
	if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", res.Header)
	}
	if got := res.Body["expires_in"]; got != float64(3600) {
		t.Errorf("expires_in %v", got)
	}
	tok := verifyAuthToken(t, e.h, res.str("auth_token"), e.resource.ID)
	cl := tok.Claims
	switch {
	case tok.Header.Typ != token.TypAuth:
		t.Errorf("typ %q", tok.Header.Typ)
	case cl.Issuer != testIssuer:
		t.Errorf("iss %q", cl.Issuer)
	case len(cl.Audience) != 1 || cl.Audience[0] != e.resource.ID:
		t.Errorf("aud %v", cl.Audience)
	case cl.Agent != e.agent.ID:
		t.Errorf("agent %q", cl.Agent)
	case cl.Scope != "data.read data.write":
		t.Errorf("scope %q", cl.Scope)
	case cl.Txn != "txn-42":
		t.Errorf("txn %q", cl.Txn)
	case cl.Confirmation.Key.Thumbprint != e.agent.Signer.Public.Thumbprint:
		t.Errorf("cnf thumbprint %q", cl.Confirmation.Key.Thumbprint)
	case cl.Expiry-cl.IssuedAt != 3600 || cl.IssuedAt != testNow.Unix():
		t.Errorf("iat %d exp %d", cl.IssuedAt, cl.Expiry)
	case cl.ID == "" || cl.ID == c.ID:
		t.Errorf("jti %q", cl.ID)
	case cl.AgentDelegate != "" || cl.Subject != "":
		t.Errorf("delegate %q sub %q", cl.AgentDelegate, cl.Subject)
	}
}

func TestTokenLifetimeConfigured(t *testing.T) {
	e := newEnv(t)
	h := e.handler(Handler{Issuer: "https://short.example", TokenLifetime: caddy.Duration(10 * time.Minute), Policy: &Policy{Default: EffectAllow}}, e.store)
	c := e.rtClaims()
	c.Audience = token.Audience{"https://short.example"}
	req := httptestRequest(t, "https://short.example/token", body(e.mintRT(e.resource.Signer, c)))
	signWith(t, req, e.agent.Signer, jwksKey(e.agent), testNow)
	res := serve(t, h, req)
	if res.Status != http.StatusOK || res.Body["expires_in"] != float64(600) {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}
}

// TestTokenEndpointRefusals runs every refusal; none may issue a token.
func TestTokenEndpointRefusals(t *testing.T) {
	e := newEnv(t)
	other := genSigner(t, "other-key")
	rt := func(mod func(*token.Claims)) string {
		c := e.rtClaims()
		if mod != nil {
			mod(&c)
		}
		return e.mintRT(e.resource.Signer, c)
	}
	signed := func(body string) func() *http.Request {
		return func() *http.Request { return e.signedRequest(body) }
	}
	cases := []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
		desc   string // substring of error_description
	}{
		{"unsigned", func() *http.Request { return newRequest(http.MethodPost, PathToken, body(rt(nil))) },
			401, "invalid_signature", "not signed"},
		{"hwk", func() *http.Request {
			req := newRequest(http.MethodPost, PathToken, body(rt(nil)))
			m := e.agent.Signer.Public.Members()
			signWith(t, req, e.agent.Signer, httpsig.SigKey{Scheme: httpsig.SchemeHWK, Params: []httpsig.Param{
				{Name: "kty", Value: m["kty"].(string)}, {Name: "crv", Value: m["crv"].(string)}, {Name: "x", Value: m["x"].(string)}}}, testNow)
			return req
		}, 401, "invalid_signature", "identified agent"},
		{"signature outside window", func() *http.Request {
			req := newRequest(http.MethodPost, PathToken, body(rt(nil)))
			signWith(t, req, e.agent.Signer, jwksKey(e.agent), testNow.Add(-2*time.Minute))
			return req
		}, 401, "invalid_signature", "window"},
		{"signed for another authority", func() *http.Request {
			req := httptestRequest(t, "https://evil.example/token", body(rt(nil)))
			signWith(t, req, e.agent.Signer, jwksKey(e.agent), testNow)
			return req
		}, 401, "invalid_signature", "verification failed"},
		{"signed by a key not in the agent JWKS", func() *http.Request {
			req := newRequest(http.MethodPost, PathToken, body(rt(nil)))
			signWith(t, req, other, httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: e.agent.ID}, {Name: "kid", Value: "other-key"}}}, testNow)
			return req
		}, 401, "unknown_key", ""},
		{"path differs from the signed one", func() *http.Request {
			req := e.signedRequest(body(rt(nil)))
			req.RequestURI, req.URL.Path = "/token2", "/token"
			return req
		}, 401, "invalid_signature", ""},
		{"wrong audience", signed(body(rt(func(c *token.Claims) { c.Audience = token.Audience{"https://other-as.example"} }))),
			400, "invalid_resource_token", "not addressed to this auth server"},
		{"expired", signed(body(rt(func(c *token.Claims) {
			c.IssuedAt, c.Expiry = testNow.Add(-20*time.Minute).Unix(), testNow.Add(-10*time.Minute).Unix()
		}))), 400, "invalid_resource_token", "expired"},
		{"lifetime over an hour", signed(body(rt(func(c *token.Claims) { c.Expiry = testNow.Add(2 * time.Hour).Unix() }))),
			400, "invalid_resource_token", "lifetime"},
		{"signed by a kid not in the resource JWKS", signed(body(e.mintRT(other, e.rtClaims()))),
			400, "invalid_resource_token", "not signed by a key the resource publishes"},
		{"signed by another key under the resource kid", signed(body(e.mintRT(withKID(t, other, "res-key-1"), e.rtClaims()))),
			400, "invalid_resource_token", "signature"},
		{"iss not an identifier", signed(body(rt(func(c *token.Claims) { c.Issuer = "ftp://resource.example" }))),
			400, "invalid_resource_token", "not a valid resource identifier"},
		{"not a resource token", signed(body(func() string {
			raw, err := token.Mint(e.resource.Signer, token.TypAuth, e.rtClaims())
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}())), 400, "invalid_resource_token", ""},
		{"garbage resource token", signed(body("not.a.jwt")), 400, "invalid_resource_token", ""},
		{"agent mismatch", signed(body(rt(func(c *token.Claims) { c.Agent = "https://other-agent.example" }))),
			400, "invalid_resource_token", "another agent"},
		{"agent_jkt mismatch", signed(body(rt(func(c *token.Claims) { c.AgentJKT = other.Public.Thumbprint }))),
			400, "invalid_resource_token", "agent_jkt"},
		{"no scope for a direct grant", signed(body(rt(func(c *token.Claims) { c.Scope = "" }))),
			400, "invalid_resource_token", "no scope"},
		{"policy deny", signed(body(rt(func(c *token.Claims) { c.Scope = "data.read forbidden" }))),
			403, "denied", "policy denies"},
		{"policy default deny", signed(body(rt(func(c *token.Claims) { c.Scope = "data.read admin" }))),
			403, "denied", "policy denies"},
		{"bad JSON", signed(`{"resource_token": "x"`), 400, "invalid_request", "JSON object"},
		{"not an object", signed(`["resource_token"]`), 400, "invalid_request", "JSON object"},
		{"empty body", signed(``), 400, "invalid_request", "JSON object"},
		{"trailing data", signed(body(rt(nil)) + ` {}`), 400, "invalid_request", "after the JSON object"},
		{"duplicate members", signed(`{"resource_token":"a","resource_token":"b"}`), 400, "invalid_request", "more than once"},
		{"duplicate members via escapes", signed(`{"resource_token":"a","resource\u005ftoken":"b"}`), 400, "invalid_request", "more than once"},
		{"unknown member", signed(`{"resource_token":"a","extra":"b"}`), 400, "invalid_request", `unknown member "extra"`},
		{"non-string member", signed(`{"resource_token":1}`), 400, "invalid_request", "must be a string"},
		{"null member", signed(`{"resource_token":null}`), 400, "invalid_request", "must be a string"},
		{"object member", signed(`{"resource_token":{}}`), 400, "invalid_request", "must be a string"},
		{"invalid UTF-8", signed("{\"purpose\":\"\xff\",\"resource_token\":\"a\"}"), 400, "invalid_request", "UTF-8"},
		{"purpose too long", signed(`{"resource_token":"a","purpose":"` + strings.Repeat("é", 1025) + `"}`), 400, "invalid_request", "purpose"},
		{"empty resource_token", signed(`{"resource_token":""}`), 400, "invalid_request", "empty"},
		{"refresh of garbage", signed(`{"auth_token":"x"}`), 400, "invalid_auth_token", "not a valid auth token"},
		{"token exchange of garbage", signed(`{"resource_token":"x","upstream_token":"y"}`), 400, "invalid_auth_token", "not a valid auth token"},
		{"self-access the policy denies", signed(`{"scope":"data.read forbidden"}`), 403, "denied", "policy denies"},
		{"self-access without scope", signed(`{"scope":" "}`), 400, "invalid_request", "scope is empty"},
		{"nothing", signed(`{}`), 400, "invalid_request", "unsupported request"},
		{"wrong content type", func() *http.Request {
			req := e.signedRequest(body(rt(nil)))
			req.Header.Set("Content-Type", "text/plain")
			return req
		}, 400, "invalid_request", "Content-Type"},
		{"wrong charset", func() *http.Request {
			req := e.signedRequest(body(rt(nil)))
			req.Header.Set("Content-Type", "application/json; charset=latin1")
			return req
		}, 400, "invalid_request", "Content-Type"},
		{"oversized by Content-Length", signed(`{"purpose":"` + strings.Repeat("a", 70<<10) + `"}`), 413, "invalid_request", "64 KiB"},
		{"oversized without Content-Length", func() *http.Request {
			req := e.signedRequest(`{"purpose":"` + strings.Repeat("a", 70<<10) + `"}`)
			req.ContentLength = -1
			return req
		}, 413, "invalid_request", "64 KiB"},
		{"GET", func() *http.Request { return newRequest(http.MethodGet, PathToken, "") }, 405, "invalid_request", "method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := serve(t, e.h, tc.req())
			if res.Status != tc.status || res.str("error") != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", res.Status, res.str("error"), tc.status, tc.code, res.Raw)
			}
			if !strings.Contains(res.str("error_description"), tc.desc) {
				t.Errorf("description %q lacks %q", res.str("error_description"), tc.desc)
			}
			if _, ok := res.Body["auth_token"]; ok {
				t.Error("a token was issued")
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", res.Header.Get("Cache-Control"))
			}
			if res.Next {
				t.Error("next handler was called")
			}
			if tc.status == 405 && res.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", res.Header.Get("Allow"))
			}
		})
	}
}

func httptestRequest(t *testing.T, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// withKID is s under another kid.
func withKID(t *testing.T, s *keys.Signer, kid string) *keys.Signer {
	t.Helper()
	n, err := keys.NewSigner(s.Private, kid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTargetFromIssuerAndOriginalRequest: the signature is checked against the issuer's
// authority (not Host) and the path as received (before a rewrite).
func TestTargetFromIssuerAndOriginalRequest(t *testing.T) {
	e := newEnv(t)
	req := e.signedRequest(body(e.mintRT(e.resource.Signer, e.rtClaims())))
	req.Host = "internal:8080"
	req.RequestURI = "/token"
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
	// a rewrite after the original request was recorded
	req.URL.Path, req.RequestURI = "/token", "/token"
	if res := serve(t, e.h, req); res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}

	req = e.signedRequest(body(e.mintRT(e.resource.Signer, e.rtClaims())))
	req.RequestURI = "/prefix/token"
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
	req.URL.Path, req.RequestURI = "/token", "/token"
	if res := serve(t, e.h, req); res.Status != http.StatusUnauthorized {
		t.Fatalf("signature over /token accepted for original path /prefix/token: %d", res.Status)
	}
}

func TestReplay(t *testing.T) {
	e := newEnv(t)
	rt := e.mintRT(e.resource.Signer, e.rtClaims())
	if res := serve(t, e.h, e.signedRequest(body(rt))); res.Status != http.StatusOK {
		t.Fatalf("first use: %d %s", res.Status, res.Raw)
	}
	res := serve(t, e.h, e.signedRequest(body(rt)))
	if res.Status != http.StatusBadRequest || res.str("error") != "invalid_resource_token" || res.str("error_description") != "resource token already used" {
		t.Fatalf("replay: %d %s", res.Status, res.Raw)
	}
}

func TestReplayConcurrent(t *testing.T) {
	e := newEnv(t)
	rt := e.mintRT(e.resource.Signer, e.rtClaims())
	const n = 50
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = e.signedRequest(body(rt))
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = serve(t, e.h, reqs[i])
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, r := range results {
		switch {
		case r.Status == http.StatusOK:
			ok++
		case r.Status == http.StatusBadRequest && r.str("error_description") == "resource token already used":
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Raw)
		}
	}
	if ok != 1 {
		t.Fatalf("%d submissions accepted, want exactly 1", ok)
	}
}

// TestReplayAcrossRestart: a new process (fresh replay store) over the same storage still
// refuses a used jti.
func TestReplayAcrossRestart(t *testing.T) {
	e := newEnv(t)
	rt := e.mintRT(e.resource.Signer, e.rtClaims())
	if res := serve(t, e.h, e.signedRequest(body(rt))); res.Status != http.StatusOK {
		t.Fatalf("first use: %d %s", res.Status, res.Raw)
	}
	if err := e.h.Cleanup(); err != nil { // last reference: the pooled store is destroyed
		t.Fatal(err)
	}
	h2 := e.handler(Handler{Issuer: testIssuer, Policy: testPolicy()}, e.store)
	if res := serve(t, h2, e.signedRequest(body(rt))); res.Status != http.StatusBadRequest || res.str("error_description") != "resource token already used" {
		t.Fatalf("replay after restart: %d %s", res.Status, res.Raw)
	}
}

func TestReplayStorageFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	st := newTestStorage(t)
	st.failStore = func(k string) bool { return strings.Contains(k, "/jti/") }
	h := e.handler(Handler{Issuer: "https://failing.example", Policy: &Policy{Default: EffectAllow}}, st)
	c := e.rtClaims()
	c.Audience = token.Audience{"https://failing.example"}
	req := httptestRequest(t, "https://failing.example/token", body(e.mintRT(e.resource.Signer, c)))
	signWith(t, req, e.agent.Signer, jwksKey(e.agent), testNow)
	res := serve(t, h, req)
	if res.Status != http.StatusInternalServerError || res.str("error") != "server_error" {
		t.Fatalf("got %d %s", res.Status, res.Raw)
	}
	if strings.Contains(string(res.Raw), "permission") {
		t.Errorf("500 body leaks the cause: %s", res.Raw)
	}
}

func TestDelegateAgentToken(t *testing.T) {
	e := newEnv(t)
	delegate := genSigner(t, "")
	at, err := token.Mint(e.agent.Signer, token.TypAgent, token.Claims{
		Issuer:       e.agent.ID,
		Subject:      "delegate-7",
		ID:           token.NewID(),
		IssuedAt:     testNow.Unix(),
		Expiry:       testNow.Add(time.Hour).Unix(),
		Confirmation: &token.Confirmation{Key: delegate.Public},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := e.rtClaims()
	c.AgentJKT = delegate.Public.Thumbprint
	req := newRequest(http.MethodPost, PathToken, body(e.mintRT(e.resource.Signer, c)))
	signWith(t, req, delegate, httpsig.SigKey{Scheme: httpsig.SchemeJWT, Params: []httpsig.Param{{Name: "jwt", Value: at}}}, testNow)
	res := serve(t, e.h, req)
	if res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}
	tok := verifyAuthToken(t, e.h, res.str("auth_token"), e.resource.ID)
	if tok.Claims.AgentDelegate != "delegate-7" || tok.Claims.Agent != e.agent.ID {
		t.Errorf("agent %q delegate %q", tok.Claims.Agent, tok.Claims.AgentDelegate)
	}
	if tok.Claims.Confirmation.Key.Thumbprint != delegate.Public.Thumbprint {
		t.Error("cnf is not the delegate key")
	}

	// The agent's own key cannot use a resource token bound to the delegate key.
	res = serve(t, e.h, e.signedRequest(body(e.mintRT(e.resource.Signer, c))))
	if res.Status != http.StatusBadRequest || !strings.Contains(res.str("error_description"), "agent_jkt") {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}
}

func TestDocuments(t *testing.T) {
	e := newEnv(t)
	want := `{"issuer":"https://auth.example","token_endpoint":"https://auth.example/token","interaction_endpoint":"https://auth.example/interact","jwks_uri":"https://auth.example/jwks.json"}`
	for _, p := range []string{PathMetadata, PathMetadataBare} {
		req := newRequest(http.MethodGet, p, "")
		req.Host = "evil.example" // never used for URLs
		res := serve(t, e.h, req)
		if res.Status != 200 || string(res.Raw) != want {
			t.Errorf("%s: %d %s", p, res.Status, res.Raw)
		}
		if res.Header.Get("Content-Type") != "application/json" || res.Header.Get("Cache-Control") != "public, max-age=300" {
			t.Errorf("%s headers %v", p, res.Header)
		}
		head := serve(t, e.h, newRequest(http.MethodHead, p, ""))
		if head.Status != 200 || len(head.Raw) != 0 || head.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
			t.Errorf("%s HEAD: %d %q %v", p, head.Status, head.Raw, head.Header)
		}
		post := serve(t, e.h, newRequest(http.MethodPost, p, ""))
		if post.Status != 405 || post.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s POST: %d %v", p, post.Status, post.Header)
		}
	}
	k := asKey(t, e.h)
	signer, err := e.h.key.Signer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if k.KID == "" || k.Thumbprint != signer.Public.Thumbprint {
		t.Errorf("jwks key %+v", k)
	}
	if res := serve(t, e.h, newRequest(http.MethodDelete, PathJWKS, "")); res.Status != 405 || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE jwks: %d %v", res.Status, res.Header)
	}
	for _, p := range []string{"/", "/interactive", "/pending", "/token/", "/.well-known/aauth-resource.json", "/jwks"} {
		if res := serve(t, e.h, newRequest(http.MethodGet, p, "")); !res.Next || res.Status != http.StatusTeapot {
			t.Errorf("%s was not passed on: %d", p, res.Status)
		}
	}
}

// TestRestartPersistence: two handlers over the same storage (a restart) publish the same
// key, so tokens minted before the restart still verify.
func TestRestartPersistence(t *testing.T) {
	e := newEnv(t)
	res := serve(t, e.h, e.signedRequest(body(e.mintRT(e.resource.Signer, e.rtClaims()))))
	if res.Status != http.StatusOK {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}
	h2 := e.handler(Handler{Issuer: testIssuer, Policy: testPolicy()}, e.store)
	k1, k2 := asKey(t, e.h), asKey(t, h2)
	if k1.KID != k2.KID || k1.Thumbprint != k2.Thumbprint {
		t.Fatalf("kid %s vs %s", k1.KID, k2.KID)
	}
	verifyAuthToken(t, h2, res.str("auth_token"), e.resource.ID)

	// Another issuer over the same storage gets its own key.
	h3 := e.handler(Handler{Issuer: "https://other-as.example"}, e.store)
	if asKey(t, h3).Thumbprint == k1.Thumbprint {
		t.Fatal("two issuers share a signing key")
	}
}

// trackingBody records whether anything read the request body.
type trackingBody struct {
	r    *strings.Reader
	read atomic.Bool
}

func (b *trackingBody) Read(p []byte) (int, error) { b.read.Store(true); return b.r.Read(p) }
func (b *trackingBody) Close() error               { return nil }

// TestBodyNotReadBeforeSignature: refusals before the signature verified never touch the
// body (reading it would send 100 Continue to an unauthenticated client).
func TestBodyNotReadBeforeSignature(t *testing.T) {
	e := newEnv(t)
	rt := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	cases := []struct {
		name   string
		req    func() *http.Request
		status int
	}{
		{"unsigned", func() *http.Request { return newRequest(http.MethodPost, PathToken, rt) }, 401},
		{"bad signature", func() *http.Request {
			req := e.signedRequest(rt)
			req.Header.Set("Signature", "sig=:"+strings.Repeat("A", 86)+":")
			return req
		}, 401},
		{"hwk", func() *http.Request {
			req := newRequest(http.MethodPost, PathToken, rt)
			m := e.agent.Signer.Public.Members()
			signWith(t, req, e.agent.Signer, httpsig.SigKey{Scheme: httpsig.SchemeHWK, Params: []httpsig.Param{
				{Name: "kty", Value: m["kty"].(string)}, {Name: "crv", Value: m["crv"].(string)}, {Name: "x", Value: m["x"].(string)}}}, testNow)
			return req
		}, 401},
		{"wrong content type", func() *http.Request {
			req := e.signedRequest(rt)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req
		}, 400},
		{"declared too large", func() *http.Request {
			req := e.signedRequest(rt)
			req.ContentLength = 1 << 20
			return req
		}, 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req()
			b := &trackingBody{r: strings.NewReader(rt)}
			req.Body = b
			res := serve(t, e.h, req)
			if res.Status != tc.status {
				t.Fatalf("status %d: %s", res.Status, res.Raw)
			}
			if b.read.Load() {
				t.Fatal("body was read before the signature verified")
			}
		})
	}
	// Control: a good request does read it.
	req := e.signedRequest(rt)
	b := &trackingBody{r: strings.NewReader(rt)}
	req.Body = b
	if res := serve(t, e.h, req); res.Status != 200 || !b.read.Load() {
		t.Fatalf("control: %d read=%v", res.Status, b.read.Load())
	}
}

// signBody signs a POST /token carrying b (covering content-type and content-digest when
// cover is set) and then sends sent as the body.
func (e *env) signBody(h *Handler, b string, cover bool, sent string) result {
	e.t.Helper()
	req := newRequest(http.MethodPost, PathToken, b)
	opts := httpsig.SignOptions{Created: testNow}
	if cover {
		opts = bodyOptions(e.t, req, opts)
	}
	if err := httpsig.Sign(req, e.agent.Signer, jwksKey(e.agent), opts); err != nil {
		e.t.Fatal(err)
	}
	req.Body = io.NopCloser(strings.NewReader(sent))
	req.ContentLength = int64(len(sent))
	return serve(e.t, h, req)
}

// TestBodyDefaultUnsigned: by default a token request whose signature
// covers only @method @authority @path signature-key, as the seed's agents send, is
// accepted; a covered Content-Digest is still recomputed, so a swapped body is refused.
func TestBodyDefaultUnsigned(t *testing.T) {
	e := newEnv(t)
	good := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	if r := e.signBody(e.h, good, false, good); r.Status != http.StatusOK {
		t.Fatalf("uncovered body refused by default: %d %s", r.Status, r.Raw)
	}
	// Covered digest, body swapped after signing: refused even by default.
	signed := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	swapped := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	if r := e.signBody(e.h, signed, true, swapped); r.Status != http.StatusUnauthorized || r.str("error") != "invalid_signature" || !strings.Contains(r.str("error_description"), "Content-Digest") {
		t.Fatalf("swapped body under a covered digest: %d %s", r.Status, r.Raw)
	}
	// Covered digest alone (no content-type) is checked too, and accepted when it matches.
	third := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	for _, sent := range []string{swapped, third} {
		req := newRequest(http.MethodPost, PathToken, third)
		httpsig.SetContentDigest(req, []byte(third))
		if err := httpsig.Sign(req, e.agent.Signer, jwksKey(e.agent), httpsig.SignOptions{Created: testNow, Extra: []string{"content-digest"}}); err != nil {
			t.Fatal(err)
		}
		req.Body = io.NopCloser(strings.NewReader(sent))
		req.ContentLength = int64(len(sent))
		want := http.StatusOK
		if sent != third {
			want = http.StatusUnauthorized
		}
		if r := serve(t, e.h, req); r.Status != want {
			t.Fatalf("digest-only coverage, body same=%v: %d %s", sent == third, r.Status, r.Raw)
		}
	}
	// An uncovered Content-Digest header is not trusted for anything, but a wrong one
	// does not make an otherwise valid request fail either.
	req := newRequest(http.MethodPost, PathToken, swapped)
	req.Header.Set("Content-Digest", httpsig.ContentDigest([]byte("something else")))
	if err := httpsig.Sign(req, e.agent.Signer, jwksKey(e.agent), httpsig.SignOptions{Created: testNow}); err != nil {
		t.Fatal(err)
	}
	if r := serve(t, e.h, req); r.Status != http.StatusOK {
		t.Fatalf("uncovered Content-Digest: %d %s", r.Status, r.Raw)
	}
}

// TestRequireSignedBody: with require_signed_body the body must be covered by
// content-type and content-digest, and the digest must match it.
func TestRequireSignedBody(t *testing.T) {
	e := newEnv(t)
	strict := e.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), RequireSignedBody: true}, newTestStorage(t))
	good := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	other := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	r := e.signBody(strict, good, false, good)
	if r.Status != http.StatusUnauthorized || r.str("error") != "invalid_signature" {
		t.Fatalf("uncovered body: %d %s", r.Status, r.Raw)
	}
	want := []any{"@method", "@authority", "@path", "signature-key", "content-type", "content-digest"}
	if got, _ := r.Body["required_components"].([]any); !reflect.DeepEqual(got, want) {
		t.Errorf("required_components %v", r.Body["required_components"])
	}
	if r := e.signBody(strict, good, true, other); r.Status != http.StatusUnauthorized || !strings.Contains(r.str("error_description"), "Content-Digest") {
		t.Fatalf("swapped body: %d %s", r.Status, r.Raw)
	}
	if r := e.signBody(strict, good, true, good); r.Status != http.StatusOK {
		t.Fatalf("covered body: %d %s", r.Status, r.Raw)
	}
	// content-digest without content-type is not enough.
	third := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	req := newRequest(http.MethodPost, PathToken, third)
	httpsig.SetContentDigest(req, []byte(third))
	if err := httpsig.Sign(req, e.agent.Signer, jwksKey(e.agent), httpsig.SignOptions{Created: testNow, Extra: []string{"content-digest"}}); err != nil {
		t.Fatal(err)
	}
	if r := serve(t, strict, req); r.Status != http.StatusUnauthorized {
		t.Fatalf("content-type not covered: %d %s", r.Status, r.Raw)
	}
	// The deprecated allow_unsigned_body is a no-op: the default behaviour, with a
	// covered digest still checked.
	lax := e.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), AllowUnsignedBody: true}, newTestStorage(t))
	if r := e.signBody(lax, other, false, other); r.Status != http.StatusOK {
		t.Fatalf("allow_unsigned_body: %d %s", r.Status, r.Raw)
	}
	fourth := body(e.mintRT(e.resource.Signer, e.rtClaims()))
	if r := e.signBody(lax, fourth, true, good); r.Status != http.StatusUnauthorized {
		t.Fatalf("allow_unsigned_body with a wrong digest: %d %s", r.Status, r.Raw)
	}
}

// TestMetadataSignatureComponents: additional_signature_components is published only
// when require_signed_body demands them.
func TestMetadataSignatureComponents(t *testing.T) {
	e := newEnv(t)
	if res := serve(t, e.h, newRequest(http.MethodGet, PathMetadata, "")); res.Body["additional_signature_components"] != nil || strings.Contains(string(res.Raw), "additional_signature_components") {
		t.Fatalf("default metadata lists components: %s", res.Raw)
	}
	strict := e.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), RequireSignedBody: true}, newTestStorage(t))
	for _, p := range []string{PathMetadata, PathMetadataBare} {
		res := serve(t, strict, newRequest(http.MethodGet, p, ""))
		if got := res.Body["additional_signature_components"]; !reflect.DeepEqual(got, []any{"content-type", "content-digest"}) {
			t.Fatalf("%s: additional_signature_components %v in %s", p, got, res.Raw)
		}
	}
}
