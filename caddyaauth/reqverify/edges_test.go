package reqverify_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// E8: agent and auth tokens longer-lived than MaxTokenLifetime (default 24h) are refused
// before the issuer's keys are fetched; tokens within the bound pass.
func TestMaxTokenLifetime(t *testing.T) {
	now := time.Now()
	mint := func(f *fixture, typ string, cnf *keys.PublicKey, iat, exp time.Time) string {
		c := token.Claims{ID: token.NewID(), IssuedAt: iat.Unix(), Expiry: exp.Unix(), Confirmation: &token.Confirmation{Key: cnf}}
		s := f.agent.signer
		if typ == token.TypAuth {
			s = f.iss.signer
			c.Issuer, c.Audience, c.Agent, c.Scope = f.iss.id, token.Audience{"https://api.example"}, "https://agent.example", "data.read"
		} else {
			c.Issuer, c.Subject = f.agent.id, "delegate-1"
		}
		raw, err := token.Mint(s, typ, c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	const day = 24 * time.Hour
	cases := []struct {
		name     string
		typ      string
		iat, exp time.Time
		max      time.Duration
		code     string
	}{
		{"auth 23h", token.TypAuth, now, now.Add(23 * time.Hour), 0, ""},
		{"auth 24h", token.TypAuth, now, now.Add(day), 0, ""},
		{"auth 24h+1s", token.TypAuth, now, now.Add(day + time.Second), 0, reqverify.CodeInvalidAuthToken},
		{"auth 10 years", token.TypAuth, now, now.Add(3650 * day), 0, reqverify.CodeInvalidAuthToken},
		{"auth old iat, exp in 10 years", token.TypAuth, time.Unix(1, 0), now.Add(3650 * day), 0, reqverify.CodeInvalidAuthToken},
		{"auth 2h over a 1h route bound", token.TypAuth, now, now.Add(2 * time.Hour), time.Hour, reqverify.CodeInvalidAuthToken},
		{"agent 23h", token.TypAgent, now, now.Add(23 * time.Hour), 0, ""},
		{"agent 10 years", token.TypAgent, now, now.Add(3650 * day), 0, reqverify.CodeInvalidAgentToken},
		{"agent 47h with a 48h bound", token.TypAgent, now, now.Add(47 * time.Hour), 48 * time.Hour, ""},
		{"agent 49h with a 48h bound", token.TypAgent, now, now.Add(49 * time.Hour), 48 * time.Hour, reqverify.CodeInvalidAgentToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.v.MaxTokenLifetime = c.max
			dk, _ := keys.Generate(keys.AlgEd25519, "")
			res, err := f.v.Verify(context.Background(), sign(t, dk, jwt(mint(f, c.typ, dk.Public, c.iat, c.exp))))
			if c.code == "" {
				if err != nil || res.AuthTokenProblem != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *httpsig.Error
			if !errors.As(err, &ve) || ve.Code != c.code {
				t.Fatalf("err %v, want %s", err, c.code)
			}
			if f.iss.hits.Load()+f.agent.hits.Load() != 0 {
				t.Fatal("keys fetched for a token refused on its claims")
			}
		})
	}
}

func TestBodyCheckNeeded(t *testing.T) {
	covered := &httpsig.Signature{Components: []string{"@method", "content-digest"}}
	plain := &httpsig.Signature{Components: []string{"@method"}}
	if !reqverify.BodyCheckNeeded(covered, nil) || !reqverify.BodyCheckNeeded(plain, []string{"content-digest"}) {
		t.Fatal("covered or demanded digest not checked")
	}
	if reqverify.BodyCheckNeeded(plain, []string{"content-type"}) || reqverify.BodyCheckNeeded(nil, nil) {
		t.Fatal("body check without a digest")
	}
}

func TestCheckBody(t *testing.T) {
	req := func(body, digestOf string) *http.Request {
		r := httptest.NewRequest("POST", "http://api.example/x", strings.NewReader(body))
		if digestOf != "-" {
			r.Header.Set("Content-Digest", httpsig.ContentDigest([]byte(digestOf)))
		}
		return r
	}
	r := req(`{"a":1}`, `{"a":1}`)
	if err := reqverify.CheckBody(r, 64); err != nil {
		t.Fatal(err)
	}
	for range 2 { // Body and GetBody give the verified bytes
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"a":1}` || r.ContentLength != 7 {
			t.Fatalf("body %q len %d", b, r.ContentLength)
		}
		r.Body, _ = r.GetBody()
	}
	var ve *httpsig.Error
	if err := reqverify.CheckBody(req(`{"a":2}`, `{"a":1}`), 64); !errors.As(err, &ve) || ve.Code != httpsig.CodeInvalidSignature {
		t.Fatalf("swapped body: %v", err)
	}
	if err := reqverify.CheckBody(req(`{"a":1}`, "-"), 64); !errors.As(err, &ve) {
		t.Fatalf("missing digest: %v", err)
	}
	big := strings.Repeat("x", 65)
	if err := reqverify.CheckBody(req(big, big), 64); !errors.Is(err, reqverify.ErrBodyTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	// Unknown length (chunked, h2): the cap holds while reading.
	r = req(big, big)
	r.ContentLength = -1
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader([]byte(big))))
	if err := reqverify.CheckBody(r, 64); !errors.Is(err, reqverify.ErrBodyTooLarge) {
		t.Fatalf("oversized, unknown length: %v", err)
	}
	// An outer request_body limit surfaces as too large too.
	r = req(big, big)
	r.ContentLength = -1
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)
	if err := reqverify.CheckBody(r, 64); !errors.Is(err, reqverify.ErrBodyTooLarge) {
		t.Fatalf("outer limit: %v", err)
	}
}
