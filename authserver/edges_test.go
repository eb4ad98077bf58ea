package authserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// ---- poll replay ----

// TestPollReplayAfterApproval: a captured poll (answered 202 while pending) replayed
// after the user approved gets 401 and does not take the token; the agent's own next
// poll still gets it.
func TestPollReplayAfterApproval(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	captured := c.replayPollRequest(c.agent, id)
	replay := captured.Clone(context.Background())
	if res := serve(t, c.h, captured); res.Status != http.StatusAccepted {
		t.Fatalf("first poll: %d %s", res.Status, res.Raw)
	}
	c.browser().approve(code, "alice")

	res := serve(t, c.h, replay)
	if res.Status != http.StatusUnauthorized || res.str("error") != wire.CodeInvalidSignature || res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("replayed poll: %d %s", res.Status, res.Raw)
	}
	if _, ok := res.Body["auth_token"]; ok {
		t.Fatal("the replay got the token")
	}
	if tok := c.authToken(c.poll(c.agent, id)); tok.Claims.Subject != "alice" {
		t.Fatalf("sub %q", tok.Claims.Subject)
	}
}

// TestPollReplayConcurrent: the same signed poll sent 20 times at once after approval:
// exactly one gets the token, the others 401 (or 404 once the token is taken).
func TestPollReplayConcurrent(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	c.browser().approve(code, "alice")
	captured := c.replayPollRequest(c.agent, id)
	const n = 20
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		req := captured.Clone(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = serve(t, c.h, req)
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, r := range results {
		switch r.Status {
		case http.StatusOK:
			ok++
		case http.StatusUnauthorized, http.StatusNotFound:
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Raw)
		}
	}
	if ok != 1 {
		t.Fatalf("%d tokens handed out, want 1", ok)
	}
}

// TestPollReplayAcrossRestart: a signature used before a restart is still refused by a
// fresh handler over the same storage.
func TestPollReplayAcrossRestart(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, _ := c.pending(c.agent, "")
	captured := c.replayPollRequest(c.agent, id)
	replay := captured.Clone(context.Background())
	if res := serve(t, c.h, captured); res.Status != http.StatusAccepted {
		t.Fatalf("first poll: %d %s", res.Status, res.Raw)
	}
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy()}, c.store))
	if res := serve(t, c.h, replay); res.Status != http.StatusUnauthorized {
		t.Fatalf("replay after restart: %d %s", res.Status, res.Raw)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusAccepted {
		t.Fatalf("fresh poll after restart: %d %s", res.Status, res.Raw)
	}
}

