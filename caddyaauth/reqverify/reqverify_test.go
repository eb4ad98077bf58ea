package reqverify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// publisher serves one identity's metadata document and JWKS on loopback.
type publisher struct {
	*httptest.Server
	id     string
	signer *keys.Signer
	hits   atomic.Int64
}

func newPublisher(t testing.TB, doc, member string) *publisher {
	t.Helper()
	s, _ := keys.Generate(keys.AlgEd25519, "k1")
	p := &publisher{signer: s}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/" + doc + ".json":
			_ = json.NewEncoder(w).Encode(map[string]string{member: p.id, "jwks_uri": p.id + "/jwks.json"})
		case "/jwks.json":
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{s.Public.Members()}})
		default:
			http.NotFound(w, r)
		}
	}))
	p.id = p.URL
	t.Cleanup(p.Close)
	return p
}

func sign(t testing.TB, s *keys.Signer, key httpsig.SigKey) httpsig.Target {
	t.Helper()
	req := httptest.NewRequest("GET", "http://api.example/data", nil)
	if err := httpsig.Sign(req, s, key, httpsig.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	return httpsig.TargetOf(req)
}

func hwk(s *keys.Signer) httpsig.SigKey {
	k := httpsig.SigKey{Scheme: httpsig.SchemeHWK}
	for _, n := range []string{"kty", "crv", "x"} {
		k.Params = append(k.Params, httpsig.Param{Name: n, Value: s.Public.Members()[n].(string)})
	}
	return k
}

func jwt(raw string) httpsig.SigKey {
	return httpsig.SigKey{Scheme: httpsig.SchemeJWT, Params: []httpsig.Param{{Name: "jwt", Value: raw}}}
}

func authToken(t testing.TB, as *keys.Signer, iss, aud string, cnf *keys.PublicKey, exp time.Time) string {
	t.Helper()
	raw, err := token.Mint(as, token.TypAuth, token.Claims{
		Issuer: iss, Audience: token.Audience{aud}, ID: token.NewID(),
		IssuedAt: exp.Add(-time.Hour).Unix(), Expiry: exp.Unix(),
		Agent: "https://agent.example", Scope: "data.read", Confirmation: &token.Confirmation{Key: cnf},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type fixture struct {
	v          *reqverify.Verifier
	agent, iss *publisher
	untrusted  *publisher
	agentKey   *keys.Signer
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{agent: newPublisher(t, "aauth-agent", "agent"), iss: newPublisher(t, "aauth-issuer", "issuer"), untrusted: newPublisher(t, "aauth-issuer", "issuer")}
	f.agentKey = f.agent.signer
	d := discovery.New(discovery.Config{Dev: true})
	t.Cleanup(d.Close)
	f.v = &reqverify.Verifier{
		Discovery:  d,
		Dev:        true,
		Self:       "https://api.example",
		Tokens:     token.NewCache(100),
		AuthTokens: &reqverify.AuthTokenPolicy{Audience: "https://api.example", Issuers: []string{f.iss.id}},
	}
	return f
}

func TestVerifySchemes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	other, _ := keys.Generate(keys.AlgEd25519, "")
	cases := []struct {
		name      string
		target    func() httpsig.Target
		level     string
		wantCode  string
		problem   bool
		noIssHits bool
	}{
		{"hwk is a pseudonym", func() httpsig.Target { return sign(t, other, hwk(other)) }, reqverify.LevelPseudonym, "", false, false},
		{"hwk with alg is refused", func() httpsig.Target {
			k := hwk(other)
			k.Params = append(k.Params, httpsig.Param{Name: "alg", Value: "EdDSA"})
			return sign(t, other, k)
		}, "", httpsig.CodeInvalidKey, false, false},
		{"jwks_uri is identified", func() httpsig.Target {
			return sign(t, f.agentKey, httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: f.agent.id}, {Name: "kid", Value: "k1"}}})
		}, reqverify.LevelIdentity, "", false, false},
		{"jwks_uri with a key the agent does not publish", func() httpsig.Target {
			return sign(t, other, httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: f.agent.id}, {Name: "kid", Value: "k1"}}})
		}, "", httpsig.CodeInvalidSignature, false, false},
		{"auth token is authorized", func() httpsig.Target {
			return sign(t, other, jwt(authToken(t, f.iss.signer, f.iss.id, "https://api.example", other.Public, now.Add(time.Hour))))
		}, reqverify.LevelAuthorized, "", false, false},
		{"auth token bound to another key", func() httpsig.Target {
			return sign(t, other, jwt(authToken(t, f.iss.signer, f.iss.id, "https://api.example", f.agentKey.Public, now.Add(time.Hour))))
		}, "", reqverify.CodeKeyBindingFailed, false, false},
		{"expired auth token still identifies the agent", func() httpsig.Target {
			return sign(t, other, jwt(authToken(t, f.iss.signer, f.iss.id, "https://api.example", other.Public, now.Add(-time.Minute))))
		}, reqverify.LevelIdentity, "", true, false},
		{"auth token for another audience still identifies the agent", func() httpsig.Target {
			return sign(t, other, jwt(authToken(t, f.iss.signer, f.iss.id, "https://other.example", other.Public, now.Add(time.Hour))))
		}, reqverify.LevelIdentity, "", true, false},
		{"auth token from an untrusted issuer: refused without a fetch", func() httpsig.Target {
			return sign(t, other, jwt(authToken(t, f.untrusted.signer, f.untrusted.id, "https://api.example", other.Public, now.Add(time.Hour))))
		}, "", reqverify.CodeInvalidAuthToken, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.untrusted.hits.Load()
			res, err := f.v.Verify(ctx, c.target())
			if c.wantCode != "" {
				var e *httpsig.Error
				if err == nil || !asErr(err, &e) || e.Code != c.wantCode {
					t.Fatalf("err = %v, want code %s", err, c.wantCode)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if res.Level != c.level || (res.AuthTokenProblem != nil) != c.problem {
					t.Fatalf("level %s problem %v", res.Level, res.AuthTokenProblem)
				}
			}
			if c.noIssHits && f.untrusted.hits.Load() != before {
				t.Fatal("the untrusted issuer was contacted")
			}
		})
	}
}

