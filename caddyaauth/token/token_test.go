package token

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// TestRoundTrip mints and verifies every token kind with Ed25519 and P-256 issuer keys
// and Ed25519 and P-256 confirmation keys.
func TestRoundTrip(t *testing.T) {
	now := time.Now()
	iat, exp := now.Unix(), now.Add(time.Hour).Unix()
	for _, alg := range []string{keys.AlgEd25519, keys.AlgECDSAP256} {
		issuer := genSigner(t, alg, "issuer-key-"+alg)
		holder := genSigner(t, alg, "holder-key")
		kinds := []struct {
			name     string
			typ      string
			claims   Claims
			audience string
			verify   verifyFunc
		}{
			{"agent", TypAgent, Claims{
				Issuer: agentID, Subject: "delegate-1", ID: NewID(), IssuedAt: iat, Expiry: exp,
				Confirmation: &Confirmation{Key: holder.Public},
			}, asID, VerifyAgentToken},
			{"agent with aud array", TypAgent, Claims{
				Issuer: agentID, Subject: "delegate-1", ID: NewID(), IssuedAt: iat, Expiry: exp,
				Audience: Audience{asID, resourceID}, Confirmation: &Confirmation{Key: holder.Public},
			}, resourceID, VerifyAgentToken},
			{"resource", TypResource, Claims{
				Issuer: resourceID, Audience: Audience{asID}, ID: NewID(), IssuedAt: iat, Expiry: exp,
				Agent: agentID, AgentJKT: holder.Public.Thumbprint, Scope: "data.read data.write", Txn: NewID(),
			}, asID, VerifyResourceToken},
			{"auth", TypAuth, Claims{
				Issuer: asID, Audience: Audience{resourceID}, ID: NewID(), IssuedAt: iat, NotBefore: iat, Expiry: exp,
				Agent: agentID, Subject: "testuser", Scope: "data.read", Txn: "txn-1", AgentDelegate: "delegate-1",
				Confirmation: &Confirmation{Key: holder.Public},
				Extra:        map[string]json.RawMessage{"name": json.RawMessage(`"Alice"`)},
			}, resourceID, VerifyAuthToken},
		}
		for _, k := range kinds {
			t.Run(alg+"/"+k.name, func(t *testing.T) {
				raw, err := Mint(issuer, k.typ, k.claims)
				if err != nil {
					t.Fatal(err)
				}
				r := &resolver{iss: k.claims.Issuer, key: issuer.Public}
				tok, err := k.verify(context.Background(), raw, Options{
					Now: now, Audience: k.audience, Issuers: []string{k.claims.Issuer}, MaxLifetime: time.Hour,
				}, r.resolve)
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if !tok.Verified() || r.calls.Load() != 1 {
					t.Fatalf("verified=%v resolver calls=%d", tok.Verified(), r.calls.Load())
				}
				if tok.Header != (Header{Alg: issuer.Public.JWSAlg(), Kid: issuer.Public.KID, Typ: k.typ}) {
					t.Fatalf("header = %+v", tok.Header)
				}
				got, want := tok.Claims, k.claims
				if got.Issuer != want.Issuer || got.Subject != want.Subject || got.ID != want.ID ||
					got.IssuedAt != want.IssuedAt || got.NotBefore != want.NotBefore || got.Expiry != want.Expiry ||
					got.Agent != want.Agent || got.AgentJKT != want.AgentJKT || got.Scope != want.Scope ||
					got.Txn != want.Txn || got.AgentDelegate != want.AgentDelegate ||
					strings.Join(got.Audience, " ") != strings.Join(want.Audience, " ") {
					t.Fatalf("claims differ:\n got %+v\nwant %+v", got, want)
				}
				if got.AudienceIsArray() != (len(want.Audience) > 1) {
					t.Fatalf("aud array = %v", got.AudienceIsArray())
				}
				if want.Confirmation != nil && !got.Confirmation.Key.Equal(want.Confirmation.Key) {
					t.Fatal("cnf.jwk does not round-trip")
				}
				if want.Extra != nil && string(got.Extra["name"]) != `"Alice"` {
					t.Fatalf("extra = %v", got.Extra)
				}
				// The verifiers of the other kinds refuse it (typ).
				for typ, other := range verifiers {
					if typ == k.typ {
						continue
					}
					if _, err := other(context.Background(), raw, Options{Now: now, Audience: k.audience}, r.resolve); err == nil {
						t.Fatalf("%s verifier accepted a %s", typ, k.typ)
					}
				}
			})
		}
	}
}

type verifyFunc func(context.Context, string, Options, KeyResolver) (*Token, error)

var verifiers = map[string]verifyFunc{TypAgent: VerifyAgentToken, TypResource: VerifyResourceToken, TypAuth: VerifyAuthToken}

