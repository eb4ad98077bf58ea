package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// observedConsentConfig is the consent setup (one API, one auth server asking alice)
// with Caddy's metrics on, the aauth lines written as JSON to logFile, and the three
// aauth events of the auth server subscribed by the test recorder.
func observedConsentConfig(env *consentEnv, logFile string) string {
	cfg := consentConfig(env, consentOptions{})
	return strings.Replace(cfg, "skip_install_trust", fmt.Sprintf(`skip_install_trust
	metrics
	log aauth {
		output file %s
		format json
		level DEBUG
		include http.handlers.aauth http.handlers.aauth_server
	}
	events {
		on aauth_token_issued aauth_test_recorder
		on aauth_consent_decided aauth_test_recorder
		on aauth_grant_revoked aauth_test_recorder
	}`, logFile), 1)
}

// TestAuthServerObservability runs a consent end to end against a real Caddy: the
// agent is challenged (auth_token_required), the token request waits (202), alice
// approves and remembers, the agent collects its token and passes. The admin /metrics
// shows the pending request, the approval, the issuance by kind and the gateway's
// verdicts; the log has one line per token endpoint verdict with its fields and no
// token; the events app hands the recorder aauth_consent_decided and aauth_token_issued,
// and aauth_grant_revoked once the grant is revoked through the admin API.
func TestAuthServerObservability(t *testing.T) {
	resetEvents()
	env := &consentEnv{backend: newEchoBackend(t), agentSrv: newAgentServer(t), storage: storageDir(t), users: map[string]string{"alice": alicePassword}}
	env.hashes = bcryptHashes(t, env.users)
	env.apiID = "http://localhost:" + freePort(t)
	env.authID = "http://127.0.0.1:" + freePort(t)
	logFile := filepath.Join(t.TempDir(), "aauth.log")
	caddytest.NewTester(t).InitServer(observedConsentConfig(env, logFile), "caddyfile")

	hook, pending := pendingSink()
	a := newConsentAgent(env.identity(), "", hook)
	out := a.start(env.apiID + "/data")
	pe := waitPending(t, pending, 15*time.Second)
	m := scrape(t)
	if v := metricValue(m, fmt.Sprintf(`caddy_aauth_pending_requests{issuer=%q}`, env.authID)); v != 1 {
		t.Errorf("pending_requests while waiting = %v, want 1", v)
	}
	u := newWebUser(env.authID)
	if _, err := u.login(pe.Code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	mustPage(t, u.post(url.Values{"csrf": {u.csrf()}, "code": {pe.Code}, "action": {"approve"}, "remember": {"1"}}), http.StatusOK)
	if o := waitOutcome(t, out, 30*time.Second); o.err != nil || o.res.status != http.StatusOK {
		t.Fatalf("agent: status %d err %v", o.res.status, o.err)
	}
	// The agent's second call reuses its token: the gateway finds it in its cache.
	if o := a.get(env.apiID + "/data"); o.err != nil || o.res.status != http.StatusOK {
		t.Fatalf("second call: status %d err %v", o.res.status, o.err)
	}

	m = scrape(t)
	for series, want := range map[string]float64{
		`caddy_aauth_consent_decisions_total{decision="approved"}`:                     1,
		`caddy_aauth_token_requests_total{code="ok",kind="consent",outcome="pending"}`: 1,
		`caddy_aauth_token_requests_total{code="ok",kind="consent",outcome="issued"}`:  1,
		fmt.Sprintf(`caddy_aauth_pending_requests{issuer=%q}`, env.authID):             0,
		`caddy_aauth_token_cache_lookups_total{result="miss"}`:                         1,
		`caddy_aauth_token_cache_lookups_total{result="hit"}`:                          1,
	} {
		if v := metricValue(m, series); v != want {
			t.Errorf("%s = %v, want %v", series, v, want)
		}
	}
	for code, want := range map[string]float64{"auth_token_required": 1, "ok": 2} {
		if v := metricSum(m, apiVerdict(env.apiID, code)); v != want {
			t.Errorf("%s* = %v, want %v", apiVerdict(env.apiID, code), v, want)
		}
	}
	checkTokenLines(t, logFile, env)
	checkConsentEvents(t, env)
	revokeAndCheckEvent(t, env)
}

// apiVerdict is the start of the verdicts series of the consent API's auth-token route
// (any server name).
func apiVerdict(apiID, code string) string {
	return fmt.Sprintf(`caddy_aauth_verdicts_total{code=%q,require="auth-token",resource=%q,`, code, apiID)
}

// metricSum sums the series whose text starts with prefix.
func metricSum(exposition, prefix string) float64 {
	sum := 0.0
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, prefix) {
			var f float64
			if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &f); err == nil {
				sum += f
			}
		}
	}
	return sum
}

