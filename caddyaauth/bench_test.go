package caddyaauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// benchHandler is a pseudonym-level handler wired without a running Caddy.
func benchHandler(tb testing.TB) *Handler {
	h := &Handler{Require: RequirePseudonym, MaxBody: defaultMaxBody, logger: zap.NewNop(), now: time.Now}
	h.verifier = &reqverify.Verifier{
		Discovery: discovery.New(discovery.Config{}),
		Limits:    httpsig.DefaultLimits,
		Now:       time.Now,
		Tokens:    token.NewCache(100),
	}
	tb.Cleanup(h.verifier.Discovery.Close)
	return h
}

var okNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })

func signedRequest(tb testing.TB, s *keys.Signer) *http.Request {
	req := httptest.NewRequest("GET", "http://api.example/data?x=1", nil)
	key := httpsig.SigKey{Scheme: httpsig.SchemeHWK}
	for _, k := range []string{"kty", "crv", "x"} {
		key.Params = append(key.Params, httpsig.Param{Name: k, Value: s.Public.Members()[k].(string)})
	}
	if err := httpsig.Sign(req, s, key, httpsig.SignOptions{}); err != nil {
		tb.Fatal(err)
	}
	return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
}

func TestHandlerHWKAndReject(t *testing.T) {
	h := benchHandler(t)
	s, _ := keys.Generate(keys.AlgEd25519, "")
	req := signedRequest(t, s)
	req.Header.Set("X-Aauth-Agent", "forged")
	var seen http.Header
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { seen = r.Header.Clone(); return nil })
	if err := h.ServeHTTP(httptest.NewRecorder(), req, next); err != nil || seen == nil {
		t.Fatalf("valid request not passed on: %v", err)
	}
	if seen.Get("X-Aauth-Agent") != "" || seen.Get("X-Aauth-Level") != "pseudonym" || seen.Get("X-Aauth-Key-Thumbprint") != s.Public.Thumbprint {
		t.Fatalf("upstream headers %v", seen)
	}
	bad := signedRequest(t, s)
	bad.Header.Set("Signature", "sig=:AAAA:")
	w := httptest.NewRecorder()
	seen = nil
	//lint:ignore SA1008 the handler writes the exact spelling "AAuth" into the header map; the test reads that key
	if err := h.ServeHTTP(w, bad, next); err != nil || seen != nil || w.Code != 401 || w.Header()["AAuth"][0] != "require=pseudonym" {
		t.Fatalf("bad request: err=%v code=%d passed=%v", err, w.Code, seen != nil)
	}
}

// BenchmarkHandlerHWK is the whole gateway decision for a valid hwk request: strip,
// parse, policy, base, Ed25519 verify, identity headers.
func BenchmarkHandlerHWK(b *testing.B) {
	h := benchHandler(b)
	s, _ := keys.Generate(keys.AlgEd25519, "")
	req := signedRequest(b, s)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, req, okNext); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerRejectGarbage is the cost of refusing malformed signature headers: it
// must stay far below one signature verification.
func BenchmarkHandlerRejectGarbage(b *testing.B) {
	h := benchHandler(b)
	req := httptest.NewRequest("GET", "http://api.example/data", nil)
	req.Header.Set("Signature-Input", `sig=("@method" "@authority");created=notanumber`)
	req.Header.Set("Signature", "sig=:AAAA:")
	req.Header.Set("Signature-Key", `sig=(scheme=hwk kty="OKP"`)
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), httptest.NewRecorder(), nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = h.ServeHTTP(httptest.NewRecorder(), req, okNext)
	}
}

// TestIdentityPlaceholders: a passed request's next handler reads the verified identity
// from the {http.aauth.*} and {http.auth.user.*} placeholders, even after another
// handler set {http.auth.user.id}; an unset user field stays unknown, and a refused
// request sets none of them.
func TestIdentityPlaceholders(t *testing.T) {
	h := benchHandler(t)
	s, _ := keys.Generate(keys.AlgEd25519, "")
	req := signedRequest(t, s)
	repl := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", "basic-auth-user")
	got := map[string]string{}
	known := map[string]bool{}
	keysToRead := []string{"http.aauth.level", "http.aauth.scheme", "http.aauth.jkt", "http.aauth.agent",
		"http.aauth.sub", "http.auth.user.id", "http.auth.user.level", "http.auth.user.sub"}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		rp := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		for _, k := range keysToRead {
			v, ok := rp.GetString(k)
			got[k], known[k] = v, ok
		}
		return nil
	})
	if err := h.ServeHTTP(httptest.NewRecorder(), req, next); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"http.aauth.level": "pseudonym", "http.aauth.scheme": "hwk", "http.aauth.jkt": s.Public.Thumbprint,
		"http.aauth.agent": "", "http.aauth.sub": "", "http.auth.user.id": s.Public.Thumbprint, "http.auth.user.level": "pseudonym"}
	for k, v := range want {
		if got[k] != v || !known[k] {
			t.Errorf("{%s} = %q (known %v), want %q", k, got[k], known[k], v)
		}
	}
	if known["http.auth.user.sub"] {
		t.Errorf("{http.auth.user.sub} is known without a user: %q", got["http.auth.user.sub"])
	}

	bad := signedRequest(t, s)
	bad.Header.Set("Signature", "sig=:AAAA:")
	_ = h.ServeHTTP(httptest.NewRecorder(), bad, next)
	brepl := bad.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if v, ok := brepl.GetString("http.aauth.level"); ok {
		t.Errorf("a refused request has {http.aauth.level} = %q", v)
	}
}

// TestIdentityPlaceholdersWithoutVerdict: setIdentity on a request that carries no
// verdict still makes the placeholders answer.
func TestIdentityPlaceholdersWithoutVerdict(t *testing.T) {
	s, _ := keys.Generate(keys.AlgEd25519, "")
	r := prepared(httptest.NewRequest("GET", "http://api.example/", nil))
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	(&Handler{}).setIdentity(r, repl, &reqverify.Result{Level: reqverify.LevelPseudonym, Scheme: "hwk", Key: s.Public})
	if v, _ := repl.GetString("http.aauth.jkt"); v != s.Public.Thumbprint {
		t.Errorf("{http.aauth.jkt} = %q", v)
	}
	if v, _ := repl.GetString("http.auth.user.id"); v != s.Public.Thumbprint {
		t.Errorf("{http.auth.user.id} = %q", v)
	}
}
