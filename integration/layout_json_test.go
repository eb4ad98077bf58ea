package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// jsonConfig is a hand-written JSON config: the aauth handler sits two subroutes deep
// behind a path matcher, and a sibling route proxies everything else.
func jsonConfig(t *testing.T, backend string, servers string) string {
	return fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999"},
	"storage": {"module": "file_system", "root": %q},
	"apps": {
		"aauth": {"dev": true},
		"http": {"http_port": 9080, "grace_period": 1, "servers": {%s}}
	}
}`, storageDir(t), fmt.Sprintf(servers, backend))
}

const jsonNested = `"api": {
	"listen": [":9080"],
	"routes": [
		{"match": [{"path": ["/api/*"]}], "handle": [{"handler": "subroute", "routes": [
			{"handle": [{"handler": "subroute", "routes": [
				{"handle": [{"handler": "aauth", "require": "auth-token", "resource": "http://api.localhost:9080",
					"auth_server": "http://127.0.0.1:9", "scopes": ["data.read"], "headers": {"sub": "X-Remote-User"}}]},
				{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "%[1]s"}]}]}
			]}]}
		]}], "terminal": true},
		{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "%[1]s"}]}]}
	],
	"automatic_https": {"disable": true}
}`

// jsonErrorsOnly has its only aauth handler in handle_errors: nothing can guard the
// server's primary routes, so the config is refused.
const jsonErrorsOnly = `"api": {
	"listen": [":9080"],
	"routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "%[1]s"}]}]}],
	"errors": {"routes": [{"handle": [{"handler": "aauth", "require": "pseudonym"}]}]},
	"automatic_https": {"disable": true}
}`

func TestLayoutHandWrittenJSON(t *testing.T) {
	backend := newEchoBackend(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(jsonConfig(t, backend.addr(), jsonNested), "json")

	r := get(t, plainClient(), api+"/other", forgedHeaders...).mustStatus(t, 200)
	assertNoForged(t, "/other", r.echo)
	get(t, plainClient(), api+"/api/x").mustStatus(t, http.StatusUnauthorized)
	get(t, plainClient(), api+"/.well-known/aauth-resource.json").mustStatus(t, 200)

	t.Run("a layout that cannot be guarded is refused with the fix", func(t *testing.T) {
		for name, cfg := range map[string]string{
			"handle_errors only": jsonConfig(t, backend.addr(), jsonErrorsOnly),
		} {
			resp, err := http.Post("http://localhost:2999/load", "application/json", bytes.NewBufferString(cfg))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 || !strings.Contains(string(body), "aauth_strip") {
				t.Fatalf("%s: status %d: %s", name, resp.StatusCode, body)
			}
		}
		// The refused config did not replace the running one.
		get(t, plainClient(), api+"/api/x").mustStatus(t, http.StatusUnauthorized)
	})

	t.Run("a named route without aauth_strip is refused with the fix", func(t *testing.T) {
		cfg := globalOptions(t, true) + namedRoutes(backend.addr()) + `
http://api.localhost:9080 {
	handle /api/* {
		invoke api
	}
	reverse_proxy ` + backend.addr() + `
}
`
		resp, err := http.Post("http://localhost:2999/load", "text/caddyfile", bytes.NewBufferString(cfg))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(body), "aauth_strip") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}
