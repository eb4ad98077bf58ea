package caddyaauth

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

const (
	benchResource = "https://api.example"
	benchIssuer   = "https://as.example"
)

// authTokenHandler is an auth-token route wired without a running Caddy, whose token
// cache already holds tok (as after the first request that carried it).
func authTokenHandler(tb testing.TB, mode string, as *keys.Signer, tok string, now func() time.Time) *Handler {
	tb.Helper()
	h := &Handler{Require: RequireAuthToken, Resource: benchResource, AuthServer: benchIssuer, Scopes: []string{"data.write"},
		MaxBody: defaultMaxBody, logger: zap.NewNop(), now: now, replayMode: mode}
	h.verifier = &reqverify.Verifier{
		Discovery:  discovery.New(discovery.Config{}),
		Limits:     httpsig.DefaultLimits,
		Now:        now,
		Tokens:     token.NewCache(100),
		AuthTokens: &reqverify.AuthTokenPolicy{Audience: benchResource, Issuers: []string{benchIssuer}},
	}
	tb.Cleanup(h.verifier.Discovery.Close)
	if mode != ReplayOff {
		h.replay = replay.New(0)
	}
	verified, err := token.VerifyAuthToken(context.Background(), tok, token.Options{Now: now(), Audience: benchResource, Issuers: []string{benchIssuer}},
		func(context.Context, string, string) (*keys.PublicKey, error) { return as.Public, nil })
	if err != nil {
		tb.Fatal(err)
	}
	h.verifier.Tokens.Put(verified)
	return h
}

func mintAuthToken(tb testing.TB, as *keys.Signer, agentKey *keys.PublicKey, iat time.Time, life time.Duration) string {
	tb.Helper()
	tok, err := token.Mint(as, token.TypAuth, token.Claims{
		Issuer: benchIssuer, Audience: token.Audience{benchResource}, ID: token.NewID(),
		IssuedAt: iat.Unix(), Expiry: iat.Add(life).Unix(), Agent: "https://agent.example", Scope: "data.write",
		Confirmation: &token.Confirmation{JWK: agentKey.Members()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func jwtRequest(tb testing.TB, s *keys.Signer, tok, method, url string, created time.Time) *http.Request {
	tb.Helper()
	req := httptest.NewRequest(method, url, nil)
	key := httpsig.SigKey{Scheme: httpsig.SchemeJWT, Params: []httpsig.Param{{Name: "jwt", Value: tok}}}
	if err := httpsig.Sign(req, s, key, httpsig.SignOptions{Created: created}); err != nil {
		tb.Fatal(err)
	}
	return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
}

func serve(h *Handler, req *http.Request) (status int, passed bool) {
	w := httptest.NewRecorder()
	var reached bool
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached = true; return nil })
	if err := h.ServeHTTP(w, req, next); err != nil {
		if he, ok := err.(caddyhttp.HandlerError); ok {
			return he.StatusCode, reached
		}
		return 500, reached
	}
	if reached {
		return 200, true
	}
	return w.Code, false
}

// TestReplayWindowAndPolicies drives the handler with an injected clock: under "unsafe"
// a POST is single-use for its whole window and free again once the window is over
// (when the time check refuses it anyway), a GET may be resent; "off" accepts resends.
func TestReplayWindowAndPolicies(t *testing.T) {
	as, _ := keys.Generate(keys.AlgEd25519, "as-1")
	ag, _ := keys.Generate(keys.AlgEd25519, "")
	t0 := time.Now().Truncate(time.Second)
	now := t0
	clock := func() time.Time { return now }
	tok := mintAuthToken(t, as, ag.Public, t0, time.Hour)

	h := authTokenHandler(t, ReplayUnsafe, as, tok, clock)
	post := jwtRequest(t, ag, tok, "POST", "http://api.example/data", t0)
	if st, ok := serve(h, post.Clone(t.Context())); !ok {
		t.Fatalf("first POST: %d", st)
	}
	for _, at := range []time.Duration{0, 30 * time.Second, 60 * time.Second} {
		now = t0.Add(at)
		if st, ok := serve(h, post.Clone(t.Context())); ok || st != 401 {
			t.Fatalf("replay at +%s: status %d passed %v", at, st, ok)
		}
	}
	now = t0.Add(61 * time.Second) // outside the window: refused by the time check
	if _, ok := serve(h, post.Clone(t.Context())); ok {
		t.Fatal("stale POST passed")
	}
	now = t0
	get := jwtRequest(t, ag, tok, "GET", "http://api.example/data", t0)
	for range 2 {
		if st, ok := serve(h, get.Clone(t.Context())); !ok {
			t.Fatalf("GET under unsafe: %d", st)
		}
	}

	off := authTokenHandler(t, ReplayOff, as, tok, clock)
	for range 2 {
		if st, ok := serve(off, post.Clone(t.Context())); !ok {
			t.Fatalf("POST under off: %d", st)
		}
	}

	// A challenged request (scope missing) does not use up its signature.
	h2 := authTokenHandler(t, ReplayAll, as, tok, clock)
	h2.Scopes = []string{"admin"}
	if _, ok := serve(h2, get.Clone(t.Context())); ok {
		t.Fatal("insufficient scope passed")
	}
	h2.Scopes = []string{"data.write"}
	if st, ok := serve(h2, get.Clone(t.Context())); !ok {
		t.Fatalf("after a challenge the request was consumed: %d", st)
	}
	if _, ok := serve(h2, get.Clone(t.Context())); ok {
		t.Fatal("replay all: resent GET passed")
	}
}

func TestReplayDefaults(t *testing.T) {
	for req, want := range map[string]string{RequireAuthToken: ReplayUnsafe, RequireIdentity: ReplayOff, RequirePseudonym: ReplayOff} {
		if got := (&Handler{Require: req}).defaultReplay(); got != want {
			t.Errorf("%s: %s, want %s", req, got, want)
		}
	}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "PROPPATCH", "post"} {
		if wire.SafeMethod(m) {
			t.Errorf("%s counted as safe", m)
		}
	}
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "TRACE"} {
		if !wire.SafeMethod(m) {
			t.Errorf("%s counted as unsafe", m)
		}
	}
}

