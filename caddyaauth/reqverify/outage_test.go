package reqverify_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// switchable publishes one identity whose documents can be made to fail (status) and
// whose key can be replaced.
type switchable struct {
	*httptest.Server
	id       string
	signer   atomic.Pointer[keys.Signer]
	mdStatus atomic.Int64 // non-zero: the metadata answers this status
	jwStatus atomic.Int64 // non-zero: the JWKS answers this status
	jwksHits atomic.Int64
}

func newSwitchable(t testing.TB, doc, member string) *switchable {
	t.Helper()
	p := &switchable{}
	s, _ := keys.Generate(keys.AlgEd25519, "k1")
	p.signer.Store(s)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var st int64
		var body any
		switch r.URL.Path {
		case "/.well-known/" + doc + ".json", "/.well-known/" + doc:
			st, body = p.mdStatus.Load(), map[string]string{member: p.id, "jwks_uri": p.id + "/jwks.json"}
		case "/jwks.json":
			p.jwksHits.Add(1)
			st, body = p.jwStatus.Load(), map[string]any{"keys": []any{p.signer.Load().Public.Members()}}
		default:
			http.NotFound(w, r)
			return
		}
		if st != 0 {
			http.Error(w, "down", int(st))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}))
	p.id = p.URL
	t.Cleanup(p.Close)
	return p
}

func outageVerifier(t testing.TB, iss string) *reqverify.Verifier {
	d := discovery.New(discovery.Config{Dev: true})
	t.Cleanup(d.Close)
	return &reqverify.Verifier{
		Discovery: d, Dev: true, Self: "https://api.example", Tokens: token.NewCache(100),
		AuthTokens: &reqverify.AuthTokenPolicy{Audience: "https://api.example", Issuers: []string{iss}},
	}
}

func jwksURIKey(id string) httpsig.SigKey {
	return httpsig.SigKey{Scheme: httpsig.SchemeJWKSURI, Params: []httpsig.Param{{Name: "id", Value: id}, {Name: "kid", Value: "k1"}}}
}

// TestVerifyOutage: a document that cannot be fetched (5xx, cold cache) is an
// UnavailableError that Refusal maps to 503 temporarily_unavailable naming the document;
// a document fetched fine with no such key, or a 404, is a 401 as before.
func TestVerifyOutage(t *testing.T) {
	other, _ := keys.Generate(keys.AlgEd25519, "")
	cases := []struct {
		name     string
		md, jw   int64 // statuses of the metadata and the JWKS (0: served)
		issuer   bool  // an auth token (else jwks_uri)
		wantCode string
		wantMsg  string
	}{
		{"agent metadata 503", 503, 0, false, wire.CodeTemporarilyUnavailable, "the agent's metadata could not be fetched"},
		{"agent JWKS 502", 0, 502, false, wire.CodeTemporarilyUnavailable, "the agent's JWKS could not be fetched"},
		{"agent JWKS 404", 0, 404, false, wire.CodeUnknownKey, ""},
		{"agent metadata 404", 404, 0, false, wire.CodeUnknownKey, ""},
		{"auth server JWKS 503", 0, 503, true, wire.CodeTemporarilyUnavailable, "the auth server's JWKS could not be fetched"},
		{"auth server metadata 504", 504, 0, true, wire.CodeTemporarilyUnavailable, "the auth server's metadata could not be fetched"},
		{"auth server JWKS 404", 0, 404, true, wire.CodeInvalidAuthToken, ""},
		{"auth server JWKS 403", 0, 403, true, wire.CodeInvalidAuthToken, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newSwitchable(t, map[bool]string{false: "aauth-agent", true: "aauth-issuer"}[c.issuer], map[bool]string{false: "agent", true: "issuer"}[c.issuer])
			p.mdStatus.Store(c.md)
			p.jwStatus.Store(c.jw)
			v := outageVerifier(t, p.id)
			target := sign(t, p.signer.Load(), jwksURIKey(p.id))
			if c.issuer {
				target = sign(t, other, jwt(authToken(t, p.signer.Load(), p.id, "https://api.example", other.Public, time.Now().Add(time.Hour))))
			}
			_, err := v.Verify(context.Background(), target)
			status, e, ok := reqverify.Refusal(err)
			if !ok || e.Code != c.wantCode {
				t.Fatalf("err = %v → %d %+v", err, status, e)
			}
			ue, unavailable := reqverify.Unavailable(err)
			if unavailable != (c.wantMsg != "") {
				t.Fatalf("Unavailable = %v for %v", unavailable, err)
			}
			if !unavailable {
				if status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", status)
				}
				return
			}
			if status != http.StatusServiceUnavailable || !strings.HasPrefix(e.Description, c.wantMsg) || ue.Issuer != p.id || ue.RetryAfterSeconds() < 1 {
				t.Fatalf("refusal %d %+v (%+v)", status, e, ue)
			}
			if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(e.Description) {
				t.Fatal("a token in the description")
			}
		})
	}
}

// TestKeyReplacedUnderSameKid: after the publisher replaces its key under the same kid,
// a request signed with the new key is accepted at once (one JWKS refetch) for jwks_uri
// and for auth tokens; a forged signature is still refused, and a second one within the
// refresh interval causes no fetch.
func TestKeyReplacedUnderSameKid(t *testing.T) {
	for _, issuer := range []bool{false, true} {
		name := map[bool]string{false: "jwks_uri", true: "auth token"}[issuer]
		t.Run(name, func(t *testing.T) {
			p := newSwitchable(t, map[bool]string{false: "aauth-agent", true: "aauth-issuer"}[issuer], map[bool]string{false: "agent", true: "issuer"}[issuer])
			v := outageVerifier(t, p.id)
			agent, _ := keys.Generate(keys.AlgEd25519, "")
			target := func(s *keys.Signer) httpsig.Target {
				if issuer {
					return sign(t, agent, jwt(authToken(t, s, p.id, "https://api.example", agent.Public, time.Now().Add(time.Hour))))
				}
				return sign(t, s, jwksURIKey(p.id))
			}
			if _, err := v.Verify(context.Background(), target(p.signer.Load())); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // the JWKS copy is no longer "just fetched"
			forged, _ := keys.Generate(keys.AlgEd25519, "k1")
			if _, err := v.Verify(context.Background(), target(forged)); err == nil {
				t.Fatal("forged signature accepted")
			} else if _, ok := reqverify.Unavailable(err); ok {
				t.Fatalf("forged: %v", err)
			}
			hits := p.jwksHits.Load()
			if hits != 2 {
				t.Fatalf("JWKS fetched %d times, want 2 (one refresh)", hits)
			}
			if _, err := v.Verify(context.Background(), target(forged)); err == nil {
				t.Fatal("forged signature accepted")
			}
			if p.jwksHits.Load() != hits {
				t.Fatal("a second bad signature within the interval refetched the JWKS")
			}
			d := discovery.New(discovery.Config{Dev: true, KeyChangeInterval: time.Millisecond})
			t.Cleanup(d.Close)
			v.Discovery = d
			if _, err := v.Verify(context.Background(), target(p.signer.Load())); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond)
			repl, _ := keys.Generate(keys.AlgEd25519, "k1")
			p.signer.Store(repl)
			if _, err := v.Verify(context.Background(), target(repl)); err != nil {
				var he *httpsig.Error
				t.Fatalf("replaced key refused: %v (%v)", err, errors.As(err, &he))
			}
		})
	}
}
