package authserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

const consentScope = "needs.consent"

var (
	usersOnce sync.Once
	allUsers  []User
)

// testUsers are alice, bob and user00…user49; the password of each is "<name>-pw".
// Hashes use bcrypt's minimum cost so the tests stay fast.
func testUsers(t testing.TB) []User {
	usersOnce.Do(func() {
		names := []string{"alice", "bob"}
		for i := range 50 {
			names = append(names, fmt.Sprintf("user%02d", i))
		}
		for _, n := range names {
			h, err := bcrypt.GenerateFromPassword([]byte(n+"-pw"), bcrypt.MinCost)
			if err != nil {
				panic(err)
			}
			allUsers = append(allUsers, User{Name: n, Hash: string(h)})
		}
	})
	return allUsers
}

// consentEnv is an env whose resource describes its scopes, whose handler is also served
// over HTTPS for browser-style tests, and which has a second agent (for key-binding
// tests) and a clarification-capable agent.
type consentEnv struct {
	*env
	srv      *httptest.Server
	other    *origin // another agent with its own key
	chatty   *origin // an agent that declares clarification_supported and callbacks
	userFrom string  // user the wrapper puts in {http.auth.user.id}, for user_from tests
	mu       sync.Mutex
}

func newConsentEnv(t *testing.T, cfg *Handler) *consentEnv {
	t.Helper()
	e := &env{t: t, store: newTestStorage(t)}
	e.clock.Store(testNow.Unix())
	e.client = discovery.New(discovery.Config{Dev: true})
	t.Cleanup(e.client.Close)
	e.resource = newOriginWith(t, "aauth-resource", "resource", "res-key-1", map[string]any{
		"scope_descriptions": map[string]any{consentScope: "Read and change your calendar", "data.read": "Read your data"},
	})
	e.agent = newOrigin(t, "aauth-agent", "agent", "agent-key-1")
	c := &consentEnv{env: e}
	c.other = newOrigin(t, "aauth-agent", "agent", "other-key-1")
	c.chatty = newOriginWith(t, "aauth-agent", "agent", "chatty-key-1", map[string]any{
		"clarification_supported":    true,
		"localhost_callback_allowed": true,
		"client_name":                "Chatty <Assistant>",
	})
	c.chatty.extra["callback_endpoint"] = c.chatty.ID + "/callback"
	h := Handler{Issuer: testIssuer, Policy: testPolicy()}
	if cfg != nil {
		h = *cfg
	}
	e.h = e.handler(h, e.store)
	c.serve(e.h)
	return c
}

// serve (re)points the HTTPS test server at h.
func (c *consentEnv) serve(h *Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.env.h = h
	if c.srv != nil {
		return
	}
	c.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		h, user := c.env.h, c.userFrom
		c.mu.Unlock()
		repl := caddy.NewReplacer()
		if user != "" {
			repl.Set("http.auth.user.id", user)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusTeapot)
			return nil
		}))
		if err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	c.t.Cleanup(c.srv.Close)
}

// tokenRequest posts a resource token for scope, signed by agent a, and returns the
// answer.
func (c *consentEnv) tokenRequest(a *origin, scope, purpose string) result {
	c.t.Helper()
	claims := c.rtClaims()
	claims.Agent, claims.AgentJKT, claims.Scope = a.ID, a.Signer.Public.Thumbprint, scope
	raw := c.mintRT(c.resource.Signer, claims)
	b := body(raw)
	if purpose != "" {
		b = fmt.Sprintf(`{"resource_token":%q,"purpose":%q}`, raw, purpose)
	}
	req := newRequest(http.MethodPost, PathToken, b)
	signWith(c.t, req, a.Signer, jwksKey(a), c.now())
	return serve(c.t, c.h, req)
}

// pending starts a consent flow for agent a and returns the pending id and code.
func (c *consentEnv) pending(a *origin, purpose string) (id, code string) {
	c.t.Helper()
	res := c.tokenRequest(a, consentScope, purpose)
	if res.Status != http.StatusAccepted {
		c.t.Fatalf("token request: %d %s", res.Status, res.Raw)
	}
	loc := res.str("location")
	return strings.TrimPrefix(loc, testIssuer+PathPending), res.str("code")
}

// pollRequest is a signed GET of the pending URL by agent a. Every poll is a distinct
// signed message (the pending URL accepts a signature once, and the test clock stands
// still): it covers an X-Test-Nonce header with a fresh value.
func (c *consentEnv) pollRequest(a *origin, id string, hdr ...string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, testIssuer+PathPending+id, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Header.Set("X-Test-Nonce", strconv.FormatInt(pollNonce.Add(1), 10))
	if err := httpsig.Sign(req, a.Signer, jwksKey(a), httpsig.SignOptions{Created: c.now(), Extra: []string{"x-test-nonce"}}); err != nil {
		c.t.Fatal(err)
	}
	return req
}

var pollNonce atomic.Int64

// replayPollRequest is a signed GET of the pending URL by agent a without a nonce: two
// made at the same second are the same signed message.
func (c *consentEnv) replayPollRequest(a *origin, id string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, testIssuer+PathPending+id, nil)
	signWith(c.t, req, a.Signer, jwksKey(a), c.now())
	return req
}

func (c *consentEnv) poll(a *origin, id string, hdr ...string) result {
	c.t.Helper()
	return serve(c.t, c.h, c.pollRequest(a, id, hdr...))
}

