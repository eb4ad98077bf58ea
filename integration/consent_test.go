package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// The consent flow end to end (PROTOCOL.md P11–P13): a real Caddy runs the API (the
// aauth gateway) and the auth server with built-in users and a `consent` policy; agents
// use the agent library (Transport + Poller); users approve over HTTP with their own
// cookie jars, or in headless Chromium (browser_test.go).

const (
	consentScopeDesc = "Create and change your data"
	alicePassword    = "alice-correct-horse"
)

// consentEnv is one Caddy with an API site and an auth server whose policy asks the user
// before issuing data.write tokens. With a short pending lifetime it also has a second
// auth server (shortID) used by the API's /short/* routes.
type consentEnv struct {
	backend  *echoBackend
	agentSrv *agentServer
	storage  string
	apiID    string
	authID   string
	shortID  string // "" unless consentOptions.shortLifetime is set
	users    map[string]string
	hashes   map[string]string
}

type consentOptions struct {
	users         map[string]string // name → password; nil means alice only
	shortLifetime string            // pending_lifetime of the second auth server
}

// bcryptHashes hashes the passwords at bcrypt's minimum cost (fast; the server accepts
// any valid cost).
func bcryptHashes(t *testing.T, users map[string]string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(users))
	for name, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(h)
	}
	return out
}

// userLines renders `user <name> <hash>` lines in name order.
func userLines(hashes map[string]string, indent string) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(hashes)) {
		fmt.Fprintf(&b, "%suser %s %s\n", indent, name, hashes[name])
	}
	return b.String()
}

// apiBlock is an aauth gateway block sending agents to auth server as for data.write.
func apiBlock(apiID, as string) string {
	return fmt.Sprintf(`aauth {
			require auth-token
			resource %s
			auth_server %s
			scope data.write
			scope_description data.write %q
		}`, apiID, as, consentScopeDesc)
}

// authServerBlock is an aauth_server site with the consent policy and the users.
func authServerBlock(issuer, extra string, hashes map[string]string) string {
	return fmt.Sprintf(`%s {
	aauth_server {
		issuer %s
		%s
		policy {
			consent scope data.write
			default deny
		}
%s	}
}
`, issuer, issuer, extra, userLines(hashes, "\t\t"))
}

func consentConfig(env *consentEnv, opts consentOptions) string {
	var api string
	if env.shortID != "" {
		api = fmt.Sprintf(`%s {
	handle /short/* {
		%s
		reverse_proxy %s
	}
	handle {
		%s
		reverse_proxy %s
	}
}
`, env.apiID, apiBlock(env.apiID, env.shortID), env.backend.addr(), apiBlock(env.apiID, env.authID), env.backend.addr())
	} else {
		api = fmt.Sprintf(`%s {
	%s
	reverse_proxy %s
}
`, env.apiID, apiBlock(env.apiID, env.authID), env.backend.addr())
	}
	cfg := fmt.Sprintf(`{
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

%s
%s`, env.storage, api, authServerBlock(env.authID, "", env.hashes))
	if env.shortID != "" {
		cfg += "\n" + authServerBlock(env.shortID, "pending_lifetime "+opts.shortLifetime, env.hashes)
	}
	return cfg
}

func startConsent(t *testing.T, opts consentOptions) *consentEnv {
	t.Helper()
	if opts.users == nil {
		opts.users = map[string]string{"alice": alicePassword}
	}
	env := &consentEnv{backend: newEchoBackend(t), agentSrv: newAgentServer(t), storage: storageDir(t), users: opts.users}
	env.hashes = bcryptHashes(t, opts.users)
	env.apiID = "http://localhost:" + freePort(t)
	env.authID = "http://127.0.0.1:" + freePort(t)
	if opts.shortLifetime != "" {
		env.shortID = "http://127.0.0.1:" + freePort(t)
	}
	caddytest.NewTester(t).InitServer(consentConfig(env, opts), "caddyfile")
	return env
}

func (env *consentEnv) identity() *agent.Credential {
	return agent.JWKSURI(env.agentSrv.signer, env.agentSrv.id)
}