// TestUsedSignaturesAcrossInstances: two stores (two instances) on one storage: a
// signature used through one is refused by the other.
func TestUsedSignaturesAcrossInstances(t *testing.T) {
	ctx := context.Background()
	st := newTestStorage(t)
	a, err := newConsentStore(ctx, "https://shared.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Destruct()
	b, err := newConsentStore(ctx, "https://shared.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destruct()
	rec := &pendingRecord{Agent: "https://agent.example", Created: testNow.Unix(), Expires: testNow.Add(time.Minute).Unix(), Key: map[string]any{}}
	if err := a.create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	now := testNow.Unix()
	if _, _, err := a.useSignature(ctx, rec.ID, "sig-1", now+61, now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, _, err := b.useSignature(ctx, rec.ID, "sig-1", now+61, now); err != errSignatureUsed {
		t.Fatalf("other instance: %v, want errSignatureUsed", err)
	}
	if _, _, err := b.useSignature(ctx, rec.ID, "sig-2", now+61, now); err != nil {
		t.Fatalf("another signature: %v", err)
	}
	if _, _, err := a.useSignature(ctx, rec.ID, "sig-2", now+61, now); err != errSignatureUsed {
		t.Fatalf("back on the first instance: %v, want errSignatureUsed", err)
	}
	// Once out of the window, the entry is dropped (the signature window refuses it).
	if _, _, err := a.useSignature(ctx, rec.ID, "sig-1", now+200, now+61); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// TestUsedSignaturesBounded: at most maxUsedSigs signatures per pending request are
// remembered; past that the agent gets 429 until old ones leave the window.
func TestUsedSignaturesBounded(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, _ := c.pending(c.agent, "")
	for i := range maxUsedSigs {
		if res := c.poll(c.agent, id); res.Status != http.StatusAccepted {
			t.Fatalf("poll %d: %d %s", i, res.Status, res.Raw)
		}
	}
	res := c.poll(c.agent, id)
	if res.Status != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("poll over the bound: %d %s", res.Status, res.Raw)
	}
	c.advance(DefaultSignatureWindow + 2*time.Second)
	if res := c.poll(c.agent, id); res.Status != http.StatusAccepted {
		t.Fatalf("poll after the window: %d %s", res.Status, res.Raw)
	}
	rec, _, err := c.h.consent.get(context.Background(), id, 0)
	if err != nil || len(rec.UsedSigs) != 1 {
		t.Fatalf("used signatures kept: %d, %v", len(rec.UsedSigs), err)
	}
}

// TestClarificationAnswerReplay: a replayed clarification answer is refused like a poll.
func TestClarificationAnswerReplay(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, _ := c.pending(c.chatty, "")
	b := fmt.Sprintf(`{"clarification_response":%q}`, "hi")
	req := newRequest(http.MethodPost, PathPending+id, b)
	signWith(t, req, c.chatty.Signer, jwksKey(c.chatty), c.now())
	replay := req.Clone(context.Background())
	replay.Body = http.NoBody
	first := serve(t, c.h, req)
	if first.Status == http.StatusUnauthorized {
		t.Fatalf("first answer: %d %s", first.Status, first.Raw)
	}
	replay = newRequest(http.MethodPost, PathPending+id, b)
	replay.Header = req.Header.Clone()
	if res := serve(t, c.h, replay); res.Status != http.StatusUnauthorized || res.str("error") != wire.CodeInvalidSignature {
		t.Fatalf("replayed answer: %d %s", res.Status, res.Raw)
	}
}

// ---- undecided request bounds ----

// slowStorage delays every Store, widening any gap between a bound's check and the
// count it guards.
type slowStorage struct {
	*testStorage
	delay time.Duration
}

func (s slowStorage) Store(ctx context.Context, key string, value []byte) error {
	time.Sleep(s.delay)
	return s.testStorage.Store(ctx, key, value)
}

// TestPendingBoundParallel: 100 parallel consent requests from one agent: exactly 64 get
// 202 and the rest 429, with Retry-After; a decision gives a place back.
func TestPendingBoundParallel(t *testing.T) {
	c := newConsentEnv(t, nil)
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Off: true}},
		slowStorage{newTestStorage(t), 2 * time.Millisecond}))
	const n = 100
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = c.tokenRequest(c.agent, consentScope, "")
		}()
	}
	close(start)
	wg.Wait()
	accepted, refused := 0, 0
	var code string
	for _, r := range results {
		switch r.Status {
		case http.StatusAccepted:
			accepted++
			code = r.str("code")
		case http.StatusTooManyRequests:
			refused++
			if r.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Raw)
		}
	}
	if accepted != maxPendingPerAgent || refused != n-maxPendingPerAgent {
		t.Fatalf("%d accepted, %d refused; want %d and %d", accepted, refused, maxPendingPerAgent, n-maxPendingPerAgent)
	}
	if res := c.tokenRequest(c.agent, consentScope, ""); res.Status != http.StatusTooManyRequests {
		t.Fatalf("65th: %d", res.Status)
	}
	// Deciding one frees its place.
	b := c.browser()
	b.decide(b.login(code, "alice"), code, "deny")
	if res := c.tokenRequest(c.agent, consentScope, ""); res.Status != http.StatusAccepted {
		t.Fatalf("after a decision: %d %s", res.Status, res.Raw)
	}
	if res := c.tokenRequest(c.agent, consentScope, ""); res.Status != http.StatusTooManyRequests {
		t.Fatalf("only one place was freed: %d", res.Status)
	}
	// Expiry frees them all.
	c.advance(DefaultPendingLifetime + time.Second)
	if res := c.freshRequest(c.agent, consentScope); res.Status != http.StatusAccepted {
		t.Fatalf("after expiry: %d %s", res.Status, res.Raw)
	}
}