// answer posts a clarification response signed by agent a.
func (c *consentEnv) answer(a *origin, id, text string) result {
	c.t.Helper()
	b := fmt.Sprintf(`{"clarification_response":%q}`, text)
	req := httptest.NewRequest(http.MethodPost, testIssuer+PathPending+id, strings.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	signWith(c.t, req, a.Signer, jwksKey(a), c.now())
	return serve(c.t, c.h, req)
}

// authToken verifies a token from a 200 answer.
func (c *consentEnv) authToken(res result) *token.Token {
	c.t.Helper()
	if res.Status != http.StatusOK {
		c.t.Fatalf("want 200 with a token, got %d %s", res.Status, res.Raw)
	}
	return verifyAuthTokenAt(c.t, c.h, res.str("auth_token"), c.resource.ID, c.now())
}

func verifyAuthTokenAt(t *testing.T, h *Handler, raw, audience string, now time.Time) *token.Token {
	t.Helper()
	k := asKey(t, h)
	tok, err := token.VerifyAuthToken(context.Background(), raw, token.Options{Now: now, Audience: audience, Issuers: []string{testIssuer}},
		func(context.Context, string, string) (*keys.PublicKey, error) { return k, nil })
	if err != nil {
		t.Fatalf("auth token does not verify: %v", err)
	}
	return tok
}

// browser is a user agent with its own cookie jar that does not follow redirects.
type browser struct {
	t    testing.TB
	c    *http.Client
	base string
}

func (c *consentEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	tr := c.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // test server
	return &browser{t: c.t, base: c.srv.URL, c: &http.Client{
		Jar: jar, Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	Status int
	Header http.Header
	Body   string
}

func (p page) csrf() string {
	m := csrfRe.FindStringSubmatch(p.Body)
	if m == nil {
		return ""
	}
	return m[1]
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return page{}
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return page{Status: res.StatusCode, Header: res.Header, Body: string(raw)}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// login opens the code's page, signs in and returns the consent page.
func (b *browser) login(code, user string) page {
	b.t.Helper()
	p := b.get("/interact?code=" + url.QueryEscape(code))
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `name="password"`) {
		b.t.Errorf("login page: %d %s", p.Status, p.Body)
		return p
	}
	p = b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {p.csrf()}, "code": {code},
		"username": {user}, "password": {user + "-pw"}})
	if p.Status != http.StatusSeeOther {
		b.t.Errorf("login: %d %s", p.Status, p.Body)
		return p
	}
	p = b.get(p.Header.Get("Location"))
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `value="approve"`) {
		b.t.Errorf("consent page: %d %s", p.Status, p.Body)
	}
	return p
}

// decide posts approve or deny from a consent page.
func (b *browser) decide(consent page, code, action string, extra ...string) page {
	b.t.Helper()
	f := url.Values{"action": {action}, "csrf": {consent.csrf()}, "code": {code}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return b.post(PathInteract, f)
}

// approve runs the whole browser side: code, login, approve.
func (b *browser) approve(code, user string, extra ...string) page {
	b.t.Helper()
	p := b.decide(b.login(code, user), code, "approve", extra...)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "Access approved") {
		b.t.Errorf("approve: %d %s", p.Status, p.Body)
	}
	return p
}

func regexpMust(re string) *regexp.Regexp { return regexp.MustCompile(re) }

// mintAgentToken is an agent token from agent a for a delegate key.
func mintAgentToken(t testing.TB, a *origin, delegate *keys.Signer, sub string) string {
	t.Helper()
	at, err := token.Mint(a.Signer, token.TypAgent, token.Claims{
		Issuer: a.ID, Subject: sub, ID: token.NewID(),
		IssuedAt: testNow.Unix(), Expiry: testNow.Add(time.Hour).Unix(),
		Confirmation: &token.Confirmation{Key: delegate.Public},
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func jwtKey(raw string) httpsig.SigKey {
	return httpsig.SigKey{Scheme: httpsig.SchemeJWT, Params: []httpsig.Param{{Name: "jwt", Value: raw}}}
}

// benchPending provisions a handler and creates one pending request, for benchmarks.
func benchPending(b *testing.B) (*Handler, *origin, string) {
	b.Helper()
	client := discovery.New(discovery.Config{Dev: true})
	b.Cleanup(client.Close)
	resource := newOrigin(b, "aauth-resource", "resource", "res-key-1")
	agent := newOrigin(b, "aauth-agent", "agent", "agent-key-1")
	h := &Handler{Issuer: "https://bench.example", Policy: &Policy{Default: EffectConsent}, Users: testUsers(b)[:1]}
	if err := h.provision(context.Background(), deps{storage: &certmagic.FileStorage{Path: b.TempDir()}, discovery: client, dev: true, logger: zap.NewNop(),
		now: func() time.Time { return testNow }}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Cleanup() })
	rt, err := token.Mint(resource.Signer, token.TypResource, token.Claims{
		Issuer: resource.ID, Audience: token.Audience{h.Issuer}, ID: token.NewID(),
		IssuedAt: testNow.Unix(), Expiry: testNow.Add(5 * time.Minute).Unix(),
		Agent: agent.ID, AgentJKT: agent.Signer.Public.Thumbprint, Scope: consentScope,
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, h.Issuer+PathToken, strings.NewReader(body(rt)))
	req.Header.Set("Content-Type", "application/json")
	signWith(b, req, agent.Signer, jwksKey(agent), testNow)
	rec := httptest.NewRecorder()
	_ = h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if rec.Code != http.StatusAccepted {
		b.Fatalf("token request: %d %s", rec.Code, rec.Body)
	}
	loc := rec.Header().Get("Location")
	return h, agent, strings.TrimPrefix(loc, h.Issuer+PathPending)
}
