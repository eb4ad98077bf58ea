package caddyaauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/assertion"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

func TestUpstreamAssertionCaddyfile(t *testing.T) {
	for _, tc := range []struct{ in, header, aud, err string }{
		{in: "upstream_assertion", header: assertion.DefaultHeader},
		{in: "upstream_assertion X-Gw-Proof\nassertion_audience https://origin.internal", header: "X-Gw-Proof", aud: "https://origin.internal"},
		{in: "upstream_assertion a b", err: "wrong argument count"},
		{in: "assertion_audience x", err: "needs upstream_assertion"},
		{in: "upstream_assertion bad:name", err: "not a header name"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("aauth {\n" + tc.in + "\n}"))
		if err == nil {
			err = h.Validate()
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h.UpstreamAssertion != tc.header || h.AssertionAudience != tc.aud {
			t.Fatalf("%q: %v %+v", tc.in, err, h.assertionConfig)
		}
		b, _ := json.Marshal(&h)
		if !strings.Contains(string(b), `"upstream_assertion":"`+tc.header+`"`) {
			t.Fatalf("JSON %s", b)
		}
	}
}

// TestAssertionClaims checks what a verified request's assertion carries, and that an
// origin's Verifier accepts it for that request only.
func TestAssertionClaims(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	now := time.Now()
	h := &Handler{logger: zap.NewNop(), now: func() time.Time { return now }}
	h.UpstreamAssertion = assertion.DefaultHeader
	h.assertionKey = keystore.NewKey(st, keystore.LayoutOf(keystore.RoleGateway, gatewayKeyID), keys.AlgEd25519)
	agentKey, _ := keys.Generate(keys.AlgEd25519, "")
	res := &reqverify.Result{Level: reqverify.LevelIdentity, Scheme: "jwt", Agent: "https://agent.example", Delegate: "d1", Key: agentKey.Public}

	r := httptest.NewRequest(http.MethodPost, "http://API.example:8080/v1/items%2F1?q=2", nil)
	r.Header.Set(assertion.DefaultHeader, "forged")
	h.addAssertion(r, res)
	tok := r.Header.Get(assertion.DefaultHeader)
	if tok == "forged" || strings.Count(tok, ".") != 2 {
		t.Fatalf("assertion %q", tok)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = serveGatewayJWKS(w, r, []*keystore.Key{h.assertionKey, h.assertionKey})
	}))
	defer jwks.Close()
	v := assertion.Verifier{JWKSURL: jwks.URL + assertion.PathJWKS, Audience: "api.example:8080", Now: h.now}
	c, err := v.Verify(r)
	if err != nil {
		t.Fatal(err)
	}
	want := assertion.Claims{Issuer: "https://api.example:8080", Audience: "api.example:8080", IssuedAt: now.Unix(), Expiry: now.Unix() + 60,
		ID: c.ID, Method: "POST", URL: "http://api.example:8080/v1/items%2F1", Path: "/v1/items%2F1",
		Level: "identity", Scheme: "jwt", Agent: "https://agent.example", Delegate: "d1", JKT: agentKey.Public.Thumbprint}
	if c != want || c.ID == "" {
		t.Fatalf("claims\n%+v\nwant\n%+v", c, want)
	}
	r.Method = http.MethodGet
	if _, err := v.Verify(r); err == nil {
		t.Fatal("an assertion for POST verified for GET")
	}
	h.AssertionAudience, h.Resource = "https://origin.internal", "https://api.example"
	h.addAssertion(r, res)
	if c, err := (assertion.Verifier{JWKSURL: v.JWKSURL, Audience: "https://origin.internal"}).Verify(r); err != nil || c.Issuer != h.Resource {
		t.Fatalf("assertion_audience/resource: %+v %v", c, err)
	}
}
