package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/assertion"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
)

// assertionOrigin is an origin anyone can reach that trusts only what the gateway signed:
// it runs the published verifier as middleware and answers with the verified claims and
// the assertion it received.
func assertionOrigin(t *testing.T) *httptest.Server {
	return assertionOriginWith(t, nil)
}

// assertionOriginWith is assertionOrigin; with seen, each assertion is accepted once.
func assertionOriginWith(t *testing.T, seen *replay.Store) *httptest.Server {
	v := assertion.Verifier{
		JWKSURL:  api + assertion.PathJWKS,
		Audience: "api.localhost:9080", // the default aud: the request's host at the gateway
		Client:   plainClient(),
		Seen:     seen,
	}
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := assertion.FromContext(r.Context())
		w.Header().Set("X-Seen-Assertion", r.Header.Get(assertion.DefaultHeader))
		_ = json.NewEncoder(w).Encode(c)
	})))
	t.Cleanup(srv.Close)
	return srv
}

func TestUpstreamAssertion(t *testing.T) {
	origin := assertionOrigin(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(globalOptions(t, true)+fmt.Sprintf(`
http://api.localhost:9080 {
	aauth /ident/* {
		require identity
		upstream_assertion
	}
	handle /raw/* {
		uri strip_prefix /raw
		reverse_proxy %[1]s
	}
	reverse_proxy %[1]s
}
`, strings.TrimPrefix(origin.URL, "http://")), "caddyfile")
	agentSrv := newAgentServer(t)
	tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id)}

	var captured string
	t.Run("through the gateway: 200 with the verified identity", func(t *testing.T) {
		resp := fetchPlain(t, agentClient(tr), http.MethodGet, api+"/ident/data", nil)
		var c assertion.Claims
		if resp.status != http.StatusOK || json.Unmarshal(resp.body, &c) != nil {
			t.Fatalf("status %d %s", resp.status, resp.body)
		}
		if c.Agent != agentSrv.id || c.Level != "identity" || c.Scheme != "jwks_uri" || c.Path != "/ident/data" || c.Method != "GET" ||
			c.Issuer != "https://api.localhost:9080" || c.Expiry-c.IssuedAt != 60 {
			t.Fatalf("claims %+v", c)
		}
		captured = resp.header.Get("X-Seen-Assertion")
	})
	t.Run("with Seen, a captured assertion is accepted once", func(t *testing.T) {
		strict := assertionOriginWith(t, replay.New(100))
		hdr := http.Header{assertion.DefaultHeader: {captured}}
		if resp := fetchPlain(t, plainClient(), http.MethodGet, strict.URL+"/ident/data", hdr); resp.status != http.StatusOK {
			t.Fatalf("first use: status %d %s", resp.status, resp.body)
		}
		if resp := fetchPlain(t, plainClient(), http.MethodGet, strict.URL+"/ident/data", hdr); resp.status != http.StatusUnauthorized {
			t.Fatalf("second use: status %d %s", resp.status, resp.body)
		}
	})
	t.Run("direct request with forged X-Aauth-* headers: 401", func(t *testing.T) {
		resp := fetchPlain(t, plainClient(), http.MethodGet, origin.URL+"/ident/data", http.Header{
			"X-Aauth-Level": {"authorized"}, "X-Aauth-Agent": {agentSrv.id}, "X-Aauth-Subject": {"admin"},
		})
		if resp.status != http.StatusUnauthorized {
			t.Fatalf("status %d %s", resp.status, resp.body)
		}
	})
	t.Run("captured assertion replayed on another path or method: 401", func(t *testing.T) {
		for _, m := range []struct{ method, path string }{{"GET", "/ident/admin"}, {"DELETE", "/ident/data"}} {
			resp := fetchPlain(t, plainClient(), m.method, origin.URL+m.path, http.Header{assertion.DefaultHeader: {captured}})
			if resp.status != http.StatusUnauthorized {
				t.Fatalf("%s %s: status %d", m.method, m.path, resp.status)
			}
		}
	})
	t.Run("client-sent assertion is stripped by the gateway", func(t *testing.T) {
		// Control: within its 60 s the captured assertion is valid for its own method
		// and path (a bearer credential: see the README's limits).
		hdr := http.Header{assertion.DefaultHeader: {captured}}
		if resp := fetchPlain(t, plainClient(), http.MethodGet, origin.URL+"/ident/data", hdr); resp.status != http.StatusOK {
			t.Fatalf("control: status %d", resp.status)
		}
		// Through an unprotected route that forwards /raw/ident/data as /ident/data, the
		// guard removes it before any route runs.
		resp := fetchPlain(t, plainClient(), http.MethodGet, api+"/raw/ident/data", hdr)
		if resp.status != http.StatusUnauthorized {
			t.Fatalf("status %d: an unprotected route forwarded the client's assertion", resp.status)
		}
	})
	t.Run("gateway JWKS is published", func(t *testing.T) {
		resp := fetchPlain(t, plainClient(), http.MethodGet, api+assertion.PathJWKS, nil)
		if resp.status != http.StatusOK || !strings.Contains(string(resp.body), `"kid"`) || !strings.Contains(string(resp.body), `"alg":"EdDSA"`) {
			t.Fatalf("status %d %s", resp.status, resp.body)
		}
	})
}

type fetched struct {
	status int
	header http.Header
	body   []byte
}

func fetchPlain(t *testing.T, c *http.Client, method, url string, h http.Header) fetched {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	c.Timeout = 10 * time.Second
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fetched{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestUpstreamAssertionKeys: an auth-token route signs its assertions with the resource
// key, another route with the gateway key in storage; `caddy validate` writes neither,
// `caddy run` creates the gateway key at start, and each server publishes its keys.
func TestUpstreamAssertionKeys(t *testing.T) {
	backend := newEchoBackend(t)
	var plainID string
	e := newRestartEnv(t, func(e *restartEnv) string {
		plainID = "http://127.0.0.1:" + freePort(t)
		site := strings.Replace(allowSites(backend.addr())(e), "scope data.read\n", "scope data.read\n\t\tupstream_assertion\n", 1)
		return site + fmt.Sprintf("\n%s {\n\taauth {\n\t\trequire identity\n\t\tupstream_assertion X-Gateway-Assertion\n\t}\n\treverse_proxy %s\n}\n", plainID, backend.addr())
	})
	storage := filepath.Join(e.dir, "storage")
	gwKey := filepath.Join(storage, filepath.FromSlash(keystore.LayoutOf(keystore.RoleGateway, "upstream-assertion").KeyringKey()))
	v := startProcess(t, "caddy validate", e.dir, e.env, e.bin, "validate", "--config", e.config, "--adapter", "caddyfile")
	<-v.done
	if v.err != nil {
		t.Fatalf("caddy validate: %v\n%s", v.err, v.out.String())
	}
	if _, err := os.Stat(gwKey); err == nil {
		t.Fatal("caddy validate created the gateway key")
	}
	e.start(t)
	if _, err := os.Stat(gwKey); err != nil {
		t.Fatalf("caddy run did not create the gateway key at start: %v", err)
	}
	res, gw := kids(t, e.apiID+assertion.PathJWKS), kids(t, plainID+assertion.PathJWKS)
	if !slices.Equal(res, kids(t, e.apiID+"/.well-known/aauth-resource/jwks.json")) {
		t.Fatalf("auth-token route: assertion kids %v are not the resource key's", res)
	}
	if len(gw) != 1 || slices.Equal(gw, res) {
		t.Fatalf("gateway kids %v (resource %v)", gw, res)
	}
}
