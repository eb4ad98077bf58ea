package token

import (
	"context"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func TestVerifySelfAccessToken(t *testing.T) {
	as := genSigner(t, keys.AlgEd25519, asKID)
	agent := genSigner(t, keys.AlgEd25519, "agent-key")
	resolve := func(context.Context, string, string) (*keys.PublicKey, error) { return as.Public, nil }
	base := Claims{Issuer: asID, Audience: Audience{agentID}, ID: NewID(), IssuedAt: nowUnix - 10,
		Expiry: nowUnix + 3600, Scope: "openid profile", Confirmation: &Confirmation{Key: agent.Public}}
	for _, tc := range []struct {
		name     string
		mutate   func(*Claims)
		aud      string
		wantSelf bool // VerifySelfAccessToken accepts it
		wantAuth bool // VerifyAuthToken accepts it
	}{
		{"no agent claim", nil, agentID, true, false},
		{"with an agent claim", func(c *Claims) { c.Agent = agentID }, agentID, true, true},
		{"aud is someone else", nil, resourceID, false, false},
		{"no cnf", func(c *Claims) { c.Confirmation = nil }, agentID, false, false},
		{"neither sub nor scope", func(c *Claims) { c.Scope = "" }, agentID, false, false},
		{"expired", func(c *Claims) { c.Expiry = nowUnix - 1 }, agentID, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			raw, err := Mint(as, TypAuth, c)
			if err != nil {
				t.Fatal(err)
			}
			o := Options{Now: testNow, Audience: tc.aud, Issuers: []string{asID}}
			_, err = VerifySelfAccessToken(context.Background(), raw, o, resolve)
			if (err == nil) != tc.wantSelf {
				t.Errorf("VerifySelfAccessToken: %v, want ok %t", err, tc.wantSelf)
			}
			_, err = VerifyAuthToken(context.Background(), raw, o, resolve)
			if (err == nil) != tc.wantAuth {
				t.Errorf("VerifyAuthToken: %v, want ok %t", err, tc.wantAuth)
			}
		})
	}
}
