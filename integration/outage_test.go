package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// outageWarning is the message of the gateway's Warn line for a 503 temporarily_unavailable.
const outageWarning = "cannot verify the request now"

// outageConfig is a gateway (resource apiID, auth server as) whose log goes, as JSON at
// Warn and above, to logFile.
func outageConfig(t *testing.T, apiID, as, logFile string, backend *echoBackend) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	storage file_system %s
	log {
		output file %s
		format json
		level WARN
	}
	aauth {
		dev
	}
}

%s {
	aauth {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
	}
	reverse_proxy %s
}
`, storageDir(t), logFile, apiID, apiID, as, backend.addr())
}

// outageLines returns the gateway's Warn lines about an outage, and fails the test when
// the log holds anything that looks like a token.
func outageLines(t *testing.T, logFile string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "eyJ") {
		t.Fatalf("the log holds a token:\n%s", b)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && strings.Contains(fmt.Sprint(m["msg"]), outageWarning) {
			out = append(out, m)
		}
	}
	return out
}

// TestOutageAuthServerJWKS: the auth server's JWKS cannot be fetched and the gateway has
// no copy. The gateway answers 503 temporarily_unavailable with Retry-After (not 401
// invalid_auth_token) and logs one Warn line; the agent library keeps its auth token and
// retries the request after Retry-After, asking the auth server for a token only once;
// once the JWKS is back the same token goes through. Then the auth server replaces its
// key under the same kid: a token signed with the new key is accepted within 2 s.
func TestOutageAuthServerJWKS(t *testing.T) {
	as := agenttest.NewAuthServer(t)
	var jwksDown atomic.Bool
	var jwksHits atomic.Int64
	jwksDown.Store(true)
	as.SetJWKSAnswer(func(http.ResponseWriter) bool {
		jwksHits.Add(1)
		if jwksDown.Load() {
			panic(http.ErrAbortHandler) // the connection is dropped: unreachable
		}
		return false
	})
	backend := newEchoBackend(t)
	apiID := "http://localhost:" + freePort(t)
	logFile := filepath.Join(storageDir(t), "caddy.log")
	caddytest.NewTester(t).InitServer(outageConfig(t, apiID, as.ID, logFile, backend), "caddyfile")
	agentSrv := newAgentServer(t)
	// The outage is between the gateway and the auth server's JWKS: the agent fetched the
	// JWKS before (it checks the auth tokens it receives) and keeps its copy.
	disc := discovery.New(discovery.Config{Dev: true})
	t.Cleanup(disc.Close)
	jwksDown.Store(false)
	if _, err := disc.Key(t.Context(), as.ID, discovery.DocIssuer, as.Signer().Public.KID); err != nil {
		t.Fatal(err)
	}
	jwksDown.Store(true)
	var logLines []string
	tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id), Dev: true, Discovery: disc,
		Logf: func(f string, a ...any) { logLines = append(logLines, fmt.Sprintf(f, a...)) }}
	client := agentClient(tr)
	client.Timeout = 0 // the request contexts bound each test step

	// The outage: the library retries after Retry-After within the request's deadline,
	// then hands the 503 back.
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiID+"/data", nil)
	start := time.Now()
	r := do(t, client, req).mustStatus(t, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" || r.errorCode(t) != "temporarily_unavailable" ||
		!strings.Contains(string(r.body), "the auth server's JWKS could not be fetched") {
		t.Fatalf("503 headers %v body %s", r.header, r.body)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the library gave up after %s without backing off", took)
	}
	if n := as.Hits(); n != 1 {
		t.Fatalf("%d token requests during the outage, want 1", n)
	}
	if backend.hits.Load() != 0 {
		t.Fatal("the backend was reached")
	}
	// A second request during the outage: the cached token, no new token request.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel2()
	req, _ = http.NewRequestWithContext(ctx2, http.MethodGet, apiID+"/data", nil)
	do(t, client, req).mustStatus(t, http.StatusServiceUnavailable)
	if n := as.Hits(); n != 1 {
		t.Fatalf("%d token requests after a second request, want 1", n)
	}
	if got := outageLines(t, logFile); len(got) != 1 {
		t.Fatalf("%d Warn lines about the outage, want 1: %v", len(got), got)
	} else if got[0]["level"] != "warn" || got[0]["issuer"] != as.ID {
		t.Fatalf("Warn line %v", got[0])
	}
	if fetches := jwksHits.Load(); fetches > 8 {
		t.Errorf("the gateway fetched the JWKS %d times during the outage", fetches)
	}

	// Recovery: the same auth token goes through once the JWKS is back.
	jwksDown.Store(false)
	ctx3, cancel3 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel3()
	req, _ = http.NewRequestWithContext(ctx3, http.MethodGet, apiID+"/data", nil)
	r = do(t, client, req).mustStatus(t, http.StatusOK)
	if r.backendHeader("X-Aauth-Level") != "authorized" || as.Hits() != 1 {
		t.Fatalf("after recovery: level %q, %d token requests", r.backendHeader("X-Aauth-Level"), as.Hits())
	}
	for _, l := range logLines {
		if strings.Contains(l, "eyJ") {
			t.Fatalf("the agent log holds a token: %s", l)
		}
	}

	t.Run("key replaced under the same kid is accepted within 2 s", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond) // the gateway's JWKS copy is no longer brand new
		next, err := keys.Generate(keys.AlgEd25519, as.Signer().Public.KID)
		if err != nil {
			t.Fatal(err)
		}
		as.ReplaceKey(next)
		replaced := time.Now()
		fresh := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id), Dev: true, Discovery: disc}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiID+"/data", nil)
		c := agentClient(fresh)
		c.Timeout = 0
		do(t, c, req).mustStatus(t, http.StatusOK)
		if took := time.Since(replaced); took > 2*time.Second {
			t.Fatalf("accepted after %s", took)
		}
		if as.Hits() != 2 {
			t.Fatalf("%d token requests, want 2", as.Hits())
		}
	})
}