const appendixAToken = "eyJhbGciOiJFZERTQSIsImtpZCI6ImF1dGgta2V5LTEiLCJ0eXAiOiJhdXRoK2p3dCJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsImF1ZCI6Imh0dHBzOi8vcmVzb3VyY2UuZXhhbXBsZSIsImp0aSI6IjAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMSIsImNuZiI6eyJqd2siOnsia3R5IjoiT0tQIiwiY3J2IjoiRWQyNTUxOSIsIngiOiIxMXFZQVlLeENyZlZTXzdUeVdRSE9nN2hjdlBhcGlNbHJ3SWFhUGNIVVJvIiwia2lkIjoia2V5LTEifX0sImlhdCI6MTc3NDkyMDkwMCwiZXhwIjoxNzc0OTI0NTAwLCJhZ2VudCI6Imh0dHBzOi8vYWdlbnQuZXhhbXBsZSIsInNjb3BlIjoiZGF0YS5yZWFkIGRhdGEud3JpdGUifQ.7yD6HzKeUy4e8lWnS8sP1uC85KqpvhkJSIW1hmFUN7zPcoLOPqrYG_TpxxQZ6cAOOtL0hNtLD5g7rNd2aWAFAw"

func appendixAOptions() Options {
	return Options{Now: testNow, Audience: resourceID, Issuers: []string{asID}, MaxLifetime: time.Hour}
}

// TestAppendixA verifies the PROTOCOL.md Appendix A auth token and checks that every
// one-bit change of its payload or signature is refused.
func TestAppendixA(t *testing.T) {
	as := asSigner(t)
	if got := as.Public.Members()["x"]; got != "PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw" {
		t.Fatalf("AS key x = %v", got)
	}
	r := &resolver{iss: asID, key: as.Public}

	tok, err := VerifyAuthToken(context.Background(), appendixAToken, appendixAOptions(), r.resolve)
	if err != nil {
		t.Fatalf("Appendix A token: %v", err)
	}
	c := tok.Claims
	if c.Issuer != asID || !c.Audience.Contains(resourceID) || c.ID != "00000000-0000-4000-8000-000000000001" ||
		c.IssuedAt != 1774920900 || c.Expiry != 1774924500 || c.Agent != agentID || c.Scope != "data.read data.write" {
		t.Fatalf("claims = %+v", c)
	}
	if c.Confirmation.Key.Thumbprint != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" || c.Confirmation.Key.KID != "key-1" {
		t.Fatalf("cnf key = %+v", c.Confirmation.Key)
	}

	// Parse + VerifySignature alone, too.
	p, err := Parse(appendixAToken, TypAuth)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.VerifySignature(as.Public); err != nil {
		t.Fatal(err)
	}

	// Outside its window.
	for _, at := range []int64{1774924500, 1774924501, 1774920900 - 61} {
		o := appendixAOptions()
		o.Now = time.Unix(at, 0)
		if _, err := VerifyAuthToken(context.Background(), appendixAToken, o, r.resolve); err == nil {
			t.Fatalf("accepted at %d", at)
		}
	}

	parts := strings.Split(appendixAToken, ".")
	payload, _ := b64.DecodeString(parts[1])
	sig, _ := b64.DecodeString(parts[2])
	flips := 0
	for i := range payload {
		for bit := 0; bit < 8; bit++ {
			mut := append([]byte(nil), payload...)
			mut[i] ^= 1 << bit
			raw := parts[0] + "." + enc(mut) + "." + parts[2]
			if _, err := VerifyAuthToken(context.Background(), raw, appendixAOptions(), r.resolve); err == nil {
				t.Fatalf("payload bit flip at byte %d bit %d accepted", i, bit)
			}
			flips++
		}
	}
	for i := range sig {
		for bit := 0; bit < 8; bit++ {
			mut := append([]byte(nil), sig...)
			mut[i] ^= 1 << bit
			raw := parts[0] + "." + parts[1] + "." + enc(mut)
			_, err := VerifyAuthToken(context.Background(), raw, appendixAOptions(), r.resolve)
			if code := codeOf(err); code != CodeInvalidToken {
				t.Fatalf("signature bit flip at byte %d bit %d: %q", i, bit, code)
			}
			flips++
		}
	}
	t.Logf("%d one-bit flips refused", flips)
}

func TestAudienceJSON(t *testing.T) {
	for _, tc := range []struct {
		aud  Audience
		want string
	}{
		{Audience{"a"}, `"a"`},
		{Audience{"a", "b"}, `["a","b"]`},
	} {
		b, err := json.Marshal(tc.aud)
		if err != nil || string(b) != tc.want {
			t.Fatalf("marshal %v = %s, %v", tc.aud, b, err)
		}
	}
	b, _ := json.Marshal(Claims{Issuer: "x"})
	if string(b) != `{"iss":"x"}` {
		t.Fatalf("empty aud not omitted: %s", b)
	}
	for in, want := range map[string]string{`"a"`: "a", `["a","b"]`: "a b", ` "a"`: "a"} {
		var a Audience
		if err := json.Unmarshal([]byte(in), &a); err != nil || strings.Join(a, " ") != want {
			t.Fatalf("unmarshal %s = %v, %v", in, a, err)
		}
	}
	for _, in := range []string{`1`, `[]`, `[1]`, `{"a":1}`, `null`, `["a",null]`} {
		var a Audience
		if err := json.Unmarshal([]byte(in), &a); err == nil {
			t.Fatalf("unmarshal %s accepted: %v", in, a)
		}
	}
}

