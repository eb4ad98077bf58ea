package authserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// TestConsent202: a consent outcome answers 202 with every header and member of
// PROTOCOL.md §7.3, and the record in storage holds the verified context.
func TestConsent202(t *testing.T) {
	c := newConsentEnv(t, nil)
	res := c.tokenRequest(c.agent, consentScope+" data.read", "plan my week")
	if res.Status != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.Status, res.Raw)
	}
	loc, code := res.str("location"), res.str("code")
	id := strings.TrimPrefix(loc, testIssuer+PathPending)
	switch {
	case !strings.HasPrefix(loc, testIssuer+PathPending) || !validRandomID(id, pendingIDBytes):
		t.Errorf("location %q", loc)
	case res.Header.Get("Location") != loc:
		t.Errorf("Location header %q", res.Header.Get("Location"))
	case res.Header.Get("Retry-After") != "2":
		t.Errorf("Retry-After %q", res.Header.Get("Retry-After"))
	case res.Header.Get("Cache-Control") != "no-store":
		t.Errorf("Cache-Control %q", res.Header.Get("Cache-Control"))
	//lint:ignore SA1008 the AAuth header is set under its exact spelling, not the canonical "Aauth"; the test checks that spelling.
	case len(res.Header["AAuth"]) != 1 || res.Header["AAuth"][0] != `require=interaction; code="`+code+`"`:
		//lint:ignore SA1008 see above: the exact spelling is the point.
		t.Errorf("AAuth header %q", res.Header["AAuth"])
	case res.str("status") != "pending" || res.str("require") != "interaction":
		t.Errorf("body %s", res.Raw)
	}
	if n, ok := normalizeCode(code); !ok || n != code {
		t.Errorf("code %q is not a canonical code", code)
	}
	if len(res.Body) != 4 {
		t.Errorf("body has extra members: %s", res.Raw)
	}

	raw, err := c.store.Load(context.Background(), "aauth/issuer/https-auth.example/pending/"+id+".json")
	if err != nil {
		t.Fatal(err)
	}
	var rec pendingRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	switch {
	case rec.Agent != c.agent.ID || rec.Scheme != "jwks_uri" || rec.KeyJKT != c.agent.Signer.Public.Thumbprint:
		t.Errorf("agent facts %+v", rec)
	case rec.Resource != c.resource.ID || rec.Scope != consentScope+" data.read" || rec.Purpose != "plan my week":
		t.Errorf("request facts %+v", rec)
	case rec.ScopeDescriptions[consentScope] != "Read and change your calendar":
		t.Errorf("scope descriptions %v", rec.ScopeDescriptions)
	case rec.Expires-rec.Created != 600 || rec.Status != statusPending || rec.RTJTI == "":
		t.Errorf("record %+v", rec)
	}
	if _, err := c.store.Load(context.Background(), "aauth/issuer/https-auth.example/codes/"+code); err != nil {
		t.Errorf("code record: %v", err)
	}
}

// TestApproveFlow: poll before the decision → 202; the browser flow approves; the next
// poll gets a token with sub = the user and cnf = the agent key; then 404.
func TestApproveFlow(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	res := c.poll(c.agent, id)
	if res.Status != http.StatusAccepted || res.str("status") != "pending" || res.str("location") != testIssuer+PathPending+id {
		t.Fatalf("poll: %d %s", res.Status, res.Raw)
	}
	if res.Header.Get("Location") != testIssuer+PathPending+id || res.Header.Get("Retry-After") != "2" || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("poll headers %v", res.Header)
	}
	if _, ok := res.Body["clarification"]; ok || res.Header.Get("Preference-Applied") != "" {
		t.Errorf("poll: %s %v", res.Raw, res.Header)
	}

	b := c.browser()
	b.approve(code, "alice")

	tok := c.authToken(c.poll(c.agent, id))
	cl := tok.Claims
	switch {
	case cl.Subject != "alice":
		t.Errorf("sub %q", cl.Subject)
	case cl.Confirmation.Key.Thumbprint != c.agent.Signer.Public.Thumbprint:
		t.Errorf("cnf %q", cl.Confirmation.Key.Thumbprint)
	case cl.Agent != c.agent.ID || cl.Scope != consentScope || len(cl.Audience) != 1 || cl.Audience[0] != c.resource.ID:
		t.Errorf("claims %+v", cl)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusNotFound || res.str("error") != "not_found" {
		t.Fatalf("after the token: %d %s", res.Status, res.Raw)
	}
	// The code was consumed.
	if p := b.get("/interact?code=" + code); p.Status != http.StatusGone || !strings.Contains(p.Body, "already been used") {
		t.Fatalf("used code: %d %s", p.Status, p.Body)
	}
}

