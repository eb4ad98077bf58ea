package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// Call chaining with the Python reference implementation as the other party
// (draft-hardt-aauth §4.5.5 agent as audience, §4.5.8 call chaining, §4.5.8.2 interaction
// chaining). The reference participants run in integration/testdata/reference/driver.py
// in its "chain" mode, which starts each auth server, resource and agent the test names
// and runs one flow per command.

// chainResult is the driver's account of one chain-mode flow.
type chainResult struct {
	Status    int    `json:"status"`
	Body      string `json:"body"`
	AAuth     string `json:"aauth"`
	Token     string `json:"token"`
	Exchanges []struct {
		Method string `json:"method"`
		URL    string `json:"url"`
		Status int    `json:"status"`
		Error  string `json:"error,omitempty"`
	} `json:"exchanges"`
}

func (r chainResult) String() string {
	c := r
	if c.Token != "" {
		c.Token = "(a token)" // the test output carries no tokens
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return string(b)
}

// exchange returns the status of the first request the driver made with method to a URL
// with the origin and path prefix, or 0.
func (r chainResult) exchange(method, prefix string) int {
	if s := r.statuses(method, prefix); len(s) > 0 {
		return s[0]
	}
	return 0
}

// statuses lists the statuses of every request the driver made with method to a URL
// with the prefix, in order.
func (r chainResult) statuses(method, prefix string) []int {
	var out []int
	for _, e := range r.Exchanges {
		if e.Method == method && strings.HasPrefix(e.URL, prefix) {
			out = append(out, e.Status)
		}
	}
	return out
}

// chainDriver is driver.py in chain mode.
type chainDriver struct{ *pyDriver }

func startChainDriver(t *testing.T) chainDriver {
	t.Helper()
	d, _ := startDriver(t, "chain")
	return chainDriver{d}
}

// start has the driver start a participant (cmd["op"] is auth_server, resource or agent)
// and returns its identifier.
func (d chainDriver) start(t *testing.T, cmd map[string]any) string {
	t.Helper()
	d.send(t, cmd)
	ev := d.next(t, "started", 30*time.Second)
	id, _ := ev["id"].(string)
	if id == "" || ev["name"] != cmd["name"] {
		t.Fatalf("driver answered %v to %v", ev, cmd)
	}
	return id
}

// run sends a flow command and, when person is set, plays the person at the interaction
// URL the reference hands over before the flow's result.
func (d chainDriver) run(t *testing.T, cmd map[string]any, person func(t *testing.T, link string)) chainResult {
	t.Helper()
	d.send(t, cmd)
	if person != nil {
		link, _ := d.next(t, "interaction", 30*time.Second)["url"].(string)
		person(t, link)
		d.send(t, map[string]any{"op": "continue"})
	}
	ev := d.next(t, "result", 60*time.Second)
	b, _ := json.Marshal(ev)
	var r chainResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// jwtClaims decodes a JWT's payload without verifying it (the tests check what a party
// issued; the parties that rely on the token verify it).
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS compact serialization (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

func claimString(m map[string]any, name string) string {
	s, _ := m[name].(string)
	return s
}

// chainCaddyGlobal is the global block of the chaining tests' Caddy (admin off, dev
// identifiers).
func chainCaddyGlobal(t *testing.T) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	grace_period 1ns
	storage file_system %s
	aauth {
		dev
	}
}
`, storageDir(t))
}

// TestReferenceChainSelfAccess (scenario d): the reference phase-5 agent
// (request_self_authorization: a signed token request {"scope": …} without a resource
// token, draft-hardt-aauth §4.5.5) gets a self-access token from our auth server, once
// directly (policy allow) and once after the person, played by the test, signs in on our
// consent page and approves. The token's aud is the agent, it has no agent claim, its
// cnf.jwk is the agent's key, and after consent its sub is the person.
func TestReferenceChainSelfAccess(t *testing.T) {
	drv := startChainDriver(t)
	agentID := drv.start(t, map[string]any{"op": "agent", "name": "agent"})
	authID := "http://127.0.0.1:" + freePort(t)
	hashes := bcryptHashes(t, map[string]string{"alice": alicePassword})
	cfg := chainCaddyGlobal(t) + fmt.Sprintf(`
%s {
	aauth_server {
		issuer %s
		policy {
			allow scope profile
			consent scope email
			default deny
		}
%s	}
}
`, authID, authID, userLines(hashes, "\t\t"))
	startCaddy(t, cfg, authID+"/.well-known/aauth-issuer.json")

	check := func(t *testing.T, r chainResult, scope, sub string) {
		t.Helper()
		if r.Token == "" {
			t.Fatalf("the reference agent got no self-access token:\n%s", r)
		}
		c := jwtClaims(t, r.Token)
		if claimString(c, "iss") != authID || claimString(c, "aud") != agentID || claimString(c, "scope") != scope {
			t.Fatalf("token claims iss=%v aud=%v scope=%v, want %s, %s, %q", c["iss"], c["aud"], c["scope"], authID, agentID, scope)
		}
		if _, ok := c["agent"]; ok {
			t.Fatalf("a self-access token carries an agent claim: %v", c["agent"])
		}
		if claimString(c, "sub") != sub {
			t.Fatalf("sub = %q, want %q", claimString(c, "sub"), sub)
		}
		cnf, _ := c["cnf"].(map[string]any)
		if jwk, _ := cnf["jwk"].(map[string]any); jwk == nil || jwk["kty"] != "OKP" {
			t.Fatalf("cnf.jwk is not the agent's Ed25519 key: %v", c["cnf"])
		}
	}

	t.Run("direct", func(t *testing.T) {
		r := drv.run(t, map[string]any{"op": "self", "agent": "agent", "auth_server": authID, "scope": "profile"}, nil)
		check(t, r, "profile", "")
		if r.exchange("POST", authID+"/token") != 200 {
			t.Fatalf("want a 200 token answer:\n%s", r)
		}
	})

	t.Run("consent", func(t *testing.T) {
		person := func(t *testing.T, link string) {
			if !strings.HasPrefix(link, authID+"/interact?code=") {
				t.Fatalf("interaction URL %q is not on %s/interact", link, authID)
			}
			user := newDemoUser(t)
			consent := signIn(t, user, link, agentID)
			if status, _, page := user.submit(t, mustURL(t, link), consent, "approve", nil); status != 200 || !strings.Contains(page, "Access approved") {
				t.Fatalf("approve: %d\n%s", status, page)
			}
		}
		r := drv.run(t, map[string]any{"op": "self", "agent": "agent", "auth_server": authID, "scope": "profile email"}, person)
		check(t, r, "profile email", "alice")
		if r.exchange("POST", authID+"/token") != 202 || r.exchange("GET", authID+"/pending/") != 200 {
			t.Fatalf("want a 202 token answer and a 200 poll:\n%s", r)
		}
	})

	t.Run("policy denies", func(t *testing.T) {
		r := drv.run(t, map[string]any{"op": "self", "agent": "agent", "auth_server": authID, "scope": "admin"}, nil)
		if r.Token != "" || r.exchange("POST", authID+"/token") != 403 {
			t.Fatalf("want 403 and no token:\n%s", r)
		}
	})
}

// TestReferenceChainResourceExchangesAtOurAS (scenario a): the reference resource R1,
// acting as an agent (call_downstream_resource), reaches our gateway. R1 holds an auth
// token a reference agent obtained for it from the reference auth server AS1; our
// gateway challenges R1, R1 exchanges that upstream token at our auth server in form
// (ii) (Signature-Key scheme=jwt carrying the upstream token, the request signed with R1's
// own key, draft-hardt-aauth §4.5.8), and its retry with the new token reaches our echo
// backend as agent R1, with the upstream token's sub and txn. An upstream token from an
// auth server ours does not trust is refused.
func TestReferenceChainResourceExchangesAtOurAS(t *testing.T) {
	drv := startChainDriver(t)
	as1 := drv.start(t, map[string]any{"op": "auth_server", "name": "as1"})
	as1Consent := drv.start(t, map[string]any{"op": "auth_server", "name": "as1-consent", "consent": true})
	asStranger := drv.start(t, map[string]any{"op": "auth_server", "name": "stranger"})
	r1 := drv.start(t, map[string]any{"op": "resource", "name": "r1", "auth_server": as1, "txn": true})
	r1Consent := drv.start(t, map[string]any{"op": "resource", "name": "r1-consent", "auth_server": as1Consent, "txn": true})
	r1Stranger := drv.start(t, map[string]any{"op": "resource", "name": "r1-stranger", "auth_server": asStranger})
	drv.start(t, map[string]any{"op": "agent", "name": "agent"})

	backend := newEchoBackend(t)
	apiID := "http://127.0.0.1:" + freePort(t)
	authID := "http://127.0.0.1:" + freePort(t)
	cfg := chainCaddyGlobal(t) + fmt.Sprintf(`
%s {
	aauth /data/* {
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
		trust_issuer %s %s
		policy {
			allow scope data.read
			default deny
		}
	}
}
`, apiID, apiID, authID, backend.addr(), authID, authID, as1, as1Consent)
	startCaddy(t, cfg, authID+"/.well-known/aauth-issuer.json")

	// upstream has the reference agent call R1's auth-token route, so that the agent
	// holds an auth token whose aud is R1.
	upstream := func(t *testing.T, resource, rid string, person func(*testing.T, string)) map[string]any {
		t.Helper()
		r := drv.run(t, map[string]any{"op": "fetch", "agent": "agent", "url": rid + "/data-auth", "scheme": "jwks_uri"}, person)
		if r.Status != 200 || r.Token == "" {
			t.Fatalf("the reference agent did not get through to %s:\n%s", resource, r)
		}
		c := jwtClaims(t, r.Token)
		c["raw"] = r.Token
		return c
	}
	downstream := func(t *testing.T, resource string, up map[string]any) chainResult {
		t.Helper()
		return drv.run(t, map[string]any{"op": "downstream", "resource": resource, "url": apiID + "/data/report", "upstream_token": up["raw"]}, nil)
	}
	expect := func(t *testing.T, r chainResult, rid string, up map[string]any) {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("R1 did not reach our backend:\n%s", r)
		}
		var e echoed
		if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
			t.Fatalf("not the echo backend's answer:\n%s", r)
		}
		want := map[string]string{
			"X-Aauth-Level":   "authorized",
			"X-Aauth-Scheme":  "jwt",
			"X-Aauth-Agent":   rid,
			"X-Aauth-Issuer":  authID,
			"X-Aauth-Scope":   "data.read",
			"X-Aauth-Subject": claimString(up, "sub"),
		}
		if txn := claimString(up, "txn"); txn != "" {
			want["X-Aauth-Txn"] = txn
		}
		for h, v := range want {
			if got := e.header(h); got != v {
				t.Errorf("backend saw %s = %q, want %q", h, got, v)
			}
		}
		if r.exchange("POST", authID+"/token") != 200 {
			t.Errorf("want the exchange at our auth server to answer 200:\n%s", r)
		}
	}

	t.Run("upstream without user", func(t *testing.T) {
		up := upstream(t, "R1", r1, nil)
		if claimString(up, "txn") == "" {
			t.Fatalf("the reference's upstream token has no txn (R1 was started with enable_txn): %v", up)
		}
		expect(t, downstream(t, "r1", up), r1, up)
	})

	t.Run("upstream after consent", func(t *testing.T) {
		up := upstream(t, "R1 (consent)", r1Consent, func(t *testing.T, link string) {
			if !strings.HasPrefix(link, as1Consent+"/interact?code=") {
				t.Fatalf("interaction URL %q is not on %s", link, as1Consent)
			}
			refDecide(t, link, "grant")
		})
		if claimString(up, "sub") == "" {
			t.Fatalf("the upstream token has no sub after consent: %v", up)
		}
		expect(t, downstream(t, "r1-consent", up), r1Consent, up)
	})

	t.Run("untrusted upstream issuer", func(t *testing.T) {
		up := upstream(t, "R1 (untrusted AS)", r1Stranger, nil)
		before := backend.hits.Load()
		r := downstream(t, "r1-stranger", up)
		// R1 gives up when the exchange fails and returns our first challenge.
		if r.Status != http.StatusUnauthorized || r.exchange("POST", authID+"/token") != http.StatusBadRequest {
			t.Fatalf("want the exchange refused with 400 and R1 left with the 401:\n%s", r)
		}
		if n := backend.hits.Load() - before; n != 0 {
			t.Fatalf("the backend was called %d times for a refused exchange", n)
		}
	})
}

// egressBackend is API1's unmodified backend in the egress scenarios: for each request it
// calls target through the gateway's aauth_egress site, naming the inbound request by the
// X-Aauth-Handle the gateway forwarded, and answers with what came back. With proxy set
// it uses the egress site as a plain HTTP proxy (absolute-form request target); otherwise
// it sends origin-form with X-Aauth-Target.
type egressBackend struct {
	*httptest.Server
	calls chan egressCall
}

type egressCall struct {
	Handle         string `json:"handle"`
	Status         int    `json:"downstream_status"`
	Body           string `json:"downstream_body"`
	InboundAgent   string `json:"inbound_agent"`
	InboundSubject string `json:"inbound_subject"`
}

func newEgressBackend(t *testing.T, egress, target string, proxy bool) *egressBackend {
	t.Helper()
	eu := mustURL(t, egress)
	tr := &http.Transport{}
	if proxy {
		tr.Proxy = http.ProxyURL(eu)
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	b := &egressBackend{calls: make(chan egressCall, 16)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := egressCall{Handle: r.Header.Get("X-Aauth-Handle"), InboundAgent: r.Header.Get("X-Aauth-Agent"), InboundSubject: r.Header.Get("X-Aauth-Subject")}
		dest := target
		if !proxy {
			dest = egress + "/"
		}
		req, _ := http.NewRequest(http.MethodGet, dest, nil)
		req.Header.Set("X-Aauth-Handle", call.Handle)
		if !proxy {
			req.Header.Set("X-Aauth-Target", target)
		}
		resp, err := client.Do(req)
		if err != nil {
			call.Status, call.Body = 599, err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			call.Status, call.Body = resp.StatusCode, string(body)
		}
		b.calls <- call
		status := http.StatusOK
		if call.Status != http.StatusOK {
			status = http.StatusBadGateway
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(call)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *egressBackend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// TestReferenceChainEgressToReferenceResource (scenario b): our agent library calls our
// API1 (auth server: our AS1; agent_identity resource_key; egress); API1's unmodified
// backend calls the reference resource R2's /data-auth through our aauth_egress site as
// a plain HTTP proxy, with the X-Aauth-Handle it was given. The egress signs as API1, R2
// challenges it, the reference auth server AS2 (trusting our AS1) exchanges the inbound
// token (form (ii)), and R2's 200 (naming API1 as the agent) is relayed to the backend and
// so to our agent.
func TestReferenceChainEgressToReferenceResource(t *testing.T) {
	drv := startChainDriver(t)
	api1 := "http://127.0.0.1:" + freePort(t)
	as1 := "http://127.0.0.1:" + freePort(t)
	egress := "http://127.0.0.1:" + freePort(t)
	as2 := drv.start(t, map[string]any{"op": "auth_server", "name": "as2", "trust": []string{as1}})
	r2 := drv.start(t, map[string]any{"op": "resource", "name": "r2", "auth_server": as2})

	backend := newEgressBackend(t, egress, r2+"/data-auth", true)
	cfg := chainCaddyGlobal(t) + fmt.Sprintf(`
%s {
	aauth /data/* {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
		agent_identity resource_key
		egress
	}
	reverse_proxy %s
}

%s {
	aauth_server {
		issuer %s
		policy {
			allow scope data.read
			default deny
		}
	}
}

%s {
	aauth_egress {
		allow %s
	}
}
`, api1, api1, as1, backend.addr(), as1, as1, egress, r2)
	startCaddy(t, cfg, as1+"/.well-known/aauth-issuer.json")

	agentSrv := newAgentServer(t)
	client := &http.Client{Transport: &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id), Dev: true, Base: loopbackTransport()}, Timeout: 60 * time.Second}
	resp, err := client.Get(api1 + "/data/report")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("our agent got %d from API1: %s", resp.StatusCode, body)
	}
	var call egressCall
	if err := json.Unmarshal(body, &call); err != nil {
		t.Fatalf("not the backend's answer: %s", body)
	}
	if call.Handle == "" || call.InboundAgent != agentSrv.id {
		t.Fatalf("the backend saw handle %q and agent %q", call.Handle, call.InboundAgent)
	}
	var granted struct {
		Message string `json:"message"`
		Agent   string `json:"agent"`
		Scheme  string `json:"scheme"`
	}
	if err := json.Unmarshal([]byte(call.Body), &granted); err != nil || call.Status != 200 || granted.Message != "Access granted" || granted.Agent != api1 || granted.Scheme != "jwt" {
		t.Fatalf("R2 answered the egress %d: %s", call.Status, call.Body)
	}
}

// interactionEnv is scenario c's setup: API1 (our gateway, AS1 ours) whose backends call,
// through the egress, either API2 (ours, AS2 ours asking the user) or the reference's R2
// (its AS2 asking the user), both auth servers trusting AS1.
type interactionEnv struct {
	drv                          chainDriver
	agentID                      string
	api1, as1, api2, as2, egress string
	r2, refAS2                   string
	backend, refBackend          *egressBackend
}

func startInteraction(t *testing.T) *interactionEnv {
	t.Helper()
	port := func() string { return "http://127.0.0.1:" + freePort(t) }
	env := &interactionEnv{drv: startChainDriver(t), api1: port(), as1: port(), api2: port(), as2: port(), egress: port()}
	env.agentID = env.drv.start(t, map[string]any{"op": "agent", "name": "agent"})
	env.refAS2 = env.drv.start(t, map[string]any{"op": "auth_server", "name": "as2", "consent": true, "trust": []string{env.as1}})
	env.r2 = env.drv.start(t, map[string]any{"op": "resource", "name": "r2", "auth_server": env.refAS2})
	echo := newEchoBackend(t)
	env.backend = newEgressBackend(t, env.egress, env.api2+"/data/report", false)
	env.refBackend = newEgressBackend(t, env.egress, env.r2+"/data-auth", false)
	hashes := bcryptHashes(t, map[string]string{"alice": alicePassword})
	route := func(path string) string {
		return fmt.Sprintf(`aauth %s {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
		agent_identity resource_key
		egress
	}`, path, env.api1, env.as1)
	}
	cfg := chainCaddyGlobal(t) + fmt.Sprintf(`
%[1]s {
	%[9]s
	%[10]s
	reverse_proxy /ref/* %[11]s
	reverse_proxy %[6]s
}

%[2]s {
	aauth_server {
		issuer %[2]s
		policy {
			allow scope data.read
			default deny
		}
	}
}

%[3]s {
	aauth /data/* {
		require auth-token
		resource %[3]s
		auth_server %[4]s
		scope data.read
	}
	reverse_proxy %[7]s
}

%[4]s {
	aauth_server {
		issuer %[4]s
		trust_issuer %[2]s
		policy {
			consent scope data.read
			default deny
		}
%[8]s	}
}

%[5]s {
	aauth_egress {
		allow %[3]s %[12]s
	}
}
`, env.api1, env.as1, env.api2, env.as2, env.egress, env.backend.addr(), echo.addr(), userLines(hashes, "\t\t"),
		route("/chain/*"), route("/ref/*"), env.refBackend.addr(), env.r2)
	startCaddy(t, cfg, env.as2+"/.well-known/aauth-issuer.json")
	return env
}

// chained has the reference agent request path on API1 with the person at decide (given
// the downstream consent page API1's interaction URL led to), checks the agent's
// sequence (401, 202, polls of API1's pending URL ending in 200) and the backend's first
// egress call (503 interaction_required), and returns API1's backend's final answer.
func (env *interactionEnv) chained(t *testing.T, path, consentPrefix string, backend *egressBackend, decide func(t *testing.T, user *demoUser, at *url.URL)) egressCall {
	t.Helper()
	person := func(t *testing.T, link string) {
		if !strings.HasPrefix(link, env.api1+"/.well-known/aauth-resource/interact?code=") {
			t.Fatalf("interaction URL %q is not API1's (%s)", link, env.api1)
		}
		// Our gateway sends the person on to the downstream consent page (303).
		user := newDemoUser(t)
		req, _ := http.NewRequest(http.MethodGet, link, nil)
		status, at, page := user.fetch(t, req)
		if status != 200 || !strings.HasPrefix(at.String(), consentPrefix) {
			t.Fatalf("API1's interaction URL led to %s (%d), want %s…:\n%s", at, status, consentPrefix, page)
		}
		decide(t, user, at)
	}
	r := env.drv.run(t, map[string]any{"op": "fetch", "agent": "agent", "url": env.api1 + path, "scheme": "jwks_uri"}, person)
	if r.Status != 200 {
		t.Fatalf("the reference agent's chained request ended with %d:\n%s", r.Status, r)
	}
	polls := r.statuses("GET", env.api1+"/.well-known/aauth-resource/pending/")
	if got := r.statuses("GET", env.api1+path); !slices.Equal(got, []int{401, 202}) || len(polls) == 0 || polls[len(polls)-1] != 200 {
		t.Errorf("want 401 and 202 from API1, then polls of its pending URL ending in 200:\n%s", r)
	}
	var final egressCall
	if err := json.Unmarshal([]byte(r.Body), &final); err != nil || final.InboundAgent != env.agentID || final.Status != 200 {
		t.Fatalf("not API1's backend's answer with the downstream's 200:\n%s", r)
	}
	// The backend ran twice: first the egress answered it 503 interaction_required (the
	// gateway discarded that answer), then it was replayed after the approval.
	var first egressCall
	select {
	case first = <-backend.calls:
	default:
		t.Fatal("the backend made no egress call")
	}
	if first.Status != http.StatusServiceUnavailable || !strings.Contains(first.Body, "interaction_required") {
		t.Errorf("the backend's first egress call got %d, want 503 interaction_required: %s", first.Status, first.Body)
	}
	return final
}

// TestReferenceChainInteraction (scenario c): the reference phase-9 agent
// (Agent.request_resource, sig_scheme jwks_uri) completes a chained consent
// (draft-hardt-aauth §4.5.8.2) where our gateway is Resource 1. API1's backend calls the
// downstream resource through the egress (origin-form, X-Aauth-Target); the downstream
// auth server trusts AS1 and asks the user, so the exchange answers 202 and our gateway
// answers the agent 202 with its own pending URL and interaction code. The person (the
// test) opens API1's interaction URL, follows the 303 to the downstream consent page,
// signs in and approves; the agent's polling of API1's pending URL ends in 200 with the
// backend's answer. Downstream is either ours (API2 and AS2: API2's backend sees agent
// API1 and sub alice) or the reference's (R2 and its AS2: R2 answers agent API1).
func TestReferenceChainInteraction(t *testing.T) {
	env := startInteraction(t)

	t.Run("downstream ours", func(t *testing.T) {
		final := env.chained(t, "/chain/report", env.as2+"/interact?code=", env.backend, func(t *testing.T, user *demoUser, at *url.URL) {
			consent := signIn(t, user, at.String(), env.api1)
			if status, _, done := user.submit(t, at, consent, "approve", nil); status != 200 || !strings.Contains(done, "Access approved") {
				t.Fatalf("approve: %d\n%s", status, done)
			}
		})
		var e echoed
		if err := json.Unmarshal([]byte(final.Body), &e); err != nil {
			t.Fatalf("API2 answered the egress: %s", final.Body)
		}
		if e.header("X-Aauth-Agent") != env.api1 || e.header("X-Aauth-Subject") != "alice" || e.header("X-Aauth-Issuer") != env.as2 {
			t.Fatalf("API2's backend saw agent %q, subject %q, issuer %q", e.header("X-Aauth-Agent"), e.header("X-Aauth-Subject"), e.header("X-Aauth-Issuer"))
		}
	})

	t.Run("downstream reference", func(t *testing.T) {
		final := env.chained(t, "/ref/report", env.refAS2+"/interact?code=", env.refBackend, func(t *testing.T, _ *demoUser, at *url.URL) {
			refDecide(t, at.String(), "grant")
		})
		var granted struct {
			Message string `json:"message"`
			Agent   string `json:"agent"`
		}
		if err := json.Unmarshal([]byte(final.Body), &granted); err != nil || granted.Message != "Access granted" || granted.Agent != env.api1 {
			t.Fatalf("R2 answered the egress: %s", final.Body)
		}
	})
}