// loopbackTransport is a plain transport for loopback identifiers (every id in these
// tests is http://localhost:<port> or http://127.0.0.1:<port>).
func loopbackTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
}

// consentAgent is an agent using the library: a Transport with its own token cache and,
// when it waits for consent, a Poller whose OnPending reports the pending request.
type consentAgent struct {
	cred   *agent.Credential
	cache  *agent.TokenCache
	client *http.Client
}

type agentOutcome struct {
	res result
	err error
}

// newConsentAgent builds the agent. onPending nil means the flow stops at the 202 (the
// request fails with a *agent.PendingError).
func newConsentAgent(cred *agent.Credential, purpose string, onPending func(*agent.PendingError)) *consentAgent {
	a := &consentAgent{cred: cred, cache: agent.NewTokenCache(10)}
	tr := &agent.Transport{Identity: cred, Dev: true, Purpose: purpose, TokenCache: a.cache, Base: loopbackTransport()}
	if onPending != nil {
		p := &agent.Poller{
			Base: loopbackTransport(), Credential: cred, Dev: true,
			Wait: 10 * time.Second, MaxDuration: 60 * time.Second,
			OnPending: onPending,
		}
		tr.AwaitToken = p.Await
	}
	a.client = &http.Client{Transport: tr, Timeout: 90 * time.Second}
	return a
}

// get runs one request through the library (any consent wait included).
func (a *consentAgent) get(url string) agentOutcome {
	resp, err := a.client.Get(url)
	if err != nil {
		return agentOutcome{err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &r.echo); err != nil {
			return agentOutcome{res: r, err: fmt.Errorf("backend answer is not JSON: %s", body)}
		}
	}
	return agentOutcome{res: r}
}

// start runs get in a goroutine.
func (a *consentAgent) start(url string) <-chan agentOutcome {
	ch := make(chan agentOutcome, 1)
	go func() { ch <- a.get(url) }()
	return ch
}

// pendingOf runs the flow without a Poller and returns the deferred request.
func (a *consentAgent) pendingOf(t *testing.T, url string) *agent.PendingError {
	t.Helper()
	out := a.get(url)
	var pe *agent.PendingError
	if !errors.As(out.err, &pe) {
		t.Fatalf("want a deferred token request (202), got status %d err %v body %s", out.res.status, out.err, out.res.body)
	}
	if pe.Code == "" || pe.Location == "" || pe.Require != agent.RequireInteraction {
		t.Fatalf("pending request %+v", pe)
	}
	return pe
}

// waitOutcome waits for an agent's request.
func waitOutcome(t *testing.T, ch <-chan agentOutcome, limit time.Duration) agentOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(limit):
		t.Fatalf("the agent's request did not finish within %s", limit)
	}
	return agentOutcome{}
}

// pendingSink returns an OnPending hook that hands the pending request to a channel.
func pendingSink() (func(*agent.PendingError), <-chan *agent.PendingError) {
	ch := make(chan *agent.PendingError, 1)
	return func(p *agent.PendingError) {
		select {
		case ch <- p:
		default:
		}
	}, ch
}

func waitPending(t *testing.T, ch <-chan *agent.PendingError, limit time.Duration) *agent.PendingError {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(limit):
		t.Fatalf("the agent was not asked to wait for consent within %s", limit)
	}
	return nil
}

// tokenSubject reads the sub of an auth token (the signature was checked by the agent
// library and by the gateway).
func tokenSubject(t *testing.T, raw string) string {
	t.Helper()
	tok, err := token.Parse(raw, token.TypAuth)
	if err != nil {
		t.Fatalf("auth token: %v", err)
	}
	return tok.Claims.Subject
}

// ---- a user with a browser, over net/http ----

// webUser is a person at the consent pages: an HTTP client with its own cookie jar that
// follows redirects like a browser. Its methods return errors (not t.Fatal) so they can
// run in goroutines.
type webUser struct {
	base string // the auth server's origin
	c    *http.Client
	last page // the last page received
}

type page struct {
	status int
	header http.Header
	body   string
	url    string
	err    error // the request failed
}

