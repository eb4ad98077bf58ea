package token

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func benchToken(b *testing.B, alg string) (string, *keys.Signer) {
	b.Helper()
	s := genSigner(b, alg, asKID)
	raw, err := Mint(s, TypAuth, Claims{Issuer: asID, Audience: Audience{resourceID}, ID: NewID(),
		IssuedAt: nowUnix - 10, Expiry: nowUnix + 3600, Agent: agentID, Subject: "testuser", Scope: "data.read data.write",
		Confirmation: &Confirmation{Key: agentSigner(b).Public}})
	if err != nil {
		b.Fatal(err)
	}
	return raw, s
}

// BenchmarkVerifyAuthToken is a cold, full verification (parse, claims, resolver, jwx
// signature check) with no cache.
func BenchmarkVerifyAuthToken(b *testing.B) {
	for _, alg := range []string{keys.AlgEd25519, keys.AlgECDSAP256} {
		b.Run(alg, func(b *testing.B) {
			raw, s := benchToken(b, alg)
			res := func(context.Context, string, string) (*keys.PublicKey, error) { return s.Public, nil }
			o := Options{Now: time.Unix(nowUnix, 0), Audience: resourceID, Issuers: []string{asID}}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := VerifyAuthToken(ctx, raw, o, res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParse is the structural parse alone (what an invalid token costs at most
// before any signature work).
func BenchmarkParse(b *testing.B) {
	raw, _ := benchToken(b, keys.AlgEd25519)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(raw, TypAuth); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheHit(b *testing.B) {
	raw, s := benchToken(b, keys.AlgEd25519)
	res := func(context.Context, string, string) (*keys.PublicKey, error) { return s.Public, nil }
	now := time.Unix(nowUnix, 0)
	tok, err := VerifyAuthToken(context.Background(), raw, Options{Now: now, Audience: resourceID}, res)
	if err != nil {
		b.Fatal(err)
	}
	c := NewCache(0)
	c.Put(tok)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := c.Get(raw, now); !ok {
			b.Fatal("miss")
		}
	}
}
