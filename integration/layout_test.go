package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// The promise: whatever block an aauth handler sits in, no client-sent identity header
// reaches any upstream of its server, and the resource's well-known documents are
// served. Each layout protects an auth-token API (with a renamed subject header) and a
// pseudonym route; the rest of the site goes to the same backend unprotected.
type layout struct {
	name     string
	site     string // %[1]s: the backend address; %[2]s the auth-token block; %[3]s the pseudonym block
	api, pub string // a path under the auth-token route and one under the pseudonym route
}

const layoutAPIBlock = `aauth {
		require auth-token
		resource http://api.localhost:9080
		auth_server http://127.0.0.1:9
		scope data.read
		header sub X-Remote-User
	}`

const layoutPubBlock = `aauth {
		require pseudonym
	}`

var layouts = []layout{
	{name: "top level", api: "/api/x", pub: "/pub/x", site: `
	aauth /api/* {
		require auth-token
		resource http://api.localhost:9080
		auth_server http://127.0.0.1:9
		scope data.read
		header sub X-Remote-User
	}
	aauth /pub/* {
		require pseudonym
	}
	reverse_proxy %[1]s`},
	{name: "handle", api: "/api/x", pub: "/pub/x", site: `
	handle /api/* {
		%[2]s
		reverse_proxy %[1]s
	}
	handle /pub/* {
		%[3]s
		reverse_proxy %[1]s
	}
	handle {
		reverse_proxy %[1]s
	}`},
	{name: "handle_path", api: "/api/x", pub: "/pub/x", site: `
	handle_path /api/* {
		%[2]s
		reverse_proxy %[1]s
	}
	handle_path /pub/* {
		%[3]s
		reverse_proxy %[1]s
	}
	handle {
		reverse_proxy %[1]s
	}`},
	{name: "route", api: "/api/x", pub: "/pub/x", site: `
	route /api/* {
		%[2]s
		reverse_proxy %[1]s
	}
	route /pub/* {
		%[3]s
		reverse_proxy %[1]s
	}
	reverse_proxy %[1]s`},
	{name: "nested blocks", api: "/v1/api/x", pub: "/v1/pub/x", site: `
	handle /v1/* {
		route {
			handle /v1/api/* {
				%[2]s
				reverse_proxy %[1]s
			}
		}
		handle /v1/pub/* {
			route {
				%[3]s
			}
			reverse_proxy %[1]s
		}
		respond 404
	}
	handle {
		reverse_proxy %[1]s
	}`},
	{name: "named route with aauth_strip", api: "/api/x", pub: "/pub/x", site: `
	aauth_strip
	handle /api/* {
		invoke api
	}
	handle /pub/* {
		invoke pub
	}
	handle {
		reverse_proxy %[1]s
	}`},
}

// namedRoutes are the definitions the named-route layout invokes. (A named route keeps
// only its first handler in Caddy 2.11's Caddyfile, so each wraps its pair in a route.)
func namedRoutes(backend string) string {
	return fmt.Sprintf(`
&(api) {
	route {
		%[2]s
		reverse_proxy %[1]s
	}
}

&(pub) {
	route {
		%[3]s
		reverse_proxy %[1]s
	}
}
`, backend, layoutAPIBlock, layoutPubBlock)
}

func layoutConfig(t *testing.T, l layout, backend string) string {
	site := fmt.Sprintf(l.site, backend, layoutAPIBlock, layoutPubBlock)
	return globalOptions(t, true) + namedRoutes(backend) + "\nhttp://api.localhost:9080 {" + site + "\n}\n"
}

// forgedHeaders are client-sent identity headers in several spellings, including the
// renamed subject header.
var forgedHeaders = []string{
	"X-Aauth-Level", "authorized", "X-AAuth-Subject", "admin", "X_Aauth_Agent", "https://admin.example",
	"X-Aauth-Scope", "admin", "X-Remote-User", "admin", "X_Remote_User", "admin",
}