// TestPendingBoundSurvivesRestart: the counts are rebuilt from storage, so a restart does
// not hand an agent at its bound another 64.
func TestPendingBoundSurvivesRestart(t *testing.T) {
	c := newConsentEnv(t, nil)
	cfg := Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Off: true}}
	st := newTestStorage(t)
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(cfg, st))
	for range maxPendingPerAgent {
		c.pending(c.agent, "")
	}
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, ok := consentPool.References(testIssuer); ok {
		t.Fatal("the consent store is still pooled")
	}
	c.serve(c.handler(cfg, st))
	if res := c.tokenRequest(c.agent, consentScope, ""); res.Status != http.StatusTooManyRequests {
		t.Fatalf("after restart: %d %s", res.Status, res.Raw)
	}
	if res := c.tokenRequest(c.other, consentScope, ""); res.Status != http.StatusAccepted {
		t.Fatalf("another agent after restart: %d %s", res.Status, res.Raw)
	}
}

// TestFairShares: many agents of one domain, one resource, or the whole pool.
func TestFairShares(t *testing.T) {
	now := testNow.Unix()
	exp := now + 600
	id := 0
	next := func() string { id++; return strconv.Itoa(id) }
	fill := func(a *admissions, agent, resource string, n int) int {
		ok := 0
		for range n {
			if a.admit(next(), agent, resource, exp, now) == nil {
				ok++
			}
		}
		return ok
	}

	t.Run("160 agents of one domain get 512", func(t *testing.T) {
		a := newAdmissions()
		got := 0
		for i := range 160 {
			got += fill(a, fmt.Sprintf("https://a%d.cheap.example", i), fmt.Sprintf("https://r%d.example", i%8), maxPendingPerAgent)
		}
		if got != maxPendingPerDomain {
			t.Fatalf("one domain got %d, want %d", got, maxPendingPerDomain)
		}
		if fill(a, "https://agent.other.example", "https://r0.example", 1) != 1 {
			t.Fatal("another domain was refused")
		}
	})
	t.Run("one resource gets 2500", func(t *testing.T) {
		a := newAdmissions()
		got := 0
		for i := range 100 {
			got += fill(a, fmt.Sprintf("https://agent.d%d.example", i), "https://busy.example", maxPendingPerAgent)
		}
		if got != maxPendingPerResource {
			t.Fatalf("one resource got %d, want %d", got, maxPendingPerResource)
		}
		if fill(a, "https://agent.fresh.example", "https://quiet.example", 1) != 1 {
			t.Fatal("another resource was refused")
		}
	})
	t.Run("the reserve keeps room for small parties", func(t *testing.T) {
		a := newAdmissions()
		got := 0
		for i := range 16 { // 16 × 512 would be 8,192
			for j := range 8 {
				got += fill(a, fmt.Sprintf("https://a%d.big%d.example", j, i), fmt.Sprintf("https://r%d.example", i%5), maxPendingPerAgent)
			}
		}
		if want := maxPendingTotal - pendingReserve; got != want {
			t.Fatalf("large domains got %d, want %d", got, want)
		}
		if fill(a, "https://agent.small.example", "https://r9.example", 20) != smallDomainPending-0 {
			t.Fatalf("a small domain did not get its %d", smallDomainPending)
		}
		total, _, _, _ := a.counts("", "")
		for i := 0; total < maxPendingTotal; i++ {
			fill(a, fmt.Sprintf("https://agent.s%d.example", i), fmt.Sprintf("https://q%d.example", i%5), smallDomainPending)
			total, _, _, _ = a.counts("", "")
		}
		if fill(a, "https://agent.latecomer.example", "https://q0.example", 1) != 0 {
			t.Fatal("admitted past the total")
		}
		a.prune(exp)
		if total, _, _, _ := a.counts("", ""); total != 0 {
			t.Fatalf("%d left after expiry", total)
		}
	})
	t.Run("release", func(t *testing.T) {
		a := newAdmissions()
		for i := range maxPendingPerAgent {
			if err := a.admit(fmt.Sprint("r", i), "https://agent.example", "https://r.example", exp, now); err != nil {
				t.Fatal(err)
			}
		}
		if a.admit("x", "https://agent.example", "https://r.example", exp, now) == nil {
			t.Fatal("65th admitted")
		}
		a.release("r1")
		a.release("r1") // twice is harmless
		if a.admit("x", "https://agent.example", "https://r.example", exp, now) != nil {
			t.Fatal("a released place was not reused")
		}
		if a.admit("y", "https://agent.example", "https://r.example", exp, now) == nil {
			t.Fatal("a double release freed two places")
		}
	})
}