func TestDenyFlow(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	b := c.browser()
	p := b.decide(b.login(code, "bob"), code, "deny")
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "Request denied") {
		t.Fatalf("deny: %d %s", p.Status, p.Body)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusForbidden || res.str("error") != "denied" {
		t.Fatalf("poll: %d %s", res.Status, res.Raw)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusNotFound {
		t.Fatalf("after denied: %d %s", res.Status, res.Raw)
	}
}

func TestPendingExpiry(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	c.advance(10*time.Minute + time.Second)
	if res := c.poll(c.agent, id); res.Status != http.StatusRequestTimeout || res.str("error") != "expired" {
		t.Fatalf("poll: %d %s", res.Status, res.Raw)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusNotFound {
		t.Fatalf("after expired: %d %s", res.Status, res.Raw)
	}
	if p := c.browser().get("/interact?code=" + code); p.Status != http.StatusGone || !strings.Contains(p.Body, "expired") {
		t.Fatalf("expired code: %d %s", p.Status, p.Body)
	}
}

// TestPollKeyBinding: a poll signed by another agent's key is refused and leaves the
// record alone; unknown and malformed ids are 404; unsigned polls 401.
func TestPollKeyBinding(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	res := c.poll(c.other, id)
	if res.Status != http.StatusForbidden || res.str("error") != "key_binding_failed" {
		t.Fatalf("other key: %d %s", res.Status, res.Raw)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusAccepted {
		t.Fatalf("right key after a wrong one: %d %s", res.Status, res.Raw)
	}
	c.browser().approve(code, "alice")
	if res := c.poll(c.other, id); res.Status != http.StatusForbidden {
		t.Fatalf("other key after approval: %d %s", res.Status, res.Raw)
	}
	c.authToken(c.poll(c.agent, id))

	for _, bad := range []string{newPendingID(), "short", "..%2F..%2Fjwks", strings.Repeat("A", 23)} {
		if res := c.poll(c.agent, bad); res.Status != http.StatusNotFound || res.str("error") != "not_found" {
			t.Errorf("%q: %d %s", bad, res.Status, res.Raw)
		}
	}
	unsigned := httptest.NewRequest(http.MethodGet, testIssuer+PathPending+id, nil)
	if res := serve(t, c.h, unsigned); res.Status != http.StatusUnauthorized {
		t.Errorf("unsigned: %d", res.Status)
	}
	del := c.pollRequest(c.agent, id)
	del.Method = http.MethodDelete
	if res := serve(t, c.h, del); res.Status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", res.Status)
	}
}

// TestLongPollWakes: Prefer: wait=5 returns as soon as the approval lands.
func TestLongPollWakes(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	b := c.browser()
	consent := b.login(code, "alice")

	type out struct {
		rec *httptest.ResponseRecorder
		at  time.Time
	}
	done := make(chan out, 1)
	req := c.pollRequest(c.agent, id, "Prefer", "wait=5")
	go func() {
		rec := httptest.NewRecorder()
		_ = c.h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		done <- out{rec, time.Now()}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the long poll returned before the decision")
	default:
	}
	b.decide(consent, code, "approve")
	approved := time.Now()
	var o out
	select {
	case o = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll did not return")
	}
	if d := o.at.Sub(approved); d > time.Second {
		t.Errorf("woke %v after the approval", d)
	}
	if o.rec.Code != http.StatusOK || o.rec.Header().Get("Preference-Applied") != "wait=5" {
		t.Fatalf("long poll: %d %v %s", o.rec.Code, o.rec.Header(), o.rec.Body)
	}

	// Without a change, the wait is honoured up to max_poll_wait and answers 202.
	c2 := newConsentEnv(t, &Handler{Issuer: testIssuer, Policy: testPolicy(), MaxPollWait: caddy.Duration(time.Second)})
	id2, _ := c2.pending(c2.agent, "")
	start := time.Now()
	res := c2.poll(c2.agent, id2, "Prefer", "wait=30")
	if el := time.Since(start); el < 900*time.Millisecond || el > 3*time.Second {
		t.Errorf("capped wait took %v", el)
	}
	if res.Status != http.StatusAccepted || res.Header.Get("Preference-Applied") != "wait=1" {
		t.Errorf("capped: %d %v", res.Status, res.Header)
	}
}

func TestPreferWaitParsing(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"wait=5", 5 * time.Second, true},
		{"respond-async, wait=10", 10 * time.Second, true},
		{"WAIT = 3", 3 * time.Second, true},
		{`wait="7"`, 7 * time.Second, true},
		{"wait=abc", 0, false},
		{"wait=-1", 0, false},
		{"handling=lenient", 0, false},
		{"wait=99999999", time.Hour, true},
	}
	for _, tc := range cases {
		h := http.Header{"Prefer": {tc.in}}
		got, ok := preferWait(h)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %v %v", tc.in, got, ok)
		}
	}
}

// TestCodeMatching: codes are matched ignoring case, hyphens and spaces, and only once.
func TestCodeMatching(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, code := c.pending(c.agent, "")
	b := c.browser()
	for _, typed := range []string{strings.ToLower(code), code[:4] + "-" + code[4:], " " + code[:2] + " " + code[2:] + " "} {
		p := b.get("/interact?code=" + url.QueryEscape(typed))
		if p.Status != http.StatusOK || !strings.Contains(p.Body, `name="password"`) {
			t.Fatalf("%q: %d", typed, p.Status)
		}
	}
	consent := b.login(strings.ToLower(code), "alice")
	if p := b.decide(consent, strings.ToLower(code[:4])+"-"+code[4:], "approve"); p.Status != http.StatusOK {
		t.Fatalf("approve with a typed code: %d %s", p.Status, p.Body)
	}
	if p := b.get("/interact?code=" + code); p.Status != http.StatusGone {
		t.Fatalf("second use: %d", p.Status)
	}
	// A second decision with the same code fails too.
	if p := b.decide(consent, code, "deny"); p.Status != http.StatusGone {
		t.Fatalf("second decision: %d %s", p.Status, p.Body)
	}
}

