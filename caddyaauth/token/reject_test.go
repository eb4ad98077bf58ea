package token

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// rejCase is one row of the SECURITY-CASES.md section E table. By default the token is
// craft(AS key, hdr, pl) checked by VerifyAuthToken with baseOptions; code "" means it
// must pass. resolves says the failure happens at the key/signature stage, so the
// resolver must have been called exactly once; for every other row it must not have been
// called at all (cheap checks first, no fetch for a bad token).
type rejCase struct {
	name     string
	hdr, pl  obj
	build    func() string       // overrides craft
	mutate   func(string) string // applied to the built token
	opts     func(*Options)
	verify   verifyFunc
	resolver KeyResolver
	code     string
	resolves bool
}

func TestRejections(t *testing.T) {
	as := asSigner(t)
	agent := agentSigner(t)
	other := genSigner(t, keys.AlgEd25519, asKID)
	p256 := genSigner(t, keys.AlgECDSAP256, asKID)
	agentServer := genSigner(t, keys.AlgEd25519, "agent-server-1")
	resourceKey := genSigner(t, keys.AlgEd25519, "resource-key-1")

	hdr := obj{{"alg", q("EdDSA")}, {"kid", q(asKID)}, {"typ", q("auth+jwt")}}
	jwk := jwkJSON(t, agent.Public)
	pl := obj{
		{"iss", q(asID)}, {"aud", q(resourceID)}, {"jti", q("00000000-0000-4000-8000-000000000009")},
		{"cnf", `{"jwk":` + jwk + `}`}, {"iat", num(nowUnix - 60)}, {"exp", num(nowUnix + 3540)},
		{"agent", q(agentID)}, {"scope", q("data.read")},
	}
	good := craft(t, as, hdr.String(), pl.String())
	parts := strings.Split(good, ".")

	priv, _ := agent.MarshalPrivateJWK()
	hmacTok := func(secret []byte) func() string {
		return func() string {
			in := enc([]byte(hdr.set("alg", q("HS256")).String())) + "." + enc([]byte(pl.String()))
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(in))
			return in + "." + enc(m.Sum(nil))
		}
	}
	asX := as.Public.Members()["x"].(string)

	// Agent and resource tokens for cross-type confusion.
	agentTok := craft(t, agentServer, `{"alg":"EdDSA","kid":"agent-server-1","typ":"agent+jwt"}`,
		obj{{"iss", q(agentID)}, {"sub", q("delegate-1")}, {"jti", q("a1")}, {"cnf", `{"jwk":` + jwk + `}`},
			{"iat", num(nowUnix)}, {"exp", num(nowUnix + 3600)}, {"aud", q(resourceID)}, {"agent", q(agentID)}, {"scope", q("data.read")}}.String())
	resourceTok := craft(t, resourceKey, `{"alg":"EdDSA","kid":"resource-key-1","typ":"resource+jwt"}`,
		obj{{"iss", q(resourceID)}, {"aud", q(resourceID)}, {"jti", q("r1")}, {"agent", q(agentID)},
			{"agent_jkt", q(agent.Public.Thumbprint)}, {"scope", q("data.read")}, {"sub", q("x")},
			{"iat", num(nowUnix)}, {"exp", num(nowUnix + 300)}, {"cnf", `{"jwk":` + jwk + `}`}}.String())
	anyKey := func(k *keys.PublicKey) KeyResolver {
		return func(context.Context, string, string) (*keys.PublicKey, error) { return k, nil }
	}

	// A payload padded to an exact total token length.
	padTo := func(n int) func() string {
		return func() string {
			for pad := 0; ; pad++ {
				tok := craft(t, as, hdr.String(), pl.add("pad", q(strings.Repeat("a", pad))).String())
				if len(tok) >= n {
					return tok
				}
			}
		}
	}

	cases := []rejCase{
		{name: "baseline passes", code: ""},

		// E1: alg.
		{name: "E1 alg none", hdr: hdr.set("alg", q("none")), code: CodeInvalidToken},
		{name: "E1 alg None", hdr: hdr.set("alg", q("None")), code: CodeInvalidToken},
		{name: "E1 alg NONE", hdr: hdr.set("alg", q("NONE")), code: CodeInvalidToken},
		{name: "E1 alg empty", hdr: hdr.set("alg", q("")), code: CodeInvalidToken},
		{name: "E1 alg missing", hdr: hdr.del("alg"), code: CodeInvalidToken},
		{name: "E1 alg null", hdr: hdr.set("alg", "null"), code: CodeInvalidToken},
		{name: "E1 alg number", hdr: hdr.set("alg", "1"), code: CodeInvalidToken},
		{name: "E1 alg eddsa lowercase", hdr: hdr.set("alg", q("eddsa")), code: CodeInvalidToken},
		{name: "E1 alg Ed25519 (RFC 9864)", hdr: hdr.set("alg", q("Ed25519")), code: CodeInvalidToken},
		{name: "E1 alg none with empty signature", build: func() string {
			return enc([]byte(hdr.set("alg", q("none")).String())) + "." + parts[1] + "."
		}, code: CodeInvalidToken},
		{name: "E1 HS256 keyed with the AS public key bytes", build: hmacTok([]byte(as.Public.Key.(ed25519.PublicKey))), code: CodeInvalidToken},
		{name: "E1 HS256 keyed with the AS x string", build: hmacTok([]byte(asX)), code: CodeInvalidToken},
		{name: "E1 ES256 header on an EdDSA-signed token", hdr: hdr.set("alg", q("ES256")), code: CodeInvalidToken, resolves: true},
		{name: "E1 EdDSA header, resolver gives a P-256 key", resolver: anyKey(p256.Public), code: CodeInvalidToken, resolves: true},
		{name: "E1 ES256 token, resolver gives an Ed25519 key", build: func() string {
			return craft(t, p256, hdr.set("alg", q("ES256")).String(), pl.String())
		}, code: CodeInvalidToken, resolves: true},
		{name: "E1 ES256 token signed by P-256 passes", build: func() string {
			return craft(t, p256, hdr.set("alg", q("ES256")).String(), pl.String())
		}, resolver: anyKey(p256.Public), code: "", resolves: true},

		// E2: typ.
		{name: "E2 typ missing", hdr: hdr.del("typ"), code: CodeInvalidToken},
		{name: "E2 typ JWT", hdr: hdr.set("typ", q("JWT")), code: CodeInvalidToken},
		{name: "E2 typ agent+jwt", hdr: hdr.set("typ", q("agent+jwt")), code: CodeInvalidToken},
		{name: "E2 typ resource+jwt", hdr: hdr.set("typ", q("resource+jwt")), code: CodeInvalidToken},
		{name: "E2 typ at+jwt", hdr: hdr.set("typ", q("at+jwt")), code: CodeInvalidToken},
		{name: "E2 typ aa-auth+jwt", hdr: hdr.set("typ", q("aa-auth+jwt")), code: CodeInvalidToken},
		{name: "E2 typ application/jwt", hdr: hdr.set("typ", q("application/jwt")), code: CodeInvalidToken},
		{name: "E2 typ with trailing space", hdr: hdr.set("typ", q("auth+jwt ")), code: CodeInvalidToken},
		{name: "E2 typ application/ alone", hdr: hdr.set("typ", q("application/")), code: CodeInvalidToken},
		{name: "E2 typ xapplication/auth+jwt", hdr: hdr.set("typ", q("xapplication/auth+jwt")), code: CodeInvalidToken},
		{name: "E2 typ number", hdr: hdr.set("typ", "1"), code: CodeInvalidToken},
		{name: "E2 typ AUTH+JWT passes", hdr: hdr.set("typ", q("AUTH+JWT"))},
		{name: "E2 typ application/auth+jwt passes", hdr: hdr.set("typ", q("application/auth+jwt"))},
		{name: "E2 typ Application/Auth+Jwt passes", hdr: hdr.set("typ", q("Application/Auth+Jwt"))},

		// E3: crit.
		{name: "E3 crit unknown", hdr: hdr.add("crit", `["x-unknown"]`).add("x-unknown", "1"), code: CodeInvalidToken},
		{name: "E3 crit empty", hdr: hdr.add("crit", `[]`), code: CodeInvalidToken},
		{name: "E3 crit exp", hdr: hdr.add("crit", `["exp"]`).add("exp", "1"), code: CodeInvalidToken},
		{name: "E3 b64 false", hdr: hdr.add("b64", "false"), code: CodeInvalidToken},

		// E4: serialization.
		{name: "E4 JSON flattened serialization", build: func() string {
			return fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, parts[0], parts[1], parts[2])
		}, code: CodeInvalidToken},
		{name: "E4 JSON general serialization", build: func() string {
			return fmt.Sprintf(`{"payload":%q,"signatures":[{"protected":%q,"signature":%q}]}`, parts[1], parts[0], parts[2])
		}, code: CodeInvalidToken},
		{name: "E4 2 segments", build: func() string { return parts[0] + "." + parts[1] }, code: CodeInvalidToken},
		{name: "E4 4 segments", mutate: func(s string) string { return s + "." + parts[2] }, code: CodeInvalidToken},
		{name: "E4 4 segments, empty last", mutate: func(s string) string { return s + "." }, code: CodeInvalidToken},
		{name: "E4 5 segments (JWE shape)", build: func() string {
			return parts[0] + "." + parts[1] + "." + parts[1] + "." + parts[1] + "." + parts[2]
		}, code: CodeInvalidToken},
		{name: "E4 empty header segment", build: func() string { return "." + parts[1] + "." + parts[2] }, code: CodeInvalidToken},
		{name: "E4 empty payload segment", build: func() string { return parts[0] + ".." + parts[2] }, code: CodeInvalidToken},
		{name: "E4 empty signature segment", build: func() string { return parts[0] + "." + parts[1] + "." }, code: CodeInvalidToken},
		{name: "E4 padding on signature", mutate: func(s string) string { return s + "==" }, code: CodeInvalidToken},
		{name: "E4 single = on signature", mutate: func(s string) string { return s + "=" }, code: CodeInvalidToken},
		{name: "E4 padded header segment", build: func() string {
			h := base64.URLEncoding.EncodeToString([]byte(hdr.String()))
			if !strings.HasSuffix(h, "=") {
				h = base64.URLEncoding.EncodeToString([]byte(hdr.String() + " "))
			}
			return craftRaw(t, as, h, parts[1])
		}, code: CodeInvalidToken},
		{name: "E4 leading space", mutate: func(s string) string { return " " + s }, code: CodeInvalidToken},
		{name: "E4 trailing space", mutate: func(s string) string { return s + " " }, code: CodeInvalidToken},
		{name: "E4 trailing newline", mutate: func(s string) string { return s + "\n" }, code: CodeInvalidToken},
		{name: "E4 tab between segments", mutate: func(s string) string { return strings.Replace(s, ".", ".\t", 1) }, code: CodeInvalidToken},
		{name: "E4 standard base64 alphabet", mutate: func(s string) string {
			out := strings.NewReplacer("-", "+", "_", "/").Replace(s)
			if out == s {
				t.Fatal("token has no - or _ to swap")
			}
			return out
		}, code: CodeInvalidToken},
		{name: "E4 non-canonical trailing bits in signature", mutate: func(s string) string {
			const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alpha, s[len(s)-1])
			return s[:len(s)-1] + string(alpha[last^1])
		}, code: CodeInvalidToken},
		{name: "E4 non-UTF-8 in payload", pl: pl.set("scope", "\"\xff\xfe\""), code: CodeInvalidToken},
		{name: "E4 non-UTF-8 in header", hdr: hdr.add("x", "\"\xc3\x28\""), code: CodeInvalidToken},
		{name: "E4 nested JWT (cty)", hdr: hdr.add("cty", q("JWT")), code: CodeInvalidToken},
		{name: "E4 zip", hdr: hdr.add("zip", q("DEF")), code: CodeInvalidToken},
		{name: "E4 enc (JWE header)", hdr: hdr.add("enc", q("A128GCM")), code: CodeInvalidToken},
		{name: "E4 payload is an array", build: func() string { return craft(t, as, hdr.String(), `["a"]`) }, code: CodeInvalidToken},
		{name: "E4 payload not JSON", build: func() string { return craft(t, as, hdr.String(), `foo`) }, code: CodeInvalidToken},
		{name: "E4 header not JSON", build: func() string { return craft(t, as, `eyJ`, pl.String()) }, code: CodeInvalidToken},
		{name: "E4 trailing data after payload object", build: func() string { return craft(t, as, hdr.String(), pl.String()+`{}`) }, code: CodeInvalidToken},
		{name: "E4 payload nested too deeply", pl: pl.add("deep", strings.Repeat("[", 40)+strings.Repeat("]", 40)), code: CodeInvalidToken},
		{name: "E4 token of exactly 8 KiB passes", build: padTo(MaxTokenBytes), mutate: func(s string) string {
			if len(s) != MaxTokenBytes {
				t.Fatalf("padTo built %d bytes", len(s))
			}
			return s
		}},
		{name: "E4 token over 8 KiB", build: padTo(MaxTokenBytes + 1), code: CodeInvalidToken},
		{name: "E4 signature 63 bytes", build: func() string { return parts[0] + "." + parts[1] + "." + enc(make([]byte, 63)) }, code: CodeInvalidToken},
		{name: "E4 signature 65 bytes", build: func() string { return parts[0] + "." + parts[1] + "." + enc(make([]byte, 65)) }, code: CodeInvalidToken},

		// E5: duplicate members.
		{name: "E5 duplicate alg (EdDSA, none)", hdr: hdr.add("alg", q("none")), code: CodeInvalidToken},
		{name: "E5 duplicate alg (none, EdDSA)", hdr: obj{{"alg", q("none")}}.add("alg", q("EdDSA")).add("kid", q(asKID)).add("typ", q("auth+jwt")), code: CodeInvalidToken},
		{name: "E5 duplicate alg, same value", hdr: hdr.add("alg", q("EdDSA")), code: CodeInvalidToken},
		{name: "E5 duplicate kid", hdr: hdr.add("kid", q("other")), code: CodeInvalidToken},
		{name: "E5 duplicate typ", hdr: hdr.add("typ", q("auth+jwt")), code: CodeInvalidToken},
		{name: "E5 duplicate aud", pl: pl.add("aud", q("https://evil.example")), code: CodeInvalidToken},
		{name: "E5 duplicate exp", pl: pl.add("exp", num(nowUnix-10)), code: CodeInvalidToken},
		{name: "E5 duplicate cnf", pl: pl.add("cnf", `{"jwk":`+jwkJSON(t, other.Public)+`}`), code: CodeInvalidToken},
		{name: "E5 duplicate member inside cnf.jwk", pl: pl.set("cnf", `{"jwk":`+strings.TrimSuffix(jwk, "}")+`,"x":"`+asX+`"}}`), code: CodeInvalidToken},
		{name: "E5 escaped duplicate written by hand", build: func() string {
			return craft(t, as, hdr.String(), strings.TrimSuffix(pl.String(), "}")+`,"\u0065xp":1}`)
		}, code: CodeInvalidToken},
		{name: "E5 case variant EXP is not exp (exp missing)", pl: pl.del("exp").add("EXP", num(nowUnix+3540)), code: CodeInvalidToken},
		{name: "E5 case variant ALG is not alg (alg missing)", hdr: hdr.del("alg").add("ALG", q("EdDSA")), code: CodeInvalidToken},
		{name: "E5 extra ALG none beside alg is ignored", hdr: hdr.add("ALG", q("none"))},
		{name: "E5 extra EXP beside exp is ignored", pl: pl.add("EXP", "1")},

		// E6: key-carrying header parameters.
		{name: "E6 jku", hdr: hdr.add("jku", q("https://evil.example/jwks")), code: CodeInvalidToken},
		{name: "E6 x5u", hdr: hdr.add("x5u", q("https://evil.example/cert")), code: CodeInvalidToken},
		{name: "E6 jwk", hdr: hdr.add("jwk", jwkJSON(t, other.Public)), code: CodeInvalidToken},
		{name: "E6 x5c", hdr: hdr.add("x5c", `["MIIB"]`), code: CodeInvalidToken},

		// E7: kid.
		{name: "E7 kid missing", hdr: hdr.del("kid"), code: CodeInvalidToken},
		{name: "E7 kid empty", hdr: hdr.set("kid", q("")), code: CodeInvalidToken},
		{name: "E7 kid number", hdr: hdr.set("kid", "7"), code: CodeInvalidToken},
		{name: "E7 kid unknown", hdr: hdr.set("kid", q("../../etc/passwd")), code: CodeUnknownKey, resolves: true},
		{name: "E7 kid 10 KB", hdr: hdr.set("kid", q(strings.Repeat("k", 10000))), code: CodeInvalidToken},

		// E8: time.
		{name: "E8 exp missing", pl: pl.del("exp"), code: CodeInvalidToken},
		{name: "E8 exp past", pl: pl.set("exp", num(nowUnix-1)), code: CodeExpired},
		{name: "E8 exp now", pl: pl.set("exp", num(nowUnix)), code: CodeExpired},
		{name: "E8 exp now+1 passes", pl: pl.set("exp", num(nowUnix+1))},
		{name: "E8 exp float", pl: pl.set("exp", num(nowUnix+3540)+".0"), code: CodeInvalidToken},
		{name: "E8 exp exponent", pl: pl.set("exp", "1.7749245e9"), code: CodeInvalidToken},
		{name: "E8 exp string", pl: pl.set("exp", q(num(nowUnix+3540))), code: CodeInvalidToken},
		{name: "E8 exp negative", pl: pl.set("exp", "-1"), code: CodeInvalidToken},
		{name: "E8 exp 1e20", pl: pl.set("exp", "1e20"), code: CodeInvalidToken},
		{name: "E8 exp 100000000000000000000", pl: pl.set("exp", "100000000000000000000"), code: CodeInvalidToken},
		{name: "E8 exp 2^53+1", pl: pl.set("exp", "9007199254740993"), code: CodeInvalidToken},
		{name: "E8 exp null", pl: pl.set("exp", "null"), code: CodeInvalidToken},
		{name: "E8 exp true", pl: pl.set("exp", "true"), code: CodeInvalidToken},
		{name: "E8 exp 0", pl: pl.set("exp", "0"), code: CodeInvalidToken},
		{name: "E8 exp before iat", pl: pl.set("iat", num(nowUnix+30)).set("exp", num(nowUnix+20)), code: CodeInvalidToken},
		{name: "E8 lifetime over MaxLifetime", pl: pl.set("exp", num(nowUnix-60+3601)), code: CodeInvalidToken},
		{name: "E8 lifetime equal to MaxLifetime passes", pl: pl.set("exp", num(nowUnix-60+3600))},
		{name: "E8 exp - now over MaxLifetime (iat in the future within skew)", pl: pl.set("iat", num(nowUnix+60)).set("exp", num(nowUnix+60+3600)), code: CodeInvalidToken},
		{name: "E8 exp - now equal to MaxLifetime passes", pl: pl.set("iat", num(nowUnix)).set("exp", num(nowUnix+3600))},
		{name: "E8 far-future exp with no MaxLifetime passes", pl: pl.set("exp", num(nowUnix+100*86400)), opts: func(o *Options) { o.MaxLifetime = 0 }},
		{name: "E8 iat missing", pl: pl.del("iat"), code: CodeInvalidToken},
		{name: "E8 iat float", pl: pl.set("iat", num(nowUnix)+".5"), code: CodeInvalidToken},
		{name: "E8 iat string", pl: pl.set("iat", q(num(nowUnix))), code: CodeInvalidToken},
		{name: "E8 iat in the future beyond skew", pl: pl.set("iat", num(nowUnix+61)), code: CodeInvalidToken},
		{name: "E8 iat at the skew boundary passes", pl: pl.set("iat", num(nowUnix+60))},
		{name: "E8 iat in the future, custom skew 5s", pl: pl.set("iat", num(nowUnix+6)), opts: func(o *Options) { o.Skew = 5 * time.Second }, code: CodeInvalidToken},
		{name: "E8 nbf in the future", pl: pl.add("nbf", num(nowUnix+120)), code: CodeInvalidToken},
		{name: "E8 nbf at the skew boundary passes", pl: pl.add("nbf", num(nowUnix+60))},
		{name: "E8 nbf in the past passes", pl: pl.add("nbf", num(nowUnix-10))},
		{name: "E8 nbf string", pl: pl.add("nbf", q("0")), code: CodeInvalidToken},
		{name: "E8 expired within ExpiredGrace passes", pl: pl.set("exp", num(nowUnix-10)), opts: func(o *Options) { o.ExpiredGrace = time.Minute }},
		{name: "E8 expired beyond ExpiredGrace", pl: pl.set("exp", num(nowUnix-61)), opts: func(o *Options) { o.ExpiredGrace = time.Minute }, code: CodeExpired},

		// E9: aud.
		{name: "E9 aud missing", pl: pl.del("aud"), code: CodeInvalidAudience},
		{name: "E9 aud wrong", pl: pl.set("aud", q("https://other-resource.example")), code: CodeInvalidAudience},
		{name: "E9 aud array with only ours", pl: pl.set("aud", `["`+resourceID+`"]`), code: CodeInvalidAudience},
		{name: "E9 aud array with ours and others", pl: pl.set("aud", `["`+resourceID+`","https://b.example"]`), code: CodeInvalidAudience},
		{name: "E9 aud trailing slash", pl: pl.set("aud", q(resourceID+"/")), code: CodeInvalidAudience},
		{name: "E9 aud case variant", pl: pl.set("aud", q("https://Resource.example")), code: CodeInvalidAudience},
		{name: "E9 aud empty string", pl: pl.set("aud", q("")), code: CodeInvalidAudience},
		{name: "E9 aud number", pl: pl.set("aud", "1"), code: CodeInvalidToken},
		{name: "E9 aud empty array", pl: pl.set("aud", "[]"), code: CodeInvalidToken},
		{name: "E9 aud array of numbers", pl: pl.set("aud", "[1]"), code: CodeInvalidToken},
		{name: "E9 verifier without Audience", opts: func(o *Options) { o.Audience = "" }, code: CodeInvalidAudience},

		// E10: iss.
		{name: "E10 iss not on allow-list", pl: pl.set("iss", q("https://evil.example")), code: CodeUntrustedIssuer},
		{name: "E10 iss trailing slash", pl: pl.set("iss", q(asID+"/")), code: CodeUntrustedIssuer},
		{name: "E10 iss uppercase", pl: pl.set("iss", q("https://AUTH.example")), code: CodeUntrustedIssuer},
		{name: "E10 iss with port", pl: pl.set("iss", q("https://auth.example:443")), code: CodeUntrustedIssuer},
		{name: "E10 iss with path", pl: pl.set("iss", q(asID+"/x")), code: CodeUntrustedIssuer},
		{name: "E10 iss http", pl: pl.set("iss", q("http://auth.example")), code: CodeUntrustedIssuer},
		{name: "E10 iss missing", pl: pl.del("iss"), code: CodeInvalidToken},
		{name: "E10 iss number", pl: pl.set("iss", "1"), code: CodeInvalidToken},
		{name: "E10 no allow-list: unknown iss reaches the resolver", pl: pl.set("iss", q("https://evil.example")),
			opts: func(o *Options) { o.Issuers = nil }, code: CodeUnknownKey, resolves: true},

		// E11: cnf.
		{name: "E11 cnf missing", pl: pl.del("cnf"), code: CodeInvalidToken},
		{name: "E11 cnf empty", pl: pl.set("cnf", "{}"), code: CodeInvalidToken},
		{name: "E11 cnf.jkt only", pl: pl.set("cnf", `{"jkt":"`+agent.Public.Thumbprint+`"}`), code: CodeInvalidToken},
		{name: "E11 cnf.jwk with d", pl: pl.set("cnf", `{"jwk":`+string(priv)+`}`), code: CodeInvalidToken},
		{name: "E11 cnf.jwk RSA", pl: pl.set("cnf", `{"jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`), code: CodeInvalidToken},
		{name: "E11 cnf.jwk oct", pl: pl.set("cnf", `{"jwk":{"kty":"oct","k":"AAAA"}}`), code: CodeInvalidToken},
		{name: "E11 cnf.jwk X25519", pl: pl.set("cnf", `{"jwk":{"kty":"OKP","crv":"X25519","x":"`+asX+`"}}`), code: CodeInvalidToken},
		{name: "E11 cnf.jwk use enc", pl: pl.set("cnf", `{"jwk":{"kty":"OKP","crv":"Ed25519","x":"`+asX+`","use":"enc"}}`), code: CodeInvalidToken},
		{name: "E11 cnf.jwk string", pl: pl.set("cnf", `{"jwk":"x"}`), code: CodeInvalidToken},
		{name: "E11 cnf string", pl: pl.set("cnf", q("x")), code: CodeInvalidToken},
		{name: "E11 cnf.jwk P-256 passes", pl: pl.set("cnf", `{"jwk":`+jwkJSON(t, p256.Public)+`}`)},

		// E12: required claims.
		{name: "E12 jti missing", pl: pl.del("jti"), code: CodeInvalidToken},
		{name: "E12 agent missing", pl: pl.del("agent"), code: CodeInvalidToken},
		{name: "E12 agent number", pl: pl.set("agent", "1"), code: CodeInvalidToken},
		{name: "E12 sub and scope both absent", pl: pl.del("scope"), code: CodeInvalidToken},
		{name: "E12 sub only passes", pl: pl.del("scope").add("sub", q("testuser"))},
		{name: "E12 sub number", pl: pl.add("sub", "1"), code: CodeInvalidToken},

		// Key and signature stage.
		{name: "resolver error", resolver: func(context.Context, string, string) (*keys.PublicKey, error) {
			return nil, errors.New("fetch failed")
		}, code: CodeUnknownKey, resolves: true},
		{name: "resolver returns nil key", resolver: anyKey(nil), code: CodeUnknownKey, resolves: true},
		{name: "resolver returns another Ed25519 key", resolver: anyKey(other.Public), code: CodeInvalidToken, resolves: true},
		{name: "resolver key kid differs from header kid", resolver: anyKey(agent.Public), code: CodeInvalidToken, resolves: true},
		{name: "signed by another key", build: func() string { return craft(t, other, hdr.String(), pl.String()) }, code: CodeInvalidToken, resolves: true},
		{name: "signature zeroed", build: func() string { return parts[0] + "." + parts[1] + "." + enc(make([]byte, 64)) }, code: CodeInvalidToken, resolves: true},
		{name: "payload swapped from another token", build: func() string {
			other := craft(t, as, hdr.String(), pl.set("scope", q("admin")).String())
			return parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2]
		}, code: CodeInvalidToken, resolves: true},

		// E13: cross-type confusion.
		{name: "E13 agent token as auth token", build: func() string { return agentTok }, code: CodeInvalidToken},
		{name: "E13 resource token as auth token", build: func() string { return resourceTok }, code: CodeInvalidToken},
		{name: "E13 auth token for another resource", opts: func(o *Options) { o.Audience = "https://resource-b.example" }, code: CodeInvalidAudience},
		{name: "E13 auth token as resource token", verify: VerifyResourceToken, code: CodeInvalidToken},
		{name: "E13 auth token as agent token", verify: VerifyAgentToken, code: CodeInvalidToken},

		// Agent token aud policy (optional; string or array containing ours).
		{name: "agent token: aud string ours passes", build: func() string { return agentTok }, verify: VerifyAgentToken,
			resolver: anyKey(agentServer.Public), opts: func(o *Options) { o.Issuers = []string{agentID} }},
		{name: "agent token: aud array containing ours passes", build: func() string {
			return craftAgent(t, agentServer, jwk, `["https://x.example","`+resourceID+`"]`)
		}, verify: VerifyAgentToken, resolver: anyKey(agentServer.Public), opts: func(o *Options) { o.Issuers = []string{agentID} }},
		{name: "agent token: no aud passes", build: func() string { return craftAgent(t, agentServer, jwk, "") },
			verify: VerifyAgentToken, resolver: anyKey(agentServer.Public), opts: func(o *Options) { o.Issuers = []string{agentID} }},
		{name: "agent token: aud array without ours", build: func() string {
			return craftAgent(t, agentServer, jwk, `["https://x.example"]`)
		}, verify: VerifyAgentToken, opts: func(o *Options) { o.Issuers = []string{agentID} }, code: CodeInvalidAudience},
		{name: "agent token: aud present, verifier has no Audience", build: func() string { return agentTok },
			verify: VerifyAgentToken, opts: func(o *Options) { o.Audience = ""; o.Issuers = []string{agentID} }, code: CodeInvalidAudience},
		{name: "agent token: sub missing", build: func() string {
			return craft(t, agentServer, `{"alg":"EdDSA","kid":"agent-server-1","typ":"agent+jwt"}`,
				obj{{"iss", q(agentID)}, {"jti", q("a1")}, {"cnf", `{"jwk":` + jwk + `}`}, {"iat", num(nowUnix)}, {"exp", num(nowUnix + 60)}}.String())
		}, verify: VerifyAgentToken, opts: func(o *Options) { o.Issuers = []string{agentID} }, code: CodeInvalidToken},
		{name: "agent token: cnf missing", build: func() string {
			return craft(t, agentServer, `{"alg":"EdDSA","kid":"agent-server-1","typ":"agent+jwt"}`,
				obj{{"iss", q(agentID)}, {"sub", q("d")}, {"jti", q("a1")}, {"iat", num(nowUnix)}, {"exp", num(nowUnix + 60)}}.String())
		}, verify: VerifyAgentToken, opts: func(o *Options) { o.Issuers = []string{agentID} }, code: CodeInvalidToken},
		{name: "resource token: agent_jkt missing", build: func() string {
			return craft(t, resourceKey, `{"alg":"EdDSA","kid":"resource-key-1","typ":"resource+jwt"}`,
				obj{{"iss", q(resourceID)}, {"aud", q(resourceID)}, {"jti", q("r1")}, {"agent", q(agentID)},
					{"iat", num(nowUnix)}, {"exp", num(nowUnix + 300)}}.String())
		}, verify: VerifyResourceToken, opts: func(o *Options) { o.Issuers = []string{resourceID} }, code: CodeInvalidToken},
		{name: "resource token passes its own verifier", build: func() string { return resourceTok }, verify: VerifyResourceToken,
			resolver: anyKey(resourceKey.Public), opts: func(o *Options) { o.Issuers = []string{resourceID} }},

		// Verifier misconfiguration fails closed.
		{name: "Options.Now not set", opts: func(o *Options) { o.Now = time.Time{} }, code: CodeInvalidToken},
		{name: "nil resolver", resolver: KeyResolver(nil), code: CodeUnknownKey},
	}

	counts := map[string]int{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var raw string
			switch {
			case tc.build != nil:
				raw = tc.build()
			default:
				h, p := hdr, pl
				if tc.hdr != nil {
					h = tc.hdr
				}
				if tc.pl != nil {
					p = tc.pl
				}
				raw = craft(t, as, h.String(), p.String())
			}
			if tc.mutate != nil {
				raw = tc.mutate(raw)
			}
			o := Options{Now: testNow, Audience: resourceID, Issuers: []string{asID}, MaxLifetime: time.Hour}
			if tc.opts != nil {
				tc.opts(&o)
			}
			r := &resolver{iss: asID, key: as.Public}
			calls := 0
			res := KeyResolver(func(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
				calls++
				if tc.resolver != nil {
					return tc.resolver(ctx, iss, kid)
				}
				return r.resolve(ctx, iss, kid)
			})
			if strings.HasPrefix(tc.name, "nil resolver") {
				res = nil
			}
			verify := tc.verify
			if verify == nil {
				verify = VerifyAuthToken
			}
			tok, err := verify(context.Background(), raw, o, res)
			t.Logf("result: %v", err)
			if got := codeOf(err); got != tc.code {
				t.Fatalf("got %q (%v), want %q", got, err, tc.code)
			}
			if err == nil && !tok.Verified() {
				t.Fatal("token not marked verified")
			}
			wantCalls := 0
			if tc.code == "" || tc.resolves {
				wantCalls = 1
			}
			if res != nil && calls != wantCalls {
				t.Fatalf("resolver called %d times, want %d", calls, wantCalls)
			}
			if tc.code == "" {
				counts["pass"]++
			} else {
				counts[tc.code]++
			}
		})
	}
	t.Logf("rejection table: %d rows, outcomes %v", len(cases), counts)
}

func craftRaw(t testing.TB, s *keys.Signer, hdrSeg, plSeg string) string {
	t.Helper()
	in := hdrSeg + "." + plSeg
	sig, err := s.Sign([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc(sig)
}

func craftAgent(t testing.TB, s *keys.Signer, jwk, aud string) string {
	p := obj{{"iss", q(agentID)}, {"sub", q("delegate-1")}, {"jti", q("a2")}, {"cnf", `{"jwk":` + jwk + `}`},
		{"iat", num(nowUnix)}, {"exp", num(nowUnix + 3600)}}
	if aud != "" {
		p = p.add("aud", aud)
	}
	return craft(t, s, `{"alg":"EdDSA","kid":"`+s.Public.KID+`","typ":"agent+jwt"}`, p.String())
}
