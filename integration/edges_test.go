package integration

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// edgesEnv is the authz environment plus one more API with the replay and lifetime
// options set explicitly.
type edgesEnv struct {
	*authzEnv
	edgeID string
}

func startEdges(t *testing.T) *edgesEnv {
	env := &authzEnv{backend: newEchoBackend(t), agentSrv: newAgentServer(t), badAgent: newAgentServer(t), storage: storageDir(t)}
	env.apiID = "http://localhost:" + freePort(t)
	env.authID = "http://127.0.0.1:" + freePort(t)
	env.api2ID = "http://localhost:" + freePort(t)
	env.readURL = env.apiID + "/read/data"
	e := &edgesEnv{authzEnv: env, edgeID: "http://localhost:" + freePort(t)}
	cfg := authzConfig(env) + fmt.Sprintf(`
%s {
	aauth /off/* {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
		replay off
	}
	aauth /ident/* {
		require identity
	}
	aauth /ident48/* {
		require identity
		max_token_lifetime 48h
	}
	aauth /all/* {
		require pseudonym
		replay all
	}
	reverse_proxy %s
}
`, e.edgeID, e.edgeID, env.authID, env.backend.addr())
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")
	return e
}

// signedReq signs a request with cred (no token flow); send clones of it to replay it.
func signedReq(t *testing.T, cred *agent.Credential, method, url string) *http.Request {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if err := httpsig.Sign(req, cred.Signer, cred.SigKey(), httpsig.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	return req
}

func (env *authzEnv) authCred(t *testing.T, aud string, mod func(*token.Claims)) *agent.Credential {
	t.Helper()
	key := env.agentSrv.signer
	return agent.Delegate(key, env.mintAuth(t, env.asSigner(t), key.Public, func(c *token.Claims) {
		c.Audience = token.Audience{aud}
		if mod != nil {
			mod(c)
		}
	}))
}

// TestReplayPolicies covers SECURITY-CASES C4 and C5 at the gateway: policy B (the
// default on auth-token routes, for unsafe methods) refuses a second use of a signed
// request within its window, concurrently too; policy A (replay off, and safe methods
// under the default) accepts it; replay all covers safe methods as well.
func TestReplayPolicies(t *testing.T) {
	e := startEdges(t)
	cred := e.authCred(t, e.apiID, nil)

	t.Run("B: default on an auth-token route refuses a replayed POST", func(t *testing.T) {
		req := signedReq(t, cred, "POST", e.apiID+"/read/x")
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 200)
		before := e.backend.hits.Load()
		r := do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 401)
		if code := r.errorCode(t); code != httpsig.CodeInvalidSignature {
			t.Fatalf("error %q", code)
		}
		if e.backend.hits.Load() != before {
			t.Fatal("backend reached by a replay")
		}
		// A freshly signed request (new created or other content) still passes.
		do(t, plainClient(), signedReq(t, cred, "DELETE", e.apiID+"/read/x")).mustStatus(t, 200)
	})
	t.Run("B: concurrent replays, exactly one reaches the backend", func(t *testing.T) {
		req := signedReq(t, cred, "PUT", e.apiID+"/read/concurrent")
		var ok, refused atomic.Int32
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := plainClient().Do(req.Clone(t.Context()))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 401:
					refused.Add(1)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || refused.Load() != 19 {
			t.Fatalf("ok=%d refused=%d", ok.Load(), refused.Load())
		}
	})
	t.Run("A: safe methods under the default may be resent", func(t *testing.T) {
		req := signedReq(t, cred, "GET", e.apiID+"/read/x")
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 200)
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 200)
	})
	t.Run("A: replay off accepts a resent POST within the window", func(t *testing.T) {
		edgeCred := e.authCred(t, e.edgeID, nil)
		req := signedReq(t, edgeCred, "POST", e.edgeID+"/off/x")
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 200)
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 200)
	})
	t.Run("replay all refuses a resent GET", func(t *testing.T) {
		hwk, _ := hwkCredential(t)
		req := signedReq(t, hwk, "GET", e.edgeID+"/all/x")
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 200)
		do(t, plainClient(), req.Clone(t.Context())).mustStatus(t, 401)
	})
}

// TestTokenLifetimeCap covers SECURITY-CASES E8 at the gateway: auth and agent tokens
// from a trusted issuer with a lifetime over the route's maximum (default 24h) are
// refused without reaching the backend; tokens within it pass.
func TestTokenLifetimeCap(t *testing.T) {
	e := startEdges(t)
	now := time.Now()
	span := func(iat time.Time, d time.Duration) func(*token.Claims) {
		return func(c *token.Claims) { c.IssuedAt, c.Expiry = iat.Unix(), iat.Add(d).Unix() }
	}
	agentTok := func(iat time.Time, d time.Duration) *agent.Credential {
		t.Helper()
		dk, _ := keys.Generate(keys.AlgEd25519, "")
		tok, err := token.Mint(e.agentSrv.signer, token.TypAgent, token.Claims{
			Issuer: e.agentSrv.id, Subject: "delegate-1", ID: token.NewID(),
			IssuedAt: iat.Unix(), Expiry: iat.Add(d).Unix(),
			Confirmation: &token.Confirmation{JWK: dk.Public.Members()},
		})
		if err != nil {
			t.Fatal(err)
		}
		return agent.Delegate(dk, tok)
	}
	cases := []struct {
		name string
		cred func() *agent.Credential
		url  string
		code string // "" = accepted
	}{
		{"auth token 23h", func() *agent.Credential { return e.authCred(t, e.apiID, span(now, 23*time.Hour)) }, e.readURL, ""},
		{"auth token 10 years", func() *agent.Credential { return e.authCred(t, e.apiID, span(now, 10*365*24*time.Hour)) }, e.readURL, "invalid_auth_token"},
		{"auth token 25h issued 2h ago (exp - now 23h, exp - iat 25h)", func() *agent.Credential {
			return e.authCred(t, e.apiID, span(now.Add(-2*time.Hour), 25*time.Hour))
		}, e.readURL, "invalid_auth_token"},
		{"auth token with iat 1970 and exp in 10 years", func() *agent.Credential {
			return e.authCred(t, e.apiID, func(c *token.Claims) { c.IssuedAt, c.Expiry = 1, now.Add(10*365*24*time.Hour).Unix() })
		}, e.readURL, "invalid_auth_token"},
		{"agent token 23h", func() *agent.Credential { return agentTok(now, 23*time.Hour) }, e.edgeID + "/ident/x", ""},
		{"agent token 10 years", func() *agent.Credential { return agentTok(now, 10*365*24*time.Hour) }, e.edgeID + "/ident/x", "invalid_agent_token"},
		{"agent token 25h", func() *agent.Credential { return agentTok(now, 25*time.Hour) }, e.edgeID + "/ident/x", "invalid_agent_token"},
		{"agent token 47h, route max 48h", func() *agent.Credential { return agentTok(now, 47*time.Hour) }, e.edgeID + "/ident48/x", ""},
		{"agent token 49h, route max 48h", func() *agent.Credential { return agentTok(now, 49*time.Hour) }, e.edgeID + "/ident48/x", "invalid_agent_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.backend.hits.Load()
			r := signedWith(t, c.cred(), c.url)
			if c.code == "" {
				r.mustStatus(t, 200)
				return
			}
			r.mustStatus(t, 401)
			if got := r.errorCode(t); got != c.code {
				t.Fatalf("error %q, want %q (%s)", got, c.code, r.body)
			}
			if e.backend.hits.Load() != before {
				t.Fatal("backend reached")
			}
		})
	}
}