func TestNormalizeCode(t *testing.T) {
	cases := map[string]string{
		"7R6XKPRP": "7R6XKPRP", "7r6x-kprp": "7R6XKPRP", " 7R6X KPRP ": "7R6XKPRP",
		"ABCD-1234": "ABCD1234", "oI1L-0000": "01110000", "abcd\t1234": "ABCD1234",
	}
	for in, want := range cases {
		if got, ok := normalizeCode(in); !ok || got != want {
			t.Errorf("%q → %q %v, want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "ABC", "ABCDEFGHJ", "ABCD123U", "ABCD123!", "ABCD12é4", "ABCD/123", strings.Repeat("-", 100) + "ABCD1234"} {
		if got, ok := normalizeCode(bad); ok {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
	seen := map[string]bool{}
	for range 1000 {
		c := newCode()
		if n, ok := normalizeCode(c); !ok || n != c {
			t.Fatalf("generated code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 999 {
		t.Errorf("only %d distinct codes in 1000", len(seen))
	}
}

func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{"7R6XKPRP", "7r6x-kprp", " ab cd 12 34", "IiLlOo00", "ABCD123U", "é", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := normalizeCode(s)
		if !ok {
			return
		}
		if len(n) != codeLen {
			t.Fatalf("%q → %q", s, n)
		}
		for i := 0; i < len(n); i++ {
			if !strings.ContainsRune(codeAlphabet, rune(n[i])) {
				t.Fatalf("%q → %q has %q", s, n, n[i])
			}
		}
		if again, ok := normalizeCode(n); !ok || again != n {
			t.Fatalf("not idempotent: %q → %q → %q", s, n, again)
		}
		if lower, ok := normalizeCode(strings.ToLower(n)); !ok || lower != n {
			t.Fatalf("case: %q", n)
		}
	})
}

// TestWrongCodeRateLimit: the 11th wrong code within a minute from one IP gets 429;
// another IP is unaffected; the window passes.
func TestWrongCodeRateLimit(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, code := c.pending(c.agent, "")
	get := func(ip, code string) result {
		req := httptest.NewRequest(http.MethodGet, testIssuer+"/interact?code="+code, nil)
		req.RemoteAddr = net.JoinHostPort(ip, "4444")
		return serve(t, c.h, req)
	}
	for i := range 10 {
		if res := get("192.0.2.1", "ZZZZZZZZ"); res.Status != http.StatusBadRequest || !strings.Contains(string(res.Raw), "not valid") {
			t.Fatalf("wrong code %d: %d", i+1, res.Status)
		}
	}
	res := get("192.0.2.1", "ZZZZZZZZ")
	if res.Status != http.StatusTooManyRequests || !strings.Contains(string(res.Raw), "Too many attempts") || res.Header.Get("Retry-After") == "" {
		t.Fatalf("11th: %d %s", res.Status, res.Raw)
	}
	// Even the right code is refused while blocked.
	if res := get("192.0.2.1", code); res.Status != http.StatusTooManyRequests {
		t.Fatalf("right code while blocked: %d", res.Status)
	}
	if res := get("192.0.2.2", "ZZZZZZZZ"); res.Status != http.StatusBadRequest {
		t.Fatalf("other IP: %d", res.Status)
	}
	if res := get("192.0.2.2", code); res.Status != http.StatusOK {
		t.Fatalf("other IP, right code: %d", res.Status)
	}
	// Malformed codes count too, and IPv6 clients are grouped by /64.
	for range 10 {
		get("2001:db8::1", "nope")
	}
	if res := get("2001:db8::2", "ZZZZZZZZ"); res.Status != http.StatusTooManyRequests {
		t.Fatalf("same /64: %d", res.Status)
	}
	if res := get("2001:db8:0:1::1", "ZZZZZZZZ"); res.Status != http.StatusBadRequest {
		t.Fatalf("other /64: %d", res.Status)
	}
	c.advance(61 * time.Second)
	if res := get("192.0.2.1", code); res.Status != http.StatusOK {
		t.Fatalf("after the window: %d", res.Status)
	}
}

// TestCSRF: forms without the session-bound token are refused.
func TestCSRF(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, code := c.pending(c.agent, "")
	b := c.browser()
	p := b.get("/interact?code=" + code)
	good := p.csrf()
	if good == "" {
		t.Fatal("no CSRF token on the login page")
	}
	other := c.browser().get("/interact?code=" + code).csrf()
	// Change the first character, whatever it is ("x"+good[1:] equals good 1 time in 64).
	wrong := string(good[0]^1) + good[1:]
	for name, tok := range map[string]string{"missing": "", "wrong": wrong, "another session's": other} {
		p := b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {tok}, "code": {code}, "username": {"alice"}, "password": {"alice-pw"}})
		if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Form expired") {
			t.Errorf("%s token: %d", name, p.Status)
		}
	}
	consent := b.login(code, "alice")
	for name, tok := range map[string]string{"missing": "", "pre-login": good} {
		p := b.post(PathInteract, url.Values{"action": {"approve"}, "csrf": {tok}, "code": {code}})
		if p.Status != http.StatusForbidden {
			t.Errorf("approve with %s token: %d", name, p.Status)
		}
	}
	// No cookie at all.
	req, _ := http.NewRequest(http.MethodPost, c.srv.URL+PathInteract, strings.NewReader(url.Values{"action": {"approve"}, "csrf": {consent.csrf()}, "code": {code}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := c.browser().do(req); p.Status != http.StatusForbidden {
		t.Errorf("no cookie: %d", p.Status)
	}
	if p := b.decide(consent, code, "approve"); p.Status != http.StatusOK {
		t.Fatalf("the real form still works: %d", p.Status)
	}
}

// TestLoginFailures: wrong password and unknown user both get the login page again.
func TestLoginFailures(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, code := c.pending(c.agent, "")
	b := c.browser()
	p := b.get("/interact?code=" + code)
	for _, creds := range [][2]string{{"alice", "nope"}, {"mallory", "mallory-pw"}, {"", ""}} {
		q := b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {p.csrf()}, "code": {code}, "username": {creds[0]}, "password": {creds[1]}})
		if q.Status != http.StatusUnauthorized || !strings.Contains(q.Body, "user name or password is wrong") {
			t.Errorf("%v: %d", creds, q.Status)
		}
	}
	if name, ok := authenticate(testUsers(t), "alice", "alice-pw"); !ok || name != "alice" {
		t.Error("good password refused")
	}
}

// TestPageSecurityHeaders: every interaction response forbids caching and framing.
func TestPageSecurityHeaders(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, code := c.pending(c.agent, "")
	b := c.browser()
	var pages []page
	add := func(p page) page { pages = append(pages, p); return p }
	add(b.get("/interact"))
	add(b.get("/interact?code=ZZZZZZZZ"))
	add(b.get(PathInteractStyle))
	add(b.get(PathInteractGrants))
	login := add(b.get("/interact?code=" + code))
	add(b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {"bad"}}))
	add(b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {login.csrf()}, "code": {code}, "username": {"alice"}, "password": {"x"}}))
	consent := add(b.login(code, "alice"))
	add(b.decide(consent, code, "approve"))
	add(b.get("/interact?code=" + code))
	add(b.get(PathInteractGrants))
	for i, p := range pages {
		h := p.Header
		csp := h.Get("Content-Security-Policy")
		if h.Get("Cache-Control") != "no-store" && !(i == 2 && strings.HasPrefix(h.Get("Cache-Control"), "public")) {
			t.Errorf("page %d (%d): Cache-Control %q", i, p.Status, h.Get("Cache-Control"))
		}
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") ||
			!strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "base-uri 'none'") ||
			!strings.Contains(csp, "form-action 'self'") || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("page %d (%d): headers %v", i, p.Status, h)
		}
		if i != 2 && p.Status != http.StatusSeeOther && !strings.Contains(p.Body, `<html lang="en">`) {
			t.Errorf("page %d is not a full page: %s", i, p.Body)
		}
	}
	if css := pages[2]; css.Status != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") || !strings.Contains(css.Body, ":focus-visible") {
		t.Errorf("style sheet: %d %v", css.Status, css.Header)
	}
}

