package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/certmagic"
	"github.com/dunglas/httpsfv"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// The APIs and the auth server run in one Caddy. Their identifiers are loopback origins
// (so the config runs with the dev switch) on ports picked per test: every test gets new
// keys in new storage, and a fresh origin keeps one test's cached JWKS out of the next.
type authzEnv struct {
	backend  *echoBackend
	agentSrv *agentServer
	badAgent *agentServer
	storage  string
	apiID    string
	authID   string
	api2ID   string
	readURL  string
}

func authzConfig(env *authzEnv) string {
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	storage file_system %s
	aauth {
		dev
	}
}

%s {
	aauth /read/* {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
		scope_description data.read "Read your data"
		txn
	}
	aauth /write/* {
		require auth-token
		resource %s
		auth_server %s
		scope data.read data.write
		scope_description data.write "Change your data"
	}
	reverse_proxy %s
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

%s {
	aauth_server {
		issuer %s
		token_lifetime 10m
		policy {
			deny agent %s
			allow scope data.read
			default deny
		}
	}
}
`, env.storage, env.apiID, env.apiID, env.authID, env.apiID, env.authID, env.backend.addr(),
		env.api2ID, env.api2ID, env.authID, env.backend.addr(),
		env.authID, env.authID, env.badAgent.id)
}

func startAuthz(t *testing.T) *authzEnv {
	env := &authzEnv{backend: newEchoBackend(t), agentSrv: newAgentServer(t), badAgent: newAgentServer(t), storage: storageDir(t)}
	env.apiID = "http://localhost:" + freePort(t)
	env.authID = "http://127.0.0.1:" + freePort(t)
	env.api2ID = "http://localhost:" + freePort(t)
	env.readURL = env.apiID + "/read/data"
	caddytest.NewTester(t).InitServer(authzConfig(env), "caddyfile")
	return env
}

// asSigner reads the auth server's signing key from the test's storage, so tests can
// mint tokens that are authentic but wrong in exactly one way.
func (env *authzEnv) asSigner(t *testing.T) *keys.Signer {
	t.Helper()
	s, err := keystore.NewKey(&certmagic.FileStorage{Path: env.storage}, keystore.LayoutOf(keystore.RoleIssuer, env.authID), keys.AlgEd25519).Signer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (env *authzEnv) identity() *agent.Credential {
	return agent.JWKSURI(env.agentSrv.signer, env.agentSrv.id)
}

func authzClient(cred *agent.Credential) *http.Client {
	return agentClient(&agent.Transport{Identity: cred, Dev: true})
}

// signedWith sends a GET signed with cred and nothing else (no token flow).
func signedWith(t *testing.T, cred *agent.Credential, url string) result {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	var opts httpsig.SignOptions
	if strings.Contains(url, "/pending/") {
		// The pending URL accepts each signed message once, and these tests poll more
		// than once a second (created has whole seconds): cover a fresh value.
		req.Header.Set("X-Test-Nonce", strconv.FormatInt(testNonce.Add(1), 10))
		opts.Extra = []string{"x-test-nonce"}
	}
	if err := httpsig.Sign(req, cred.Signer, cred.SigKey(), opts); err != nil {
		t.Fatal(err)
	}
	return do(t, plainClient(), req)
}

var testNonce atomic.Int64

func parseAAuth(t *testing.T, v string) (require string, params map[string]string) {
	t.Helper()
	d, err := httpsfv.UnmarshalDictionary([]string{v})
	if err != nil {
		t.Fatalf("AAuth %q is not a structured dictionary: %v", v, err)
	}
	m, ok := d.Get("require")
	if !ok {
		t.Fatalf("AAuth %q has no require", v)
	}
	item := m.(httpsfv.Item)
	params = map[string]string{}
	for _, n := range item.Params.Names() {
		pv, _ := item.Params.Get(n)
		params[n], _ = pv.(string)
	}
	return string(item.Value.(httpsfv.Token)), params
}

func TestAuthTokenFlow(t *testing.T) {
	env := startAuthz(t)

	t.Run("identified request gets a resource token challenge", func(t *testing.T) {
		before := env.backend.hits.Load()
		r := signedWith(t, env.identity(), env.readURL).mustStatus(t, 401)
		req, params := parseAAuth(t, r.header.Get("AAuth"))
		if req != "auth-token" || params["auth-server"] != env.authID || params["resource-token"] == "" {
			t.Fatalf("challenge %q", r.header.Get("AAuth"))
		}
		rt, err := token.Parse(params["resource-token"], token.TypResource)
		if err != nil {
			t.Fatal(err)
		}
		c := rt.Claims
		if c.Issuer != env.apiID || !c.Audience.Contains(env.authID) || c.Agent != env.agentSrv.id || c.AgentJKT != env.agentSrv.signer.Public.Thumbprint || c.Scope != "data.read" || c.Txn == "" {
			t.Fatalf("resource token claims %+v", c)
		}
		if c.Expiry-c.IssuedAt != 300 {
			t.Fatalf("resource token lifetime %d", c.Expiry-c.IssuedAt)
		}
		if env.backend.hits.Load() != before {
			t.Fatal("backend reached")
		}
	})

	t.Run("unsigned and hwk requests are asked for identity", func(t *testing.T) {
		r := get(t, plainClient(), env.readURL).mustStatus(t, 401)
		if r.header.Get("AAuth") != "require=identity" {
			t.Fatalf("AAuth %q", r.header.Get("AAuth"))
		}
		cred, _ := hwkCredential(t)
		r = signedWith(t, cred, env.readURL).mustStatus(t, 401)
		if r.header.Get("AAuth") != "require=identity" {
			t.Fatalf("AAuth %q", r.header.Get("AAuth"))
		}
	})

	t.Run("agent library obtains a token and the backend sees the authorization", func(t *testing.T) {
		c := authzClient(env.identity())
		r := get(t, c, env.readURL).mustStatus(t, 200)
		if r.backendHeader("X-Aauth-Level") != "authorized" || r.backendHeader("X-Aauth-Agent") != env.agentSrv.id ||
			r.backendHeader("X-Aauth-Scope") != "data.read" || r.backendHeader("X-Aauth-Issuer") != env.authID ||
			r.backendHeader("X-Aauth-Scheme") != "jwt" || r.backendHeader("X-Aauth-Txn") == "" {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
		// A second request reuses the cached token.
		get(t, c, env.readURL+"?again=1").mustStatus(t, 200)
	})

	t.Run("delegate agent token carries agent_delegate", func(t *testing.T) {
		cred, _ := env.agentSrv.delegate(t, "delegate-7")
		r := get(t, authzClient(cred), env.readURL).mustStatus(t, 200)
		if r.backendHeader("X-Aauth-Delegate") != "delegate-7" || r.backendHeader("X-Aauth-Agent") != env.agentSrv.id {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
	})

	t.Run("resource metadata and JWKS are published on the API site", func(t *testing.T) {
		r := get(t, plainClient(), env.apiID+"/.well-known/aauth-resource.json")
		r.mustStatus(t, 200)
		var md map[string]any
		_ = json.Unmarshal(r.body, &md)
		if md["resource"] != env.apiID || md["jwks_uri"] != env.apiID+"/.well-known/aauth-resource/jwks.json" {
			t.Fatalf("metadata %s", r.body)
		}
		// Both routes of the resource are described, whichever route serves the document.
		descs, _ := md["scope_descriptions"].(map[string]any)
		if descs["data.read"] != "Read your data" || descs["data.write"] != "Change your data" {
			t.Fatalf("scope_descriptions %v", descs)
		}
		get(t, plainClient(), env.apiID+"/.well-known/aauth-resource/jwks.json").mustStatus(t, 200)
		get(t, plainClient(), env.authID+"/.well-known/aauth-issuer.json").mustStatus(t, 200)
	})
}

// mintAuth mints an auth token with the real AS key, changed by mod.
func (env *authzEnv) mintAuth(t *testing.T, s *keys.Signer, key *keys.PublicKey, mod func(*token.Claims)) string {
	t.Helper()
	now := time.Now()
	c := token.Claims{
		Issuer: env.authID, Audience: token.Audience{env.apiID}, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(10 * time.Minute).Unix(),
		Agent: env.agentSrv.id, Scope: "data.read",
		Confirmation: &token.Confirmation{JWK: key.Members()},
	}
	if mod != nil {
		mod(&c)
	}
	tok, err := token.Mint(s, token.TypAuth, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthTokenRejections(t *testing.T) {
	env := startAuthz(t)
	as := env.asSigner(t)
	agentKey := env.agentSrv.signer
	withToken := func(tok string, signer *keys.Signer) *agent.Credential {
		return agent.Delegate(signer, tok)
	}
	evil := newCountingServer(t)
	evilKey, _ := keys.Generate(keys.AlgEd25519, "evil")
	cases := []struct {
		name      string
		cred      func() *agent.Credential
		url       string
		require   string
		errorCode string
	}{
		{"control: a good token passes", func() *agent.Credential {
			return withToken(env.mintAuth(t, as, agentKey.Public, nil), agentKey)
		}, env.readURL, "", ""},
		{"token for another audience", func() *agent.Credential {
			return withToken(env.mintAuth(t, as, agentKey.Public, func(c *token.Claims) { c.Audience = token.Audience{env.api2ID} }), agentKey)
		}, env.readURL, "auth-token", "invalid_auth_token"},
		{"token bound to another key", func() *agent.Credential {
			other, _ := keys.Generate(keys.AlgEd25519, "")
			return withToken(env.mintAuth(t, as, other.Public, nil), agentKey)
		}, env.readURL, "identity", "key_binding_failed"},
		{"expired token", func() *agent.Credential {
			return withToken(env.mintAuth(t, as, agentKey.Public, func(c *token.Claims) {
				c.IssuedAt, c.Expiry = time.Now().Add(-20*time.Minute).Unix(), time.Now().Add(-10*time.Minute).Unix()
			}), agentKey)
		}, env.readURL, "auth-token", "invalid_auth_token"},
		{"missing route scope", func() *agent.Credential {
			return withToken(env.mintAuth(t, as, agentKey.Public, nil), agentKey)
		}, env.apiID + "/write/x", "auth-token", "insufficient_scope"},
		{"issuer not on the allow-list", func() *agent.Credential {
			return withToken(env.mintAuth(t, evilKey, agentKey.Public, func(c *token.Claims) { c.Issuer = evil.URL }), agentKey)
		}, env.readURL, "identity", "invalid_auth_token"},
		{"token signed by another key under the AS's name", func() *agent.Credential {
			forged, _ := keys.Generate(keys.AlgEd25519, "")
			forged.Public.KID = as.Public.KID
			return withToken(env.mintAuth(t, forged, agentKey.Public, nil), agentKey)
		}, env.readURL, "identity", "invalid_auth_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := env.backend.hits.Load()
			r := signedWith(t, c.cred(), c.url)
			if c.require == "" {
				r.mustStatus(t, 200)
				return
			}
			r.mustStatus(t, 401)
			req, params := parseAAuth(t, r.header.Get("AAuth"))
			if req != c.require || (c.require == "auth-token" && params["resource-token"] == "") {
				t.Fatalf("AAuth %q, want require=%s", r.header.Get("AAuth"), c.require)
			}
			if got := r.errorCode(t); got != c.errorCode {
				t.Fatalf("error %q, want %q (%s)", got, c.errorCode, r.body)
			}
			if env.backend.hits.Load() != before {
				t.Fatal("backend reached by a rejected request")
			}
		})
	}
	if n := evil.hits.Load(); n != 0 {
		t.Fatalf("the untrusted issuer was contacted %d times", n)
	}
	// Each refusal moved the verdicts counter of its code on the admin /metrics.
	want := map[string]float64{}
	for _, c := range cases {
		code := c.errorCode
		if code == "" {
			code = "ok"
		}
		want[code]++
	}
	m := scrape(t)
	for code, n := range want {
		if got := verdictsOf(m, code); got < n {
			t.Errorf("caddy_aauth_verdicts_total{code=%q} sums to %v, want at least %v", code, got, n)
		}
	}
}

// verdictsOf sums caddy_aauth_verdicts_total over every series of one code.
func verdictsOf(exposition, code string) float64 {
	sum := 0.0
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, "caddy_aauth_verdicts_total{") && strings.Contains(l, `code="`+code+`"`) {
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// tokenRequest posts a signed token request to the auth server.
func (env *authzEnv) tokenRequest(t *testing.T, cred *agent.Credential, body map[string]string) result {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", env.authID+"/token", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	httpsig.SetContentDigest(req, b)
	if err := httpsig.Sign(req, cred.Signer, cred.SigKey(), httpsig.SignOptions{Extra: []string{"content-type", "content-digest"}}); err != nil {
		t.Fatal(err)
	}
	return do(t, plainClient(), req)
}

// challengeFor returns a fresh resource token minted by the gateway for cred.
func challengeFor(t *testing.T, cred *agent.Credential, url string) string {
	t.Helper()
	r := signedWith(t, cred, url).mustStatus(t, 401)
	_, params := parseAAuth(t, r.header.Get("AAuth"))
	if params["resource-token"] == "" {
		t.Fatalf("no resource token in %q", r.header.Get("AAuth"))
	}
	return params["resource-token"]
}

func TestTokenEndpointRejections(t *testing.T) {
	env := startAuthz(t)
	id := env.identity()

	t.Run("a resource token is accepted once", func(t *testing.T) {
		rt := challengeFor(t, id, env.readURL)
		env.tokenRequest(t, id, map[string]string{"resource_token": rt}).mustStatus(t, 200)
		r := env.tokenRequest(t, id, map[string]string{"resource_token": rt}).mustStatus(t, 400)
		if r.errorCode(t) != "invalid_resource_token" {
			t.Fatalf("replay: %s", r.body)
		}
	})

	t.Run("agent_jkt must match the key that signs the token request", func(t *testing.T) {
		rt := challengeFor(t, id, env.readURL)
		// The same agent's delegate (another key) presents the agent's resource token.
		del, _ := env.agentSrv.delegate(t, "delegate-x")
		r := env.tokenRequest(t, del, map[string]string{"resource_token": rt}).mustStatus(t, 400)
		if r.errorCode(t) != "invalid_resource_token" || !strings.Contains(string(r.body), "agent_jkt") {
			t.Fatalf("%s", r.body)
		}
	})

	t.Run("resource token signed by a key not in the resource's JWKS", func(t *testing.T) {
		rt := challengeFor(t, id, env.readURL)
		parsed, _ := token.Parse(rt, token.TypResource)
		forged, _ := keys.Generate(keys.AlgEd25519, "")
		forged.Public.KID = parsed.Header.Kid
		fake, err := token.Mint(forged, token.TypResource, parsed.Claims)
		if err != nil {
			t.Fatal(err)
		}
		r := env.tokenRequest(t, id, map[string]string{"resource_token": fake}).mustStatus(t, 400)
		if r.errorCode(t) != "invalid_resource_token" {
			t.Fatalf("%s", r.body)
		}
	})

	t.Run("policy deny", func(t *testing.T) {
		bad := agent.JWKSURI(env.badAgent.signer, env.badAgent.id)
		rt := challengeFor(t, bad, env.readURL)
		r := env.tokenRequest(t, bad, map[string]string{"resource_token": rt}).mustStatus(t, 403)
		if r.errorCode(t) != "denied" {
			t.Fatalf("%s", r.body)
		}
		// The agent library surfaces the refusal.
		resp, err := authzClient(bad).Get(env.readURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("a denied agent reached the backend")
			}
		}
	})

	t.Run("hwk cannot use the token endpoint", func(t *testing.T) {
		rt := challengeFor(t, id, env.readURL)
		cred, _ := hwkCredential(t)
		r := env.tokenRequest(t, cred, map[string]string{"resource_token": rt}).mustStatus(t, 401)
		if r.errorCode(t) != "invalid_signature" {
			t.Fatalf("%s", r.body)
		}
	})
}

// TestResourceTokenEndpoint: the proactive path (Part 2 §14.1): an identified agent asks
// the resource for a resource token for named scopes, then trades it at the auth server.
func TestResourceTokenEndpoint(t *testing.T) {
	env := startAuthz(t)
	id := env.identity()
	endpoint := env.apiID + "/.well-known/aauth-resource/token"
	post := func(cred *agent.Credential, body string) result {
		req, _ := http.NewRequest("POST", endpoint, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if err := httpsig.Sign(req, cred.Signer, cred.SigKey(), httpsig.SignOptions{}); err != nil {
			t.Fatal(err)
		}
		return do(t, plainClient(), req)
	}
	r := post(id, `{"scope":"data.read"}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out struct {
		ResourceToken string `json:"resource_token"`
		AuthServer    string `json:"auth_server"`
		Scope         string `json:"scope"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.AuthServer != env.authID || out.Scope != "data.read" {
		t.Fatalf("answer %s", r.body)
	}
	rt, err := token.Parse(out.ResourceToken, token.TypResource)
	if err != nil || rt.Claims.Agent != env.agentSrv.id || rt.Claims.AgentJKT != env.agentSrv.signer.Public.Thumbprint {
		t.Fatalf("resource token %v %+v", err, rt)
	}
	// It is good at the auth server.
	env.tokenRequest(t, id, map[string]string{"resource_token": out.ResourceToken}).mustStatus(t, 200)

	if r := post(id, `{"scope":"data.admin"}`); r.status != 400 || r.errorCode(t) != "invalid_scope" {
		t.Fatalf("unknown scope: %d %s", r.status, r.body)
	}
	cred, _ := hwkCredential(t)
	if r := post(cred, `{"scope":"data.read"}`); r.status != 401 || r.header.Get("AAuth") != "require=identity" {
		t.Fatalf("hwk: %d %s", r.status, r.body)
	}
	if r := get(t, plainClient(), endpoint); r.status != 405 {
		t.Fatalf("GET: %d", r.status)
	}
}
