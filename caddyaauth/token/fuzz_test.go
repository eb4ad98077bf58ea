package token

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// FuzzParse feeds arbitrary strings through Parse (every typ), the lenient test-vector
// parse and the full auth-token verifier. Nothing may panic, and anything accepted must
// satisfy the structural invariants.
func FuzzParse(f *testing.F) {
	as := asSigner(f)
	agent := agentSigner(f)
	iat := nowUnix - 10
	good, err := Mint(as, TypAuth, Claims{Issuer: asID, Audience: Audience{resourceID}, ID: "j", IssuedAt: iat,
		Expiry: iat + 3600, Agent: agentID, Scope: "s", Confirmation: &Confirmation{Key: agent.Public}})
	if err != nil {
		f.Fatal(err)
	}
	agentTok, _ := Mint(as, TypAgent, Claims{Issuer: agentID, Subject: "d", ID: "j", IssuedAt: iat, Expiry: iat + 60,
		Audience: Audience{"a", "b"}, Confirmation: &Confirmation{Key: agent.Public}})
	resTok, _ := Mint(as, TypResource, Claims{Issuer: resourceID, Audience: Audience{asID}, ID: "j", IssuedAt: iat,
		Expiry: iat + 60, Agent: agentID, AgentJKT: agent.Public.Thumbprint})
	seeds := []string{
		good, agentTok, resTok, appendixAToken,
		"", ".", "..", "...", "a.b.c", "e30.e30.", "e30.e30.AAAA",
		good + ".", good + "=", " " + good, strings.Replace(good, ".", "..", 1),
		`{"protected":"e30","payload":"e30","signature":"AA"}`,
		craft(f, as, `{"alg":"EdDSA","kid":"k","typ":"auth+jwt","alg":"none"}`, `{}`),
		craft(f, as, `{"alg":"EdDSA","kid":"k","typ":"auth+jwt"}`, `{"exp":1.5,"aud":[1],"cnf":{"jwk":{"kty":"EC"}}}`),
		craft(f, as, `{"alg":"EdDSA","kid":"k","typ":"auth+jwt"}`, `{"a":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}`),
		craft(f, as, `{"alg":"EdDSA","kid":"k","typ":"auth+jwt"}`, "{\"\xff\":1}"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	res := func(context.Context, string, string) (*keys.PublicKey, error) { return as.Public, nil }
	o := Options{Now: time.Unix(nowUnix, 0), Audience: resourceID, Issuers: []string{asID}}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, typ := range []string{TypAgent, TypResource, TypAuth} {
			tok, err := Parse(raw, typ)
			if err != nil {
				if CodeOf(err) != CodeInvalidToken {
					t.Fatalf("Parse error with code %q", CodeOf(err))
				}
				continue
			}
			if len(raw) > MaxTokenBytes || strings.Count(raw, ".") != 2 {
				t.Fatal("accepted a token with bad shape")
			}
			if tok.Header.Alg != keys.JWSEdDSA && tok.Header.Alg != keys.JWSES256 {
				t.Fatalf("accepted alg %q", tok.Header.Alg)
			}
			if tok.Header.Kid == "" || !typMatches(tok.Header.Typ, typ) {
				t.Fatal("accepted without kid or with the wrong typ")
			}
			_ = tok.VerifySignature(as.Public)
		}
		if tok, err := wycheproofParse(raw); err == nil {
			_ = tok.VerifySignature(as.Public)
		}
		tok, err := VerifyAuthToken(context.Background(), raw, o, res)
		if err == nil {
			if !tok.Verified() || tok.Claims.Confirmation == nil || tok.Claims.Confirmation.Key == nil {
				t.Fatal("verified token missing cnf key")
			}
		} else if CodeOf(err) == "" {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