// TestConsentPageShowsVerifiedFacts and escapes the agent's text.
func TestConsentPageShowsVerifiedFacts(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, code := c.pending(c.chatty, `<script>alert(1)</script> & "quotes"`)
	p := c.browser().login(code, "alice")
	for _, want := range []string{
		c.chatty.ID, "Signed with its published key (jwks_uri)", c.chatty.Signer.Public.Thumbprint,
		c.resource.ID, consentScope, "Read and change your calendar", "Stated by the agent, not verified",
		"&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;", "Chatty &lt;Assistant&gt;", "alice",
		"Remember this decision for 30 days", "Ask the agent a question",
	} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(p.Body, "<script>") {
		t.Error("the purpose was not escaped")
	}
	// An agent without clarification support gets no question box.
	_, code2 := c.pending(c.agent, "")
	if p := c.browser().login(code2, "bob"); strings.Contains(p.Body, "Ask the agent") {
		t.Error("question box for an agent without clarification support")
	}
}

// TestCallbackRedirect: a callback on the agent's declared origin (or loopback when
// allowed) gets a 303 after the decision; others are ignored.
func TestCallbackRedirect(t *testing.T) {
	c := newConsentEnv(t, nil)
	cases := []struct {
		cb   string
		want bool
	}{
		{c.chatty.ID + "/callback?state=xyz", true},
		{c.chatty.ID + "/callback/step2?state=xyz", true},
		{"http://127.0.0.1:9999/callback", true},
		{"http://localhost:9999/callback", true},
		{"http://127.0.0.1/callback", false},                  // no port
		{"http://127.0.0.1:9999/done", false},                 // loopback, but not the declared path
		{"http://127.0.0.1:9999/callback?next=/admin", false}, // loopback callbacks carry no query
		{"http://127.0.0.1:9999/callbackx", false},
		{c.chatty.ID + "/other", false},
		{c.chatty.ID + "/callback/../admin", false},
		{c.chatty.ID + "/callbackevil", false},
		{"https://evil.example/callback", false},
		{"javascript:alert(1)", false},
		{"//evil.example/x", false},
	}
	for _, tc := range cases {
		_, code := c.pending(c.chatty, "")
		b := c.browser()
		p := b.get("/interact?code=" + code + "&callback=" + url.QueryEscape(tc.cb))
		p = b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {p.csrf()}, "code": {code}, "callback": {tc.cb}, "username": {"alice"}, "password": {"alice-pw"}})
		consent := b.get(p.Header.Get("Location"))
		csp := consent.Header.Get("Content-Security-Policy")
		p = b.decide(consent, code, "approve", "callback", tc.cb)
		if tc.want {
			if p.Status != http.StatusSeeOther || p.Header.Get("Location") != tc.cb {
				t.Errorf("%s: %d %q", tc.cb, p.Status, p.Header.Get("Location"))
			}
			if !strings.Contains(csp, "form-action 'self' "+originOf(tc.cb)) {
				t.Errorf("%s: CSP %q", tc.cb, csp)
			}
		} else if p.Status != http.StatusOK || !strings.Contains(p.Body, "You can close this window") {
			t.Errorf("%s: %d %q", tc.cb, p.Status, p.Header.Get("Location"))
		}
	}
}

// TestRememberedConsent: an approval with "remember" lets the next request for the same
// agent, resource and scopes through with the same sub; revoking it through the admin
// API brings the consent back.
func TestRememberedConsent(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	c.browser().approve(code, "alice", "remember", "1")
	c.authToken(c.poll(c.agent, id))

	res := c.tokenRequest(c.agent, consentScope, "")
	if tok := c.authToken(res); tok.Claims.Subject != "alice" || tok.Claims.Scope != consentScope {
		t.Fatalf("remembered: %+v", tok.Claims)
	}
	// A wider request is not covered; another agent is not covered.
	if res := c.tokenRequest(c.agent, consentScope+" data.read", ""); res.Status != http.StatusAccepted {
		t.Errorf("wider scopes: %d", res.Status)
	}
	if res := c.tokenRequest(c.other, consentScope, ""); res.Status != http.StatusAccepted {
		t.Errorf("other agent: %d", res.Status)
	}

	admin := &GrantsAdmin{now: c.now}
	rec := httptest.NewRecorder()
	if err := admin.handleList(rec, httptest.NewRequest(http.MethodGet, "/aauth/grants", nil)); err != nil {
		t.Fatal(err)
	}
	var list []GrantInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	var mine []GrantInfo
	for _, g := range list {
		if g.Issuer == testIssuer {
			mine = append(mine, g)
		}
	}
	if len(mine) != 1 || mine[0].User != "alice" || mine[0].Agent != c.agent.ID || mine[0].Resource != c.resource.ID ||
		len(mine[0].Scopes) != 1 || mine[0].Expires.Sub(mine[0].Created) != DefaultRememberFor {
		t.Fatalf("admin list %+v", mine)
	}
	rec = httptest.NewRecorder()
	if err := admin.handleRevoke(rec, httptest.NewRequest(http.MethodDelete, "/aauth/grants/"+mine[0].ID, nil)); err != nil || rec.Code != http.StatusNoContent {
		t.Fatalf("revoke: %v %d", err, rec.Code)
	}
	err := admin.handleRevoke(httptest.NewRecorder(), httptest.NewRequest(http.MethodDelete, "/aauth/grants/"+mine[0].ID, nil))
	if ae, ok := err.(caddy.APIError); !ok || ae.HTTPStatus != http.StatusNotFound {
		t.Fatalf("second revoke: %v", err)
	}
	if res := c.tokenRequest(c.agent, consentScope, ""); res.Status != http.StatusAccepted {
		t.Fatalf("after revoke: %d %s", res.Status, res.Raw)
	}
	if len(admin.Routes()) != 2 {
		t.Error("routes")
	}
}

