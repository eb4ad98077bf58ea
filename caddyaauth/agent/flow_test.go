package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// flowWorld is an agent (published by an agent.Server on loopback), a delegate holding
// an agent token from it, a fake auth server and a fake gateway trusting that server.
type flowWorld struct {
	agentKey    *keys.Signer
	agentID     string
	delegateKey *keys.Signer
	agentToken  string
	as          *agenttest.AuthServer
	gw          *agenttest.Gateway
	disc        *discovery.Client
}

func newFlowWorld(t *testing.T, scopes ...string) *flowWorld {
	t.Helper()
	w := &flowWorld{
		agentKey:    genKey(t, keys.AlgEd25519, "agent-key-1"),
		delegateKey: genKey(t, keys.AlgECDSAP256, "delegate-key-1"),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.agentID = "http://" + ln.Addr().String()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: &Server{Signer: w.agentKey, ID: w.agentID}}}
	srv.Start()
	t.Cleanup(srv.Close)
	now := time.Now().Unix()
	w.agentToken, err = token.Mint(w.agentKey, token.TypAgent, token.Claims{
		Issuer: w.agentID, Subject: "delegate-1", ID: token.NewID(), IssuedAt: now, Expiry: now + 600,
		Confirmation: &token.Confirmation{Key: w.delegateKey.Public},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(scopes) == 0 {
		scopes = []string{"data.read"}
	}
	w.as = agenttest.NewAuthServer(t)
	w.gw = agenttest.NewGateway(t, w.as.ID, scopes...)
	w.disc = discovery.New(discovery.Config{Dev: true})
	t.Cleanup(w.disc.Close)
	return w
}

// logSink collects Transport.Logf lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (w *flowWorld) transport(scheme string, logs *logSink) *Transport {
	tr := &Transport{Pseudonym: HWK(w.agentKey), Dev: true, Discovery: w.disc, Purpose: "testing the flow"}
	if scheme == httpsig.SchemeJWT {
		tr.Identity = Delegate(w.delegateKey, w.agentToken)
	} else {
		tr.Identity = JWKSURI(w.agentKey, w.agentID)
	}
	if logs != nil {
		tr.Logf = logs.logf
	}
	return tr
}

