package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// shiftedCache is a token cache whose clock runs ahead of the real one by an offset the
// test moves, so cached tokens expire without waiting (the servers keep real time).
func shiftedCache() (*TokenCache, *atomic.Int64) {
	var off atomic.Int64
	return &TokenCache{Now: func() time.Time { return time.Now().Add(time.Duration(off.Load())) }}, &off
}

// withShortToken is a flow world whose agent (jwks_uri, with a shifted cache) holds a
// token that lives a minute: a cache clock 2 minutes ahead sees it expired while the
// auth server (real time) still knows it.
func withShortToken(t *testing.T) (*flowWorld, *Transport, *logSink, *TokenCache, *atomic.Int64) {
	t.Helper()
	w := newFlowWorld(t)
	logs := &logSink{}
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	cache, ahead := shiftedCache()
	tr.TokenCache = cache
	w.as.MutateAuthTokens(func(c *token.Claims) { c.Expiry = time.Now().Add(time.Minute).Unix() })
	if resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil); resp.StatusCode != 200 {
		t.Fatalf("first request: %d %s", resp.StatusCode, body)
	}
	w.as.MutateAuthTokens(nil)
	return w, tr, logs, cache, ahead
}

func TestRefresh(t *testing.T) {
	const (
		kRes = agenttest.KindResource
		kRef = agenttest.KindRefresh
	)
	refused := agenttest.Deny(http.StatusBadRequest, wire.CodeInvalidAuthToken, "beyond the refresh window")
	garbage := func(w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"auth_token":"not.a.token","expires_in":3600}`))
		return true
	}
	for _, tc := range []struct {
		name      string
		ahead     time.Duration                  // the cache clock after the first token
		answer    func(http.ResponseWriter) bool // the auth server's answer to a refresh
		scopes    []string                       // the resource's scopes for the second request
		wantKinds []string                       // token requests the auth server saw
		wantLog   string
		wantKept  bool // a token is left in the cache for the resource
	}{
		{"refreshed instead of a new flow", 2 * time.Minute, nil, nil,
			[]string{kRes, kRef}, "auth token refreshed for", true},
		{"refresh refused: a new flow", 2 * time.Minute, refused, nil,
			[]string{kRes, kRef, kRes}, "refresh refused (agent: the auth server refused the token request: 400 invalid_auth_token", true},
		{"refreshed token fails the checks: a new flow", 2 * time.Minute, garbage, nil,
			[]string{kRes, kRef, kRes}, "refresh refused (agent: auth-token flow: auth-token", true},
		{"past the refresh window: not tried", RefreshWindow + 2*time.Minute, nil, nil,
			[]string{kRes, kRes}, "", false}, // the new token is not usable on the shifted clock
		{"another scope: not tried", 2 * time.Minute, nil, []string{"data.write"},
			[]string{kRes, kRes}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, tr, logs, cache, ahead := withShortToken(t)
			w.as.SetRefreshAnswer(tc.answer)
			if tc.scopes != nil {
				w.gw.SetScopes(tc.scopes...)
			}
			ahead.Store(int64(tc.ahead))
			w.gw.Seen()
			resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("second request: %d %s\n%s", resp.StatusCode, body, logs)
			}
			if k := w.as.Kinds(); !slices.Equal(k, tc.wantKinds) {
				t.Errorf("token requests %v, want %v\n%s", k, tc.wantKinds, logs)
			}
			if seen := w.gw.Seen(); !slices.Equal(seen, []string{"jwks_uri", "jwt:auth+jwt"}) {
				t.Errorf("gateway saw %v", seen)
			}
			l := logs.String()
			if tc.wantLog != "" && !strings.Contains(l, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, l)
			}
			if tc.wantLog == "" && strings.Contains(l, "refresh") {
				t.Errorf("a refresh was logged:\n%s", l)
			}
			noJWT(t, "logs", l)
			if _, ok := cache.Get(w.gw.ID, w.agentKey.Public.Thumbprint); ok != tc.wantKept {
				t.Fatalf("cached %v, want %v", ok, tc.wantKept)
			}
			if !tc.wantKept {
				return
			}
			// The token now cached is used straight away.
			resp, _ = doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
			if seen := w.gw.Seen(); resp.StatusCode != 200 || !slices.Equal(seen, []string{"jwt:auth+jwt"}) {
				t.Errorf("third request: %d, gateway saw %v", resp.StatusCode, seen)
			}
		})
	}
}

// The refreshed token carries the same grant, and the refresh is signed by the key in
// the old token's cnf (a delegate's key for a delegate).
func TestRefreshSameGrant(t *testing.T) {
	for _, scheme := range []string{httpsig.SchemeJWKSURI, httpsig.SchemeJWT} {
		t.Run(scheme, func(t *testing.T) {
			w := newFlowWorld(t)
			tr := w.transport(scheme, nil)
			cache, ahead := shiftedCache()
			tr.TokenCache = cache
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Expiry = time.Now().Add(time.Minute).Unix(); c.Subject = "alice" })
			doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
			first, _ := cache.Get(w.gw.ID, tr.Identity.Signer.Public.Thumbprint)
			w.as.MutateAuthTokens(nil)
			ahead.Store(int64(2 * time.Minute))
			if resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil); resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got, ok := cache.Get(w.gw.ID, tr.Identity.Signer.Public.Thumbprint)
			if !ok || got.Token == first.Token {
				t.Fatal("the refreshed token was not cached")
			}
			a, _ := token.Parse(first.Token, token.TypAuth)
			b, _ := token.Parse(got.Token, token.TypAuth)
			if b.Claims.Subject != "alice" || b.Claims.Agent != a.Claims.Agent || b.Claims.Scope != a.Claims.Scope ||
				b.Claims.AgentDelegate != a.Claims.AgentDelegate || b.Claims.ID == a.Claims.ID {
				t.Errorf("old %+v new %+v", a.Claims, b.Claims)
			}
			if k := w.as.Kinds(); !slices.Equal(k, []string{agenttest.KindResource, agenttest.KindRefresh}) {
				t.Errorf("kinds %v", k)
			}
		})
	}
}

// An auth server that cannot decide (5xx) is retried like any token request; then the
// error is the outcome, no new flow runs, and the expired token stays for later.
func TestRefreshOutage(t *testing.T) {
	w, tr, logs, cache, ahead := withShortToken(t)
	tr.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	w.as.SetRefreshAnswer(agenttest.Deny(http.StatusServiceUnavailable, wire.CodeServerError, "restarting"))
	ahead.Store(int64(2 * time.Minute))
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	_, err := tr.RoundTrip(req)
	var te *TokenError
	if !errors.As(err, &te) || !te.Temporary() {
		t.Fatalf("err %v, want a temporary TokenError", err)
	}
	want := []string{agenttest.KindResource}
	for range tokenAttempts {
		want = append(want, agenttest.KindRefresh)
	}
	if k := w.as.Kinds(); !slices.Equal(k, want) {
		t.Errorf("kinds %v, want %v", k, want)
	}
	if _, ok := cache.refreshable(w.gw.ID, w.agentKey.Public.Thumbprint, w.as.ID, "data.read"); !ok {
		t.Error("the expired token was dropped after an outage")
	}
	if !strings.Contains(logs.String(), "keeping the expired token for a later attempt") {
		t.Errorf("log:\n%s", logs)
	}
	// Once the auth server is back, the refresh goes through.
	w.as.SetRefreshAnswer(nil)
	if resp, _ := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil); resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}