// TestGrantsPage: a signed-in user sees and revokes their own remembered decisions.
func TestGrantsPage(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	b := c.browser()
	b.approve(code, "alice", "remember", "1")
	c.authToken(c.poll(c.agent, id))
	p := b.get(PathInteractGrants)
	if p.Status != 200 || !strings.Contains(p.Body, c.agent.ID) {
		t.Fatalf("grants page: %d %s", p.Status, p.Body)
	}
	gid := regexpFind(p.Body, `name="id" value="([^"]+)"`)
	// bob cannot revoke alice's grant
	bob := c.browser()
	bp := bob.get(PathInteractGrants)
	bp = bob.post(PathInteract, url.Values{"action": {"login"}, "next": {"grants"}, "csrf": {bp.csrf()}, "username": {"bob"}, "password": {"bob-pw"}})
	bp = bob.get(bp.Header.Get("Location"))
	if strings.Contains(bp.Body, c.agent.ID) {
		t.Fatal("bob sees alice's grant")
	}
	if q := bob.post(PathInteractGrants, url.Values{"action": {"revoke"}, "csrf": {bp.csrf()}, "id": {gid}}); q.Status != http.StatusNotFound {
		t.Fatalf("bob revoking: %d", q.Status)
	}
	if q := b.post(PathInteractGrants, url.Values{"action": {"revoke"}, "id": {gid}}); q.Status != http.StatusForbidden {
		t.Fatalf("revoke without CSRF: %d", q.Status)
	}
	q := b.post(PathInteractGrants, url.Values{"action": {"revoke"}, "csrf": {p.csrf()}, "id": {gid}})
	if q.Status != 200 || !strings.Contains(q.Body, "was revoked") || strings.Contains(q.Body, `name="id"`) {
		t.Fatalf("revoke: %d %s", q.Status, q.Body)
	}
	if res := c.tokenRequest(c.agent, consentScope, ""); res.Status != http.StatusAccepted {
		t.Fatalf("after revoke: %d", res.Status)
	}
}

func regexpFind(s, re string) string {
	m := regexpMust(re).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestRestartKeepsPending: a fresh handler (the pooled store destroyed, as after a
// restart) over the same storage finds the record by id and by code and completes it;
// the login session survives too.
func TestRestartKeepsPending(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	b := c.browser()
	consent := b.login(code, "alice")
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, ok := consentPool.References(testIssuer); ok {
		t.Fatal("the consent store is still pooled")
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy()}, c.store))
	if res := c.poll(c.agent, id); res.Status != http.StatusAccepted {
		t.Fatalf("poll after restart: %d %s", res.Status, res.Raw)
	}
	// same session cookie and CSRF token still valid
	if p := b.decide(consent, code, "approve"); p.Status != http.StatusOK {
		t.Fatalf("approve after restart: %d %s", p.Status, p.Body)
	}
	if tok := c.authToken(c.poll(c.agent, id)); tok.Claims.Subject != "alice" {
		t.Fatalf("sub %q", tok.Claims.Subject)
	}

	// And a code entered only after the restart.
	id2, code2 := c.pending(c.agent, "")
	if err := c.h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy()}, c.store))
	c.browser().approve(code2, "bob")
	if tok := c.authToken(c.poll(c.agent, id2)); tok.Claims.Subject != "bob" {
		t.Fatalf("sub %q", tok.Claims.Subject)
	}
}

// TestReloadSharesState: two handler instances of one issuer (a reload) share the
// pending records, and a decision taken through one wakes a long poll held by the other.
func TestReloadSharesState(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.agent, "")
	old := c.h
	c.serve(c.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), MaxPollWait: caddy.Duration(10 * time.Second)}, c.store))
	done := make(chan int, 1)
	req := c.pollRequest(c.agent, id, "Prefer", "wait=10")
	go func() {
		rec := httptest.NewRecorder()
		_ = old.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		done <- rec.Code
	}()
	c.browser().approve(code, "alice")
	select {
	case code := <-done:
		if code != http.StatusOK {
			t.Fatalf("old instance answered %d", code)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("old instance's long poll was not woken")
	}
}

// TestUserFrom: with user_from the user comes from the placeholder; no login form.
func TestUserFrom(t *testing.T) {
	c := newConsentEnv(t, &Handler{Issuer: testIssuer, Policy: testPolicy(), UserFrom: "{http.auth.user.id}"})
	id, code := c.pending(c.agent, "")
	b := c.browser()
	if p := b.get("/interact?code=" + code); p.Status != http.StatusUnauthorized || strings.Contains(p.Body, `name="password"`) {
		t.Fatalf("without an authenticated user: %d", p.Status)
	}
	c.mu.Lock()
	c.userFrom = "carol"
	c.mu.Unlock()
	p := b.get("/interact?code=" + code)
	if p.Status != http.StatusOK || strings.Contains(p.Body, `name="password"`) || !strings.Contains(p.Body, "carol") {
		t.Fatalf("consent page: %d %s", p.Status, p.Body)
	}
	if q := b.post(PathInteract, url.Values{"action": {"login"}, "csrf": {p.csrf()}, "username": {"x"}, "password": {"y"}}); q.Status != http.StatusBadRequest {
		t.Errorf("login form in user_from mode: %d", q.Status)
	}
	if q := b.decide(p, code, "approve"); q.Status != http.StatusOK {
		t.Fatalf("approve: %d %s", q.Status, q.Body)
	}
	if tok := c.authToken(c.poll(c.agent, id)); tok.Claims.Subject != "carol" {
		t.Fatalf("sub %q", tok.Claims.Subject)
	}
}