func TestConfirmationJSON(t *testing.T) {
	agent := agentSigner(t)
	b, err := json.Marshal(&Confirmation{Key: agent.Public})
	if err != nil {
		t.Fatal(err)
	}
	var c Confirmation
	if err := json.Unmarshal(b, &c); err != nil || !c.Key.Equal(agent.Public) {
		t.Fatalf("round trip: %v", err)
	}
	priv, _ := agent.MarshalPrivateJWK()
	if err := json.Unmarshal([]byte(`{"jwk":`+string(priv)+`}`), &c); err == nil {
		t.Fatal("cnf.jwk with d accepted")
	}
}

func TestMintErrors(t *testing.T) {
	as := asSigner(t)
	agent := agentSigner(t)
	priv, _ := agent.MarshalPrivateJWK()
	var privMap map[string]any
	_ = json.Unmarshal(priv, &privMap)
	noKid := genSigner(t, keys.AlgEd25519, "")
	ok := Claims{Issuer: asID, ID: "j", IssuedAt: nowUnix, Expiry: nowUnix + 60}
	cases := []struct {
		name string
		s    *keys.Signer
		typ  string
		c    Claims
	}{
		{"nil signer", nil, TypAuth, ok},
		{"no kid", noKid, TypAuth, ok},
		{"unknown typ", as, "JWT", ok},
		{"empty typ", as, "", ok},
		{"negative exp", as, TypAuth, Claims{Expiry: -1}},
		{"exp over 2^53", as, TypAuth, Claims{Expiry: 1 << 54}},
		{"cnf with private key", as, TypAuth, Claims{Confirmation: &Confirmation{JWK: privMap}}},
		{"cnf without key", as, TypAuth, Claims{Confirmation: &Confirmation{}}},
		{"extra collides", as, TypAuth, Claims{Extra: map[string]json.RawMessage{"exp": json.RawMessage(`1`)}}},
		{"extra invalid JSON", as, TypAuth, Claims{Extra: map[string]json.RawMessage{"x": json.RawMessage(`{`)}}},
		{"too large", as, TypAuth, Claims{Scope: strings.Repeat("s", MaxTokenBytes)}},
	}
	for _, tc := range cases {
		if _, err := Mint(tc.s, tc.typ, tc.c); err == nil {
			t.Errorf("%s: minted", tc.name)
		}
	}
	// cnf given as a public JWK map mints and verifies.
	raw, err := Mint(as, TypAuth, Claims{Issuer: asID, Audience: Audience{resourceID}, ID: "j", IssuedAt: nowUnix,
		Expiry: nowUnix + 60, Agent: agentID, Scope: "s", Confirmation: &Confirmation{JWK: agent.Public.Members()}})
	if err != nil {
		t.Fatal(err)
	}
	r := &resolver{iss: asID, key: as.Public}
	tok, err := VerifyAuthToken(context.Background(), raw, appendixAOptions(), r.resolve)
	if err != nil || !tok.Claims.Confirmation.Key.Equal(agent.Public) {
		t.Fatalf("cnf map: %v", err)
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := NewID()
		if !re.MatchString(id) {
			t.Fatalf("not a UUIDv4: %s", id)
		}
		if seen[id] {
			t.Fatalf("repeat: %s", id)
		}
		seen[id] = true
	}
}

func TestErrorHelpers(t *testing.T) {
	_, err := Parse("", TypAuth)
	if CodeOf(err) != CodeInvalidToken {
		t.Fatalf("code = %q", CodeOf(err))
	}
	if !strings.HasPrefix(err.Error(), "token: invalid_token: ") {
		t.Fatalf("message = %q", err.Error())
	}
	if !errors.Is(err, &Error{Code: CodeInvalidToken}) || errors.Is(err, &Error{Code: CodeExpired}) {
		t.Fatal("errors.Is by code")
	}
	if CodeOf(nil) != "" {
		t.Fatal("CodeOf(nil)")
	}
}

// TestErrorsDoNotLeakToken checks that no rejection message quotes the token text.
func TestErrorsDoNotLeakToken(t *testing.T) {
	as := asSigner(t)
	r := &resolver{iss: asID, key: as.Public}
	secretish := "SECRETSECRETSECRETSECRETSECRET"
	raw := craft(t, as, `{"alg":"EdDSA","kid":"auth-key-1","typ":"auth+jwt"}`,
		`{"iss":"`+secretish+`","exp":1}`)
	for _, bad := range []string{raw, raw + "x", strings.Replace(raw, ".", "..", 1), raw[:len(raw)-3]} {
		for _, f := range verifiers {
			_, err := f(context.Background(), bad, appendixAOptions(), r.resolve)
			if err == nil || strings.Contains(err.Error(), secretish) || strings.Contains(err.Error(), bad[:20]) {
				t.Fatalf("error leaks token text or accepted: %v", err)
			}
		}
	}
}