// The store outlives a config reload: the new handler's reference finds the same store.
func TestReplayStoreSharedAcrossReloads(t *testing.T) {
	a, relA, err := sharedReplayStore(4096)
	if err != nil {
		t.Fatal(err)
	}
	b, relB, _ := sharedReplayStore(4096) // the new config, provisioned before the old one is cleaned up
	if a != b {
		t.Fatal("not shared")
	}
	_ = relA()
	_ = relA() // idempotent
	c, relC, _ := sharedReplayStore(4096)
	if c != b {
		t.Fatal("store lost while still referenced")
	}
	_ = relB()
	_ = relC()
}

func TestEdgeOptionsCaddyfileAndValidate(t *testing.T) {
	var h Handler
	d := caddyfile.NewTestDispenser(`aauth {
		replay all
		max_token_lifetime 2h
	}`)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Replay != ReplayAll || h.MaxTokenLifetime != caddy.Duration(2*time.Hour) {
		t.Fatalf("%+v", h)
	}
	for _, bad := range []string{"replay", "replay sometimes", "replay off on", "max_token_lifetime", "max_token_lifetime 0s", "max_token_lifetime soon", "replay off\n replay all"} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("aauth {\n" + bad + "\n}"))
		if err == nil {
			err = h.Validate()
		}
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, bad := range []Handler{{Require: "identity", Replay: "on"}, {Require: "identity", MaxTokenLifetime: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// BenchmarkAuthTokenCached is the gateway decision for a request on an auth-token route
// whose token is cached: parse, policy, base, one Ed25519 verify (the request), scopes,
// replay store (by policy), identity headers. Requests come from a ring of distinct
// signed POSTs whose received headers are put back before each reuse (the handler
// removes the signature headers of a request it passes); under replay=unsafe the store
// is emptied (timer stopped) after each lap so the ring can be reused.
func BenchmarkAuthTokenCached(b *testing.B) {
	for _, mode := range []string{ReplayOff, ReplayUnsafe} {
		b.Run("replay="+mode, func(b *testing.B) {
			h, ag, tok := cachedTokenRoute(b, mode)
			reqs := make([]*http.Request, 1024)
			for i := range reqs {
				reqs[i] = jwtRequest(b, ag, tok, "POST", fmt.Sprintf("http://api.example/data/%d", i), time.Now())
			}
			ring := newRequestRing(reqs...)
			withMetrics(b, h)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			defer reportCPU(b, cpu)
			for i := 0; i < b.N; i++ {
				if i%len(reqs) == 0 && i > 0 && h.replay != nil {
					b.StopTimer()
					h.replay = replay.New(0)
					b.StartTimer()
				}
				if st := ring.serve(h, i); st != 200 {
					b.Fatalf("request %d: status %d", i, st)
				}
			}
		})
	}
}

// BenchmarkEd25519Verify is the unit of the performance bar.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 300)
	sig := ed25519.Sign(priv, msg)
	cpu := processCPU()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad")
		}
	}
	reportCPU(b, cpu)
}

