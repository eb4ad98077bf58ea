package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

const testSecret = "s3cret-for-tests"

// newServer starts a Server; configure, when given, adjusts it before it serves (so no
// field is written while a handler may read it).
func newServer(t *testing.T, configure ...func(*Server)) (*Server, *httptest.Server) {
	t.Helper()
	s := &Server{
		Signer:         genKey(t, keys.AlgEd25519, "key-1"),
		ID:             "https://agent.example",
		DelegateSecret: testSecret,
		Now:            func() time.Time { return time.Unix(1_800_000_000, 0) },
	}
	for _, f := range configure {
		f(s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func call(t *testing.T, method, url, auth, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestServerMetadata(t *testing.T) {
	for _, tc := range []struct {
		name          string
		clientName    string
		clarification bool
		want          map[string]any
	}{
		{"minimal", "", false, map[string]any{"agent": "https://agent.example", "jwks_uri": "https://agent.example/jwks.json"}},
		{"full", "Demo agent", true, map[string]any{"agent": "https://agent.example", "jwks_uri": "https://agent.example/jwks.json",
			"client_name": "Demo agent", "clarification_supported": true}},
	} {
		for _, path := range []string{PathMetadata, PathMetadataBare} {
			t.Run(tc.name+path, func(t *testing.T) {
				_, srv := newServer(t, func(s *Server) {
					s.ClientName, s.ClarificationSupported = tc.clientName, tc.clarification
				})
				resp, b := call(t, "GET", srv.URL+path, "", "")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				if cc := resp.Header.Get("Cache-Control"); cc != "max-age=300" {
					t.Errorf("Cache-Control %q", cc)
				}
				var got map[string]any
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got %v, want %v", got, tc.want)
				}
			})
		}
	}
}

func TestServerJWKS(t *testing.T) {
	s, srv := newServer(t)
	resp, b := call(t, "GET", srv.URL+PathJWKS, "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("%s: %v", b, err)
	}
	k, err := keys.FromAny(set.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	if k.KID != "key-1" || !k.Equal(s.Signer.Public) {
		t.Errorf("published key %+v", k)
	}
	if _, hasD := set.Keys[0]["d"]; hasD {
		t.Fatal("JWKS leaks the private key")
	}
	resp, _ = call(t, "HEAD", srv.URL+PathJWKS, "", "")
	if resp.StatusCode != 200 {
		t.Errorf("HEAD status %d", resp.StatusCode)
	}
}

func delegateBody(t *testing.T, pub map[string]any, aud any) string {
	t.Helper()
	m := map[string]any{"sub": "delegate-1", "cnf_jwk": pub}
	if aud != nil {
		m["aud"] = aud
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServerDelegateToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		aud     any
		wantAud token.Audience
	}{
		{"no aud", nil, nil},
		{"aud string", "https://as.example", token.Audience{"https://as.example"}},
		{"aud array", []string{"https://as.example", "https://api.example"}, token.Audience{"https://as.example", "https://api.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newServer(t, func(s *Server) { s.TokenLifetime = 10 * time.Minute })
			del := genKey(t, keys.AlgECDSAP256, "delegate-key-1")
			resp, b := call(t, "POST", srv.URL+PathDelegate, "Bearer "+testSecret, delegateBody(t, del.Public.Members(), tc.aud))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
			var out DelegateResponse
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if out.ExpiresIn != 600 {
				t.Errorf("expires_in %d", out.ExpiresIn)
			}
			aud := ""
			if len(tc.wantAud) > 0 {
				aud = tc.wantAud[0]
			}
			tok, err := token.VerifyAgentToken(context.Background(), out.AgentToken,
				token.Options{Now: s.Now(), Audience: aud},
				func(_ context.Context, iss, kid string) (*keys.PublicKey, error) {
					if iss != s.ID || kid != "key-1" {
						return nil, errors.New("unexpected issuer or kid")
					}
					return s.Signer.Public, nil
				})
			if err != nil {
				t.Fatal(err)
			}
			c := tok.Claims
			if c.Issuer != s.ID || c.Subject != "delegate-1" || c.ID == "" ||
				c.IssuedAt != 1_800_000_000 || c.Expiry != 1_800_000_600 ||
				!c.Confirmation.Key.Equal(del.Public) || !reflect.DeepEqual(c.Audience, tc.wantAud) {
				t.Errorf("claims %+v", c)
			}
			if tok.Header.Typ != token.TypAgent {
				t.Errorf("typ %q", tok.Header.Typ)
			}
		})
	}
}

func TestServerErrors(t *testing.T) {
	del := genKey(t, keys.AlgEd25519, "d1")
	pub := del.Public.Members()
	priv := map[string]any{}
	pb, _ := del.MarshalPrivateJWK()
	_ = json.Unmarshal(pb, &priv)
	good := delegateBody(t, pub, nil)
	bearer := "Bearer " + testSecret
	tests := []struct {
		name     string
		noSecret bool
		method   string
		path     string
		auth     string
		body     string
		status   int
		code     string
	}{
		{"unknown path", false, "GET", "/nope", "", "", 404, "not_found"},
		{"root", false, "GET", "/", "", "", 404, "not_found"},
		{"metadata POST", false, "POST", PathMetadata, "", "{}", 405, "invalid_request"},
		{"metadata bare DELETE", false, "DELETE", PathMetadataBare, "", "", 405, "invalid_request"},
		{"jwks PUT", false, "PUT", PathJWKS, "", "{}", 405, "invalid_request"},
		{"delegate disabled", true, "POST", PathDelegate, bearer, good, 404, "not_found"},
		{"delegate disabled GET", true, "GET", PathDelegate, "", "", 404, "not_found"},
		{"delegate GET", false, "GET", PathDelegate, bearer, "", 405, "invalid_request"},
		{"no authorization", false, "POST", PathDelegate, "", good, 401, "invalid_token"},
		{"wrong secret", false, "POST", PathDelegate, "Bearer nope", good, 401, "invalid_token"},
		{"secret prefix", false, "POST", PathDelegate, "Bearer " + testSecret[:5], good, 401, "invalid_token"},
		{"secret with suffix", false, "POST", PathDelegate, "Bearer " + testSecret + "x", good, 401, "invalid_token"},
		{"basic scheme", false, "POST", PathDelegate, "Basic " + testSecret, good, 401, "invalid_token"},
		{"bearer without value", false, "POST", PathDelegate, "Bearer", good, 401, "invalid_token"},
		{"bad json", false, "POST", PathDelegate, bearer, "{", 400, "invalid_request"},
		{"not an object", false, "POST", PathDelegate, bearer, `["x"]`, 400, "invalid_request"},
		{"trailing data", false, "POST", PathDelegate, bearer, good + " {}", 400, "invalid_request"},
		{"empty body", false, "POST", PathDelegate, bearer, "", 400, "invalid_request"},
		{"missing sub", false, "POST", PathDelegate, bearer, `{"cnf_jwk":{"kty":"OKP"}}`, 400, "invalid_request"},
		{"sub not a string", false, "POST", PathDelegate, bearer, `{"sub":1,"cnf_jwk":{}}`, 400, "invalid_request"},
		{"sub too long", false, "POST", PathDelegate, bearer,
			`{"sub":"` + strings.Repeat("a", 300) + `","cnf_jwk":{}}`, 400, "invalid_request"},
		{"missing cnf_jwk", false, "POST", PathDelegate, bearer, `{"sub":"d"}`, 400, "invalid_request"},
		{"cnf_jwk not an object", false, "POST", PathDelegate, bearer, `{"sub":"d","cnf_jwk":"x"}`, 400, "invalid_request"},
		{"cnf_jwk private", false, "POST", PathDelegate, bearer, delegateBody(t, priv, nil), 400, "invalid_request"},
		{"cnf_jwk symmetric", false, "POST", PathDelegate, bearer, `{"sub":"d","cnf_jwk":{"kty":"oct","k":"AAAA"}}`, 400, "invalid_request"},
		{"cnf_jwk rsa", false, "POST", PathDelegate, bearer, `{"sub":"d","cnf_jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`, 400, "invalid_request"},
		{"aud empty string", false, "POST", PathDelegate, bearer, delegateBody(t, pub, ""), 400, "invalid_request"},
		{"aud empty array", false, "POST", PathDelegate, bearer, delegateBody(t, pub, []string{}), 400, "invalid_request"},
		{"aud number", false, "POST", PathDelegate, bearer, delegateBody(t, pub, 5), 400, "invalid_request"},
		{"aud with empty member", false, "POST", PathDelegate, bearer, delegateBody(t, pub, []string{"a", ""}), 400, "invalid_request"},
		{"body over 16 KiB", false, "POST", PathDelegate, bearer,
			`{"sub":"d","pad":"` + strings.Repeat("x", 17<<10) + `","cnf_jwk":{}}`, 400, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := newServer(t, func(s *Server) {
				if tc.noSecret {
					s.DelegateSecret = ""
				}
			})
			resp, b := call(t, tc.method, srv.URL+tc.path, tc.auth, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, b)
			}
			var e map[string]string
			if err := json.Unmarshal(b, &e); err != nil || e["error"] != tc.code || e["error_description"] == "" {
				t.Fatalf("body %s, want error %q", b, tc.code)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("error without Cache-Control: no-store")
			}
			switch tc.status {
			case 405:
				if resp.Header.Get("Allow") == "" {
					t.Error("405 without Allow")
				}
			case 401:
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Error("401 without WWW-Authenticate: Bearer")
				}
			}
		})
	}
}

func TestServerValidate(t *testing.T) {
	key := genKey(t, keys.AlgEd25519, "k")
	nokid := genKey(t, keys.AlgEd25519, "")
	for _, tc := range []struct {
		name string
		s    Server
		ok   bool
	}{
		{"https", Server{Signer: key, ID: "https://agent.example"}, true},
		{"http dev with port", Server{Signer: key, ID: "http://127.0.0.1:8001"}, true},
		{"trailing slash", Server{Signer: key, ID: "https://agent.example/"}, true},
		{"no key", Server{ID: "https://agent.example"}, false},
		{"no kid", Server{Signer: nokid, ID: "https://agent.example"}, false},
		{"no id", Server{Signer: key}, false},
		{"path", Server{Signer: key, ID: "https://agent.example/a"}, false},
		{"query", Server{Signer: key, ID: "https://agent.example?x"}, false},
		{"ftp", Server{Signer: key, ID: "ftp://agent.example"}, false},
		{"userinfo", Server{Signer: key, ID: "https://u@agent.example"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestRequestDelegateToken(t *testing.T) {
	s, srv := newServer(t, func(s *Server) { s.Now = nil })
	del := genKey(t, keys.AlgEd25519, "delegate-key-1")
	ctx := context.Background()

	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + PathDelegate} {
		tok, exp, err := RequestDelegateToken(ctx, srv.Client(), base, testSecret, "delegate-7", del, []string{"https://as.example"})
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if exp != 3600 {
			t.Errorf("expires_in %d", exp)
		}
		p, err := token.Parse(tok, token.TypAgent)
		if err != nil {
			t.Fatal(err)
		}
		if p.Claims.Subject != "delegate-7" || !p.Claims.Audience.Contains("https://as.example") {
			t.Errorf("claims %+v", p.Claims)
		}
	}

	if _, _, err := RequestDelegateToken(ctx, nil, srv.URL, "wrong", "d", del, nil); err == nil ||
		!strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "invalid_token") {
		t.Errorf("wrong secret: %v", err)
	}
	if _, _, err := RequestDelegateToken(ctx, nil, srv.URL, testSecret, "", del, nil); err == nil ||
		!strings.Contains(err.Error(), "sub is required") {
		t.Errorf("missing sub: %v", err)
	}
	if _, _, err := RequestDelegateToken(ctx, nil, srv.URL, testSecret, "d", nil, nil); err == nil {
		t.Error("nil delegate key accepted")
	}

	// A server that binds the token to some other key must be caught.
	other := genKey(t, keys.AlgEd25519, "other")
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().Unix()
		tok, _ := token.Mint(s.Signer, token.TypAgent, token.Claims{Issuer: s.ID, Subject: "d", ID: "x",
			IssuedAt: now, Expiry: now + 60, Confirmation: &token.Confirmation{Key: other.Public}})
		_ = json.NewEncoder(w).Encode(DelegateResponse{AgentToken: tok, ExpiresIn: 60})
	}))
	defer liar.Close()
	if _, _, err := RequestDelegateToken(ctx, nil, liar.URL, testSecret, "d", del, nil); err == nil ||
		!strings.Contains(err.Error(), "not bound") {
		t.Errorf("mis-bound token: %v", err)
	}
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"agent_token":"not.a.jwt"}`)
	}))
	defer garbage.Close()
	if _, _, err := RequestDelegateToken(ctx, nil, garbage.URL, testSecret, "d", del, nil); err == nil {
		t.Error("garbage token accepted")
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusBadGateway)
	}))
	defer plain.Close()
	if _, _, err := RequestDelegateToken(ctx, nil, plain.URL, testSecret, "d", del, nil); err == nil ||
		!strings.Contains(err.Error(), "502") {
		t.Errorf("plain error: %v", err)
	}
}
