package assertion

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
)

// gateway serves the JWKS of a fresh key and returns a Verifier pointed at it.
func gateway(t *testing.T) (*keys.Signer, Verifier) {
	t.Helper()
	s, err := keys.Generate(keys.AlgEd25519, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Public.KID = s.Public.Thumbprint[:16]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(keystore.JWKS(s.Public))
	}))
	t.Cleanup(srv.Close)
	return s, Verifier{JWKSURL: srv.URL + PathJWKS, Audience: "origin.example"}
}

func claims(now time.Time) Claims {
	return Claims{Issuer: "https://gw.example", Audience: "origin.example", Method: "GET", Path: "/data",
		Level: "identity", Scheme: "jwks_uri", Agent: "https://agent.example", JKT: "abc", IssuedAt: now.Unix()}
}

func TestVerify(t *testing.T) {
	s, v := gateway(t)
	other, _ := keys.Generate(keys.AlgEd25519, "")
	other.Public.KID = s.Public.KID // same kid, wrong key
	now := time.Now()
	tests := []struct {
		name   string
		signer *keys.Signer
		edit   func(*Claims)
		method string
		path   string
		noHdr  bool
		wantOK bool
	}{
		{name: "accepted", signer: s, wantOK: true},
		{name: "forged X-Aauth-* without assertion", signer: s, noHdr: true},
		{name: "wrong aud", signer: s, edit: func(c *Claims) { c.Audience = "other.example" }},
		{name: "expired", signer: s, edit: func(c *Claims) { c.IssuedAt = now.Add(-3 * time.Minute).Unix() }},
		{name: "within skew", signer: s, edit: func(c *Claims) { c.IssuedAt = now.Add(-90 * time.Second).Unix() }, wantOK: true},
		{name: "method mismatch", signer: s, method: http.MethodDelete},
		{name: "path mismatch", signer: s, path: "/admin"},
		{name: "wrong key", signer: other},
		{name: "lifetime too long", signer: s, edit: func(c *Claims) { c.Expiry = now.Add(time.Hour).Unix() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := claims(now)
			if tt.edit != nil {
				tt.edit(&c)
			}
			tok, err := Sign(tt.signer, c, now)
			if err != nil {
				t.Fatal(err)
			}
			method, path := "GET", "/data"
			if tt.method != "" {
				method = tt.method
			}
			if tt.path != "" {
				path = tt.path
			}
			r := httptest.NewRequest(method, "http://origin.example"+path, nil)
			r.Header.Set("X-Aauth-Agent", "https://agent.example")
			if !tt.noHdr {
				r.Header.Set(DefaultHeader, tok)
			}
			got, err := v.Verify(r)
			if tt.wantOK != (err == nil) {
				t.Fatalf("Verify: %v, want ok=%v", err, tt.wantOK)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal does not wrap ErrInvalid: %v", err)
			}
			if tt.wantOK && (got.Agent != c.Agent || got.ID == "" || got.Expiry-got.IssuedAt != 60) {
				t.Fatalf("claims %+v", got)
			}
		})
	}
}

func TestVerifyRejectsHeader(t *testing.T) {
	s, v := gateway(t)
	now := time.Now()
	tok, _ := Sign(s, claims(now), now)
	for name, raw := range map[string]string{
		"not a jws":   "abc",
		"alg none":    "eyJhbGciOiJub25lIiwidHlwIjoiYWF1dGgtYXNzZXJ0aW9uK2p3dCIsImtpZCI6IngifQ.e30.",
		"tampered":    tok[:len(tok)-4] + "AAAA",
		"wrong typ":   "eyJhbGciOiJFZERTQSIsInR5cCI6Imp3dCIsImtpZCI6IngifQ.e30.AA",
		"unknown kid": "eyJhbGciOiJFZERTQSIsInR5cCI6ImFhdXRoLWFzc2VydGlvbitqd3QiLCJraWQiOiJub3BlIn0." + "e30.AA",
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://origin.example/data", nil)
			r.Header.Set(DefaultHeader, raw)
			if _, err := v.Verify(r); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestMiddleware(t *testing.T) {
	s, v := gateway(t)
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := FromContext(r.Context())
		_, _ = w.Write([]byte(c.Agent))
	}))
	now := time.Now()
	tok, _ := Sign(s, claims(now), now)
	for _, tc := range []struct {
		tok  string
		want int
	}{{tok, 200}, {"", 401}} {
		r := httptest.NewRequest("GET", "http://origin.example/data", nil)
		if tc.tok != "" {
			r.Header.Set(DefaultHeader, tc.tok)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Fatalf("status %d, want %d", w.Code, tc.want)
		}
	}
}

// TestVerifySingleUse: with Seen, an assertion is accepted once; without it, it is a
// bearer credential until it expires.
func TestVerifySingleUse(t *testing.T) {
	s, v := gateway(t)
	tok, err := Sign(s, claims(time.Now()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := func() *http.Request {
		r := httptest.NewRequest("GET", "http://origin.example/data", nil)
		r.Header.Set(DefaultHeader, tok)
		return r
	}
	for i := range 2 {
		if _, err := v.Verify(req()); err != nil {
			t.Fatalf("without Seen, use %d: %v", i+1, err)
		}
	}
	v.Seen = replay.New(100)
	if _, err := v.Verify(req()); err != nil {
		t.Fatalf("with Seen, first use: %v", err)
	}
	if _, err := v.Verify(req()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("with Seen, second use: %v, want a refusal", err)
	}
	// A forged token never takes a place in the store.
	other, _ := keys.Generate(keys.AlgEd25519, "")
	other.Public.KID = s.Public.KID
	forged, _ := Sign(other, claims(time.Now()), time.Now())
	r := httptest.NewRequest("GET", "http://origin.example/data", nil)
	r.Header.Set(DefaultHeader, forged)
	if _, err := v.Verify(r); err == nil || v.Seen.Len() != 1 {
		t.Fatalf("forged: %v, store holds %d", err, v.Seen.Len())
	}
}
