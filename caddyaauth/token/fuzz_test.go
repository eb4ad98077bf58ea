package token

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// refNoDuplicates is a slow reference for checkNoDuplicates built on json.Decoder.Token.
func refNoDuplicates(b []byte) bool {
	if !utf8.Valid(b) || !json.Valid(b) {
		return false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	tok, err := d.Token()
	if err != nil || tok != json.Delim('{') {
		return false
	}
	var walk func(tok json.Token, depth int) bool
	walk = func(tok json.Token, depth int) bool {
		switch tok {
		case json.Delim('{'):
			if depth+1 > maxJSONDepth {
				return false
			}
			seen := map[string]bool{}
			for d.More() {
				k, _ := d.Token()
				name := k.(string)
				if seen[name] {
					return false
				}
				seen[name] = true
				v, err := d.Token()
				if err != nil || !walk(v, depth+1) {
					return false
				}
			}
			_, _ = d.Token()
		case json.Delim('['):
			if depth+1 > maxJSONDepth {
				return false
			}
			for d.More() {
				v, err := d.Token()
				if err != nil || !walk(v, depth+1) {
					return false
				}
			}
			_, _ = d.Token()
		}
		return true
	}
	return walk(tok, 0)
}

var dupSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a\"":1,"a\\":2}`,
	`{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":2}]}`, `{"a":[{"b":1,"b":2}]}`, `{"a":1}{}`,
	`[]`, `"x"`, `1`, `{"a":"}","b":"{\"a\":1}"}`, `{"x":[1,2,[3,{"y":null,"y":true}]]}`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":1,"k12":2,"k13":3,"k14":4,"k15":5,"k16":6,"k17":7,"k0":8}`,
	`{"a":` + strings.Repeat(`[`, 15) + strings.Repeat(`]`, 15) + `}`,
	`{"a":` + strings.Repeat(`[`, 16) + strings.Repeat(`]`, 16) + `}`,
	`{"a":` + strings.Repeat(`{"a":`, 15) + `1` + strings.Repeat(`}`, 15) + `}`,
	`{"a":` + strings.Repeat(`{"a":`, 14) + `1` + strings.Repeat(`}`, 14) + `}`,
	"{\"\xff\":1}", `{"a":1e5,"b":-0.5,"c":true,"d":false,"e":null}`, "{\t\"a\"\n:\r1 }",
}

func TestNoDuplicatesMatchesReference(t *testing.T) {
	for _, s := range dupSeeds {
		want := refNoDuplicates([]byte(s))
		got := utf8.Valid([]byte(s)) && checkNoDuplicates([]byte(s)) == nil
		if got != want {
			t.Errorf("%q: fast=%v reference=%v", s, got, want)
		}
	}
}

// FuzzNoDuplicates checks the fast duplicate scanner against the json.Decoder reference.
func FuzzNoDuplicates(f *testing.F) {
	for _, s := range dupSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := refNoDuplicates([]byte(s))
		got := utf8.Valid([]byte(s)) && checkNoDuplicates([]byte(s)) == nil
		if got != want {
			t.Fatalf("%q: fast=%v reference=%v", s, got, want)
		}
	})
}