func TestAgentDomain(t *testing.T) {
	cases := map[string]string{
		"https://agent.example.com":        "example.com",
		"https://a.b.example.com":          "example.com",
		"https://example.com":              "example.com",
		"https://x.example.co.uk":          "example.co.uk",
		"https://alice.github.io":          "alice.github.io",
		"https://bob.github.io":            "bob.github.io",
		"https://AGENT.Example.COM":        "example.com",
		"http://127.0.0.1:8001":            "127.0.0.1",
		"http://localhost:8001":            "localhost",
		"http://[::1]:8001":                "::1",
		"https://github.io":                "github.io",
		"https://agent.example.com.":       "example.com",
		"https://agent.example.com:8443/x": "example.com",
	}
	for in, want := range cases {
		if got := agentDomain(in); got != want {
			t.Errorf("agentDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// ---- jti records and the token endpoint rate limit ----

// TestJTIWrittenOnlyOnSuccess: requests refused after the resource token verified (by
// the policy, for a direct grant without scope, over the undecided bound) write no jti
// record, and the same resource token works once the cause is gone.
func TestJTIWrittenOnlyOnSuccess(t *testing.T) {
	c := newConsentEnv(t, nil)
	st := newTestStorage(t)
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Off: true}}, st))
	jtis := func() int {
		return len(st.keys(keystore.LayoutOf(keystore.RoleIssuer, testIssuer).Dir(keystore.DirJTI)))
	}
	send := func(claims func(*tokenClaimsEdit)) (result, string) {
		cl := c.rtClaims()
		ed := &tokenClaimsEdit{scope: "data.read"}
		if claims != nil {
			claims(ed)
		}
		cl.Scope = ed.scope
		if ed.lifetime != 0 {
			cl.Expiry = cl.IssuedAt + int64(ed.lifetime/time.Second)
		}
		raw := c.mintRT(c.resource.Signer, cl)
		req := newRequest(http.MethodPost, PathToken, body(raw))
		signWith(t, req, c.agent.Signer, jwksKey(c.agent), c.now())
		return serve(t, c.h, req), raw
	}

	if res, _ := send(func(e *tokenClaimsEdit) { e.scope = "forbidden" }); res.Status != http.StatusForbidden {
		t.Fatalf("policy deny: %d %s", res.Status, res.Raw)
	}
	if res, _ := send(func(e *tokenClaimsEdit) { e.scope = "" }); res.Status != http.StatusForbidden && res.Status != http.StatusBadRequest {
		t.Fatalf("no scope: %d %s", res.Status, res.Raw)
	}
	if res, _ := send(func(e *tokenClaimsEdit) { e.lifetime = maxResourceTokenLifetime + time.Second }); res.Status != http.StatusBadRequest || res.str("error") != wire.CodeInvalidResourceToken {
		t.Fatalf("resource token living over %s: %d %s", maxResourceTokenLifetime, res.Status, res.Raw)
	}
	if n := jtis(); n != 0 {
		t.Fatalf("%d jti records written for refused requests", n)
	}

	// Direct grant without scope, under a policy that allows everything.
	allowAll := Handler{Issuer: testIssuer, Policy: &Policy{Default: EffectAllow}, TokenRateLimit: &RateLimit{Off: true}}
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(allowAll, st))
	if res, _ := send(func(e *tokenClaimsEdit) { e.scope = "" }); res.Status != http.StatusBadRequest || !strings.Contains(res.str("error_description"), "no scope") {
		t.Fatalf("direct grant without scope: %d %s", res.Status, res.Raw)
	}
	if n := jtis(); n != 0 {
		t.Fatalf("%d jti records written for a scopeless direct grant", n)
	}

	// Over the undecided bound: 429, and the resource token is still unused.
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Off: true}}, st))
	var code string
	for range maxPendingPerAgent {
		_, code = c.pending(c.agent, "")
	}
	before := jtis()
	res, raw := send(func(e *tokenClaimsEdit) { e.scope = consentScope })
	if res.Status != http.StatusTooManyRequests {
		t.Fatalf("over the bound: %d %s", res.Status, res.Raw)
	}
	if jtis() != before {
		t.Fatal("a refused request spent its jti")
	}
	b := c.browser()
	b.decide(b.login(code, "alice"), code, "deny")
	req := newRequest(http.MethodPost, PathToken, body(raw))
	signWith(t, req, c.agent.Signer, jwksKey(c.agent), c.now())
	if res := serve(t, c.h, req); res.Status != http.StatusAccepted {
		t.Fatalf("the same resource token after a place freed: %d %s", res.Status, res.Raw)
	}
	if jtis() != before+1 {
		t.Fatal("the successful request did not record its jti")
	}
}

