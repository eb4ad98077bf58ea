package caddyaauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// requestRing replays pre-signed requests through the handler. Each is served as Caddy
// serves a request: with a fresh request context (replacer, vars; PrepareRequest), and
// with the headers it was received with: the handler edits the header map of a request
// it passes (identity headers in, signature headers out), as it does with the fresh map
// net/http builds for every request, so the ring puts them back without allocating.
// BenchmarkGateway/caddy-prepare is the cost of that per-request setup alone.
type requestRing struct {
	reqs []*http.Request // without Caddy's request context
	hdrs []http.Header
	w    *statusWriter
}

// statusWriter is a reusable ResponseWriter that keeps only the status.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header { return w.h }
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	return len(p), nil
}
func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func newRequestRing(reqs ...*http.Request) *requestRing {
	r := &requestRing{w: &statusWriter{h: http.Header{}}}
	for _, req := range reqs {
		r.reqs = append(r.reqs, req.WithContext(context.Background()))
		r.hdrs = append(r.hdrs, req.Header.Clone())
	}
	return r
}

// next readies request i (modulo the ring) as Caddy's server would.
func (r *requestRing) next(i int) *http.Request {
	j := i % len(r.reqs)
	req := r.reqs[j]
	clear(req.Header)
	maps.Copy(req.Header, r.hdrs[j])
	clear(r.w.h)
	r.w.code = 0
	return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), r.w, nil)
}

// serve runs request i (modulo the ring) through h and returns the status it got: 200
// when next was reached, else what the handler wrote or returned.
func (r *requestRing) serve(h *Handler, i int) int {
	req := r.next(i)
	reached := false
	err := h.ServeHTTP(r.w, req, benchNext(&reached))
	switch {
	case reached:
		return 200
	case err != nil:
		return 500
	}
	return r.w.code
}

func benchNext(reached *bool) okHandler { return okHandler{reached} }

type okHandler struct{ reached *bool }

func (o okHandler) ServeHTTP(http.ResponseWriter, *http.Request) error { *o.reached = true; return nil }

func runRing(b *testing.B, h *Handler, ring *requestRing, want int) {
	b.Helper()
	withMetrics(b, h)
	if st := ring.serve(h, 0); st != want {
		b.Fatalf("first request: status %d, want %d", st, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		if st := ring.serve(h, i); st != want {
			b.Fatalf("request %d: status %d, want %d", i, st, want)
		}
	}
	reportCPU(b, cpu)
}

// processCPU is the CPU time this process has used, user and system, on every thread
// (GC included): unlike sec/op it hardly changes with what else the machine runs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time per iteration since start as cpu-ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}

// withMetrics gives h the verdict metrics a running Caddy gives it (every config has a
// metrics registry).
func withMetrics(tb testing.TB, h *Handler) {
	m, err := metricsFor(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	h.metrics, h.server, h.series = m, "srv0", new(handlerSeries)
}

// jwksPublisher serves an agent's metadata and JWKS on loopback (discovery in dev mode).
func jwksPublisher(tb testing.TB, s *keys.Signer) string {
	tb.Helper()
	var id string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		switch r.URL.Path {
		case "/.well-known/aauth-agent.json":
			_ = json.NewEncoder(w).Encode(map[string]string{"agent": id, "jwks_uri": id + "/jwks.json"})
		case "/jwks.json":
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{s.Public.Members()}})
		default:
			http.NotFound(w, r)
		}
	}))
	tb.Cleanup(srv.Close)
	id = srv.URL
	return id
}

// BenchmarkGateway is the whole gateway decision (ServeHTTP) per kind of request; the
// unit to compare with is BenchmarkEd25519Verify.
func BenchmarkGateway(b *testing.B) {
	b.Run("hwk", func(b *testing.B) {
		h := benchHandler(b)
		s, _ := keys.Generate(keys.AlgEd25519, "")
		runRing(b, h, newRequestRing(signedRequest(b, s)), 200)
	})
	b.Run("jwks_uri", func(b *testing.B) {
		h := benchHandler(b)
		h.Require = RequireIdentity
		h.verifier.Dev = true
		h.verifier.Discovery = discovery.New(discovery.Config{Dev: true})
		b.Cleanup(h.verifier.Discovery.Close)
		s, _ := keys.Generate(keys.AlgEd25519, "k1")
		id := jwksPublisher(b, s)
		key := httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: id}, {Name: "kid", Value: "k1"}}}
		runRing(b, h, newRequestRing(keyedRequest(b, s, key, "GET", "http://api.example/data?x=1", time.Now())), 200)
	})
	for _, mode := range []string{ReplayOff, ReplayUnsafe} {
		b.Run("authtoken/replay="+mode, func(b *testing.B) {
			h, ag, tok := cachedTokenRoute(b, mode)
			// GET: the default replay policy (unsafe) does not make it single-use.
			runRing(b, h, newRequestRing(jwtRequest(b, ag, tok, "GET", "http://api.example/data?x=1", time.Now())), 200)
		})
	}
	b.Run("caddy-prepare", func(b *testing.B) {
		// Caddy's own per-request setup that every ring request includes: subtract it.
		s, _ := keys.Generate(keys.AlgEd25519, "")
		ring := newRequestRing(signedRequest(b, s))
		b.ReportAllocs()
		cpu := processCPU()
		for i := 0; b.Loop(); i++ {
			_ = ring.next(i)
		}
		reportCPU(b, cpu)
	})
	b.Run("refuse/garbage", func(b *testing.B) {
		h := benchHandler(b)
		req := httptest.NewRequest("GET", "http://api.example/data", nil)
		req.Header.Set("Signature-Input", `sig=("@method" "@authority");created=notanumber`)
		req.Header.Set("Signature", "sig=:AAAA:")
		req.Header.Set("Signature-Key", `sig=(scheme=hwk kty="OKP"`)
		runRing(b, h, newRequestRing(prepared(req)), 401)
	})
	b.Run("refuse/expired_created", func(b *testing.B) {
		h := benchHandler(b)
		s, _ := keys.Generate(keys.AlgEd25519, "")
		runRing(b, h, newRequestRing(keyedRequest(b, s, hwkKey(s), "GET", "http://api.example/data?x=1", time.Now().Add(-time.Hour))), 401)
	})
	b.Run("refuse/bad_signature", func(b *testing.B) {
		h := benchHandler(b)
		s, _ := keys.Generate(keys.AlgEd25519, "")
		req := signedRequest(b, s)
		req.Header.Set("Signature", "sig=:"+base64.StdEncoding.EncodeToString(make([]byte, 64))+":")
		runRing(b, h, newRequestRing(req), 401)
	})
}

