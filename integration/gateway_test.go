package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

const api = "http://api.localhost:9080"

// gatewayConfig protects /pseudo/* at the pseudonym level and /ident/* at the identity
// level in front of an unmodified echo backend. A rewrite runs before the handler so the
// tests prove the signature base uses the path as the agent sent it.
func gatewayConfig(t *testing.T, backend *echoBackend, dev bool) string {
	return globalOptions(t, dev) + fmt.Sprintf(`
http://api.localhost:9080 {
	rewrite /old/* /ident/moved
	aauth /pseudo/* {
		require pseudonym
	}
	aauth /ident/* {
		require identity
	}
	aauth /digest/* {
		require pseudonym
		require_components content-type content-digest
		max_body 1KiB
	}
	reverse_proxy %s
}
`, backend.addr())
}

func startGateway(t *testing.T, dev bool) (*caddytest.Tester, *echoBackend) {
	backend := newEchoBackend(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(gatewayConfig(t, backend, dev), "caddyfile")
	return tester, backend
}

func TestGatewayPseudonymAndIdentity(t *testing.T) {
	_, backend := startGateway(t, true)
	agentSrv := newAgentServer(t)

	t.Run("unsigned request is challenged for a pseudonym", func(t *testing.T) {
		before := backend.hits.Load()
		r := get(t, plainClient(), api+"/pseudo/data").mustStatus(t, http.StatusUnauthorized)
		if got := r.header.Get("AAuth"); got != "require=pseudonym" {
			t.Fatalf("AAuth = %q", got)
		}
		if r.header.Get("Cache-Control") != "no-store" || r.errorCode(t) != "invalid_request" {
			t.Fatalf("challenge headers/body wrong: %v %s", r.header, r.body)
		}
		if backend.hits.Load() != before {
			t.Fatal("backend was reached by an unsigned request")
		}
	})

	t.Run("hwk reaches the backend as a pseudonym", func(t *testing.T) {
		cred, s := hwkCredential(t)
		r := get(t, agentClient(&agent.Transport{Pseudonym: cred}), api+"/pseudo/data?x=1").mustStatus(t, 200)
		if r.backendHeader("X-Aauth-Level") != "pseudonym" || r.backendHeader("X-Aauth-Scheme") != "hwk" {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
		if r.backendHeader("X-Aauth-Key-Thumbprint") != s.Public.Thumbprint {
			t.Fatalf("thumbprint %q, want %q", r.backendHeader("X-Aauth-Key-Thumbprint"), s.Public.Thumbprint)
		}
		if r.backendHeader("X-Aauth-Agent") != "" {
			t.Fatal("an hwk request must not carry an agent id")
		}
	})

	t.Run("hwk on an identity route is challenged for identity", func(t *testing.T) {
		cred, _ := hwkCredential(t)
		r := get(t, agentClient(&agent.Transport{Pseudonym: cred}), api+"/ident/data").mustStatus(t, http.StatusUnauthorized)
		if got := r.header.Get("AAuth"); got != "require=identity" {
			t.Fatalf("AAuth = %q", got)
		}
	})

	t.Run("jwks_uri agent is identified", func(t *testing.T) {
		tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id)}
		r := get(t, agentClient(tr), api+"/ident/data").mustStatus(t, 200)
		if r.backendHeader("X-Aauth-Level") != "identity" || r.backendHeader("X-Aauth-Agent") != agentSrv.id || r.backendHeader("X-Aauth-Scheme") != "jwks_uri" {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
		if r.backendHeader("X-Aauth-Key-Thumbprint") != agentSrv.signer.Public.Thumbprint {
			t.Fatal("thumbprint of the agent key not forwarded")
		}
	})

	t.Run("pseudonym first, then step up to identity on require=identity", func(t *testing.T) {
		cred, _ := hwkCredential(t)
		tr := &agent.Transport{Pseudonym: cred, Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id), PreferPseudonym: true}
		r := get(t, agentClient(tr), api+"/ident/stepup").mustStatus(t, 200)
		if r.backendHeader("X-Aauth-Agent") != agentSrv.id {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
	})

	t.Run("delegate with an agent token", func(t *testing.T) {
		cred, d := agentSrv.delegate(t, "delegate-1")
		r := get(t, agentClient(&agent.Transport{Identity: cred}), api+"/ident/data").mustStatus(t, 200)
		if r.backendHeader("X-Aauth-Agent") != agentSrv.id || r.backendHeader("X-Aauth-Delegate") != "delegate-1" || r.backendHeader("X-Aauth-Scheme") != "jwt" {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
		if r.backendHeader("X-Aauth-Key-Thumbprint") != d.Public.Thumbprint {
			t.Fatal("the delegate key's thumbprint was not forwarded")
		}
	})

	t.Run("agent token used with another key is refused", func(t *testing.T) {
		cred, _ := agentSrv.delegate(t, "delegate-2")
		other, _ := keys.Generate(keys.AlgEd25519, "")
		stolen := agent.Delegate(other, cred.AgentToken)
		r := get(t, agentClient(&agent.Transport{Identity: stolen}), api+"/ident/data").mustStatus(t, http.StatusUnauthorized)
		if r.errorCode(t) != "key_binding_failed" {
			t.Fatalf("error %q", r.errorCode(t))
		}
	})

	t.Run("forged identity headers never reach the backend", func(t *testing.T) {
		cred, _ := hwkCredential(t)
		forged := []string{"X-Aauth-Agent", "https://admin.example", "X-AAuth-Level", "authorized", "X_Aauth_Subject", "root", "X-Aauth-Scope", "admin"}
		r := get(t, agentClient(&agent.Transport{Pseudonym: cred}), api+"/pseudo/data", forged...).mustStatus(t, 200)
		for k, v := range r.echo.Header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-aauth") || strings.HasPrefix(lk, "x_aauth") {
				if strings.Contains(strings.Join(v, ","), "admin") || strings.Contains(strings.Join(v, ","), "root") || v[0] == "authorized" {
					t.Fatalf("forged header reached the backend: %s: %v", k, v)
				}
			}
		}
		if r.backendHeader("X-Aauth-Level") != "pseudonym" || r.backendHeader("X-Aauth-Agent") != "" {
			t.Fatalf("backend saw %v", r.echo.Header)
		}
	})

	t.Run("forged identity headers are stripped on paths no aauth route covers", func(t *testing.T) {
		r := get(t, plainClient(), api+"/public/page", "X-Aauth-Agent", "https://admin.example", "X_Aauth_Level", "authorized").mustStatus(t, 200)
		for k := range r.echo.Header {
			if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-aauth") || strings.HasPrefix(lk, "x_aauth") {
				t.Fatalf("forged %s reached the backend on an unprotected path", k)
			}
		}
	})

	t.Run("rewrite before the handler does not change the signed path", func(t *testing.T) {
		tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id)}
		r := get(t, agentClient(tr), api+"/old/thing").mustStatus(t, 200)
		if r.echo.Path != "/ident/moved" {
			t.Fatalf("backend path %q", r.echo.Path)
		}
	})
}