// TestClarification: the user's question reaches the agent in the 202 body; the agent's
// signed answer shows on the consent page (escaped); the sixth answer denies.
func TestClarification(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.chatty, "")
	b := c.browser()
	consent := b.login(code, "alice")
	p := b.post(PathInteract, url.Values{"action": {"ask"}, "csrf": {consent.csrf()}, "code": {code}, "question": {"Why do you need my calendar?"}})
	if p.Status != http.StatusSeeOther {
		t.Fatalf("ask: %d %s", p.Status, p.Body)
	}
	// A waiting question makes the long poll return at once.
	start := time.Now()
	res := c.poll(c.chatty, id, "Prefer", "wait=5")
	if res.Status != http.StatusAccepted || res.str("clarification") != "Why do you need my calendar?" || time.Since(start) > time.Second {
		t.Fatalf("poll: %d %s after %v", res.Status, res.Raw, time.Since(start))
	}
	// The key binding holds for answers too.
	if res := c.answer(c.agent, id, "hijack"); res.Status != http.StatusForbidden {
		t.Fatalf("answer by another key: %d", res.Status)
	}
	res = c.answer(c.chatty, id, "To find a <b>free</b> slot")
	if res.Status != http.StatusAccepted || res.str("status") != "pending" {
		t.Fatalf("answer: %d %s", res.Status, res.Raw)
	}
	if res := c.poll(c.chatty, id); res.str("clarification") != "" {
		t.Fatalf("answered question still sent: %s", res.Raw)
	}
	page := b.get("/interact?code=" + code)
	if !strings.Contains(page.Body, "To find a &lt;b&gt;free&lt;/b&gt; slot") || !strings.Contains(page.Body, "Why do you need my calendar?") {
		t.Fatalf("consent page does not show the exchange: %s", page.Body)
	}
	// Bad answers.
	for _, bad := range []string{`{}`, `{"clarification_response":1}`, `{"clarification_response":"x","y":1}`, `[]`} {
		req := httptest.NewRequest(http.MethodPost, testIssuer+PathPending+id, strings.NewReader(bad))
		req.Header.Set("Content-Type", "application/json")
		signWith(t, req, c.chatty.Signer, jwksKey(c.chatty), c.now())
		if res := serve(t, c.h, req); res.Status != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, res.Status)
		}
	}
	if res := c.answer(c.chatty, id, strings.Repeat("é", 2001)); res.Status != http.StatusBadRequest {
		t.Errorf("long answer: %d", res.Status)
	}
	// Answers nobody asked for are refused and change nothing (they would show on the
	// consent page); the user's questions are bounded by TestUserQuestionLimit.
	if res := c.answer(c.chatty, id, "unprompted"); res.Status != http.StatusBadRequest {
		t.Fatalf("unprompted answer: %d %s", res.Status, res.Raw)
	}
	if res := c.poll(c.chatty, id); res.Status != http.StatusAccepted {
		t.Fatalf("after the unprompted answer: %d %s", res.Status, res.Raw)
	}
	if page := b.get("/interact?code=" + code); strings.Contains(page.Body, "unprompted") {
		t.Fatal("an unprompted answer reached the consent page")
	}

	// Agents without clarification support cannot answer.
	id2, _ := c.pending(c.agent, "")
	if res := c.answer(c.agent, id2, "hello"); res.Status != http.StatusBadRequest {
		t.Fatalf("unsupported agent: %d %s", res.Status, res.Raw)
	}
}

// TestUserQuestionLimit: the user can ask at most MaxClarificationRounds questions, one
// at a time.
func TestUserQuestionLimit(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.chatty, "")
	b := c.browser()
	b.login(code, "alice")
	for i := range MaxClarificationRounds {
		p := b.get("/interact?code=" + code)
		if q := b.post(PathInteract, url.Values{"action": {"ask"}, "csrf": {p.csrf()}, "code": {code}, "question": {fmt.Sprintf("q%d", i)}}); q.Status != http.StatusSeeOther {
			t.Fatalf("question %d: %d", i, q.Status)
		}
		// a second question before the answer is refused
		if q := b.post(PathInteract, url.Values{"action": {"ask"}, "csrf": {p.csrf()}, "code": {code}, "question": {"again"}}); q.Status != http.StatusBadRequest {
			t.Fatalf("question while waiting: %d", q.Status)
		}
		if res := c.answer(c.chatty, id, fmt.Sprintf("a%d", i)); res.Status != http.StatusAccepted {
			t.Fatalf("answer %d: %d", i, res.Status)
		}
	}
	p := b.get("/interact?code=" + code)
	if strings.Contains(p.Body, "Ask the agent") {
		t.Error("question box after the limit")
	}
	if q := b.post(PathInteract, url.Values{"action": {"ask"}, "csrf": {p.csrf()}, "code": {code}, "question": {"more"}}); q.Status != http.StatusBadRequest {
		t.Fatalf("question over the limit: %d", q.Status)
	}
}

// TestConcurrentFlows: 50 consent flows at once, each approved by a different user over
// HTTP; each agent request gets its own token with its own sub.
func TestConcurrentFlows(t *testing.T) {
	c := newConsentEnv(t, nil)
	const n = 50
	type flow struct{ id, code, user string }
	flows := make([]flow, n)
	for i := range flows {
		id, code := c.pending(c.agent, "")
		flows[i] = flow{id, code, fmt.Sprintf("user%02d", i)}
	}
	var wg sync.WaitGroup
	subs := make([]string, n)
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := flows[i]
			done := make(chan result, 1)
			go func() {
				rec := httptest.NewRecorder()
				_ = c.h.ServeHTTP(rec, c.pollRequest(c.agent, f.id, "Prefer", "wait=10"), caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
				var body map[string]any
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				done <- result{Status: rec.Code, Body: body, Raw: rec.Body.Bytes()}
			}()
			c.browser().approve(f.code, f.user)
			res := <-done
			if res.Status != http.StatusOK {
				t.Errorf("flow %d: %d %s", i, res.Status, res.Raw)
				return
			}
			raw, _ := res.Body["auth_token"].(string)
			tok := verifyAuthTokenAt(t, c.h, raw, c.resource.ID, c.now())
			subs[i] = tok.Claims.Subject
		}()
	}
	wg.Wait()
	for i, s := range subs {
		if s != flows[i].user {
			t.Errorf("flow %d: sub %q, want %q", i, s, flows[i].user)
		}
	}
}

