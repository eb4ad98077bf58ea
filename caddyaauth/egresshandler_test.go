package caddyaauth

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// egressWorld is a resource R1 acting as an agent (its agent metadata served by an
// agent.Server on loopback), a stub downstream resource R2 (agenttest.Gateway) and its
// stub auth server AS2, and an aauth_egress wired without a running Caddy.
type egressWorld struct {
	r1ID  string
	r1Key *keys.Signer
	as2   *agenttest.AuthServer
	r2    *agenttest.Gateway
	state *egressState
	e     *Egress
}

func newEgressWorld(t *testing.T, allow ...string) *egressWorld {
	t.Helper()
	w := &egressWorld{state: newEgressState(nil)}
	var err error
	if w.r1Key, err = keys.Generate(keys.AlgEd25519, "r1-agent-key"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.r1ID = "http://" + ln.Addr().String()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: &agent.Server{Signer: w.r1Key, ID: w.r1ID}}}
	srv.Start()
	t.Cleanup(srv.Close)
	w.as2 = agenttest.NewAuthServer(t)
	w.r2 = agenttest.NewGateway(t, w.as2.ID, "data.read")
	disc := discovery.New(discovery.Config{Dev: true})
	t.Cleanup(disc.Close)
	// The stub AS2 verifies token requests by the caller's identity (it knows no token
	// exchange), so the body form is used: signed as R1 with jwks_uri.
	w.e = &Egress{HandleHeader: HeaderHandle, MaxBody: 1 << 20, logger: zap.NewNop(), state: w.state,
		policy: egress.TargetPolicy{Dev: true, Allow: allow},
		proxy: &egress.Proxy{Base: egress.NewTransport(true, 5*time.Second), Discovery: disc, Dev: true,
			ExchangeForm: agent.ExchangeBody, Tokens: w.state.tokens}}
	return w
}

