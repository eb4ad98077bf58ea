package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	aauth /ident/* {
		require identity
	}
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
	if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(string(b)) {
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

// outageEnv is a gateway in front of an echo backend whose auth server (agenttest) can
// drop every JWKS request, and an agent that fetched the JWKS before the outage.
type outageEnv struct {
	as       *agenttest.AuthServer
	jwksDown atomic.Bool
	jwksHits atomic.Int64
	backend  *echoBackend
	apiID    string
	logFile  string
	agentSrv *agentServer
	disc     *discovery.Client
	mu       sync.Mutex
	logs     []string // the agent library's log
}

func startOutage(t *testing.T) *outageEnv {
	env := &outageEnv{as: agenttest.NewAuthServer(t), backend: newEchoBackend(t), agentSrv: newAgentServer(t)}
	env.as.SetJWKSAnswer(func(http.ResponseWriter) bool {
		env.jwksHits.Add(1)
		if env.jwksDown.Load() {
			panic(http.ErrAbortHandler) // the connection is dropped: unreachable
		}
		return false
	})
	env.apiID = "http://localhost:" + freePort(t)
	env.logFile = filepath.Join(storageDir(t), "caddy.log")
	caddytest.NewTester(t).InitServer(outageConfig(t, env.apiID, env.as.ID, env.logFile, env.backend), "caddyfile")
	// The outage is between the gateway and the auth server's JWKS: the agent fetched the
	// JWKS before (it checks the auth tokens it receives) and keeps its copy.
	env.disc = discovery.New(discovery.Config{Dev: true})
	t.Cleanup(env.disc.Close)
	if _, err := env.disc.Key(t.Context(), env.as.ID, discovery.DocIssuer, env.as.Signer().Public.KID); err != nil {
		t.Fatal(err)
	}
	env.jwksDown.Store(true)
	return env
}

// client is an agent library client for the jwks_uri agent; the request contexts bound
// each step.
func (env *outageEnv) client() *http.Client {
	tr := &agent.Transport{Identity: agent.JWKSURI(env.agentSrv.signer, env.agentSrv.id), Dev: true, Discovery: env.disc,
		Logf: func(f string, a ...any) {
			env.mu.Lock()
			env.logs = append(env.logs, fmt.Sprintf(f, a...))
			env.mu.Unlock()
		}}
	c := agentClient(tr)
	c.Timeout = 0
	return c
}

func (env *outageEnv) get(t *testing.T, c *http.Client, within time.Duration) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.apiID+"/data", nil)
	return do(t, c, req)
}

// TestOutageAuthServerJWKS: the auth server's JWKS cannot be fetched and the gateway has
// no copy. The gateway answers 503 temporarily_unavailable with Retry-After (not 401
// invalid_auth_token) and logs one Warn line; the agent library keeps its auth token and
// retries the request after Retry-After, asking the auth server for a token only once;
// once the JWKS is back the same token goes through. Then the auth server replaces its
// key under the same kid: a token signed with the new key is accepted within 2 s.
func TestOutageAuthServerJWKS(t *testing.T) {
	env := startOutage(t)
	client := env.client()

	// The outage: the library retries after Retry-After within the request's deadline,
	// then hands the 503 back.
	start := time.Now()
	r := env.get(t, client, 4*time.Second).mustStatus(t, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" || r.errorCode(t) != "temporarily_unavailable" ||
		!strings.Contains(string(r.body), "the auth server's JWKS could not be fetched") {
		t.Fatalf("503 headers %v body %s", r.header, r.body)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the library gave up after %s without backing off", took)
	}
	if n := env.as.Hits(); n != 1 || env.backend.hits.Load() != 0 {
		t.Fatalf("%d token requests during the outage (want 1), backend hits %d", n, env.backend.hits.Load())
	}
	// A second request during the outage: the cached token, no new token request.
	env.get(t, client, 2*time.Second).mustStatus(t, http.StatusServiceUnavailable)
	if n := env.as.Hits(); n != 1 {
		t.Fatalf("%d token requests after a second request, want 1", n)
	}
	if got := outageLines(t, env.logFile); len(got) != 1 {
		t.Fatalf("%d Warn lines about the outage, want 1: %v", len(got), got)
	} else if got[0]["level"] != "warn" || got[0]["issuer"] != env.as.ID {
		t.Fatalf("Warn line %v", got[0])
	}
	if fetches := env.jwksHits.Load(); fetches > 8 {
		t.Errorf("the gateway fetched the JWKS %d times during the outage", fetches)
	}

	// Recovery: the same auth token goes through once the JWKS is back.
	env.jwksDown.Store(false)
	r = env.get(t, client, 30*time.Second).mustStatus(t, http.StatusOK)
	if r.backendHeader("X-Aauth-Level") != "authorized" || env.as.Hits() != 1 {
		t.Fatalf("after recovery: level %q, %d token requests", r.backendHeader("X-Aauth-Level"), env.as.Hits())
	}
	env.mu.Lock()
	agentLog := strings.Join(env.logs, "\n")
	env.mu.Unlock()
	if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(agentLog) {
		t.Fatalf("the agent log holds a token:\n%s", agentLog)
	}

	t.Run("key replaced under the same kid is accepted within 2 s", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond) // the gateway's JWKS copy is no longer brand new
		next, err := keys.Generate(keys.AlgEd25519, env.as.Signer().Public.KID)
		if err != nil {
			t.Fatal(err)
		}
		env.as.ReplaceKey(next)
		replaced := time.Now()
		env.get(t, env.client(), 2*time.Second).mustStatus(t, http.StatusOK) // a new client: no cached token
		if took := time.Since(replaced); took > 2*time.Second {
			t.Fatalf("accepted after %s", took)
		}
		if env.as.Hits() != 2 {
			t.Fatalf("%d token requests, want 2", env.as.Hits())
		}
	})
}

// TestOutageAgentJWKS: on an identity route, an agent server that cannot be reached (and
// was never fetched) is a 503 temporarily_unavailable naming the agent's metadata, with
// Retry-After and one Warn line, not 401 unknown_key; an agent server that answers 404
// is still a 401.
func TestOutageAgentJWKS(t *testing.T) {
	env := startOutage(t)
	gone := newAgentServer(t)
	gone.Close()
	tr := &agent.Transport{Identity: agent.JWKSURI(gone.signer, gone.id), Dev: true}
	c := agentClient(tr)
	c.Timeout = 0
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.apiID+"/ident/data", nil)
	r := do(t, c, req).mustStatus(t, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" || r.errorCode(t) != "temporarily_unavailable" ||
		!strings.Contains(string(r.body), "the agent's metadata could not be fetched") {
		t.Fatalf("503 headers %v body %s", r.header, r.body)
	}
	if got := outageLines(t, env.logFile); len(got) != 1 || got[0]["issuer"] != gone.id {
		t.Fatalf("Warn lines %v", got)
	}
	// An agent whose server answers, but not with metadata, is a bad identity.
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	tr = &agent.Transport{Identity: agent.JWKSURI(gone.signer, notFound.URL), Dev: true}
	r = get(t, agentClient(tr), env.apiID+"/ident/data").mustStatus(t, http.StatusUnauthorized)
	if r.errorCode(t) != "unknown_key" {
		t.Fatalf("body %s", r.body)
	}
	if env.backend.hits.Load() != 0 {
		t.Fatal("the backend was reached")
	}
}