// noJWT fails when text contains something that looks like a JWT (a JSON header in
// base64url begins with "eyJ").
// jwtPattern matches the start of a JWT's header or payload in base64url ({"alg", {"typ",
// {"kid", {"iss"), even when a token is cut short. A bare "eyJ" is not enough: a random
// key thumbprint can contain it.
var jwtPattern = regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`)

func noJWT(t *testing.T, what, text string) {
	t.Helper()
	if jwtPattern.MatchString(text) {
		t.Errorf("%s contains a token: %s", what, text)
	}
}

func TestAuthTokenFlow(t *testing.T) {
	tests := []struct {
		name      string
		scheme    string
		pseudo    bool
		method    string
		body      string
		signBody  bool
		between   func(w *flowWorld)
		wantSeen1 []string
		wantSeen2 []string
		wantHits  int
		// wantCached is the number of tokens cached at the end; 0 means 1.
		wantCached int
		delegate   string
	}{
		{name: "jwks_uri, second request uses the cached token", scheme: httpsig.SchemeJWKSURI, method: "GET",
			wantSeen1: []string{"jwks_uri", "jwt:auth+jwt"}, wantSeen2: []string{"jwt:auth+jwt"}, wantHits: 1},
		{name: "POST body sent identically on every attempt, body signed", scheme: httpsig.SchemeJWKSURI,
			method: "POST", body: `{"order":42}`, signBody: true,
			wantSeen1: []string{"jwks_uri", "jwt:auth+jwt"}, wantSeen2: []string{"jwt:auth+jwt"}, wantHits: 1},
		{name: "pseudonym first, step up, then the flow", scheme: httpsig.SchemeJWKSURI, pseudo: true, method: "GET",
			wantSeen1: []string{"hwk", "jwks_uri", "jwt:auth+jwt"}, wantSeen2: []string{"jwt:auth+jwt"}, wantHits: 1},
		{name: "delegate agent", scheme: httpsig.SchemeJWT, method: "GET", delegate: "delegate-1",
			wantSeen1: []string{"jwt:agent+jwt", "jwt:auth+jwt"}, wantSeen2: []string{"jwt:auth+jwt"}, wantHits: 1},
		{name: "cached token rejected by the gateway: the flow runs once more", scheme: httpsig.SchemeJWKSURI, method: "GET",
			between:   func(w *flowWorld) { w.gw.RejectAuthTokens(1) },
			wantSeen1: []string{"jwks_uri", "jwt:auth+jwt"}, wantSeen2: []string{"jwt:auth+jwt!", "jwt:auth+jwt"}, wantHits: 2},
		{name: "cached token lacks a newly required scope", scheme: httpsig.SchemeJWT, method: "GET", delegate: "delegate-1",
			between: func(w *flowWorld) { w.gw.SetScopes("data.read", "data.write") },
			// The old token is still good for its own grant (data.read): it stays cached.
			wantSeen1: []string{"jwt:agent+jwt", "jwt:auth+jwt"}, wantSeen2: []string{"jwt:auth+jwt!", "jwt:auth+jwt"}, wantHits: 2, wantCached: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newFlowWorld(t)
			logs := &logSink{}
			tr := w.transport(tc.scheme, logs)
			tr.PreferPseudonym, tr.SignBody = tc.pseudo, tc.signBody
			var hdr http.Header
			if tc.body != "" {
				hdr = http.Header{"Content-Type": {"application/json"}}
			}
			for i, want := range [][]string{tc.wantSeen1, tc.wantSeen2} {
				if i == 1 && tc.between != nil {
					tc.between(w)
				}
				resp, got := doRequest(t, tr, tc.method, w.gw.ID+"/data?x=1", tc.body, hdr)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d %s\nlog:\n%s", i+1, resp.StatusCode, got, logs)
				}
				if seen := w.gw.Seen(); !reflect.DeepEqual(seen, want) {
					t.Errorf("request %d: gateway saw %v, want %v", i+1, seen, want)
				}
				var out map[string]string
				if err := json.Unmarshal([]byte(got), &out); err != nil {
					t.Fatal(err)
				}
				if out["agent"] != w.agentID || out["delegate"] != tc.delegate || out["body"] != tc.body || out["resource"] != w.gw.ID {
					t.Errorf("request %d: answer %v", i+1, out)
				}
			}
			if h := w.as.Hits(); h != tc.wantHits {
				t.Errorf("token endpoint hit %d times, want %d", h, tc.wantHits)
			}
			for _, p := range w.as.Purposes() {
				if p != "testing the flow" {
					t.Errorf("purpose %q", p)
				}
			}
			if n, want := tr.cache().Len(), max(tc.wantCached, 1); n != want {
				t.Errorf("cache holds %d tokens, want %d", n, want)
			}
			log := logs.String()
			for _, step := range []string{"challenge: require=auth-token", "resource token checked: typ resource+jwt, iss " + w.gw.ID,
				"auth server " + w.as.ID, "token request: POST " + w.as.ID + "/token", "-> 200 OK", "auth token received",
				"retrying GET", "using the cached auth token"} {
				if tc.method == "GET" && !strings.Contains(log, step) {
					t.Errorf("log lacks %q:\n%s", step, log)
				}
			}
			noJWT(t, "the log", log)
		})
	}
}

func TestAuthTokenFlowFailures(t *testing.T) {
	now := time.Now().Unix()
	other := genKey(t, keys.AlgEd25519, "resource-key-1") // same kid as the real key, another key
	var elsewhereHits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhereHits.Add(1) }))
	defer elsewhere.Close()

	type check func(t *testing.T, w *flowWorld, err error)
	flow := func(step string) check {
		return func(t *testing.T, _ *flowWorld, err error) {
			var fe *FlowError
			if !errors.As(err, &fe) || fe.Step != step {
				t.Fatalf("err %v, want a FlowError at step %s", err, step)
			}
		}
	}
	tests := []struct {
		name     string
		setup    func(w *flowWorld, tr *Transport)
		check    check
		wantHits int
	}{
		{"resource token with wrong iss", func(w *flowWorld, _ *Transport) {
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.Issuer = "http://127.0.0.1:1" })
		}, flow(StepResourceToken), 0},
		{"resource token for another agent", func(w *flowWorld, _ *Transport) {
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.Agent = "http://127.0.0.1:2" })
		}, flow(StepResourceToken), 0},
		{"resource token for another key", func(w *flowWorld, _ *Transport) {
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.AgentJKT = other.Public.Thumbprint })
		}, flow(StepResourceToken), 0},
		{"resource token for another auth server", func(w *flowWorld, _ *Transport) {
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.Audience = token.Audience{"http://127.0.0.1:3"} })
		}, flow(StepResourceToken), 0},
		{"resource token with a bad signature", func(w *flowWorld, _ *Transport) {
			w.gw.SignResourceTokensWith(other)
		}, flow(StepResourceToken), 0},
		{"expired resource token", func(w *flowWorld, _ *Transport) {
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.IssuedAt, c.Expiry = now-600, now-60 })
		}, flow(StepResourceToken), 0},
		{"loopback resource without Dev", func(_ *flowWorld, tr *Transport) { tr.Dev = false },
			func(t *testing.T, w *flowWorld, err error) {
				flow(StepResourceToken)(t, w, err)
				if !errors.Is(err, discovery.ErrBlocked) && !errors.Is(err, discovery.ErrInvalid) {
					t.Errorf("err %v should wrap the discovery verdict", err)
				}
			}, 0},
		{"auth-server with a path", func(w *flowWorld, _ *Transport) {
			w.gw.SetAuthServerParam(w.as.ID + "/")
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.Audience = token.Audience{w.as.ID + "/"} })
		}, flow(StepAuthServer), 0},
		{"auth-server not a URL", func(w *flowWorld, _ *Transport) {
			w.gw.SetAuthServerParam("as.example")
			w.gw.MutateResourceTokens(func(c *token.Claims) { c.Audience = token.Audience{"as.example"} })
		}, flow(StepAuthServer), 0},
		{"token endpoint on another origin", func(w *flowWorld, _ *Transport) {
			w.as.SetTokenEndpoint(elsewhere.URL + "/token")
		}, func(t *testing.T, w *flowWorld, err error) {
			flow(StepAuthServer)(t, w, err)
			if n := elsewhereHits.Load(); n != 0 {
				t.Errorf("the foreign token endpoint was contacted %d times", n)
			}
		}, 0},
		{"auth server denies", func(w *flowWorld, _ *Transport) {
			w.as.SetAnswer(agenttest.Deny(403, "denied", "the user said no"))
		}, func(t *testing.T, _ *flowWorld, err error) {
			var te *TokenError
			if !errors.As(err, &te) || *te != (TokenError{Status: 403, Code: "denied", Description: "the user said no"}) {
				t.Fatalf("err %#v", err)
			}
		}, 1},
		{"auth server fails with hostile text", func(w *flowWorld, tr *Transport) {
			w.as.SetAnswer(agenttest.Deny(500, "server_error", "oops\x1b[31m\nred"))
			tr.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
		}, func(t *testing.T, _ *flowWorld, err error) {
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 500 || te.Code != "server_error" || te.Description != "oops [31m red" {
				t.Fatalf("err %#v", err)
			}
		}, tokenAttempts}, // a 5xx: the token request (only) is retried
		{"auth server defers", func(w *flowWorld, _ *Transport) {
			w.as.SetAnswer(agenttest.Pending(w.as.ID+"/pending/abc", "ABCD2345", 2))
		}, func(t *testing.T, w *flowWorld, err error) {
			var pe *PendingError
			want := PendingError{Location: w.as.ID + "/pending/abc", Code: "ABCD2345", Require: "interaction",
				RetryAfter: 2 * time.Second, AuthServer: w.as.ID, InteractionEndpoint: w.as.ID + "/interact", Resource: w.gw.ID}
			if !errors.As(err, &pe) || *pe != want {
				t.Fatalf("err %#v, want %+v", err, want)
			}
		}, 1},
		{"auth server defers to another origin", func(w *flowWorld, _ *Transport) {
			w.as.SetAnswer(agenttest.Pending("http://127.0.0.1:4/pending/abc", "ABCD2345", 2))
		}, flow(StepTokenRequest), 1},
		{"auth token bound to another key", func(w *flowWorld, _ *Transport) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Confirmation = &token.Confirmation{Key: other.Public} })
		}, flow(StepAuthToken), 1},
		{"auth token for another audience", func(w *flowWorld, _ *Transport) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Audience = token.Audience{"http://127.0.0.1:5"} })
		}, flow(StepAuthToken), 1},
		{"auth token from another issuer", func(w *flowWorld, _ *Transport) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Issuer = "http://127.0.0.1:6" })
		}, flow(StepAuthToken), 1},
		{"auth token for another agent", func(w *flowWorld, _ *Transport) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Agent = "http://127.0.0.1:7" })
		}, flow(StepAuthToken), 1},
		{"auth token already expired", func(w *flowWorld, _ *Transport) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.IssuedAt, c.Expiry = now-600, now-60 })
		}, flow(StepAuthToken), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newFlowWorld(t)
			logs := &logSink{}
			tr := w.transport(httpsig.SchemeJWKSURI, logs)
			tc.setup(w, tr)
			req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("status %d, want an error\nlog:\n%s", resp.StatusCode, logs)
			}
			t.Logf("error: %v", err)
			tc.check(t, w, err)
			if h := w.as.Hits(); h != tc.wantHits {
				t.Errorf("token endpoint hit %d times, want %d", h, tc.wantHits)
			}
			if seen := w.gw.Seen(); !reflect.DeepEqual(seen, []string{"jwks_uri"}) {
				t.Errorf("gateway saw %v: the request must not be retried", seen)
			}
			if n := tr.cache().Len(); n != 0 {
				t.Errorf("cache holds %d tokens after a failure", n)
			}
			noJWT(t, "the error", err.Error())
			noJWT(t, "the log", logs.String())
		})
	}
}

// A second request after a failed flow starts from scratch (nothing was cached), and a
// Transport shared by concurrent requests stays consistent.
// gatedTokenEndpoint is a Transport.Base that holds every token request until gate is
// closed (or the request's context ends), so a test can line requests up behind a flow
// in progress.
type gatedTokenEndpoint struct {
	gate      chan struct{}
	once      sync.Once
	entered   chan struct{} // one value per token request that reached the gate
	cancelled atomic.Int32  // token requests whose context ended at the gate
}

// newGate returns a closed gate; it is opened at the end of the test at the latest.
func newGate(t *testing.T) *gatedTokenEndpoint {
	g := &gatedTokenEndpoint{gate: make(chan struct{}), entered: make(chan struct{}, 64)}
	t.Cleanup(g.open)
	return g
}

func (g *gatedTokenEndpoint) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedTokenEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == agenttest.PathToken {
		g.entered <- struct{}{}
		select {
		case <-g.gate:
		case <-r.Context().Done():
			g.cancelled.Add(1)
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (l *logSink) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

const joinedLog = "already in progress; waiting for it"

type roundTripResult struct {
	status int
	err    error
}

// goRoundTrip sends GET path through tr in a goroutine.
func goRoundTrip(ctx context.Context, tr *Transport, url string) <-chan roundTripResult {
	ch := make(chan roundTripResult, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			ch <- roundTripResult{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- roundTripResult{status: resp.StatusCode}
	}()
	return ch
}

func receive(t *testing.T, what string, ch <-chan roundTripResult) roundTripResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
	}
	return roundTripResult{}
}

// Concurrent requests challenged for the same resource and key share one flow: one token
// request, and every request is retried with its token.
func TestAuthTokenFlowConcurrent(t *testing.T) {
	const n = 8
	w := newFlowWorld(t)
	logs := &logSink{}
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	g := newGate(t)
	tr.Base = g
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/item/%d", w.gw.ID, i), strings.NewReader("x"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	// Hold the token request until all the other requests have been challenged and
	// are waiting for the flow in progress.
	waitFor(t, "the other requests to join the flow", func() bool { return logs.count(joinedLog) == n-1 })
	g.open()
	wg.Wait()
	if h := w.as.Hits(); h != 1 {
		t.Errorf("token endpoint hit %d times, want 1", h)
	}
	if e := len(g.entered); e != 1 {
		t.Errorf("%d token requests sent, want 1", e)
	}
	if p := w.as.Purposes(); len(p) != 1 {
		t.Errorf("purposes %q, want one token request", p)
	}
	retried := 0
	for _, s := range w.gw.Seen() {
		if s == "jwt:auth+jwt" {
			retried++
		} else if s != "jwks_uri" {
			t.Errorf("gateway saw %q", s)
		}
	}
	if retried != n {
		t.Errorf("%d requests retried with the auth token, want %d", retried, n)
	}
	if tr.cache().Len() != 1 {
		t.Errorf("cache holds %d tokens, want 1", tr.cache().Len())
	}
}

// The request that started a shared flow gives up: it returns at once with its context's
// error, and the flow goes on for the requests still waiting.
func TestAuthTokenFlowConcurrentWaiterCancelled(t *testing.T) {
	w := newFlowWorld(t)
	logs := &logSink{}
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	g := newGate(t)
	tr.Base = g
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quitter := goRoundTrip(ctx, tr, w.gw.ID+"/quitter")
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the token request was not sent")
	}
	others := []<-chan roundTripResult{
		goRoundTrip(context.Background(), tr, w.gw.ID+"/a"),
		goRoundTrip(context.Background(), tr, w.gw.ID+"/b"),
	}
	waitFor(t, "the others to join the flow", func() bool { return logs.count(joinedLog) == len(others) })

	cancel()
	if r := receive(t, "the cancelled request", quitter); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled request: %+v, want context.Canceled", r)
	}
	for i, ch := range others {
		select {
		case r := <-ch:
			t.Fatalf("waiter %d returned before the flow ended: %+v", i, r)
		default:
		}
	}
	if c := g.cancelled.Load(); c != 0 {
		t.Fatalf("the shared token request was cancelled (%d)", c)
	}

	g.open()
	for i, ch := range others {
		if r := receive(t, "a waiter", ch); r.err != nil || r.status != 200 {
			t.Errorf("waiter %d: %+v", i, r)
		}
	}
	if h := w.as.Hits(); h != 1 {
		t.Errorf("token endpoint hit %d times, want 1", h)
	}
}

// When every request waiting for a flow has given up, the flow is cancelled, and the
// next request starts a new one instead of joining the abandoned one.
func TestAuthTokenFlowAbandoned(t *testing.T) {
	w := newFlowWorld(t)
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	g := newGate(t)
	tr.Base = g
	ctx, cancel := context.WithCancel(context.Background())
	ch := goRoundTrip(ctx, tr, w.gw.ID+"/a")
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the token request was not sent")
	}
	cancel()
	if r := receive(t, "the cancelled request", ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled request: %+v, want context.Canceled", r)
	}
	waitFor(t, "the abandoned token request to be cancelled", func() bool { return g.cancelled.Load() == 1 })
	g.open()
	if resp, body := doRequest(t, tr, "GET", w.gw.ID+"/b", "", nil); resp.StatusCode != 200 {
		t.Fatalf("after the abandoned flow: status %d %s", resp.StatusCode, body)
	}
	if h := w.as.Hits(); h != 1 {
		t.Errorf("token endpoint hit %d times, want 1", h)
	}
}

// A TokenCache shared by Transports with different keys gives each only the tokens bound
// to its own key: the second runs its own flow instead of sending the first's token.
func TestAuthTokenFlowSharedCacheKeys(t *testing.T) {
	w := newFlowWorld(t)
	cache := NewTokenCache(10)
	tr1 := w.transport(httpsig.SchemeJWKSURI, nil) // signs with the agent key
	tr2 := w.transport(httpsig.SchemeJWT, nil)     // signs with the delegate key
	tr1.TokenCache, tr2.TokenCache = cache, cache
	jkt1, jkt2 := w.agentKey.Public.Thumbprint, w.delegateKey.Public.Thumbprint

	if resp, body := doRequest(t, tr1, "GET", w.gw.ID+"/one", "", nil); resp.StatusCode != 200 {
		t.Fatalf("first transport: status %d %s", resp.StatusCode, body)
	}
	w.gw.Seen()
	if resp, body := doRequest(t, tr2, "GET", w.gw.ID+"/two", "", nil); resp.StatusCode != 200 {
		t.Fatalf("second transport: status %d %s", resp.StatusCode, body)
	}
	if got, want := w.gw.Seen(), []string{"jwt:agent+jwt", "jwt:auth+jwt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("second transport: gateway saw %v, want %v (its own flow, not the first's token)", got, want)
	}
	if h := w.as.Hits(); h != 2 {
		t.Errorf("token endpoint hit %d times, want 2", h)
	}
	ct1, ok1 := cache.Get(w.gw.ID, jkt1)
	ct2, ok2 := cache.Get(w.gw.ID, jkt2)
	if !ok1 || !ok2 || cache.Len() != 2 {
		t.Fatalf("cache: %v %v, len %d; want a token for each key", ok1, ok2, cache.Len())
	}
	if ct1.KeyJKT != jkt1 || ct2.KeyJKT != jkt2 || ct1.Token == ct2.Token {
		t.Errorf("cached tokens mixed up: %s / %s", ct1.KeyJKT, ct2.KeyJKT)
	}

	// Later requests each use their own cached token straight away.
	for _, tr := range []*Transport{tr1, tr2, tr1} {
		if resp, body := doRequest(t, tr, "GET", w.gw.ID+"/again", "", nil); resp.StatusCode != 200 {
			t.Fatalf("again: status %d %s", resp.StatusCode, body)
		}
	}
	if got, want := w.gw.Seen(), []string{"jwt:auth+jwt", "jwt:auth+jwt", "jwt:auth+jwt"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cached requests: gateway saw %v, want %v", got, want)
	}
	if h := w.as.Hits(); h != 2 {
		t.Errorf("token endpoint hit %d times, want 2", h)
	}
}

func TestAuthTokenFlowResourceIDs(t *testing.T) {
	w := newFlowWorld(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(w.gw.ID, "http://"))
	viaName := "http://localhost:" + port
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	req, _ := http.NewRequest("GET", viaName+"/data", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "is not the resource that was called") {
		t.Fatalf("without a mapping: err %v", err)
	}
	tr.ResourceIDs = map[string]string{viaName: w.gw.ID}
	resp, body := doRequest(t, tr, "GET", viaName+"/data", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("with a mapping: status %d %s", resp.StatusCode, body)
	}
	if ct, ok := tr.cache().Get(w.gw.ID, w.agentKey.Public.Thumbprint); !ok || ct.KeyJKT != w.agentKey.Public.Thumbprint {
		t.Error("the token should be cached under the resource identifier")
	}
}

// The AwaitToken hook receives the pending request and its token is checked and used.
func TestAuthTokenFlowAwaitToken(t *testing.T) {
	w := newFlowWorld(t)
	w.as.SetAnswer(agenttest.Pending(w.as.ID+"/pending/xyz", "WXYZ2345", 0))
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	var got *PendingError
	mint := func(agent string) (string, error) {
		now := time.Now().Unix()
		return token.Mint(w.as.Key, token.TypAuth, token.Claims{
			Issuer: w.as.ID, Audience: token.Audience{w.gw.ID}, ID: token.NewID(), IssuedAt: now, Expiry: now + 600,
			Agent: agent, Scope: "data.read", Confirmation: &token.Confirmation{Key: w.agentKey.Public},
		})
	}
	tr.AwaitToken = func(_ context.Context, p *PendingError) (string, error) {
		got = p
		return mint(w.agentID)
	}
	resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
	if resp.StatusCode != 200 || got == nil || got.Code != "WXYZ2345" || got.RetryAfter != 0 {
		t.Fatalf("status %d %s, pending %+v", resp.StatusCode, body, got)
	}
	// A token from the hook gets the same checks as a direct one.
	tr2 := w.transport(httpsig.SchemeJWKSURI, nil)
	tr2.AwaitToken = func(context.Context, *PendingError) (string, error) { return mint("http://127.0.0.1:9") }
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	var fe *FlowError
	if _, err := tr2.RoundTrip(req); !errors.As(err, &fe) || fe.Step != StepAuthToken {
		t.Fatalf("err %v", err)
	}
}

func TestAuthTokenFlowGarbageChallenge(t *testing.T) {
	key := genKey(t, keys.AlgEd25519, "k1")
	s := &scripted{answers: []func(http.ResponseWriter){
		answer(401, `require=auth-token; resource-token="not.a.token"; auth-server="https://as.example"`),
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	tr := &Transport{Identity: JWKSURI(key, "https://agent.example"), Dev: true}
	req, _ := http.NewRequest("GET", srv.URL+"/r", nil)
	var fe *FlowError
	if _, err := tr.RoundTrip(req); !errors.As(err, &fe) || fe.Step != StepResourceToken {
		t.Fatalf("err %v", err)
	}
	if len(s.signed) != 1 {
		t.Errorf("%d requests, want 1", len(s.signed))
	}
}

func TestTokenCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	tok := func(res, scope, text string, ttl time.Duration) CachedToken {
		return CachedToken{Resource: res, KeyJKT: "k1", Scope: scope, Token: text, Expiry: now.Add(ttl)}
	}
	t.Run("zero value, newest wins, margin", func(t *testing.T) {
		var c TokenCache
		c.Now = clock
		if _, ok := c.Get("https://r.example", "k1"); ok {
			t.Fatal("empty cache hit")
		}
		c.Put(tok("https://r.example", "a", "t1", time.Hour))
		c.Put(tok("https://r.example", "b", "t2", 31*time.Second))
		if got, ok := c.Get("https://r.example", "k1"); !ok || got.Token != "t2" {
			t.Fatalf("got %+v %v, want t2", got, ok)
		}
		now = now.Add(2 * time.Second) // t2 is now within the 30 s margin
		if got, ok := c.Get("https://r.example", "k1"); !ok || got.Token != "t1" {
			t.Fatalf("got %+v %v, want t1", got, ok)
		}
		if c.Len() != 2 {
			t.Errorf("the expired entry was not kept for a refresh: %d", c.Len())
		}
		// Unusable from the start (a 10 s lifetime is inside the margin): stored for a
		// refresh, never handed out.
		c.Put(tok("https://r.example", "c", "t3", 10*time.Second))
		if got, _ := c.Get("https://r.example", "k1"); c.Len() != 3 || got.Token != "t1" {
			t.Errorf("a short-lived token: Len %d, Get %q; want it kept (3) and t1 handed out", c.Len(), got.Token)
		}
		c.Put(tok("https://r.example", "d", "t6", -RefreshWindow-time.Second)) // past its refresh window
		if c.Len() != 3 {
			t.Errorf("a token past its refresh window was stored")
		}
		c.Delete("https://r.example", "t2")
		c.Delete("https://r.example", "t3")
		c.Put(tok("", "a", "t4", time.Hour))
		c.Put(tok("https://r.example", "a", "", time.Hour))
		noKey := tok("https://r.example", "a", "t5", time.Hour)
		noKey.KeyJKT = ""
		c.Put(noKey)
		if got, _ := c.Get("https://r.example", "k1"); got.Token != "t1" || c.Len() != 1 {
			t.Errorf("invalid entries stored: %+v %d", got, c.Len())
		}
	})
	t.Run("delete", func(t *testing.T) {
		c := &TokenCache{Now: clock}
		c.Put(tok("https://r.example", "a", "t1", time.Hour))
		c.Put(tok("https://r.example", "b", "t2", time.Hour))
		c.Put(tok("https://s.example", "a", "t3", time.Hour))
		c.Delete("https://r.example", "other")
		if c.Len() != 3 {
			t.Fatal("deleted a token that was not named")
		}
		c.Delete("https://r.example", "t2")
		if got, _ := c.Get("https://r.example", "k1"); got.Token != "t1" || c.Len() != 2 {
			t.Fatalf("after delete: %+v %d", got, c.Len())
		}
		c.Delete("https://r.example", "")
		if _, ok := c.Get("https://r.example", "k1"); ok || c.Len() != 1 {
			t.Fatal("delete all")
		}
	})
	t.Run("per key", func(t *testing.T) {
		c := &TokenCache{Now: clock}
		c.Put(tok("https://r.example", "a", "t1", time.Hour))
		other := tok("https://r.example", "a", "t2", time.Hour) // same resource and scope
		other.KeyJKT = "k2"
		c.Put(other)
		if c.Len() != 2 {
			t.Fatalf("len %d: a token for another key replaced the first", c.Len())
		}
		if got, ok := c.Get("https://r.example", "k1"); !ok || got.Token != "t1" || got.KeyJKT != "k1" {
			t.Errorf("k1 got %+v %v", got, ok)
		}
		if got, ok := c.Get("https://r.example", "k2"); !ok || got.Token != "t2" || got.KeyJKT != "k2" {
			t.Errorf("k2 got %+v %v", got, ok)
		}
		for _, jkt := range []string{"k3", ""} {
			if got, ok := c.Get("https://r.example", jkt); ok {
				t.Errorf("%q got %+v", jkt, got)
			}
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := NewTokenCache(3)
		c.Now = clock
		for i := range 5 {
			c.Put(tok(fmt.Sprintf("https://r%d.example", i), "", fmt.Sprint(i), time.Hour))
		}
		if c.Len() != 3 {
			t.Fatalf("len %d", c.Len())
		}
		for i, want := range []bool{false, false, true, true, true} {
			if _, ok := c.Get(fmt.Sprintf("https://r%d.example", i), "k1"); ok != want {
				t.Errorf("r%d present %v, want %v", i, ok, want)
			}
		}
		if NewTokenCache(0).max() != DefaultTokenCacheSize {
			t.Error("default size")
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		c := NewTokenCache(8)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					res := fmt.Sprintf("https://r%d.example", (g+i)%12)
					c.Put(CachedToken{Resource: res, KeyJKT: "k1", Scope: "s", Token: fmt.Sprint(i), Expiry: time.Now().Add(time.Hour)})
					c.Get(res, "k1")
					if i%7 == 0 {
						c.Delete(res, "")
					}
				}
			}()
		}
		wg.Wait()
		if c.Len() > 8 {
			t.Errorf("len %d exceeds the bound", c.Len())
		}
	})
}

// Expired tokens stay for a refresh only: Get never returns them, refreshable does,
// for the same key, issuer and scope, until RefreshWindow past their expiry.
func TestTokenCacheRefreshWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	c := &TokenCache{Now: clock}
	c.Put(CachedToken{Resource: "https://r.example", KeyJKT: "k1", Issuer: "https://as.example", Scope: "a", Token: "t1", Expiry: now.Add(time.Hour)})
	c.Put(CachedToken{Resource: "https://r.example", KeyJKT: "k1", Issuer: "https://as.example", Scope: "b", Token: "t2", Expiry: now.Add(2 * time.Hour)})
	if _, ok := c.refreshable("https://r.example", "k1", "https://as.example", "a"); ok {
		t.Fatal("a usable token is refreshable")
	}
	if got, ok := c.getScope("https://r.example", "k1", "https://as.example", "a"); !ok || got.Token != "t1" {
		t.Fatalf("getScope a: %+v %v", got, ok)
	}
	now = now.Add(90 * time.Minute) // t1 expired, t2 usable
	for _, tc := range []struct {
		jkt, iss, scope string
		want            string
	}{
		{"k1", "https://as.example", "a", "t1"},
		{"k1", "https://as.example", "b", ""},    // still usable: Get's business
		{"k1", "https://other.example", "a", ""}, // another issuer
		{"k2", "https://as.example", "a", ""},    // another key
		{"k1", "https://as.example", "c", ""},    // another scope
	} {
		got, ok := c.refreshable("https://r.example", tc.jkt, tc.iss, tc.scope)
		if ok != (tc.want != "") || got.Token != tc.want {
			t.Errorf("refreshable(%s, %s, %s) = %q %v, want %q", tc.jkt, tc.iss, tc.scope, got.Token, ok, tc.want)
		}
	}
	if got, ok := c.Get("https://r.example", "k1"); !ok || got.Token != "t2" {
		t.Errorf("Get returned %+v %v, want the usable t2", got, ok)
	}
	if _, ok := c.getScope("https://r.example", "k1", "https://as.example", "a"); ok {
		t.Error("getScope returned an expired token")
	}
	now = now.Add(RefreshWindow) // t1 is 24.5 h past exp, t2 23.5 h
	if _, ok := c.refreshable("https://r.example", "k1", "https://as.example", "a"); ok || c.Len() != 1 {
		t.Errorf("a token past its refresh window was kept (len %d)", c.Len())
	}
	if _, ok := c.refreshable("https://r.example", "k1", "https://as.example", "b"); !ok {
		t.Error("t2 should be refreshable")
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://API.Example:443/x?y":  "https://api.example",
		"https://api.example:8443/":    "https://api.example:8443",
		"HTTP://127.0.0.1:80/":         "http://127.0.0.1",
		"http://127.0.0.1:8080/a":      "http://127.0.0.1:8080",
		"http://[::1]:9000/":           "http://[::1]:9000",
		"https://user@api.example/p#f": "https://api.example",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Origin(u); got != want {
			t.Errorf("Origin(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"denied":                  "denied",
		"a\x00b\x07c\u200bd\nend": "a b c d end",
		strings.Repeat("x", 400):  strings.Repeat("x", 300) + "…",
		"  padded  ":              "padded",
	} {
		if got := clean(in, 300); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAuthTokenCredentialString(t *testing.T) {
	k := genKey(t, keys.AlgEd25519, "k")
	now := time.Now().Unix()
	at, err := token.Mint(k, token.TypAuth, token.Claims{Issuer: "https://as.example", Audience: token.Audience{"https://r.example"},
		ID: token.NewID(), IssuedAt: now, Expiry: now + 60, Agent: "https://a.example", Scope: "s",
		Confirmation: &token.Confirmation{Key: k.Public}})
	if err != nil {
		t.Fatal(err)
	}
	c := AuthToken(k, at)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := c.String()
	if !strings.Contains(s, "auth+jwt") || strings.Contains(s, "delegate") {
		t.Errorf("String %q", s)
	}
	noJWT(t, "String", s)
}

// TestTokensPerScope: two routes of one resource need different grants. Each grant's
// token stays cached, and a route challenged with the other route's token is answered
// from the cache, without a token request.
func TestTokensPerScope(t *testing.T) {
	w := newFlowWorld(t)
	logs := &logSink{}
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	get := func(scopes ...string) {
		t.Helper()
		w.gw.SetScopes(scopes...)
		if resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil); resp.StatusCode != 200 {
			t.Fatalf("scopes %v: %d %s\n%s", scopes, resp.StatusCode, body, logs)
		}
	}
	get("data.read")
	get("data.write") // a new grant: the data.read token stays cached
	get("data.read")  // the newest (data.write) token is refused; the data.read one answers
	get("data.write")
	if h := w.as.Hits(); h != 2 {
		t.Errorf("token endpoint hit %d times, want 2 (one per grant)\n%s", h, logs)
	}
	if n := tr.cache().Len(); n != 2 {
		t.Errorf("cache holds %d tokens, want 2", n)
	}
}