// handle mints a handle for an inbound token expiring in life.
func (w *egressWorld) handle(t *testing.T, inbound string, life time.Duration) *egress.Handle {
	t.Helper()
	h := &egress.Handle{Inbound: inbound, Expiry: time.Now().Add(life), Resource: w.r1ID, Signer: w.r1Key, AgentJKT: "jkt"}
	if err := w.state.handles.Mint(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// call sends the backend's request through the egress from peer.
func (w *egressWorld) call(t *testing.T, peer, handle, target string) *httptest.ResponseRecorder {
	t.Helper()
	method := http.MethodGet
	if m, authority, ok := strings.Cut(target, " "); ok { // "CONNECT host:port"
		method, target = m, "http://"+authority
	}
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = peer
	if handle != "" {
		r.Header.Set(HeaderHandle, handle)
	}
	rec := httptest.NewRecorder()
	if err := w.e.ServeHTTP(rec, r, nil); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return rec
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return e.Error
}

func TestEgressRefusals(t *testing.T) {
	w := newEgressWorld(t, "http://127.0.0.1:1")
	live := w.handle(t, "inbound-live", time.Hour)
	expired := w.handle(t, "inbound-expired", -time.Second)
	finished := w.handle(t, "inbound-finished", time.Hour)
	w.state.handles.Finish(finished)
	const loop = "127.0.0.1:40000"
	for _, tc := range []struct {
		name, peer, handle, target string
		status                     int
		code                       string
	}{
		{"non-loopback peer", "192.0.2.7:40000", live.ID, "http://127.0.0.1:1/x", 403, egress.CodeForbidden},
		{"non-loopback peer, IPv6", "[2001:db8::1]:40000", live.ID, "http://127.0.0.1:1/x", 403, egress.CodeForbidden},
		{"no handle", loop, "", "http://127.0.0.1:1/x", 403, egress.CodeInvalidHandle},
		{"unknown handle", loop, "AAAAAAAAAAAAAAAAAAAAAA", "http://127.0.0.1:1/x", 403, egress.CodeInvalidHandle},
		{"a handle from another request (finished)", loop, finished.ID, "http://127.0.0.1:1/x", 403, egress.CodeInvalidHandle},
		{"handle after the inbound token expired", loop, expired.ID, "http://127.0.0.1:1/x", 403, egress.CodeInvalidHandle},
		{"target not in the allow list", loop, live.ID, "http://127.0.0.2:1/x", 403, egress.CodeInvalidTarget},
		{"no target", loop, live.ID, "/x", 400, egress.CodeInvalidTarget},
		{"CONNECT tunnel", loop, live.ID, "CONNECT 127.0.0.1:1", 405, egress.CodeInvalidTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := w.call(t, tc.peer, tc.handle, tc.target)
			if rec.Code != tc.status || errorCode(t, rec) != tc.code {
				t.Fatalf("status %d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.code)
			}
		})
	}
}

func TestEgressExchangesAndCaches(t *testing.T) {
	w := newEgressWorld(t)
	h := w.handle(t, "inbound-token-1", time.Hour)
	for i := range 2 {
		rec := w.call(t, "127.0.0.1:40000", h.ID, w.r2.ID+"/data")
		var out map[string]string
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out["agent"] != w.r1ID {
			t.Fatalf("call %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	if n := w.as2.Hits(); n != 1 {
		t.Fatalf("AS2 token endpoint hit %d times, want 1 (the second call uses the cached token)", n)
	}
	if seen := strings.Join(w.r2.Seen(), " "); seen != "jwks_uri jwt:auth+jwt jwt:auth+jwt" {
		t.Fatalf("R2 saw %s", seen)
	}
	// Another inbound token (another caller) never gets the first one's downstream token.
	other := w.handle(t, "inbound-token-2", time.Hour)
	if rec := w.call(t, "[::1]:40000", other.ID, w.r2.ID+"/data"); rec.Code != 200 {
		t.Fatalf("other caller: %d %s", rec.Code, rec.Body)
	}
	if n := w.as2.Hits(); n != 2 {
		t.Fatalf("AS2 hit %d times, want 2", n)
	}
}

func TestEgressRecordsDownstreamInteraction(t *testing.T) {
	w := newEgressWorld(t)
	w.as2.EnableConsent(agenttest.ConsentOptions{RetryAfter: 3})
	h := w.handle(t, "inbound-token-1", time.Hour)
	rec := w.call(t, "127.0.0.1:40000", h.ID, w.r2.ID+"/data")
	if rec.Code != http.StatusServiceUnavailable || errorCode(t, rec) != egress.CodeInteractionRequired || rec.Header().Get("Retry-After") != "3" {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	i := h.Interaction()
	if i == nil || i.Pending.Code == "" || !strings.HasPrefix(i.Pending.Location, w.as2.ID) || i.Pending.Resource != w.r2.ID {
		t.Fatalf("interaction %+v", i)
	}
}

func TestEgressStubAS2Denies(t *testing.T) {
	w := newEgressWorld(t)
	w.as2.SetAnswer(agenttest.Deny(http.StatusForbidden, "denied", "policy says no"))
	h := w.handle(t, "inbound-token-1", time.Hour)
	rec := w.call(t, "127.0.0.1:40000", h.ID, w.r2.ID+"/data")
	if rec.Code != http.StatusForbidden || errorCode(t, rec) != "denied" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// TestEgressUpgradesHTTP checks, without dev, that an http target leaves as https and
// that the egress's own dial rules refuse a loopback downstream address.
func TestEgressUpgradesHTTP(t *testing.T) {
	w := newEgressWorld(t)
	w.e.policy.Dev = false
	var seen []string
	w.e.proxy.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.URL.String())
		return &http.Response{StatusCode: 204, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	h := w.handle(t, "inbound-token-1", time.Hour)
	if rec := w.call(t, "127.0.0.1:40000", h.ID, "http://api2.example/v1?x=1"); rec.Code != 204 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if len(seen) != 1 || seen[0] != "https://api2.example/v1?x=1" {
		t.Fatalf("sent to %v", seen)
	}
	w.e.proxy.Base = egress.NewTransport(false, time.Second)
	w.e.policy = egress.TargetPolicy{Allow: []string{w.r2.ID}} // http origin listed: not upgraded
	if rec := w.call(t, "127.0.0.1:40000", h.ID, w.r2.ID+"/data"); rec.Code != 403 || errorCode(t, rec) != egress.CodeForbidden {
		t.Fatalf("loopback downstream outside dev: %d %s", rec.Code, rec.Body)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHandlerMintsHandlePerRequest: an egress route forwards a fresh handle bound to the
// inbound auth token and the signing key, usable while the request is served and dead
// once it has been.
func TestHandlerMintsHandlePerRequest(t *testing.T) {
	now := time.Now()
	as, _ := keys.Generate(keys.AlgEd25519, "as-key")
	agentKey, _ := keys.Generate(keys.AlgEd25519, "")
	tok := mintAuthToken(t, as, agentKey.Public, now.Add(-time.Second), time.Hour)
	h := authTokenHandler(t, ReplayOff, as, tok, func() time.Time { return now })
	h.Egress = true
	h.app = &App{reg: &registry{guards: map[*caddyhttp.Server]*serverGuard{}, resources: map[string][]*Handler{}}}
	h.key = keystore.NewKey(&certmagic.FileStorage{Path: t.TempDir()}, keystore.LayoutOf(keystore.RoleResource, h.Resource), keys.AlgEd25519)
	h.agentKey = h.key
	st := h.app.egressState()
	var ids []string
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		id := r.Header.Get(HeaderHandle)
		hd, err := st.handles.Lookup(id)
		if err != nil || hd.Inbound != tok || hd.AgentJKT != agentKey.Public.Thumbprint || hd.Resource != h.Resource {
			t.Errorf("handle %q during the request: %+v %v", id, hd, err)
		}
		ids = append(ids, id)
		return nil
	})
	for range 2 {
		req := jwtRequest(t, agentKey, tok, http.MethodGet, benchResource+"/x", now)
		req.Header.Set(HeaderHandle, "forged-by-the-client")
		if err := h.ServeHTTP(httptest.NewRecorder(), req, next); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("handles %v: want one fresh handle per request", ids)
	}
	for _, id := range ids {
		if _, err := st.handles.Lookup(id); err != egress.ErrUnknownHandle {
			t.Fatalf("handle after its request finished: %v", err)
		}
	}
}

// TestEgressDecisionLines: a refused call is one Info line with its code and no handle
// or token; a relayed call is one Debug line with the downstream status, the resource
// and the redacted target.
func TestEgressDecisionLines(t *testing.T) {
	w := newEgressWorld(t)
	core, logs := observer.New(zapcore.DebugLevel)
	w.e.logger = zap.New(core)
	h := w.handle(t, "inbound-token-secret", time.Hour)
	if rec := w.call(t, "192.0.2.7:40000", h.ID, w.r2.ID+"/data"); rec.Code != http.StatusForbidden {
		t.Fatalf("non-loopback: %d", rec.Code)
	}
	if rec := w.call(t, "127.0.0.1:40000", h.ID, w.r2.ID+"/data?q=1"); rec.Code != http.StatusOK {
		t.Fatalf("call: %d %s", rec.Code, rec.Body)
	}
	lines := logs.FilterMessageSnippet("aauth egress ").All()
	if len(lines) != 2 || lines[0].Message != "aauth egress refused" || lines[1].Message != "aauth egress passed" {
		t.Fatalf("lines %v", lines)
	}
	if f := lines[0].ContextMap(); lines[0].Level != zapcore.InfoLevel || f["error"] != egress.CodeForbidden || f["status"] != int64(403) {
		t.Errorf("refused line %v", f)
	}
	f := lines[1].ContextMap()
	if lines[1].Level != zapcore.DebugLevel || f["status"] != int64(200) || f["resource"] != w.r1ID || !strings.HasPrefix(fmt.Sprint(f["target"]), w.r2.ID+"/data") {
		t.Errorf("passed line %v", f)
	}
	for _, l := range lines {
		for k, v := range l.ContextMap() {
			if s := fmt.Sprint(v); strings.Contains(s, h.ID) || strings.Contains(s, "inbound-token-secret") {
				t.Errorf("field %s carries the handle or the inbound token: %q", k, s)
			}
		}
	}
}
