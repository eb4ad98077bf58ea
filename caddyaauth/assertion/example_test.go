package assertion_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/assertion"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// An origin that others can reach directly trusts the identity only when the request
// came through the gateway: it wraps its handler in Verifier.Middleware and reads the
// verified claims, never the X-Aauth-* headers on their own.
func ExampleVerifier_Middleware() {
	// Stand-in for the gateway: its key and its /.well-known/aauth-gateway/jwks.json.
	gwKey, _ := keys.Generate(keys.AlgEd25519, "gw-1")
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(keystore.JWKS(gwKey.Public))
	}))
	defer gateway.Close()

	// The origin.
	verifier := assertion.Verifier{
		JWKSURL:  gateway.URL + assertion.PathJWKS, // https://<gateway>/.well-known/aauth-gateway/jwks.json
		Audience: "api.example",                    // the gateway's assertion_audience (default: its Host)
	}
	origin := verifier.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := assertion.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s (%s)", c.Agent, c.Level)
	}))

	// A request the gateway verified and forwarded with upstream_assertion.
	now := time.Now()
	tok, _ := assertion.Sign(gwKey, assertion.Claims{
		Issuer: "https://api.example", Audience: "api.example", Method: "GET", Path: "/orders",
		Level: "identity", Scheme: "jwks_uri", Agent: "https://agent.example",
	}, now)
	through := httptest.NewRequest("GET", "http://origin.internal/orders", nil)
	through.Header.Set(assertion.DefaultHeader, tok)
	w := httptest.NewRecorder()
	origin.ServeHTTP(w, through)
	fmt.Println(w.Code, w.Body.String())

	// The same origin reached directly with forged identity headers.
	direct := httptest.NewRequest("GET", "http://origin.internal/orders", nil)
	direct.Header.Set("X-Aauth-Agent", "https://agent.example")
	direct.Header.Set("X-Aauth-Level", "authorized")
	w = httptest.NewRecorder()
	origin.ServeHTTP(w, direct)
	fmt.Println(w.Code)
	// Output:
	// 200 hello https://agent.example (identity)
	// 401
}