// signed builds a request signed with s as hwk, for tests that tamper with it afterwards.
func signed(t *testing.T, method, url string, s *keys.Signer, opts httpsig.SignOptions) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := httpsig.Sign(req, s, agent.HWK(s).SigKey(), opts); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestGatewayRejectsTampering(t *testing.T) {
	_, backend := startGateway(t, true)
	s, _ := keys.Generate(keys.AlgEd25519, "")
	cases := []struct {
		name   string
		build  func() *http.Request
		status int
	}{
		{"untouched control", func() *http.Request { return signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{}) }, 200},
		{"path changed", func() *http.Request {
			r := signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{})
			r.URL.Path = "/pseudo/b"
			return r
		}, 401},
		{"method changed", func() *http.Request {
			r := signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{})
			r.Method = "DELETE"
			return r
		}, 401},
		{"authority changed", func() *http.Request {
			r := signed(t, "GET", "http://other.localhost:9080/pseudo/a", s, httpsig.SignOptions{})
			r.URL.Host, r.Host = "api.localhost:9080", "api.localhost:9080"
			return r
		}, 401},
		{"query added", func() *http.Request {
			r := signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{})
			r.URL.RawQuery = "admin=1"
			return r
		}, 401},
		{"created too old", func() *http.Request {
			return signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{Created: time.Now().Add(-2 * time.Minute)})
		}, 401},
		{"created in the future", func() *http.Request {
			return signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{Created: time.Now().Add(2 * time.Minute)})
		}, 401},
		{"expired", func() *http.Request {
			return signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{Created: time.Now().Add(-10 * time.Second), Expires: time.Now().Add(-5 * time.Second)})
		}, 401},
		{"signature bit flipped", func() *http.Request {
			r := signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{})
			v := r.Header.Get("Signature")
			b := []byte(v)
			if b[10] == 'A' {
				b[10] = 'B'
			} else {
				b[10] = 'A'
			}
			r.Header.Set("Signature", string(b))
			return r
		}, 401},
		{"signature-key swapped for another hwk key", func() *http.Request {
			r := signed(t, "GET", api+"/pseudo/a", s, httpsig.SignOptions{})
			other, _ := keys.Generate(keys.AlgEd25519, "")
			r.Header.Set("Signature-Key", agent.HWK(other).SigKey().Format(false))
			return r
		}, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := backend.hits.Load()
			r := do(t, plainClient(), c.build())
			r.mustStatus(t, c.status)
			if c.status == 401 {
				if r.header.Get("AAuth") != "require=pseudonym" {
					t.Fatalf("AAuth = %q", r.header.Get("AAuth"))
				}
				if backend.hits.Load() != before {
					t.Fatal("backend reached by a rejected request")
				}
			}
		})
	}
}