func assertNoForged(t *testing.T, what string, e echoed) {
	t.Helper()
	for _, m := range []map[string][]string{e.Header, e.Trailer} {
		for k, v := range m {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-aauth") || strings.HasPrefix(lk, "x_aauth") || strings.HasPrefix(lk, "x-remote") || strings.HasPrefix(lk, "x_remote") {
				t.Fatalf("%s: client-sent %s: %v reached the backend", what, k, v)
			}
		}
	}
}

func TestLayoutMatrixStripsForgedIdentity(t *testing.T) {
	backend := newEchoBackend(t)
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			caddytest.NewTester(t).InitServer(layoutConfig(t, l, backend.addr()), "caddyfile")
			for _, path := range []string{"/other", "/api;x/admin", "/API/x", "/v1/other", "/pub"} {
				r := get(t, plainClient(), api+path, forgedHeaders...)
				if r.status == 200 {
					assertNoForged(t, path, r.echo)
				} else if r.status != http.StatusUnauthorized && r.status != http.StatusNotFound {
					t.Fatalf("%s: status %d", path, r.status)
				}
			}
			// The protected routes stay protected.
			get(t, plainClient(), api+l.api, forgedHeaders...).mustStatus(t, http.StatusUnauthorized)
			get(t, plainClient(), api+l.pub, forgedHeaders...).mustStatus(t, http.StatusUnauthorized)

			t.Run("trailers", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, api+"/other", io.NopCloser(strings.NewReader("body")))
				req.ContentLength = -1 // chunked, so trailers can follow
				req.Trailer = http.Header{"X-Aauth-Subject": {"admin"}, "X-Remote-User": {"admin"}}
				r := do(t, plainClient(), req).mustStatus(t, 200)
				assertNoForged(t, "trailer", r.echo)
			})

			t.Run("verified headers survive Connection and signature headers are removed", func(t *testing.T) {
				cred, _ := hwkCredential(t)
				req, _ := http.NewRequest(http.MethodGet, api+l.pub, nil)
				req.Header.Set("Connection", "X-Aauth-Level, x-aauth-scheme, X-Aauth-Key-Thumbprint")
				r := do(t, agentClient(&agent.Transport{Pseudonym: cred}), req).mustStatus(t, 200)
				if r.backendHeader("X-Aauth-Level") != "pseudonym" || r.backendHeader("X-Aauth-Scheme") != "hwk" || r.backendHeader("X-Aauth-Key-Thumbprint") == "" {
					t.Fatalf("verified headers lost: %v", r.echo.Header)
				}
				for _, h := range []string{"Signature", "Signature-Input", "Signature-Key"} {
					if r.backendHeader(h) != "" {
						t.Fatalf("%s reached the backend", h)
					}
				}
			})

			t.Run("well-known documents are served", func(t *testing.T) {
				for _, p := range []string{"/.well-known/aauth-resource.json", "/.well-known/aauth-resource"} {
					r := get(t, plainClient(), api+p).mustStatus(t, 200)
					var md struct {
						Resource string `json:"resource"`
						JWKSURI  string `json:"jwks_uri"`
					}
					if err := json.Unmarshal(r.body, &md); err != nil || md.Resource != "http://api.localhost:9080" || md.JWKSURI == "" {
						t.Fatalf("%s: %s", p, r.body)
					}
				}
				r := get(t, plainClient(), api+"/.well-known/aauth-resource/jwks.json").mustStatus(t, 200)
				if !strings.Contains(string(r.body), `"keys"`) {
					t.Fatalf("jwks: %s", r.body)
				}
				resp, err := plainClient().Post(api+"/.well-known/aauth-resource/token", "application/json", strings.NewReader(`{"scope":"data.read"}`))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized { // unsigned: the endpoint answers, not the backend
					t.Fatalf("resource token endpoint: %d", resp.StatusCode)
				}
			})
		})
	}
}
