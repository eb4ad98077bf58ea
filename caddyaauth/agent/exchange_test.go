package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// TestTokenExchangeRequest checks the token request of a Transport with UpstreamToken
// (draft-hardt-aauth §4.5.8): the body carries upstream_token, and the request is signed
// with the Identity key under Signature-Key scheme jwt carrying the upstream token
// (signature_key form, the default) or under Identity's own scheme (body form). Without
// UpstreamToken nothing changes.
func TestTokenExchangeRequest(t *testing.T) {
	key := genKey(t, keys.AlgEd25519, "r1-key")
	const upstream = "upstream.auth.token"
	tests := []struct {
		name, form, upstream string
		wantScheme, wantJWT  string
		wantBodyUpstream     string
	}{
		{name: "default form: Signature-Key carries the upstream token", upstream: upstream,
			wantScheme: httpsig.SchemeJWT, wantJWT: upstream, wantBodyUpstream: upstream},
		{name: "signature_key form", form: ExchangeSignatureKey, upstream: upstream,
			wantScheme: httpsig.SchemeJWT, wantJWT: upstream, wantBodyUpstream: upstream},
		{name: "body form: signed with the identity", form: ExchangeBody, upstream: upstream,
			wantScheme: httpsig.SchemeJWKSURI, wantBodyUpstream: upstream},
		{name: "no upstream token: a plain token request", form: ExchangeSignatureKey,
			wantScheme: httpsig.SchemeJWKSURI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var gotBody map[string]any
			var gotSig *httpsig.Signature
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				sig, err := httpsig.Parse(r.Header, httpsig.DefaultLimits)
				mu.Lock()
				_ = json.Unmarshal(b, &gotBody)
				gotSig = sig
				mu.Unlock()
				if err != nil {
					t.Errorf("signature: %v", err)
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"auth_token":"a.b.c","expires_in":60}`)
			}))
			defer srv.Close()
			tr := &Transport{Identity: JWKSURI(key, "https://r1.example"), UpstreamToken: tc.upstream, ExchangeForm: tc.form}
			ep, _ := url.Parse(srv.URL + "/token")
			raw, _, err := tr.requestToken(t.Context(), ep, "resource.token.x", "https://r2.example", srv.URL, "")
			if err != nil || raw != "a.b.c" {
				t.Fatalf("requestToken: %q %v", raw, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if gotSig.Key.Scheme != tc.wantScheme || gotSig.Key.Get("jwt") != tc.wantJWT {
				t.Errorf("Signature-Key scheme %q jwt %q, want %q %q", gotSig.Key.Scheme, gotSig.Key.Get("jwt"), tc.wantScheme, tc.wantJWT)
			}
			if got, _ := gotBody["upstream_token"].(string); got != tc.wantBodyUpstream {
				t.Errorf("body upstream_token %q, want %q", got, tc.wantBodyUpstream)
			}
			if gotBody["resource_token"] != "resource.token.x" {
				t.Errorf("body %v", gotBody)
			}
		})
	}
}
