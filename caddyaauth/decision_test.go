package caddyaauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// observedHandler is an auth-token route (replay unsafe) whose decision lines are
// captured at Debug and whose metrics go to a registry of its own.
func observedHandler(t *testing.T) (*Handler, *observer.ObservedLogs, *prometheus.Registry, *keys.Signer, string) {
	t.Helper()
	as, _ := keys.Generate(keys.AlgEd25519, "as-1")
	ag, _ := keys.Generate(keys.AlgEd25519, "")
	tok := mintAuthToken(t, as, ag.Public, time.Now(), time.Hour)
	h := authTokenHandler(t, ReplayUnsafe, as, tok, time.Now)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	reg := prometheus.NewRegistry()
	m, err := metricsFor(reg)
	if err != nil {
		t.Fatal(err)
	}
	h.metrics, h.server = m, "srv0"
	h.verifier.Tokens.OnLookup = m.tokenLookup
	return h, logs, reg, ag, tok
}

// TestDecisionLogRefusal: a refused signed request (a replayed POST) logs one Info line
// with the resource, level, scheme, agent, key thumbprint, error code, duration and
// remote address, sets the error placeholders, and carries neither the token nor the
// signature; the pass before it logged one Debug line.
func TestDecisionLogRefusal(t *testing.T) {
	h, logs, _, ag, tok := observedHandler(t)
	req := jwtRequest(t, ag, tok, "POST", "http://api.example/data", time.Now())
	sig, sigKey := req.Header.Get("Signature"), req.Header.Get("Signature-Key")
	if st, ok := serve(h, req.Clone(t.Context())); !ok {
		t.Fatalf("first POST: %d", st)
	}
	repl := caddy.NewReplacer()
	replayed := caddyhttp.PrepareRequest(req.Clone(t.Context()), repl, httptest.NewRecorder(), nil)
	caddyhttp.SetVar(replayed.Context(), caddyhttp.ClientIPVarKey, "203.0.113.5") // behind a trusted proxy
	if st, _ := serve(h, replayed); st != http.StatusUnauthorized {
		t.Fatalf("replay: %d", st)
	}
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d lines, want 2: %v", len(entries), entries)
	}
	pass, refusal := entries[0], entries[1]
	if pass.Level != zapcore.DebugLevel || pass.Message != "aauth passed" || pass.ContextMap()["error"] != CodeOK {
		t.Errorf("pass line: %s %q %v", pass.Level, pass.Message, pass.ContextMap())
	}
	f := refusal.ContextMap()
	if refusal.Level != zapcore.InfoLevel || refusal.Message != "aauth refused" {
		t.Errorf("refusal line: %s %q", refusal.Level, refusal.Message)
	}
	want := map[string]any{
		"resource": benchResource, "require": RequireAuthToken, "status": int64(401), "error": wire.CodeInvalidSignature,
		"scheme": "jwt", "agent": "https://agent.example", "jkt": ag.Public.Thumbprint, "remote_ip": "192.0.2.1",
		"client_ip": "203.0.113.5",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, f[k], f[k], v)
		}
	}
	if d, ok := f["duration"].(time.Duration); !ok || d <= 0 {
		t.Errorf("duration %v", f["duration"])
	}
	for _, e := range entries {
		line := e.Message
		for _, v := range e.ContextMap() {
			line += " " + toString(v)
		}
		for _, secret := range []string{tok, sig, sigKey, strings.Split(tok, ".")[2]} {
			if strings.Contains(line, secret) {
				t.Fatalf("a token or signature is in the log line: %s", line)
			}
		}
	}
	if v, _ := repl.GetString("http.aauth.error"); v != wire.CodeInvalidSignature {
		t.Errorf("{http.aauth.error} = %q", v)
	}
	if v, _ := repl.GetString("http.aauth.error_description"); !strings.Contains(v, "already used") {
		t.Errorf("{http.aauth.error_description} = %q", v)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// TestDecisionLogPasses: log_passes logs passes at Info; an unsigned request is one
// Info refusal without agent fields.
func TestDecisionLogPasses(t *testing.T) {
	h, logs, _, ag, tok := observedHandler(t)
	h.LogPasses = true
	if st, ok := serve(h, jwtRequest(t, ag, tok, "GET", "http://api.example/data", time.Now())); !ok {
		t.Fatalf("GET: %d", st)
	}
	unsigned := jwtRequest(t, ag, tok, "GET", "http://api.example/data", time.Now())
	unsigned.Header.Del("Signature")
	unsigned.Header.Del("Signature-Input")
	if st, _ := serve(h, unsigned); st != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", st)
	}
	got := logs.FilterLevelExact(zapcore.InfoLevel).All()
	if len(got) != 2 || got[0].Message != "aauth passed" || got[1].Message != "aauth refused" {
		t.Fatalf("lines %v", got)
	}
	if f := got[1].ContextMap(); f["error"] != wire.CodeInvalidRequest || f["agent"] != nil {
		t.Errorf("unsigned refusal fields %v", f)
	}
}