type tokenClaimsEdit struct {
	scope    string
	lifetime time.Duration
}

// TestTokenRateLimit: 60 requests a minute per agent by default, then 429 with
// Retry-After; other agents are not affected; the budget refills over time.
func TestTokenRateLimit(t *testing.T) {
	c := newConsentEnv(t, nil)
	direct := func(a *origin) result { return c.freshRequest(a, "data.read") }
	for i := range DefaultTokenRateRequests {
		if res := direct(c.agent); res.Status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, res.Status, res.Raw)
		}
	}
	res := direct(c.agent)
	if res.Status != http.StatusTooManyRequests || res.str("error") != wire.CodeRateLimited || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d %s %v", res.Status, res.Raw, res.Header)
	}
	if res := direct(c.other); res.Status != http.StatusOK {
		t.Fatalf("another agent: %d %s", res.Status, res.Raw)
	}
	c.advance(time.Second)
	if res := direct(c.agent); res.Status != http.StatusOK {
		t.Fatalf("a second later: %d %s", res.Status, res.Raw)
	}
	if res := direct(c.agent); res.Status != http.StatusTooManyRequests {
		t.Fatalf("only one request refilled: %d", res.Status)
	}
	// A refused request is refused before its body is read: no jti is spent.
	c.advance(time.Minute)
	if res := direct(c.agent); res.Status != http.StatusOK {
		t.Fatalf("after a minute: %d %s", res.Status, res.Raw)
	}

	// Configured: 2 per 10s.
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Requests: 2, Window: caddyDur(10 * time.Second)}}, newTestStorage(t)))
	c.advance(time.Hour)
	for i := range 2 {
		if res := direct(c.agent); res.Status != http.StatusOK {
			t.Fatalf("configured, request %d: %d %s", i, res.Status, res.Raw)
		}
	}
	if res := direct(c.agent); res.Status != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "5" {
		t.Fatalf("configured, over: %d %v", res.Status, res.Header)
	}
}

func TestTokenLimiter(t *testing.T) {
	l := newTokenLimiter(2)
	l.configure(3, 3*time.Second)
	now := testNow
	for i := range 3 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("burst %d refused", i)
		}
	}
	if ok, retry := l.allow("a", now); ok || retry != time.Second {
		t.Fatalf("4th: %v %s", ok, retry)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("b refused")
	}
	// Full (2 keys, both active): a third key is refused until one is idle.
	if ok, _ := l.allow("c", now); ok {
		t.Fatal("c admitted past the key bound")
	}
	if ok, _ := l.allow("c", now.Add(4*time.Second)); !ok {
		t.Fatal("c refused after the others went idle")
	}
	l.configure(0, 0)
	for range 100 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatal("off still limits")
		}
	}
}