// checkTokenLines: the token endpoint's pending line and the pending URL's issued line
// carry the agent, resource, scope, kind and duration; no aauth line holds a token.
func checkTokenLines(t *testing.T, logFile string, env *consentEnv) {
	t.Helper()
	byMsg := map[string]map[string]any{}
	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var f map[string]any
		if json.Unmarshal([]byte(l), &f) == nil {
			byMsg[fmt.Sprint(f["msg"])] = f
		}
	}
	for msg, endpoint := range map[string]string{"aauth token pending": "token", "aauth token issued": "pending"} {
		f := byMsg[msg]
		if f == nil || f["level"] != "info" || f["endpoint"] != endpoint || f["kind"] != "consent" || f["agent"] != env.agentSrv.id ||
			f["resource"] != env.apiID || f["scope"] != "data.write" || f["duration"] == nil || f["error"] != "ok" {
			t.Errorf("%q line: %v", msg, f)
		}
	}
	for _, jwtStart := range []string{"eyJhbGci", "eyJ0eXAi", "eyJraWQi", "eyJpc3Mi"} { // {"alg {"typ {"kid {"iss
		if strings.Contains(string(raw), jwtStart) {
			t.Fatalf("a token is in the aauth log:\n%s", raw)
		}
	}
}

// checkConsentEvents: alice's approval and the issued token reached the subscriber,
// with their flat fields and no token.
func checkConsentEvents(t *testing.T, env *consentEnv) {
	t.Helper()
	decided := eventsNamed("aauth_consent_decided")
	if len(decided) != 1 || decided[0].origin != "http.handlers.aauth_server" {
		t.Fatalf("aauth_consent_decided events %+v", decided)
	}
	if d := decided[0].data; d["issuer"] != env.authID || d["agent"] != env.agentSrv.id || d["resource"] != env.apiID ||
		d["scope"] != "data.write" || d["user"] != "alice" || d["decision"] != "approved" {
		t.Errorf("aauth_consent_decided data %v", d)
	}
	issued := eventsNamed("aauth_token_issued")
	if len(issued) != 1 {
		t.Fatalf("aauth_token_issued events %+v", issued)
	}
	d := issued[0].data
	if d["issuer"] != env.authID || d["agent"] != env.agentSrv.id || d["resource"] != env.apiID || d["scope"] != "data.write" ||
		d["sub"] != "alice" || d["kind"] != "consent" || fmt.Sprint(d["jti"]) == "" || d["jti"] == nil {
		t.Errorf("aauth_token_issued data %v", d)
	}
	for k, v := range d {
		if s, _ := v.(string); strings.Count(s, ".") == 2 && len(s) > 100 {
			t.Errorf("aauth_token_issued field %s looks like a token", k)
		}
	}
}

// revokeAndCheckEvent revokes alice's remembered grant through the admin API and
// expects aauth_grant_revoked.
func revokeAndCheckEvent(t *testing.T, env *consentEnv) {
	t.Helper()
	resp, err := http.Get("http://localhost:2999/aauth/grants")
	if err != nil {
		t.Fatal(err)
	}
	var grants []struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&grants)
	resp.Body.Close()
	if err != nil || len(grants) != 1 {
		t.Fatalf("GET /aauth/grants: %v %+v", err, grants)
	}
	if len(eventsNamed("aauth_grant_revoked")) != 0 {
		t.Fatal("aauth_grant_revoked before the revocation")
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://localhost:2999/aauth/grants/"+grants[0].ID, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	revoked := eventsNamed("aauth_grant_revoked")
	if resp.StatusCode != http.StatusNoContent || len(revoked) != 1 {
		t.Fatalf("DELETE: %d; events %+v", resp.StatusCode, revoked)
	}
	if d := revoked[0].data; d["issuer"] != env.authID || d["grant_id"] != grants[0].ID || d["agent"] != env.agentSrv.id || d["resource"] != env.apiID {
		t.Errorf("aauth_grant_revoked data %v", d)
	}
}