func TestGatewayContentDigest(t *testing.T) {
	_, backend := startGateway(t, true)
	s, _ := keys.Generate(keys.AlgECDSAP256, "")
	post := func(body, sent string, cover bool) *http.Request {
		req, _ := http.NewRequest("POST", api+"/digest/x", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		opts := httpsig.SignOptions{}
		if cover {
			httpsig.SetContentDigest(req, []byte(body))
			opts.Extra = []string{"content-type", "content-digest"}
		}
		if err := httpsig.Sign(req, s, agent.HWK(s).SigKey(), opts); err != nil {
			t.Fatal(err)
		}
		req.Body = ioNop(sent)
		req.ContentLength = int64(len(sent))
		return req
	}
	r := do(t, plainClient(), post(`{"a":1}`, `{"a":1}`, true)).mustStatus(t, 200)
	if r.echo.Body != `{"a":1}` {
		t.Fatalf("backend body %q", r.echo.Body)
	}
	before := backend.hits.Load()
	if r := do(t, plainClient(), post(`{"a":1}`, `{"a":2}`, true)); r.status != 401 {
		t.Fatalf("tampered body: status %d", r.status)
	}
	if r := do(t, plainClient(), post(`{"a":1}`, `{"a":1}`, false)); r.status != 401 || !strings.Contains(string(r.body), "content-digest") {
		t.Fatalf("uncovered digest: status %d %s", r.status, r.body)
	}
	big := strings.Repeat("x", 2048)
	if r := do(t, plainClient(), post(big, big, true)); r.status != 413 {
		t.Fatalf("oversized body: status %d", r.status)
	}
	if backend.hits.Load() != before {
		t.Fatal("backend reached by a rejected request")
	}
}

// TestChallengeHeaderSpelling reads the raw HTTP/1.1 response to check the header is
// sent as "AAuth", exactly as PROTOCOL.md spells it.
func TestChallengeHeaderSpelling(t *testing.T) {
	startGateway(t, true)
	conn, err := net.Dial("tcp", "127.0.0.1:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ident/x HTTP/1.1\r\nHost: api.localhost:9080\r\nConnection: close\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	sc := bufio.NewScanner(conn)
	found := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if strings.HasPrefix(line, "AAuth: ") {
			found = line == "AAuth: require=identity"
		}
	}
	if !found {
		t.Fatal("no `AAuth: require=identity` line in the raw response")
	}
}

// TestPrivateAgentIDRefusedWithoutDev: without the dev switch an agent that claims an id
// on a loopback address is refused, and no connection is made to it.
func TestPrivateAgentIDRefusedWithoutDev(t *testing.T) {
	_, backend := startGateway(t, false)
	agentSrv := newAgentServer(t) // http://127.0.0.1:<port>
	counting := listenCounting(t, "127.0.0.1:443")
	ids := []string{agentSrv.id, "https://localhost", "https://127.0.0.1", "https://[::1]"}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			before := backend.hits.Load()
			tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, id)}
			r := get(t, agentClient(tr), api+"/ident/data").mustStatus(t, http.StatusUnauthorized)
			if r.header.Get("AAuth") != "require=identity" {
				t.Fatalf("AAuth = %q", r.header.Get("AAuth"))
			}
			if backend.hits.Load() != before {
				t.Fatal("backend reached")
			}
		})
	}
	if n := agentSrv.hits.Load(); n != 0 {
		t.Fatalf("the agent server on loopback was contacted %d times", n)
	}
	if counting != nil && counting.accepted() != 0 {
		t.Fatalf("%d connections reached 127.0.0.1:443", counting.accepted())
	}
}