// TestVerdictMetrics reads the registry: a pass counts as code ok, a refusal under its
// error code, and every verdict is observed in the duration histogram.
func TestVerdictMetrics(t *testing.T) {
	h, _, reg, ag, tok := observedHandler(t)
	req := jwtRequest(t, ag, tok, "POST", "http://api.example/data", time.Now())
	serve(h, req.Clone(t.Context()))
	serve(h, req.Clone(t.Context()))
	serve(h, req.Clone(t.Context()))
	counts, observed := gatherVerdicts(t, reg)
	if counts["srv0/"+benchResource+"/auth-token/ok"] != 1 || counts["srv0/"+benchResource+"/auth-token/invalid_signature"] != 2 || observed != 3 {
		t.Fatalf("counts %v, %d observations", counts, observed)
	}
	// authTokenHandler put the token in the cache: three hits; another token is a miss.
	as2, _ := keys.Generate(keys.AlgEd25519, "as-2")
	other := mintAuthToken(t, as2, ag.Public, time.Now(), 30*time.Minute)
	serve(h, jwtRequest(t, ag, other, "GET", "http://api.example/data", time.Now()))
	counts, _ = gatherVerdicts(t, reg)
	if counts["token_cache/miss"] != 1 || counts["token_cache/hit"] != 3 {
		t.Fatalf("token cache lookups %v", counts)
	}
}

func gatherVerdicts(t *testing.T, reg *prometheus.Registry) (map[string]float64, uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts, observed := map[string]float64{}, uint64(0)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch mf.GetName() {
			case "caddy_aauth_verdicts_total":
				counts[l["server"]+"/"+l["resource"]+"/"+l["require"]+"/"+l["code"]] += m.GetCounter().GetValue()
			case "caddy_aauth_token_cache_lookups_total":
				counts["token_cache/"+l["result"]] += m.GetCounter().GetValue()
			case "caddy_aauth_verify_duration_seconds":
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return counts, observed
}

// TestMetricsRegisterOnce: collectors already in a registry (a second aauth handler in
// the same config) are reused, not an error.
func TestMetricsRegisterOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := metricsFor(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := metricsFor(reg)
	if err != nil || b.verdicts != a.verdicts || b.duration != a.duration {
		t.Fatalf("second registration: %v, same=%v", err, b != nil && b.verdicts == a.verdicts)
	}
	if m, err := metricsFor(nil); m != nil || err != nil {
		t.Fatal("nil registry")
	}
	var none *gatewayMetrics
	none.observe("s", "res", "r", "c", time.Second) // no panic
	none.tokenLookup(true)
	none.limited("x")
}

// TestDiscoveryCollector: the discovery client's counters are gathered from the
// registry, and a second registration in the same registry is no error.
func TestDiscoveryCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	c := discovery.New(discovery.Config{})
	t.Cleanup(c.Close)
	for range 2 {
		if err := registerDiscovery(reg, c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"caddy_aauth_discovery_fetches_total", "caddy_aauth_discovery_cache_hits_total",
		"caddy_aauth_discovery_stale_served_total", "caddy_aauth_discovery_cached_documents"} {
		if !names[n] {
			t.Errorf("%s not gathered (%v)", n, names)
		}
	}
	if err := registerDiscovery(nil, c); err != nil {
		t.Fatal(err)
	}
}

// TestLogPassesCaddyfile: log_passes is a flag; an argument or a repeat is an error.
func TestLogPassesCaddyfile(t *testing.T) {
	cases := []struct {
		in string
		ok bool
	}{
		{"aauth {\n\tlog_passes\n}", true},
		{"aauth {\n\tlog_passes yes\n}", false},
		{"aauth {\n\tlog_passes\n\tlog_passes\n}", false},
	}
	for _, c := range cases {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if (err == nil) != c.ok || (c.ok && !h.LogPasses) {
			t.Errorf("%q: err %v, log_passes %v", c.in, err, h.LogPasses)
		}
	}
}

// A request's verdict lives in Caddy's request vars (no copy of the request), is shared
// by the aauth handlers of the request, and is fresh in the error routes, which run
// after the primary routes decided; a request without Caddy's vars carries it in its
// context.
func TestVerdictCarrier(t *testing.T) {
	r := prepared(httptest.NewRequest("GET", "http://api.example/", nil))
	r1, v1 := withVerdict(r)
	if r1 != r {
		t.Fatal("a request with Caddy's vars was copied")
	}
	if _, v := withVerdict(r); v != v1 || verdictOf(r) != v1 {
		t.Fatal("a second handler of the request got another verdict")
	}
	v1.done = true
	inErrors := r.WithContext(context.WithValue(r.Context(), caddyhttp.ErrorCtxKey, errors.New("upstream failed")))
	_, v2 := withVerdict(inErrors)
	if v2 == v1 || v2.done || !v2.madeInErrors() {
		t.Fatalf("error routes reused the primary routes' verdict: %+v", v2)
	}
	if _, v := withVerdict(inErrors); v != v2 {
		t.Fatal("a second handler in the error routes got another verdict")
	}

	bare := httptest.NewRequest("GET", "http://api.example/", nil)
	r3, v3 := withVerdict(bare)
	if r3 == bare || verdictOf(r3) != v3 {
		t.Fatal("a request without vars does not carry its verdict in its context")
	}
	if verdictOf(bare) == v3 {
		t.Fatal("the original request saw the verdict")
	}
}