func asErr(err error, target **httpsig.Error) bool {
	e, ok := err.(*httpsig.Error)
	if ok {
		*target = e
	}
	return ok
}

// BenchmarkVerifyAuthToken compares a request carrying an auth token the verifier has
// seen (cache hit: one Ed25519 verify of the request) with a cold one (the token's own
// signature and claims checked too; keys come from the warm discovery cache in both).
func BenchmarkVerifyAuthToken(b *testing.B) {
	f := newFixture(b)
	s, _ := keys.Generate(keys.AlgEd25519, "")
	tok := authToken(b, f.iss.signer, f.iss.id, "https://api.example", s.Public, time.Now().Add(time.Hour))
	tg := sign(b, s, jwt(tok))
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, tg); err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.v.Verify(ctx, tg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f.v.Tokens = token.NewCache(100)
			if _, err := f.v.Verify(ctx, tg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func agentToken(t testing.TB, f *fixture, sub string, aud token.Audience, cnf *keys.PublicKey) string {
	t.Helper()
	now := time.Now()
	raw, err := token.Mint(f.agent.signer, token.TypAgent, token.Claims{
		Issuer: f.agent.id, Subject: sub, Audience: aud, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(), Confirmation: &token.Confirmation{Key: cnf},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestVerifyHardening(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d, _ := keys.Generate(keys.AlgEd25519, "")

	t.Run("an impossible alg is refused before any fetch", func(t *testing.T) {
		before := f.agent.hits.Load()
		req := httptest.NewRequest("GET", "http://api.example/data", nil)
		key := httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: f.agent.id + "/fresh"}, {Name: "kid", Value: "k1"}}}
		if err := httpsig.Sign(req, f.agentKey, key, httpsig.SignOptions{}); err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Signature-Input", strings.Replace(req.Header.Get("Signature-Input"), ";created=", `;alg="rsa-pss-sha512";created=`, 1))
		_, err := f.v.Verify(ctx, httpsig.TargetOf(req))
		var e *httpsig.Error
		if !asErr(err, &e) || e.Code != httpsig.CodeUnsupportedAlgorithm {
			t.Fatalf("err = %v", err)
		}
		if f.agent.hits.Load() != before {
			t.Fatal("a fetch was made")
		}
	})

	t.Run("a cached agent token is still checked against this request's audience", func(t *testing.T) {
		tg := sign(t, d, jwt(agentToken(t, f, "delegate-1", token.Audience{"https://api.example"}, d.Public)))
		if _, err := f.v.Verify(ctx, tg); err != nil {
			t.Fatal(err)
		}
		other := *f.v
		other.Self = "https://other.example"
		if _, err := other.Verify(ctx, tg); err == nil {
			t.Fatal("a token for https://api.example was accepted by https://other.example from the cache")
		}
	})

	t.Run("identity claims that cannot be forwarded are refused", func(t *testing.T) {
		tg := sign(t, d, jwt(agentToken(t, f, "delegate\r\nX-Injected: 1", nil, d.Public)))
		_, err := f.v.Verify(ctx, tg)
		var e *httpsig.Error
		if !asErr(err, &e) || e.Code != reqverify.CodeInvalidAgentToken {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestPrepare: Prepare parses and checks a signed request without resolving its key; the
// signature base it returns verifies with the signing key and with no other, and a
// broken or stale signature is refused before any key is looked up.
func TestPrepare(t *testing.T) {
	f := newFixture(t)
	signer, _ := keys.Generate(keys.AlgEd25519, "k")
	other, _ := keys.Generate(keys.AlgEd25519, "k")
	target := sign(t, signer, jwt("not-even-a-token"))
	sig, base, err := f.v.Prepare(target)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if sig.Key.Scheme != httpsig.SchemeJWT || sig.Key.Get("jwt") != "not-even-a-token" {
		t.Errorf("Signature-Key %+v", sig.Key)
	}
	if err := httpsig.Verify(sig, base, signer.Public); err != nil {
		t.Errorf("the signing key does not verify: %v", err)
	}
	if err := httpsig.Verify(sig, base, other.Public); err == nil {
		t.Error("another key verifies")
	}
	stale := *f.v
	stale.Now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	if _, _, err := stale.Prepare(target); err == nil {
		t.Error("a signature outside the window was prepared")
	}
	target.Header.Del("Signature")
	if _, _, err := f.v.Prepare(target); err == nil {
		t.Error("a request without Signature was prepared")
	}
}