// An ECDSA signature (r, s) has a twin (r, n-s) that verifies too. The replay store keys
// on the signature base, so resending a P-256 request with the twin signature is still a
// replay (a store keyed on the Signature bytes would let it through).
func TestReplayECDSATwinSignature(t *testing.T) {
	h := benchHandler(t)
	h.replayMode, h.replay = ReplayAll, replay.New(0)
	s, _ := keys.Generate(keys.AlgECDSAP256, "")
	req := httptest.NewRequest("POST", "http://api.example/data", nil)
	key := httpsig.SigKey{Scheme: httpsig.SchemeHWK}
	for _, k := range []string{"kty", "crv", "x", "y"} {
		key.Params = append(key.Params, httpsig.Param{Name: k, Value: s.Public.Members()[k].(string)})
	}
	if err := httpsig.Sign(req, s, key, httpsig.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
	if st, ok := serve(h, req.Clone(t.Context())); !ok {
		t.Fatalf("first: %d", st)
	}
	sig, err := httpsig.Parse(req.Header, httpsig.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	sv := new(big.Int).SetBytes(sig.Value[32:])
	twin := append(append([]byte{}, sig.Value[:32]...), new(big.Int).Sub(n, sv).FillBytes(make([]byte, 32))...)
	replayed := req.Clone(t.Context())
	replayed.Header.Set("Signature", "sig=:"+base64.StdEncoding.EncodeToString(twin)+":")
	off := benchHandler(t) // the twin is a valid signature in its own right
	if st, ok := serve(off, replayed.Clone(t.Context())); !ok {
		t.Fatalf("twin signature does not verify (%d): test premise broken", st)
	}
	if _, ok := serve(h, replayed); ok {
		t.Fatal("replay with the twin ECDSA signature passed")
	}
}

// C6 at the handler: a full replay store refuses with 503 and Retry-After (fails closed)
// rather than forgetting live entries, and nothing reaches the upstream.
func TestReplayStoreFullFailsClosed(t *testing.T) {
	as, _ := keys.Generate(keys.AlgEd25519, "as-1")
	ag, _ := keys.Generate(keys.AlgEd25519, "")
	tok := mintAuthToken(t, as, ag.Public, time.Now(), time.Hour)
	h := authTokenHandler(t, ReplayUnsafe, as, tok, time.Now)
	h.replay = replay.New(16) // one entry per shard
	full := false
	for i := 0; i < 200 && !full; i++ {
		req := jwtRequest(t, ag, tok, "POST", fmt.Sprintf("http://api.example/data/%d", i), time.Now())
		w := httptest.NewRecorder()
		var reached bool
		err := h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached = true; return nil }))
		if he, ok := err.(caddyhttp.HandlerError); ok && he.StatusCode == http.StatusServiceUnavailable {
			if reached || w.Header().Get("Retry-After") == "" {
				t.Fatalf("503 but reached=%v Retry-After=%q", reached, w.Header().Get("Retry-After"))
			}
			full = true
		} else if err != nil || !reached {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if !full || h.replay.Len() > 16 {
		t.Fatalf("full=%v len=%d", full, h.replay.Len())
	}
}

// TestValidateJSON: the semantic checks run in Validate, so a JSON config (which never
// goes through the Caddyfile parser) gets them too.
func TestValidateJSON(t *testing.T) {
	const base = `"require": "auth-token", "resource": "https://api.example", "auth_server": "https://as.example"`
	for _, tc := range []struct{ json, err string }{
		{`{` + base + `, "scopes": ["a b"]}`, `scope: "a b" is not a valid scope token`},
		{`{` + base + `, "scopes": ["read", "read"]}`, `scope "read" listed twice`},
		{`{` + base + `, "scope_descriptions": {"a b": "text"}}`, `scope_description: "a b" is not a valid scope token`},
		{`{` + base + `, "resource_token_lifetime": "2h"}`, "resource_token_lifetime: want a duration between 1s and 1h"},
		{`{` + base + `, "resource_token_lifetime": "500ms"}`, "resource_token_lifetime: want a duration between 1s and 1h"},
		{`{"max_token_lifetime": "500ms"}`, `max_token_lifetime: want a duration of at least 1s, got "500ms"`},
		{`{"signature_window": "-5s"}`, "signature_window must be positive"},
		{`{"require": "superuser"}`, `require: unknown level "superuser"`},
		{`{"replay": "sometimes"}`, `replay: unknown policy "sometimes"`},
		{`{"require_components": ["content-length"]}`, `unsupported component "content-length"`},
		{`{"headers": {"colour": "X-Colour"}}`, `header: unknown field "colour"`},
		{`{"headers": {"agent": "Agent"}}`, "must start with X-"},
		{`{"scopes": ["read"]}`, "need require auth-token"},
		{`{"require": "auth-token", "resource": "https://api.example"}`, "needs auth_server"},
		{`{` + base + `, "scopes": ["read"], "scope_descriptions": {"read": "Read"}, "resource_token_lifetime": "10m", "max_token_lifetime": "1h"}`, ""},
	} {
		var h Handler
		if err := json.Unmarshal([]byte(tc.json), &h); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		err := h.Validate()
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.json, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.json, err, tc.err)
		}
	}
	for _, tc := range []struct{ json, err string }{
		{`{"replay_capacity": 10}`, `replay_capacity: want a whole number of entries of at least 1024, got "10"`},
		{`{"replay_capacity": -1}`, "replay_capacity: want a whole number of entries of at least 1024"},
		{`{"max_token_lifetime": "500ms"}`, `max_token_lifetime: want a duration of at least 1s, got "500ms"`},
		{`{"fetch_timeout": "-1s"}`, "fetch_timeout must not be negative"},
		{`{"dev": true, "replay_capacity": 2048, "max_token_lifetime": "2h", "fetch_timeout": "3s"}`, ""},
	} {
		var a App
		if err := json.Unmarshal([]byte(tc.json), &a); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		err := a.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("app %s: error %v, want %q", tc.json, err, tc.err)
		}
	}
}
