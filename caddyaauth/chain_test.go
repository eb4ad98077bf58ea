package caddyaauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// TestChainWriter: a normal response passes through unbuffered; when decide swaps, the
// backend's status, fields and body (Write and ReadFrom) are discarded.
func TestChainWriter(t *testing.T) {
	for _, swap := range []bool{false, true} {
		rec := httptest.NewRecorder()
		cw := &chainWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: rec}}
		cw.decide = func() bool {
			if swap {
				rec.Header().Set("X-Ours", "1")
				rec.WriteHeader(http.StatusAccepted)
			}
			return swap
		}
		cw.Header().Set("X-Backend", "1")
		cw.WriteHeader(http.StatusServiceUnavailable)
		_, _ = cw.Write([]byte("backend "))
		_, _ = cw.ReadFrom(strings.NewReader("body"))
		cw.Flush()
		switch {
		case swap && (rec.Code != http.StatusAccepted || rec.Body.Len() != 0):
			t.Fatalf("swapped: %d %q", rec.Code, rec.Body)
		case !swap && (rec.Code != http.StatusServiceUnavailable || rec.Body.String() != "backend body"):
			t.Fatalf("passed: %d %q", rec.Code, rec.Body)
		}
	}
}

// chainHandler is an egress route with one waiting chained request.
func chainHandler(t *testing.T) (*Handler, *egressState, *chainRecord) {
	t.Helper()
	h := agentIdentityHandler(t, AgentKeyResource)
	h.Egress, h.now, h.logger = true, time.Now, zap.NewNop()
	h.app = &App{Dev: true, reg: &registry{guards: map[*caddyhttp.Server]*serverGuard{}, resources: map[string][]*Handler{}}}
	st := h.app.egressState()
	rec := &chainRecord{expires: time.Now().Add(time.Minute), handler: h, interaction: &egress.Interaction{
		Pending: &agent.PendingError{Location: "http://127.0.0.1:1/pending/x", Code: "AS2CODE1", AuthServer: "http://127.0.0.1:1",
			InteractionEndpoint: "http://127.0.0.1:1/interact"}}}
	if err := st.chains.add(rec, time.Now()); err != nil {
		t.Fatal(err)
	}
	return h, st, rec
}

func TestChainEndpoints(t *testing.T) {
	h, st, rec := chainHandler(t)
	serve := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		served, err := h.serveWellKnownPath(w, httptest.NewRequest(method, "https://api.example"+path, nil))
		if !served || err != nil {
			t.Fatalf("%s %s: served %v err %v", method, path, served, err)
		}
		return w
	}
	if w := serve("GET", PathChainInteract+"?code="+strings.ToLower(rec.code[:4])+"-"+rec.code[4:]); w.Code != http.StatusSeeOther ||
		w.Header().Get("Location") != "http://127.0.0.1:1/interact?code=AS2CODE1" {
		t.Fatalf("interact: %d %v", w.Code, w.Header())
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
	}{
		{"unknown code", "GET", PathChainInteract + "?code=ZZZZZZZZ", 400},
		{"malformed code", "GET", PathChainInteract + "?code=<script>", 400},
		{"unknown pending id", "GET", PathChainPending + "AAAAAAAAAAAAAAAAAAAAAA", 404},
		{"malformed pending id", "GET", PathChainPending + "x", 404},
		{"POST", "POST", PathChainPending + rec.id, 405},
		{"unsigned poll", "GET", PathChainPending + rec.id, 401},
	} {
		if w := serve(tc.method, tc.path); w.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.status)
		}
	}
	st.chains.remove(rec)
	if w := serve("GET", PathChainPending+rec.id); w.Code != 404 {
		t.Fatalf("after the terminal answer: %d", w.Code)
	}
	if w := serve("GET", PathChainInteract+"?code="+rec.code); w.Code != 400 {
		t.Fatalf("interact after the terminal answer: %d", w.Code)
	}
	// Wrong codes are limited per client (3 were sent above): then 429 with Retry-After,
	// even for a code that exists.
	rec2 := &chainRecord{handler: h, expires: h.now().Add(time.Minute)}
	if err := st.chains.add(rec2, h.now()); err != nil {
		t.Fatal(err)
	}
	for range chainWrongCodes - 3 {
		serve("GET", PathChainInteract+"?code=ZZZZZZZZ")
	}
	if w := serve("GET", PathChainInteract+"?code="+rec2.code); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d wrong codes: %d %v", chainWrongCodes, w.Code, w.Header())
	}
}

// TestServeChainedSwapsResponse: the backend ran into a downstream consent through the
// egress (the interaction is on its handle) and answered 503; the agent gets our 202.
func TestServeChainedSwapsResponse(t *testing.T) {
	h, st, _ := chainHandler(t)
	h.MaxBody = 1 << 20
	h.logger = zapNop()
	signer, _ := h.agentSigner(t.Context())
	hd := &egress.Handle{Expiry: time.Now().Add(time.Hour), Resource: h.Resource, Signer: signer}
	res := testResult(signer)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		b, _ := io.ReadAll(r.Body)
		if string(b) != "payload" {
			t.Errorf("backend body %q", b)
		}
		hd.Record(&egress.Interaction{Pending: &agent.PendingError{Code: "X"}})
		w.Header().Set("X-Backend", "leak")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"interaction_required"}`))
		return nil
	})
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://api.example/orders?x=1", strings.NewReader("payload"))
	r.RequestURI = "/orders?x=1" // origin-form, as a server receives it
	if err := h.serveChained(w, r, res, hd, next); err != nil {
		t.Fatal(err)
	}
	loc := w.Header().Get("Location")
	if w.Code != http.StatusAccepted || w.Header().Get("X-Backend") != "" || !strings.HasPrefix(loc, h.Resource+PathChainPending) ||
		!strings.Contains(w.Body.String(), `"interaction_endpoint":"`+h.Resource+PathChainInteract+`"`) || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
	rec := st.chains.get(strings.TrimPrefix(loc, h.Resource+PathChainPending))
	if rec == nil || rec.req.method != "POST" || rec.req.uri != "/orders?x=1" || string(rec.req.body) != "payload" {
		t.Fatalf("chain record %+v", rec)
	}
}

func zapNop() *zap.Logger { return zap.NewNop() }

func testResult(s *keys.Signer) *reqverify.Result {
	return &reqverify.Result{Key: s.Public, Agent: "https://agent.example", Level: reqverify.LevelAuthorized}
}