// TestDelegateConsent: a delegate's request records the delegate; the token carries
// agent_delegate and the delegate's key.
func TestDelegateConsent(t *testing.T) {
	c := newConsentEnv(t, nil)
	delegate := genSigner(t, "")
	at := mintAgentToken(t, c.agent, delegate, "delegate-7")
	claims := c.rtClaims()
	claims.AgentJKT, claims.Scope = delegate.Public.Thumbprint, consentScope
	req := newRequest(http.MethodPost, PathToken, body(c.mintRT(c.resource.Signer, claims)))
	signWith(t, req, delegate, jwtKey(at), c.now())
	res := serve(t, c.h, req)
	if res.Status != http.StatusAccepted {
		t.Fatalf("%d %s", res.Status, res.Raw)
	}
	id := strings.TrimPrefix(res.str("location"), testIssuer+PathPending)
	p := c.browser().login(res.str("code"), "alice")
	if !strings.Contains(p.Body, "delegate “delegate-7”") {
		t.Errorf("consent page does not name the delegate")
	}
	c.browser().approve(res.str("code"), "alice", "remember", "1")
	poll := httptest.NewRequest(http.MethodGet, testIssuer+PathPending+id, nil)
	signWith(t, poll, delegate, jwtKey(at), c.now())
	tok := c.authToken(serve(t, c.h, poll))
	if tok.Claims.AgentDelegate != "delegate-7" || tok.Claims.Confirmation.Key.Thumbprint != delegate.Public.Thumbprint || tok.Claims.Subject != "alice" {
		t.Fatalf("claims %+v", tok.Claims)
	}
	gs, err := c.h.consent.listGrants(context.Background(), "alice", c.now())
	if err != nil || len(gs) != 1 || gs[0].Delegate != "delegate-7" || gs[0].Agent != c.agent.ID {
		t.Fatalf("grants %+v %v", gs, err)
	}
}

func TestConsentValidation(t *testing.T) {
	hash := testUsers(t)[0].Hash
	cases := []struct {
		name string
		h    Handler
		want string
	}{
		{"consent without users", Handler{Issuer: testIssuer, Policy: &Policy{Default: EffectConsent}}, "consent needs users: user or user_from"},
		{"both", Handler{Issuer: testIssuer, Users: []User{{"a", hash}}, UserFrom: "{http.auth.user.id}"}, "mutually exclusive"},
		{"bad hash", Handler{Issuer: testIssuer, Users: []User{{"a", "secret"}}}, "bcrypt"},
		{"duplicate user", Handler{Issuer: testIssuer, Users: []User{{"a", hash}, {"a", hash}}}, "more than once"},
		{"bad name", Handler{Issuer: testIssuer, Users: []User{{"a b", hash}}}, "white space"},
		{"not a placeholder", Handler{Issuer: testIssuer, UserFrom: "alice"}, "placeholder"},
		{"short pending", Handler{Issuer: testIssuer, PendingLifetime: caddy.Duration(time.Second)}, "pending_lifetime"},
		{"long poll wait", Handler{Issuer: testIssuer, MaxPollWait: caddy.Duration(time.Hour)}, "max_poll_wait"},
		{"negative remember", Handler{Issuer: testIssuer, RememberFor: caddy.Duration(-time.Hour)}, "remember_for"},
	}
	for _, tc := range cases {
		err := tc.h.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	ok := Handler{Issuer: testIssuer, Policy: &Policy{Default: EffectConsent}, UserFrom: "{http.auth.user.id}"}
	if err := ok.Validate(); err != nil {
		t.Errorf("user_from: %v", err)
	}
}

// BenchmarkPoll measures a signed poll of a pending request that answers 202
// (signature verification and the single-use signature spend included; the agent's key
// is cached). Every poll carries a fresh signature (each is accepted once) and the clock
// moves on half a second per poll, so old signatures leave the window; a new pending
// request is made every 1000 polls, before its lifetime runs out.
func BenchmarkPoll(b *testing.B) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	var h *Handler
	var reqs []*http.Request
	var clock atomic.Int64
	for i := range b.N {
		if i%1000 == 0 {
			b.StopTimer()
			hh, agent, id := benchPending(b)
			h = hh
			h.now = func() time.Time { return time.Unix(0, clock.Load()) }
			reqs = reqs[:0]
			for j := range min(1000, b.N-i) {
				req := httptest.NewRequest(http.MethodGet, h.Issuer+PathPending+id, nil)
				opts := httpsig.SignOptions{Created: testNow.Add(time.Duration(j) * time.Second / 2), Nonce: strconv.Itoa(j)}
				if err := httpsig.Sign(req, agent.Signer, jwksKey(agent), opts); err != nil {
					b.Fatal(err)
				}
				reqs = append(reqs, req)
			}
			b.StartTimer()
		}
		clock.Store(testNow.Add(time.Duration(i%1000) * time.Second / 2).UnixNano())
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, reqs[i%1000], next)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("poll %d: status %d %s", i, rec.Code, rec.Body)
		}
	}
}

