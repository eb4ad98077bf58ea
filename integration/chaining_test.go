package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// Call chaining, all ours (draft-hardt-aauth §4.5.8): an agent calls API1; API1's
// unmodified backend (a tiny Go server) calls API2 through API1's loopback egress with
// the handle the gateway forwarded; API1's gateway exchanges the agent's auth token at
// AS2, which trusts AS1; API2's backend (an echo) reports what it received.

type chainEnv struct {
	consentEnv
	api2ID, as2ID, egressURL string
	echo2                    *echoBackend
	backend1                 *chainBackend
	// api1Site is API1's site body: %[1]s is its aauth block, %[2]s its backend's
	// address; empty for the aauth block at the top of the site. path is the path the
	// agent calls under it.
	api1Site, path string
}

// chainLayouts are the blocks API1's gateway can sit in; in each the chained consent
// must end with the original request replayed down the same route.
var chainLayouts = []struct {
	name, site        string
	path, backendPath string // what the agent calls; what API1's backend sees
}{
	{"handle_path", `handle_path /api/* {
		%[1]s
		reverse_proxy %[2]s
	}
	handle {
		respond "not here" 404
	}`, "/api/data", "/data"},
	{"route", `route /api/* {
		%[1]s
		reverse_proxy %[2]s
	}
	respond "not here" 404`, "/api/data", "/api/data"},
	{"nested", `handle /api/* {
		route {
			%[1]s
			handle {
				reverse_proxy %[2]s
			}
		}
	}
	handle {
		respond "not here" 404
	}`, "/api/data", "/api/data"},
}

// chainBackend is API1's backend: it calls API2 through the egress and answers with
// API2's answer. It records what the gateway told it. By default it names the target in
// X-Aauth-Target (origin-form request to the egress); with proxy it uses the egress as
// its HTTP proxy (absolute-form request-target), as a program with HTTP_PROXY set does.
type chainBackend struct {
	*httptest.Server
	mu    sync.Mutex
	seen  []http.Header
	paths []string // the path of each request, as the backend saw it
}

func newChainBackend(t *testing.T, egressURL func() string, target func() string, proxy bool) *chainBackend {
	b := &chainBackend{}
	tr := loopbackTransport()
	if proxy {
		tr.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse(egressURL()) }
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen = append(b.seen, r.Header.Clone())
		b.paths = append(b.paths, r.URL.Path)
		b.mu.Unlock()
		req, _ := http.NewRequest(http.MethodGet, egressURL()+"/data", nil)
		if proxy {
			req, _ = http.NewRequest(http.MethodGet, target(), nil)
		} else {
			req.Header.Set("X-Aauth-Target", target())
		}
		req.Header.Set("X-Aauth-Handle", r.Header.Get("X-Aauth-Handle"))
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *chainBackend) requestPaths() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...)
}

func (b *chainBackend) requests() []http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]http.Header(nil), b.seen...)
}

func chainConfig(t *testing.T, env *chainEnv, as2Policy string) string {
	aauth := fmt.Sprintf(`aauth {
		require auth-token
		resource %s
		auth_server %s
		scope data.write
		txn
		egress
	}`, env.apiID, env.authID)
	site := env.api1Site
	if site == "" {
		site = "%[1]s\n\treverse_proxy %[2]s"
	}
	return fmt.Sprintf(`%s
%s {
	%s
}

http://:%s {
	bind 127.0.0.1
	aauth_egress
}

%s`, globalOptions(t, true),
		env.apiID, fmt.Sprintf(site, aauth, strings.TrimPrefix(env.backend1.URL, "http://")),
		strings.TrimPrefix(env.egressURL, "http://127.0.0.1:"), chainPeers(env, as2Policy))
}

// chainPeers are the sites around API1: API2 (data.read from AS2), AS1, and AS2, which
// trusts AS1 and decides API1's exchanges by as2Policy.
func chainPeers(env *chainEnv, as2Policy string) string {
	return fmt.Sprintf(`%s {
	aauth {
		require auth-token
		resource %s
		auth_server %s
		scope data.read
	}
	reverse_proxy %s
}

%s
%s {
	aauth_server {
		issuer %s
		trust_issuer %s
		policy {
			%s
			default deny
		}
%s	}
}
`, env.api2ID, env.api2ID, env.as2ID, env.echo2.addr(),
		authServerBlock(env.authID, "", env.hashes),
		env.as2ID, env.as2ID, env.authID, as2Policy, userLines(env.hashes, "\t\t"))
}

func startChain(t *testing.T, as2Policy string) *chainEnv {
	return startChainWith(t, as2Policy, false, "", "")
}