func newWebUser(base string) *webUser {
	jar, _ := cookiejar.New(nil)
	return &webUser{base: base, c: &http.Client{Jar: jar, Transport: loopbackTransport(), Timeout: 15 * time.Second}}
}

func (u *webUser) read(resp *http.Response, err error) page {
	if err != nil {
		return page{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return page{err: err}
	}
	p := page{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL.String()}
	u.last = p
	return p
}

func (u *webUser) get(path string) page {
	return u.read(u.c.Get(u.base + path))
}

func (u *webUser) open(code string) page {
	return u.get("/interact?code=" + url.QueryEscape(code))
}

func (u *webUser) post(form url.Values) page {
	return u.read(u.c.PostForm(u.base+"/interact", form))
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the last page's forms.
func (u *webUser) csrf() string {
	m := csrfRE.FindStringSubmatch(u.last.body)
	if m == nil {
		return ""
	}
	return m[1]
}

// login opens the code's page and signs in; it returns the consent page.
func (u *webUser) login(code, name, password string) (page, error) {
	p := u.open(code)
	if p.err != nil {
		return p, p.err
	}
	if p.status != 200 || !strings.Contains(p.body, `value="login"`) {
		return p, fmt.Errorf("login page for code %s: status %d: %.300s", code, p.status, p.body)
	}
	p = u.post(url.Values{"csrf": {u.csrf()}, "code": {code}, "action": {"login"}, "username": {name}, "password": {password}})
	if p.err != nil {
		return p, p.err
	}
	if p.status != 200 || !strings.Contains(p.body, `value="approve"`) {
		return p, fmt.Errorf("consent page after login as %s: status %d: %.300s", name, p.status, p.body)
	}
	return p, nil
}

// decide presses Approve or Deny on the consent page it is on.
func (u *webUser) decide(code, action string) (page, error) {
	p := u.post(url.Values{"csrf": {u.csrf()}, "code": {code}, "action": {action}})
	if p.err != nil {
		return p, p.err
	}
	want := map[string]string{"approve": "Access approved", "deny": "Request denied"}[action]
	if p.status != 200 || !strings.Contains(p.body, want) {
		return p, fmt.Errorf("%s: status %d: %.300s", action, p.status, p.body)
	}
	return p, nil
}

// approve signs in as name and approves code.
func (u *webUser) approve(code, name, password string) error {
	if _, err := u.login(code, name, password); err != nil {
		return err
	}
	_, err := u.decide(code, "approve")
	return err
}

// checkPageSecurity checks the headers every interaction page must send (P13).
func checkPageSecurity(t *testing.T, what string, h http.Header) {
	t.Helper()
	if cc := h.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
	}
	if xfo := h.Get("X-Frame-Options"); xfo != "DENY" {
		t.Errorf("%s: X-Frame-Options %q, want DENY", what, xfo)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s: Content-Security-Policy %q lacks frame-ancestors 'none'", what, csp)
	}
}

// tamper changes the first character of a token.
func tamper(s string) string {
	if strings.HasPrefix(s, "A") {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func mustPage(t *testing.T, p page, status int) page {
	t.Helper()
	if p.err != nil {
		t.Fatal(p.err)
	}
	if p.status != status {
		t.Fatalf("%s: status %d, want %d: %.400s", p.url, p.status, status, p.body)
	}
	return p
}

// ---- tests ----

func TestConsentDenyAndExpiry(t *testing.T) {
	// The brief asked for pending_lifetime 2s; the auth server refuses anything under
	// 10s (Handler.validateConsent), so the shortest allowed lifetime is used.
	const shortLifetime = 10 * time.Second
	env := startConsent(t, consentOptions{shortLifetime: shortLifetime.String()})
	id := env.identity()

	// Two requests on the auth server with the short lifetime: one left alone and polled
	// raw a second after it expired, one waited for by the agent library's Poller. Both
	// are created first so the other subtests run while they expire.
	expiring := newConsentAgent(id, "", nil).pendingOf(t, env.apiID+"/short/raw")
	expiringAt := time.Now()
	otherAgent := newAgentServer(t)
	polled := newConsentAgent(agent.JWKSURI(otherAgent.signer, otherAgent.id), "", func(*agent.PendingError) {})
	polledOut := polled.start(env.apiID + "/short/polled")

	t.Run("deny: the agent gets ErrConsentDenied, then the pending URL is gone", func(t *testing.T) {
		hook, pending := pendingSink()
		a := newConsentAgent(id, "", hook)
		out := a.start(env.apiID + "/data")
		pe := waitPending(t, pending, 15*time.Second)
		u := newWebUser(env.authID)
		if _, err := u.login(pe.Code, "alice", alicePassword); err != nil {
			t.Fatal(err)
		}
		if _, err := u.decide(pe.Code, "deny"); err != nil {
			t.Fatal(err)
		}
		o := waitOutcome(t, out, 20*time.Second)
		if !errors.Is(o.err, agent.ErrConsentDenied) {
			t.Fatalf("want ErrConsentDenied, got status %d err %v", o.res.status, o.err)
		}
		if env.backend.hits.Load() != 0 {
			t.Fatal("the backend was reached after a denial")
		}
		r := signedWith(t, id, pe.Location).mustStatus(t, 404)
		if r.errorCode(t) != "not_found" {
			t.Fatalf("poll after the denial: %s", r.body)
		}
		// The code was used up by the decision.
		mustPage(t, u.open(pe.Code), 410)
	})

	t.Run("a poll signed by another key is refused and changes nothing", func(t *testing.T) {
		a := newConsentAgent(id, "", nil)
		pe := a.pendingOf(t, env.apiID+"/data")
		stranger := agent.JWKSURI(otherAgent.signer, otherAgent.id)
		if r := signedWith(t, stranger, pe.Location).mustStatus(t, 403); r.errorCode(t) != "key_binding_failed" {
			t.Fatalf("poll by another agent: %s", r.body)
		}
		// The same agent's delegate holds another key.
		del, _ := env.agentSrv.delegate(t, "delegate-1")
		if r := signedWith(t, del, pe.Location).mustStatus(t, 403); r.errorCode(t) != "key_binding_failed" {
			t.Fatalf("poll by the agent's delegate: %s", r.body)
		}
		// An anonymous (hwk) key proves no agent identity at all.
		hwk, _ := hwkCredential(t)
		if r := signedWith(t, hwk, pe.Location); r.status != 401 && r.status != 403 {
			t.Fatalf("poll signed with hwk: %d %s", r.status, r.body)
		} else {
			t.Logf("poll signed with hwk: %d %s", r.status, bytes.TrimSpace(r.body))
		}
		// The record is untouched: the right key still gets 202 and can collect the token.
		r := signedWith(t, id, pe.Location).mustStatus(t, 202)
		var body map[string]any
		_ = json.Unmarshal(r.body, &body)
		if body["status"] != "pending" || body["location"] != pe.Location {
			t.Fatalf("202 body %s", r.body)
		}
		if err := newWebUser(env.authID).approve(pe.Code, "alice", alicePassword); err != nil {
			t.Fatal(err)
		}
		// The stranger still cannot take the token after the approval.
		signedWith(t, stranger, pe.Location).mustStatus(t, 403)
		r = signedWith(t, id, pe.Location).mustStatus(t, 200)
		var tok struct {
			AuthToken string `json:"auth_token"`
			ExpiresIn int64  `json:"expires_in"`
		}
		if err := json.Unmarshal(r.body, &tok); err != nil || tok.AuthToken == "" || tok.ExpiresIn <= 0 {
			t.Fatalf("200 body %s", r.body)
		}
		if sub := tokenSubject(t, tok.AuthToken); sub != "alice" {
			t.Fatalf("sub %q", sub)
		}
		signedWith(t, id, pe.Location).mustStatus(t, 404)
		// The token works at the API.
		res := signedWith(t, agent.AuthToken(env.agentSrv.signer, tok.AuthToken), env.apiID+"/data").mustStatus(t, 200)
		if res.backendHeader("X-Aauth-Subject") != "alice" || res.backendHeader("X-Aauth-Level") != "authorized" {
			t.Fatalf("backend saw %v", res.echo.Header)
		}
	})

	t.Run("an unused code expires: 408 once, then 404", func(t *testing.T) {
		if d := shortLifetime + time.Second - time.Since(expiringAt); d > 0 {
			time.Sleep(d)
		}
		mustPage(t, newWebUser(env.shortID).open(expiring.Code), 410)
		r := signedWith(t, id, expiring.Location).mustStatus(t, 408)
		if r.errorCode(t) != "expired" {
			t.Fatalf("%s", r.body)
		}
		signedWith(t, id, expiring.Location).mustStatus(t, 404)
	})

	t.Run("the Poller reports the expiry as ErrConsentExpired", func(t *testing.T) {
		o := waitOutcome(t, polledOut, 20*time.Second)
		if !errors.Is(o.err, agent.ErrConsentExpired) {
			t.Fatalf("want ErrConsentExpired, got status %d err %v", o.res.status, o.err)
		}
	})
}

func TestConsentSurvivesRestart(t *testing.T) {
	backend := newEchoBackend(t)
	agentSrv := newAgentServer(t)
	hashes := bcryptHashes(t, map[string]string{"alice": alicePassword})
	e := newRestartEnv(t, func(e *restartEnv) string {
		return fmt.Sprintf(`%s {
	%s
	reverse_proxy %s
}

%s`, e.apiID, apiBlock(e.apiID, e.authID), backend.addr(), authServerBlock(e.authID, "", hashes))
	})
	e.start(t)
	id := agent.JWKSURI(agentSrv.signer, agentSrv.id)
	pe := newConsentAgent(id, "restart test", nil).pendingOf(t, e.apiID+"/data")
	signedWith(t, id, pe.Location).mustStatus(t, 202)
	// A poll captured before the restart: each signed message is accepted once on the
	// pending URL, and the used ones are kept in storage with the pending record.
	captured, _ := http.NewRequest("GET", pe.Location, nil)
	if err := httpsig.Sign(captured, id.Signer, id.SigKey(), httpsig.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	do(t, plainClient(), captured).mustStatus(t, 202)

	e.proc.stop(t)
	e.start(t)

	if r := do(t, plainClient(), captured).mustStatus(t, 401); r.errorCode(t) != "invalid_signature" {
		t.Fatalf("replayed poll after the restart: %s", r.body)
	}
	signedWith(t, id, pe.Location).mustStatus(t, 202)
	u := newWebUser(e.authID)
	p, err := u.login(pe.Code, "alice", alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.body, "restart test") || !strings.Contains(p.body, agentSrv.id) {
		t.Fatalf("the consent page after the restart lacks the stored request: %.600s", p.body)
	}
	if _, err := u.decide(pe.Code, "approve"); err != nil {
		t.Fatal(err)
	}
	r := signedWith(t, id, pe.Location).mustStatus(t, 200)
	var tok struct {
		AuthToken string `json:"auth_token"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.AuthToken == "" {
		t.Fatalf("200 body %s", r.body)
	}
	if sub := tokenSubject(t, tok.AuthToken); sub != "alice" {
		t.Fatalf("sub %q", sub)
	}
	res := signedWith(t, agent.AuthToken(agentSrv.signer, tok.AuthToken), e.apiID+"/data").mustStatus(t, 200)
	if res.backendHeader("X-Aauth-Subject") != "alice" || res.backendHeader("X-Aauth-Level") != "authorized" ||
		res.backendHeader("X-Aauth-Scope") != "data.write" {
		t.Fatalf("backend saw %v", res.echo.Header)
	}
}

func TestFiftyConcurrentConsents(t *testing.T) {
	const n = 50
	start := time.Now()
	users := map[string]string{}
	for i := range n {
		users[fmt.Sprintf("u%02d", i)] = fmt.Sprintf("password-%02d", i)
	}
	env := startConsent(t, consentOptions{users: users})

	type pendingFrom struct {
		agent int
		pe    *agent.PendingError
	}
	pendings := make(chan pendingFrom, n)
	outs := make([]<-chan agentOutcome, n)
	agents := make([]*consentAgent, n)
	for i := range n {
		cred, _ := env.agentSrv.delegate(t, fmt.Sprintf("delegate-%02d", i))
		agents[i] = newConsentAgent(cred, fmt.Sprintf("job %02d", i), func(pe *agent.PendingError) {
			pendings <- pendingFrom{i, pe}
		})
	}
	for i, a := range agents {
		outs[i] = a.start(fmt.Sprintf("%s/data/%02d", env.apiID, i))
	}

	// Users are handed codes in the order the agents report them, so which user approves
	// which agent is decided at run time.
	approver := make([]string, n)
	codes := map[string]bool{}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for k := range n {
		var got pendingFrom
		select {
		case got = <-pendings:
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d of %d agents were asked for consent", k, n)
		}
		if codes[got.pe.Code] {
			t.Fatalf("interaction code %s handed out twice", got.pe.Code)
		}
		codes[got.pe.Code] = true
		name := fmt.Sprintf("u%02d", k)
		approver[got.agent] = name
		wg.Go(func() {
			if err := newWebUser(env.authID).approve(got.pe.Code, name, users[name]); err != nil {
				errs <- fmt.Errorf("%s approving agent %d: %w", name, got.agent, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	seen := map[string]int{}
	for i := range n {
		o := waitOutcome(t, outs[i], 20*time.Second)
		if o.err != nil || o.res.status != 200 {
			t.Errorf("agent %d: status %d err %v body %s", i, o.res.status, o.err, o.res.body)
			continue
		}
		sub := o.res.backendHeader("X-Aauth-Subject")
		if sub != approver[i] {
			t.Errorf("agent %d: backend saw subject %q, but %s approved its code", i, sub, approver[i])
		}
		if d := o.res.backendHeader("X-Aauth-Delegate"); d != fmt.Sprintf("delegate-%02d", i) {
			t.Errorf("agent %d: backend saw delegate %q", i, d)
		}
		if o.res.backendHeader("X-Aauth-Level") != "authorized" || o.res.backendHeader("X-Aauth-Scope") != "data.write" {
			t.Errorf("agent %d: backend saw %v", i, o.res.echo.Header)
		}
		if o.res.echo.Path != fmt.Sprintf("/data/%02d", i) {
			t.Errorf("agent %d: backend got path %s", i, o.res.echo.Path)
		}
		ct, ok := agents[i].cache.Get(env.apiID, agents[i].cred.Signer.Public.Thumbprint)
		if !ok || tokenSubject(t, ct.Token) != approver[i] {
			t.Errorf("agent %d: cached token missing or for the wrong user", i)
		}
		seen[sub]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct subjects reached the backend, want %d: %v", len(seen), n, seen)
	}
	for sub, c := range seen {
		if c != 1 {
			t.Errorf("subject %q seen %d times", sub, c)
		}
	}
	if got := env.backend.hits.Load(); got != n {
		t.Errorf("backend hits %d, want %d", got, n)
	}
	t.Logf("%d concurrent consents in %s", n, time.Since(start).Round(time.Millisecond))
}

func TestConsentSecurity(t *testing.T) {
	env := startConsent(t, consentOptions{})
	id := env.identity()

	// The raw 202 (P11): no-store, Location, Retry-After and the interaction challenge.
	rt := challengeFor(t, id, env.apiID+"/data")
	r := (&authzEnv{authID: env.authID}).tokenRequest(t, id, map[string]string{"resource_token": rt}).mustStatus(t, 202)
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Retry-After") == "" || !strings.HasPrefix(r.header.Get("Location"), env.authID+"/pending/") {
		t.Fatalf("202 headers %v", r.header)
	}
	req, params := parseAAuth(t, r.header.Get("AAuth"))
	if req != "interaction" || len(params["code"]) != 8 {
		t.Fatalf("202 AAuth %q", r.header.Get("AAuth"))
	}
	code, location := params["code"], r.header.Get("Location")

	u := newWebUser(env.authID)

	t.Run("pages send no-store and forbid framing", func(t *testing.T) {
		checkPageSecurity(t, "code entry page", mustPage(t, u.get("/interact"), 200).header)
		checkPageSecurity(t, "login page", mustPage(t, u.open(code), 200).header)
		checkPageSecurity(t, "grants page", mustPage(t, u.get("/interact/grants"), 200).header)
		put, _ := http.NewRequest(http.MethodPut, env.authID+"/interact", nil)
		checkPageSecurity(t, "405 page", mustPage(t, u.read(u.c.Do(put)), 405).header)
		p, err := newWebUser(env.authID).login(code, "alice", alicePassword)
		if err != nil {
			t.Fatal(err)
		}
		checkPageSecurity(t, "consent page", p.header)
	})

	t.Run("login without or with a wrong CSRF token is refused", func(t *testing.T) {
		mustPage(t, u.open(code), 200)
		good := u.csrf()
		if good == "" {
			t.Fatal("the login form has no CSRF token")
		}
		form := func(csrf string) url.Values {
			v := url.Values{"code": {code}, "action": {"login"}, "username": {"alice"}, "password": {alicePassword}}
			if csrf != "" {
				v.Set("csrf", csrf)
			}
			return v
		}
		checkPageSecurity(t, "403 page", mustPage(t, u.post(form("")), 403).header)
		mustPage(t, u.post(form(tamper(good))), 403)
		// Another browser's token does not fit this browser's session.
		other := newWebUser(env.authID)
		mustPage(t, other.open(code), 200)
		mustPage(t, u.post(form(other.csrf())), 403)
		// A client without the session cookie cannot use a scraped token.
		bare := &webUser{base: env.authID, c: &http.Client{Transport: loopbackTransport(), Timeout: 10 * time.Second}}
		mustPage(t, bare.post(form(good)), 403)
		// Nobody got signed in by any of these.
		if p := mustPage(t, u.open(code), 200); strings.Contains(p.body, `value="approve"`) {
			t.Fatal("a refused login signed the user in")
		}
	})

	t.Run("decisions without or with a wrong CSRF token are refused", func(t *testing.T) {
		before := newWebUser(env.authID)
		mustPage(t, before.open(code), 200)
		preLogin := before.csrf()
		v := newWebUser(env.authID)
		if _, err := v.login(code, "alice", alicePassword); err != nil {
			t.Fatal(err)
		}
		good := v.csrf()
		mustPage(t, v.post(url.Values{"code": {code}, "action": {"approve"}}), 403)
		mustPage(t, v.post(url.Values{"code": {code}, "action": {"approve"}, "csrf": {tamper(good)}}), 403)
		mustPage(t, v.post(url.Values{"code": {code}, "action": {"approve"}, "csrf": {preLogin}}), 403)
		// The session's own token from before the login is no longer valid either: the
		// login rotated the session.
		w := newWebUser(env.authID)
		mustPage(t, w.open(code), 200)
		stale := w.csrf()
		mustPage(t, w.post(url.Values{"csrf": {stale}, "code": {code}, "action": {"login"}, "username": {"alice"}, "password": {alicePassword}}), 200)
		mustPage(t, w.post(url.Values{"code": {code}, "action": {"deny"}, "csrf": {stale}}), 403)
		// Still pending.
		signedWith(t, id, location).mustStatus(t, 202)
	})

	t.Run("the 11th wrong code within a minute gets 429", func(t *testing.T) {
		wrong := []string{"ZZZZZZZZ", "ABCD-EFGH", "00000000", "not a code", "1234", "QQQQQQQQ", "JKMNPQRS", "TVWXYZ00", "XYZW-XYZW", "HHHHHHHH"}
		for i, c := range wrong {
			p := mustPage(t, u.open(c), 400)
			checkPageSecurity(t, fmt.Sprintf("wrong code page %d", i+1), p.header)
		}
		p := mustPage(t, u.open("YYYYYYYY"), 429)
		checkPageSecurity(t, "429 page", p.header)
		if p.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		// The limit is per client, not per code: the right code is refused too, from
		// any session of that client.
		mustPage(t, newWebUser(env.authID).open(code), 429)
		// The pending request itself is unaffected.
		signedWith(t, id, location).mustStatus(t, 202)
	})
}