// ---- callbacks ----

// TestCallbackNotAfterDeny: after a denial the browser is shown a page (with the
// callback as a link), never redirected.
func TestCallbackNotAfterDeny(t *testing.T) {
	c := newConsentEnv(t, nil)
	for _, cb := range []string{c.chatty.ID + "/callback?state=1", "http://127.0.0.1:9999/callback"} {
		_, code := c.pending(c.chatty, "")
		b := c.browser()
		p := b.decide(b.login(code, "alice"), code, "deny", "callback", cb)
		if p.Status != http.StatusOK || p.Header.Get("Location") != "" || !strings.Contains(p.Body, "Request denied") {
			t.Fatalf("%s: deny: %d %q", cb, p.Status, p.Header.Get("Location"))
		}
		if !strings.Contains(p.Body, `href="`+strings.ReplaceAll(cb, "&", "&amp;")+`"`) {
			t.Errorf("%s: no link back on the denied page: %s", cb, p.Body)
		}
	}
	// A callback outside the declared endpoint is not even linked.
	_, code := c.pending(c.chatty, "")
	b := c.browser()
	p := b.decide(b.login(code, "alice"), code, "deny", "callback", "http://127.0.0.1:9999/admin")
	if p.Status != http.StatusOK || strings.Contains(p.Body, "127.0.0.1:9999") {
		t.Fatalf("undeclared callback: %d %s", p.Status, p.Body)
	}
}

// TestCallbackNeedsDeclaredEndpoint: without callback_endpoint there are no callbacks,
// loopback included.
func TestCallbackNeedsDeclaredEndpoint(t *testing.T) {
	rec := &pendingRecord{LocalhostCallback: true}
	if _, ok := validCallback("http://127.0.0.1:9999/callback", rec); ok {
		t.Fatal("loopback callback accepted without a declared endpoint")
	}
	rec.CallbackEndpoint = "https://agent.example/cb"
	for cb, want := range map[string]bool{
		"https://agent.example/cb":             true,
		"https://agent.example/cb/x?state=1":   true,
		"https://AGENT.example/cb":             true,
		"https://agent.example/cbx":            false,
		"https://agent.example/":               false,
		"https://agent.example/cb/%2e%2e/x":    false, // browsers resolve %2e%2e like ..
		"https://agent.example/cb/../x":        false,
		"https://agent.example\\@evil.example": false,
		"http://agent.example/cb":              false,
		"http://127.0.0.1:1/cb":                true,
		"http://[::1]:1/cb":                    true,
		"http://127.0.0.1:1/cb/x":              false,
		"http://127.0.0.1:1/cb?x=1":            false,
		"http://10.0.0.1:1/cb":                 false,
	} {
		if _, ok := validCallback(cb, rec); ok != want {
			t.Errorf("%s: %v, want %v", cb, ok, want)
		}
	}
	rec.LocalhostCallback = false
	if _, ok := validCallback("http://127.0.0.1:1/cb", rec); ok {
		t.Error("loopback accepted without localhost_callback_allowed")
	}
}

func caddyDur(d time.Duration) caddy.Duration { return caddy.Duration(d) }

// freshRequest is tokenRequest with a resource token issued at the env's current time.
func (c *consentEnv) freshRequest(a *origin, scope string) result {
	c.t.Helper()
	claims := c.rtClaims()
	claims.Agent, claims.AgentJKT, claims.Scope = a.ID, a.Signer.Public.Thumbprint, scope
	claims.IssuedAt, claims.Expiry = c.now().Unix(), c.now().Add(5*time.Minute).Unix()
	req := newRequest(http.MethodPost, PathToken, body(c.mintRT(c.resource.Signer, claims)))
	signWith(c.t, req, a.Signer, jwksKey(a), c.now())
	return serve(c.t, c.h, req)
}