// TestGatewayCoveredDigestAlwaysChecked: a signature that covers content-digest on a
// route that does not demand it (SECURITY-CASES H11) still binds the body. Resending
// the signed headers with another body within the window is refused, and the backend
// is not reached; the untouched request passes with its body intact.
func TestGatewayCoveredDigestAlwaysChecked(t *testing.T) {
	_, backend := startGateway(t, true)
	s, _ := keys.Generate(keys.AlgEd25519, "")
	post := func(path, body, sent string) *http.Request {
		req, _ := http.NewRequest("POST", api+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		httpsig.SetContentDigest(req, []byte(body))
		opts := httpsig.SignOptions{Extra: []string{"content-type", "content-digest"}}
		if err := httpsig.Sign(req, s, agent.HWK(s).SigKey(), opts); err != nil {
			t.Fatal(err)
		}
		req.Body = ioNop(sent)
		req.ContentLength = int64(len(sent))
		return req
	}
	for _, path := range []string{"/pseudo/x", "/ident/x"} {
		t.Run(path, func(t *testing.T) {
			if path == "/ident/x" {
				// hwk is refused at the identity level before the body matters; the
				// point is that nothing reaches the backend either way.
				before := backend.hits.Load()
				do(t, plainClient(), post(path, `{"amount":1}`, `{"amount":1000}`)).mustStatus(t, 401)
				if backend.hits.Load() != before {
					t.Fatal("backend reached")
				}
				return
			}
			r := do(t, plainClient(), post(path, `{"amount":1}`, `{"amount":1}`)).mustStatus(t, 200)
			if r.echo.Body != `{"amount":1}` {
				t.Fatalf("backend body %q", r.echo.Body)
			}
			before := backend.hits.Load()
			r = do(t, plainClient(), post(path, `{"amount":1}`, `{"amount":1000}`)).mustStatus(t, 401)
			if code := r.errorCode(t); code != httpsig.CodeInvalidSignature {
				t.Fatalf("error %q", code)
			}
			if backend.hits.Load() != before {
				t.Fatal("backend reached by a request whose body does not match its signed digest")
			}
			// Over the default max_body (1 MiB) with a covered digest: 413, not forwarded.
			big := strings.Repeat("x", 1<<20+1)
			do(t, plainClient(), post(path, big, big)).mustStatus(t, 413)
			if backend.hits.Load() != before {
				t.Fatal("backend reached by an oversized body")
			}
		})
	}
}