// startChainWith starts the chain; proxy makes API1's backend use the egress as its HTTP
// proxy; api1Site and path place API1's gateway in a layout (empty: top of the site).
func startChainWith(t *testing.T, as2Policy string, proxy bool, api1Site, path string) *chainEnv {
	t.Helper()
	env := &chainEnv{consentEnv: consentEnv{agentSrv: newAgentServer(t), users: map[string]string{"alice": alicePassword}}}
	env.api1Site, env.path = api1Site, path
	if env.path == "" {
		env.path = "/data"
	}
	env.hashes = bcryptHashes(t, env.users)
	env.apiID = "http://localhost:" + freePort(t)
	env.authID = "http://127.0.0.1:" + freePort(t)
	env.api2ID = "http://localhost:" + freePort(t)
	env.as2ID = "http://127.0.0.1:" + freePort(t)
	env.egressURL = "http://127.0.0.1:" + freePort(t)
	env.echo2 = newEchoBackend(t)
	env.backend1 = newChainBackend(t, func() string { return env.egressURL }, func() string { return env.api2ID + "/data" }, proxy)
	caddytest.NewTester(t).InitServer(chainConfig(t, env, as2Policy), "caddyfile")
	return env
}

// authorizedAgent runs the agent's first call to API1 through AS1's consent (alice
// approves), so its auth token carries sub alice and a txn.
func (env *chainEnv) authorizedAgent(t *testing.T) (*consentAgent, agentOutcome) {
	t.Helper()
	onPending, pending := pendingSink()
	a := newConsentAgent(env.identity(), "chaining test", onPending)
	ch := a.start(env.apiID + env.path)
	p := waitPending(t, pending, 15*time.Second)
	if err := newWebUser(env.authID).approve(p.Code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	return a, waitOutcome(t, ch, 60*time.Second)
}

// checkChained checks what API2's backend saw: API1 as the agent, alice, the txn API1's
// backend saw.
func (env *chainEnv) checkChained(t *testing.T, out agentOutcome) {
	t.Helper()
	if out.err != nil || out.res.status != 200 {
		t.Fatalf("chained call: status %d err %v body %s", out.res.status, out.err, out.res.body)
	}
	seen := env.backend1.requests()
	txn := seen[len(seen)-1].Get("X-Aauth-Txn")
	if txn == "" || seen[0].Get("X-Aauth-Subject") != "alice" {
		t.Fatalf("API1's backend saw txn %q sub %q", txn, seen[0].Get("X-Aauth-Subject"))
	}
	for name, want := range map[string]string{"X-Aauth-Agent": env.apiID, "X-Aauth-Subject": "alice", "X-Aauth-Txn": txn, "X-Aauth-Level": "authorized"} {
		if got := out.res.backendHeader(name); got != want {
			t.Errorf("API2's backend saw %s %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"X-Aauth-Handle", "X-Aauth-Target"} {
		if got := out.res.backendHeader(name); got != "" {
			t.Errorf("API2's backend saw %s %q", name, got)
		}
	}
}

func TestChainingAllOurs(t *testing.T) {
	env := startChain(t, "allow scope data.read")
	// API1 publishes its agent identity (the resource key).
	md := get(t, plainClient(), env.apiID+"/.well-known/aauth-agent.json").mustStatus(t, 200)
	var doc map[string]any
	if json.Unmarshal(md.body, &doc) != nil || doc["agent"] != env.apiID || doc["jwks_uri"] != env.apiID+"/.well-known/aauth-agent/jwks.json" {
		t.Fatalf("agent metadata %s", md.body)
	}
	a, out := env.authorizedAgent(t)
	env.checkChained(t, out)
	// A second call reuses the downstream token cached for this inbound token.
	env.checkChained(t, a.get(env.apiID+"/data"))
}

// pendingBody is our 202's body.
type pendingBody struct {
	Status, Location, Require, Code string
	InteractionEndpoint             string `json:"interaction_endpoint"`
}

func TestChainingConsentAtAS2(t *testing.T) {
	env := startChain(t, "consent scope data.read")
	env.chainedConsent(t)
}

// TestChainingLayouts runs the chained consent with API1's gateway in each layout: the
// replay after approval must take the same route, with the path the backend saw the
// first time.
func TestChainingLayouts(t *testing.T) {
	for _, l := range chainLayouts {
		t.Run(l.name, func(t *testing.T) {
			env := startChainWith(t, "consent scope data.read", false, l.site, l.path)
			env.chainedConsent(t)
			seen := env.backend1.requestPaths()
			if len(seen) != 2 || seen[0] != l.backendPath || seen[1] != l.backendPath {
				t.Fatalf("API1's backend saw paths %q, want %q twice (first run, then the replay)", seen, l.backendPath)
			}
			get(t, plainClient(), env.apiID+"/data").mustStatus(t, http.StatusNotFound)
		})
	}
}

// chainedConsent runs a call through API1 whose downstream token needs consent at AS2:
// our 202, the person approves at AS2 through our interaction endpoint, the agent polls
// our pending URL and gets the replayed call's answer, and the URL is gone after.
func (env *chainEnv) chainedConsent(t *testing.T) {
	t.Helper()
	a, out := env.authorizedAgent(t)
	if out.err != nil || out.res.status != http.StatusAccepted {
		t.Fatalf("want 202 from API1 (downstream consent), got %d %v %s", out.res.status, out.err, out.res.body)
	}
	var pb pendingBody
	if err := json.Unmarshal(out.res.body, &pb); err != nil || pb.Code == "" || pb.Require != "interaction" ||
		pb.Location != out.res.header.Get("Location") || !strings.HasPrefix(pb.Location, env.apiID+"/.well-known/aauth-resource/pending/") ||
		pb.InteractionEndpoint != env.apiID+"/.well-known/aauth-resource/interact" {
		t.Fatalf("202 body %s (Location %q)", out.res.body, out.res.header.Get("Location"))
	}
	if aa := out.res.header.Get("AAuth"); !strings.Contains(aa, "require=interaction") || !strings.Contains(aa, pb.Code) {
		t.Fatalf("AAuth %q", aa)
	}
	// The person follows our interaction URL to AS2's consent page and approves there.
	u := newWebUser(env.as2ID)
	p := u.read(u.c.Get(pb.InteractionEndpoint + "?code=" + url.QueryEscape(pb.Code)))
	if p.err != nil || !strings.HasPrefix(p.url, env.as2ID+"/interact?code=") {
		t.Fatalf("interaction redirect ended at %q (%v)", p.url, p.err)
	}
	as2Code := strings.TrimPrefix(p.url, env.as2ID+"/interact?code=")
	if err := u.approve(as2Code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	// The agent polls our pending URL (signed with its key); the original call completes.
	var final agentOutcome
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if final = a.get(pb.Location); final.err != nil || final.res.status != http.StatusAccepted {
			break
		}
	}
	env.checkChained(t, final)
	if again := a.get(pb.Location); again.res.status != http.StatusNotFound {
		t.Fatalf("poll after the terminal answer: %d %s", again.res.status, again.res.body)
	}
}

// TestChainingProxyModeLibraryFollows: API1's backend uses the egress as a plain HTTP
// proxy (absolute-form request-target), AS2 asks for consent, and the agent library
// follows API1's own 202 (Transport.AwaitResponse): it reports the interaction URL, the
// person approves at AS2 through it, and the library's request returns API2's answer.
func TestChainingProxyModeLibraryFollows(t *testing.T) {
	env := startChainWith(t, "consent scope data.read", true, "", "")
	onPending, pending := pendingSink()
	a := newConsentAgent(env.identity(), "chaining test", onPending)
	tr := a.client.Transport.(*agent.Transport)
	tr.AwaitResponse = (&agent.Poller{
		Base: loopbackTransport(), Credential: env.identity(), Dev: true,
		Wait: 5 * time.Second, MaxDuration: 60 * time.Second, OnPending: onPending,
	}).AwaitResponse
	ch := a.start(env.apiID + "/data")
	// First AS1's consent for the agent's own token, then API1's 202 for AS2's consent.
	p1 := waitPending(t, pending, 15*time.Second)
	if err := newWebUser(env.authID).approve(p1.Code, "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	p2 := waitPending(t, pending, 30*time.Second)
	if !p2.AtResource || p2.InteractionEndpoint != env.apiID+"/.well-known/aauth-resource/interact" {
		t.Fatalf("second pending request: %+v", p2)
	}
	u := newWebUser(env.as2ID)
	pg := u.read(u.c.Get(p2.InteractionEndpoint + "?code=" + url.QueryEscape(p2.Code)))
	if pg.err != nil || !strings.HasPrefix(pg.url, env.as2ID+"/interact?code=") {
		t.Fatalf("interaction redirect ended at %q (%v)", pg.url, pg.err)
	}
	if err := u.approve(strings.TrimPrefix(pg.url, env.as2ID+"/interact?code="), "alice", alicePassword); err != nil {
		t.Fatal(err)
	}
	env.checkChained(t, waitOutcome(t, ch, 60*time.Second))
}
