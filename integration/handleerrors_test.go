package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// handleErrorsConfig has the aauth handler in every layout (top level, inside handle,
// route and handle_path) on a site with handle_errors, a second site on the same server
// without it, and a third whose handle_errors takes only 5xx.
func handleErrorsConfig(t *testing.T, backend *echoBackend) string {
	return globalOptions(t, true) + fmt.Sprintf(`
http://api.localhost:9080 {
	handle_errors {
		header X-Error-Page custom
		respond "refused: {http.aauth.error} ({err.status_code})"
	}
	handle /h/* {
		aauth
		reverse_proxy %[1]s
	}
	route /r/* {
		aauth
		reverse_proxy %[1]s
	}
	handle_path /p/* {
		aauth
		reverse_proxy %[1]s
	}
	aauth /top/*
	reverse_proxy %[1]s
}

http://plain.localhost:9080 {
	aauth
	reverse_proxy %[1]s
}

http://fivexx.localhost:9080 {
	handle_errors 5xx {
		respond "server trouble"
	}
	aauth
	reverse_proxy %[1]s
}
`, backend.addr())
}

// TestHandleErrorsReplaces401: with handle_errors, the error routes write the body of
// a refused request in every layout, with {http.aauth.error} and {err.status_code},
// and the AAuth challenge and WWW-Authenticate headers stay; a site without
// handle_errors, or whose handle_errors takes only 5xx, keeps the protocol's JSON body;
// a signed request still passes.
func TestHandleErrorsReplaces401(t *testing.T) {
	backend := newEchoBackend(t)
	caddytest.NewTester(t).InitServer(handleErrorsConfig(t, backend), "caddyfile")
	for _, path := range []string{"/top/x", "/h/x", "/r/x", "/p/x"} {
		res := get(t, plainClient(), api+path).mustStatus(t, http.StatusUnauthorized)
		if string(res.body) != "refused: invalid_request (401)" || res.header.Get("X-Error-Page") != "custom" {
			t.Errorf("%s: body %q, X-Error-Page %q", path, res.body, res.header.Get("X-Error-Page"))
		}
		if !strings.Contains(res.header.Get("AAuth"), "require=") || res.header.Get("WWW-Authenticate") != "AAuth" {
			t.Errorf("%s: challenge headers lost: AAuth %q, WWW-Authenticate %q", path, res.header.Get("AAuth"), res.header.Get("WWW-Authenticate"))
		}
	}
	for _, host := range []string{"http://plain.localhost:9080", "http://fivexx.localhost:9080"} {
		res := get(t, plainClient(), host+"/x").mustStatus(t, http.StatusUnauthorized)
		if code := res.errorCode(t); code != "invalid_request" || res.header.Get("AAuth") == "" {
			t.Errorf("%s: error %q, AAuth %q: want the JSON body and the challenge", host, code, res.header.Get("AAuth"))
		}
	}
	agentSrv := newAgentServer(t)
	tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id)}
	get(t, agentClient(tr), api+"/h/x").mustStatus(t, http.StatusOK)
}
