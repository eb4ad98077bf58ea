package httpsig

import (
	"crypto/ed25519"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Appendix A of PROTOCOL.md: fixed vectors signed with the RFC 8032 test-1 key.
const vectorJWT = "eyJhbGciOiJFZERTQSIsImtpZCI6ImF1dGgta2V5LTEiLCJ0eXAiOiJhdXRoK2p3dCJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZSIsImF1ZCI6Imh0dHBzOi8vcmVzb3VyY2UuZXhhbXBsZSIsImp0aSI6IjAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMSIsImNuZiI6eyJqd2siOnsia3R5IjoiT0tQIiwiY3J2IjoiRWQyNTUxOSIsIngiOiIxMXFZQVlLeENyZlZTXzdUeVdRSE9nN2hjdlBhcGlNbHJ3SWFhUGNIVVJvIiwia2lkIjoia2V5LTEifX0sImlhdCI6MTc3NDkyMDkwMCwiZXhwIjoxNzc0OTI0NTAwLCJhZ2VudCI6Imh0dHBzOi8vYWdlbnQuZXhhbXBsZSIsInNjb3BlIjoiZGF0YS5yZWFkIGRhdGEud3JpdGUifQ.7yD6HzKeUy4e8lWnS8sP1uC85KqpvhkJSIW1hmFUN7zPcoLOPqrYG_TpxxQZ6cAOOtL0hNtLD5g7rNd2aWAFAw"

type vector struct {
	name, sigKey, sig string
}

var appendixA = []vector{
	{"A1 legacy hwk", `sig=(scheme=hwk kty="OKP" crv="Ed25519" x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")`, "GvtqxfdQ_AQ_aWPpyy-ffkpimeAjrvdeRcuNoM6dUlNLUYhqHeM0YNCme_o9VCUO_5bftI8cItFErp1AUjCbAg"},
	{"A2 draft hwk", `sig=hwk;kty="OKP";crv="Ed25519";x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"`, "aVgqz7menL43E3zAdiin2GdmAokwrHuqVPEvPDBC4Uuo-Pe6k5AOWL4qoZwyyv7L7xP1lQYiXn0RsWieCG6BCg"},
	{"A3 legacy jwks_uri", `sig=(scheme=jwks_uri id="https://agent.example" kid="key-1")`, "75FqU2Eu6rsAJpDeZKYrCLKsx01L46RasWK1B4Vh-zMny9Fz6zpV1sicsxHp5TSnLzkRvnNAFwTZrvnj8WqwDg"},
	{"A4 draft jwks_uri", `sig=jwks_uri;id="https://agent.example";well-known="aauth-agent";kid="key-1"`, "9Opm2nXp_4lpNx45VzTR2YKfwJp-8uYocvYUQHlAZwOsFWpDBjVjT_7qPcl-uQuZO99zVH_-F75btjv-zaxWAA"},
	{"A5 legacy jwt", `sig=(scheme=jwt jwt="` + vectorJWT + `")`, "SVnBxIPIe9HGAm4kaJmhNrTXEFa4Rmai7jnWd7xoWKv-xE4kcaDMwbjoPdbcrRYf3OVesQG9bUKRMe6ph2k7DQ"},
	{"A6 draft jwt", `sig=jwt;jwt="` + vectorJWT + `"`, "kRqDsz9M1W7LKAGdyjoW17HlwjPv3ZVQCfxLrHG42EHABMoUvhvv9NauH6ek4TpkenN2K-vTEm-hkBTmYPGJDQ"},
}

func agentKey(t testing.TB) *keys.Signer {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	s, err := keys.NewSigner(ed25519.NewKeyFromSeed(seed), "key-1")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const vectorCreated = 1774920963

func vectorTarget(h http.Header) Target {
	return Target{Method: "GET", Authority: "resource.example", Path: "/data", Header: h}
}

func TestAppendixA(t *testing.T) {
	pub := agentKey(t).Public
	now := time.Unix(vectorCreated, 0)
	for _, v := range appendixA {
		t.Run(v.name, func(t *testing.T) {
			h := http.Header{}
			h.Set(HeaderSignatureInput, `sig=("@method" "@authority" "@path" "signature-key");created=1774920963`)
			h.Set(HeaderSignature, "sig=:"+v.sig+":")
			h.Set(HeaderSignatureKey, v.sigKey)
			sig, err := Parse(h, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if err := (Policy{}).Check(sig, vectorTarget(h), now); err != nil {
				t.Fatal(err)
			}
			base, err := Base(sig, vectorTarget(h))
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(sig, base, pub); err != nil {
				t.Fatalf("verify: %v\nbase:\n%s", err, base)
			}
			// One bit changed in the base or in the signature must fail.
			flipped := append([]byte(nil), base...)
			flipped[5] ^= 1
			if Verify(sig, flipped, pub) == nil {
				t.Fatal("one-bit change in the base verified")
			}
			sig.Value[10] ^= 1
			if Verify(sig, base, pub) == nil {
				t.Fatal("one-bit change in the signature verified")
			}
			// The RFC 8941 standard-base64 spelling of the same signature verifies too.
			raw, _ := DecodeBase64(v.sig)
			h.Set(HeaderSignature, "sig=:"+stdB64(raw)+":")
			sig2, err := Parse(h, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(sig2, base, pub); err != nil {
				t.Fatalf("standard base64 form: %v", err)
			}
		})
	}
}

func TestAppendixA7ExtendedCoverage(t *testing.T) {
	pub := agentKey(t).Public
	body := []byte(`{"resource_token":"eyJ..."}`)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Digest", "sha-256=:HrdJw2m9s2oQ/UpMQnam28rpcoCeOW41JB8LdPS4iFo=:")
	h.Set(HeaderSignatureKey, `sig=jwks_uri;id="https://agent.example";well-known="aauth-agent";kid="key-1"`)
	h.Set(HeaderSignatureInput, `sig=("@method" "@authority" "@path" "@query" "content-type" "content-digest" "signature-key");created=1774920963`)
	h.Set(HeaderSignature, "sig=:AtcGtuR3G3KUeclkHIu_RFDLc2mB4Fl5CHtJ4YVR75icoUSEP6WrJ2RsMS9wPHWr-HwMA6YsmcpmUWjfMnUFCA:")
	target := Target{Method: "POST", Authority: "auth.example", Path: "/token", Query: "mode=x", HasQuery: true, Header: h}
	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy{Extra: []string{"content-type", "content-digest"}}
	if err := pol.Check(sig, target, time.Unix(vectorCreated, 0)); err != nil {
		t.Fatal(err)
	}
	base, err := Base(sig, target)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		`"@method": POST`,
		`"@authority": auth.example`,
		`"@path": /token`,
		`"@query": ?mode=x`,
		`"content-type": application/json`,
		`"content-digest": sha-256=:HrdJw2m9s2oQ/UpMQnam28rpcoCeOW41JB8LdPS4iFo=:`,
		`"signature-key": sig=jwks_uri;id="https://agent.example";well-known="aauth-agent";kid="key-1"`,
		`"@signature-params": ("@method" "@authority" "@path" "@query" "content-type" "content-digest" "signature-key");created=1774920963`,
	}, "\n")
	if string(base) != want {
		t.Fatalf("base mismatch:\n%s\nwant:\n%s", base, want)
	}
	if err := Verify(sig, base, pub); err != nil {
		t.Fatal(err)
	}
	if err := CheckContentDigest(h.Get("Content-Digest"), body); err != nil {
		t.Fatalf("digest: %v", err)
	}
	if err := CheckContentDigest(h.Get("Content-Digest"), append(body, ' ')); err == nil {
		t.Fatal("changed body passed the digest check")
	}
	// The query is part of the base: another query fails.
	target.Query = "mode=y"
	base2, _ := Base(sig, target)
	if Verify(sig, base2, pub) == nil {
		t.Fatal("changed query verified")
	}
}

func stdB64(b []byte) string { return encStd(b) }
