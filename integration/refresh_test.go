package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// Refresh end to end (draft-hardt-aauth §11.6): the agent library holds an auth token that
// expired; before it runs a new challenge flow it trades the token at the auth server
// ({"auth_token": …}, signed by the token's cnf key). With a remembered decision the
// refresh succeeds without asking the person again; once the decision is revoked through
// the admin API the refresh is refused and the library falls back to the challenge flow,
// which asks again.

// logLines collects a Transport's Logf lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

// since returns the lines logged after the first n and the new count.
func (l *logLines) since(n int) (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[n:], "\n"), len(l.lines)
}

func startRefreshEnv(t *testing.T) *consentEnv {
	t.Helper()
	env := &consentEnv{backend: newEchoBackend(t), agentSrv: newAgentServer(t),
		users: map[string]string{"alice": alicePassword}}
	env.hashes = bcryptHashes(t, env.users)
	env.apiID = "http://localhost:" + freePort(t)
	env.authID = "http://127.0.0.1:" + freePort(t)
	cfg := fmt.Sprintf(`%s
%s {
	%s
	reverse_proxy %s
}

%s`, globalOptions(t, true), env.apiID, apiBlock(env.apiID, env.authID), env.backend.addr(),
		authServerBlock(env.authID, "token_lifetime 2s", env.hashes))
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")
	return env
}

// approveRemembered signs in as alice and approves code with "remember this decision".
func approveRemembered(t *testing.T, authID, code string) {
	t.Helper()
	u := newWebUser(authID)
	if _, err := u.login(code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	p := u.post(url.Values{"csrf": {u.csrf()}, "code": {code}, "action": {"approve"}, "remember": {"1"}})
	if p.err != nil || p.status != 200 || !strings.Contains(p.body, "Access approved") {
		t.Fatalf("approve with remember: status %d err %v: %.300s", p.status, p.err, p.body)
	}
}

// revokeAllGrants revokes every remembered decision through Caddy's admin API.
func revokeAllGrants(t *testing.T) {
	t.Helper()
	var gs []adminGrant
	resp, err := http.Get("http://localhost:2999/aauth/grants")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&gs)
	resp.Body.Close()
	if err != nil || len(gs) == 0 {
		t.Fatalf("grants %v: %v", gs, err)
	}
	for _, g := range gs {
		req, _ := http.NewRequest(http.MethodDelete, "http://localhost:2999/aauth/grants/"+g.ID, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoking %s: %v %v", g.ID, resp, err)
		}
		resp.Body.Close()
	}
}

func TestRefreshAgainstOurAuthServer(t *testing.T) {
	env := startRefreshEnv(t)
	var log logLines
	onPending, pending := pendingSink()
	a := newConsentAgent(env.identity(), "refresh test", onPending)
	a.client.Transport.(*agent.Transport).Logf = log.logf
	url := env.apiID + "/data"
	wantAlice := func(what string, out agentOutcome) {
		t.Helper()
		if out.err != nil || out.res.status != 200 || out.res.backendHeader("X-Aauth-Subject") != "alice" {
			t.Fatalf("%s: status %d err %v body %s", what, out.res.status, out.err, out.res.body)
		}
	}

	// 1. Consent, remembered.
	ch := a.start(url)
	approveRemembered(t, env.authID, waitPending(t, pending, 15*time.Second).Code)
	wantAlice("first call", waitOutcome(t, ch, 30*time.Second))

	// 2. The token expires; the next call refreshes it instead of asking again.
	time.Sleep(3 * time.Second)
	_, n := log.since(0)
	wantAlice("call after expiry", a.get(url))
	lines, n := log.since(n)
	if !strings.Contains(lines, "auth token refreshed") || strings.Contains(lines, "running the challenge flow") {
		t.Fatalf("want a refresh, not a new flow:\n%s", lines)
	}

	// 3. Revoked: the refresh is refused and the challenge flow asks the person again.
	revokeAllGrants(t)
	time.Sleep(3 * time.Second)
	ch = a.start(url)
	p := waitPending(t, pending, 15*time.Second)
	if err := newWebUser(env.authID).approve(p.Code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	wantAlice("call after revocation", waitOutcome(t, ch, 30*time.Second))
	if lines, _ = log.since(n); !strings.Contains(lines, "refresh refused") || !strings.Contains(lines, "revoked") {
		t.Fatalf("want the refresh refused because the grant was revoked:\n%s", lines)
	}
}