// BenchmarkAuthTokenRing is the cached auth-token path with a ring of distinct signed
// POSTs (replay off), tokens from 1 and 100 agents: cache hits spread over entries.
func BenchmarkAuthTokenRing(b *testing.B) {
	for _, agents := range []int{1, 100} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) {
			as, _ := keys.Generate(keys.AlgEd25519, "as-1")
			h := authTokenHandler(b, ReplayOff, as, mintAuthToken(b, as, mustKey(b).Public, time.Now(), time.Hour), time.Now)
			h.verifier.Tokens = token.NewCache(10000)
			var reqs []*http.Request
			for a := 0; a < agents; a++ {
				ag := mustKey(b)
				tok := mintAuthToken(b, as, ag.Public, time.Now(), time.Hour)
				putVerified(b, h.verifier, as, tok)
				for i := 0; i < 1024/agents; i++ {
					reqs = append(reqs, jwtRequest(b, ag, tok, "POST", fmt.Sprintf("http://api.example/data/%d/%d", a, i), time.Now()))
				}
			}
			runRing(b, h, newRequestRing(reqs...), 200)
		})
	}
}

// cachedTokenRoute is an auth-token route under the replay policy mode whose cache holds
// tok, an auth token bound to the agent key ag.
func cachedTokenRoute(tb testing.TB, mode string) (h *Handler, ag *keys.Signer, tok string) {
	as, _ := keys.Generate(keys.AlgEd25519, "as-1")
	ag, _ = keys.Generate(keys.AlgEd25519, "")
	tok = mintAuthToken(tb, as, ag.Public, time.Now(), time.Hour)
	return authTokenHandler(tb, mode, as, tok, time.Now), ag, tok
}

func mustKey(tb testing.TB) *keys.Signer {
	s, err := keys.Generate(keys.AlgEd25519, "")
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func putVerified(tb testing.TB, v *reqverify.Verifier, as *keys.Signer, tok string) {
	tb.Helper()
	t, err := token.VerifyAuthToken(tb.Context(), tok, token.Options{Now: time.Now(), Audience: benchResource, Issuers: []string{benchIssuer}},
		func(context.Context, string, string) (*keys.PublicKey, error) { return as.Public, nil })
	if err != nil {
		tb.Fatal(err)
	}
	v.Tokens.Put(t)
}

func hwkKey(s *keys.Signer) httpsig.SigKey {
	key := httpsig.SigKey{Scheme: httpsig.SchemeHWK}
	for _, k := range []string{"kty", "crv", "x"} {
		key.Params = append(key.Params, httpsig.Param{Name: k, Value: s.Public.Members()[k].(string)})
	}
	return key
}

func keyedRequest(tb testing.TB, s *keys.Signer, key httpsig.SigKey, method, url string, created time.Time) *http.Request {
	tb.Helper()
	req := httptest.NewRequest(method, url, nil)
	if err := httpsig.Sign(req, s, key, httpsig.SignOptions{Created: created}); err != nil {
		tb.Fatal(err)
	}
	return prepared(req)
}

// prepared gives req the request context Caddy's server gives it (replacer, vars).
func prepared(req *http.Request) *http.Request {
	return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
}

// BenchmarkSanitizeRequest is the server guard's work on every request of a server with
// an aauth handler, for a request that carries no identity header.
func BenchmarkSanitizeRequest(b *testing.B) {
	r := httptest.NewRequest("GET", "/data?x=1", nil)
	for k, v := range map[string]string{"Connection": "keep-alive", "User-Agent": "bench/1", "Accept": "*/*",
		"Accept-Encoding": "gzip", "Signature-Input": "x", "Signature": "x", "Signature-Key": "x"} {
		r.Header.Set(k, v)
	}
	renamed := []string{"X-Remote-User"}
	b.ReportAllocs()
	for b.Loop() {
		sanitizeRequest(r, renamed)
	}
}