// TestConsentSweep: expired pending records, codes and sessions leave memory and
// storage; live ones stay.
func TestConsentSweep(t *testing.T) {
	ctx := context.Background()
	st := newTestStorage(t)
	s, err := newConsentStore(ctx, "https://sweep.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destruct()
	old := &pendingRecord{Created: testNow.Unix(), Expires: testNow.Add(time.Minute).Unix(), Key: map[string]any{}}
	live := &pendingRecord{Created: testNow.Unix(), Expires: testNow.Add(time.Hour).Unix(), Key: map[string]any{}}
	for _, r := range []*pendingRecord{old, live} {
		if err := s.create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.newSession(ctx, "alice", testNow.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.sweep(ctx, testNow.Add(time.Minute+tombstoneKeep+time.Second))
	if _, _, err := s.get(ctx, old.ID, 0); err != errNotFound {
		t.Errorf("expired record still there: %v", err)
	}
	if _, err := s.lookupCode(ctx, old.Code); err != errNotFound {
		t.Errorf("expired code still there: %v", err)
	}
	if _, _, err := s.get(ctx, live.ID, 0); err != nil {
		t.Errorf("live record swept: %v", err)
	}
	if n := len(st.keys(s.layout.Dir(keystore.DirSessions))); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	if n := len(st.keys(s.layout.Dir(keystore.DirPending))); n != 1 {
		t.Errorf("%d pending records in storage", n)
	}
	// The CSRF key is stable across store instances on one storage.
	s2, err := newConsentStore(ctx, "https://sweep2.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Destruct()
	s3, err := newConsentStore(ctx, "https://sweep2.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Destruct()
	csrf := func(s *consentStore) string {
		tok, err := s.csrfToken(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if csrf(s2) != csrf(s3) || csrf(s) == csrf(s2) {
		t.Error("CSRF keys are not per issuer and stable")
	}
}

// TestRememberedConsentIsPerDelegateAndKey: alice's remembered decision for delegate-7
// must not hand alice's sub to another delegate (another person's instance) of the same
// agent, nor survive the user's removal.
func TestRememberedConsentIsPerDelegateAndKey(t *testing.T) {
	c := newConsentEnv(t, nil)
	ask := func(d *keys.Signer, sub string) result {
		at := mintAgentToken(t, c.agent, d, sub)
		claims := c.rtClaims()
		claims.AgentJKT, claims.Scope, claims.ID = d.Public.Thumbprint, consentScope, token.NewID()
		req := newRequest(http.MethodPost, PathToken, body(c.mintRT(c.resource.Signer, claims)))
		signWith(t, req, d, jwtKey(at), c.now())
		return serve(t, c.h, req)
	}
	d7, d8 := genSigner(t, ""), genSigner(t, "")
	res := ask(d7, "delegate-7")
	if res.Status != http.StatusAccepted {
		t.Fatalf("%d %s", res.Status, res.Raw)
	}
	c.browser().approve(res.str("code"), "alice", "remember", "1")
	if res := ask(d7, "delegate-7"); res.Status != http.StatusOK {
		t.Fatalf("the remembered delegate: %d", res.Status)
	}
	if res := ask(d8, "delegate-8"); res.Status != http.StatusAccepted {
		t.Fatalf("another delegate of the same agent got %d (must ask its own user)", res.Status)
	}
	if res := ask(d8, "delegate-7"); res.Status != http.StatusAccepted {
		t.Fatalf("the same delegate name with another key got %d", res.Status)
	}
	// Without alice among the users, her grant no longer applies.
	c.h.Users = []User{{Name: "bob", Hash: c.h.Users[0].Hash}}
	if res := ask(d7, "delegate-7"); res.Status != http.StatusAccepted {
		t.Fatalf("grant of a removed user applied: %d", res.Status)
	}
}

// TestClarificationAnswerAfterDecision: an answer that races the user's approval gets
// 409 and no token; the poll still delivers the token.
func TestClarificationAnswerAfterDecision(t *testing.T) {
	c := newConsentEnv(t, nil)
	id, code := c.pending(c.chatty, "")
	c.browser().approve(code, "alice")
	res := c.answer(c.chatty, id, "late answer")
	if res.Status != http.StatusConflict || res.str("auth_token") != "" {
		t.Fatalf("answer after approval: %d %s", res.Status, res.Raw)
	}
	if tok := c.authToken(c.poll(c.chatty, id)); tok.Claims.Subject != "alice" {
		t.Fatalf("poll after the late answer: %+v", tok.Claims)
	}
}

// TestPendingBoundPerAgent: one agent cannot hold more than maxPendingPerAgent undecided
// requests; another agent is unaffected.
func TestPendingBoundPerAgent(t *testing.T) {
	c := newConsentEnv(t, &Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Off: true}})
	for range maxPendingPerAgent {
		c.pending(c.agent, "")
	}
	res := c.tokenRequest(c.agent, consentScope, "")
	if res.Status != http.StatusTooManyRequests {
		t.Fatalf("request over the bound: %d %s", res.Status, res.Raw)
	}
	if res := c.tokenRequest(c.other, consentScope, ""); res.Status != http.StatusAccepted {
		t.Fatalf("another agent: %d", res.Status)
	}
}

// TestClarificationBody: clarification answers follow the token endpoint's body rule. By
// default an answer whose signature does not cover the body is taken, but a covered
// Content-Digest must match; with require_signed_body the body must be covered.
func TestClarificationBody(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("require_signed_body=%v", strict), func(t *testing.T) {
			c := newConsentEnv(t, &Handler{Issuer: testIssuer, Policy: testPolicy(), RequireSignedBody: strict})
			id, code := c.pending(c.chatty, "")
			b := c.browser()
			consent := b.login(code, "alice")
			if p := b.post(PathInteract, url.Values{"action": {"ask"}, "csrf": {consent.csrf()}, "code": {code}, "question": {"Which calendar?"}}); p.Status != http.StatusSeeOther {
				t.Fatalf("ask: %d %s", p.Status, p.Body)
			}
			send := func(cover bool, signed, sent string) result {
				req := httptest.NewRequest(http.MethodPost, testIssuer+PathPending+id, strings.NewReader(signed))
				req.Header.Set("Content-Type", "application/json")
				opts := httpsig.SignOptions{Created: c.now()}
				if cover {
					opts = bodyOptions(t, req, opts)
				}
				if err := httpsig.Sign(req, c.chatty.Signer, jwksKey(c.chatty), opts); err != nil {
					t.Fatal(err)
				}
				req.Body = io.NopCloser(strings.NewReader(sent))
				req.ContentLength = int64(len(sent))
				return serve(t, c.h, req)
			}
			work, home := `{"clarification_response":"work"}`, `{"clarification_response":"home"}`
			if r := send(true, work, home); r.Status != http.StatusUnauthorized || !strings.Contains(r.str("error_description"), "Content-Digest") {
				t.Fatalf("swapped answer under a covered digest: %d %s", r.Status, r.Raw)
			}
			r := send(false, work, work)
			if strict {
				if r.Status != http.StatusUnauthorized || r.str("error") != "invalid_signature" {
					t.Fatalf("uncovered answer with require_signed_body: %d %s", r.Status, r.Raw)
				}
				r = send(true, work, work)
			}
			if r.Status != http.StatusAccepted {
				t.Fatalf("answer: %d %s", r.Status, r.Raw)
			}
			if page := b.get("/interact?code=" + code); !strings.Contains(page.Body, "work") || strings.Contains(page.Body, "home") {
				t.Fatalf("consent page: %s", page.Body)
			}
		})
	}
}
