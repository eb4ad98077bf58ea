package httpsig

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// RFC 9421 Appendix B.1.4 test-key-ed25519 (public half) and the B.2.6 signature of the
// Appendix B.2 test request.
const (
	rfc9421EdX       = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"
	rfc9421B26Input  = `sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`
	rfc9421B26Sig    = `sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:`
	rfc9421B26Base   = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
	rfc9421B26Create = 1618884473
)

// SECURITY-CASES B11: RFC 9421 B.2.6 through Parse, Base and Verify (not Policy.Check:
// the vector does not cover signature-key). Parse needs a Signature-Key member with the
// label, so a dummy hwk member is supplied; it is not part of the covered components.
func TestRFC9421B26(t *testing.T) {
	pub, err := keys.FromMembers(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": rfc9421EdX})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", "18")
	h.Set(HeaderSignatureInput, rfc9421B26Input)
	h.Set(HeaderSignature, rfc9421B26Sig)
	h.Set(HeaderSignatureKey, `sig-b26=hwk;kty="OKP";crv="Ed25519";x="`+rfc9421EdX+`"`)
	// POST /foo?param=Value&Pet=dog HTTP/1.1, Host: example.com
	tg := Target{Method: "POST", Authority: Authority("https", "example.com"), Path: "/foo", Query: "param=Value&Pet=dog", HasQuery: true, Header: h}

	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if sig.Label != "sig-b26" || sig.KeyID != "test-key-ed25519" || sig.Created != rfc9421B26Create || len(sig.Components) != 6 {
		t.Fatalf("parsed %+v", sig)
	}
	base, err := Base(sig, tg)
	if err != nil {
		t.Fatal(err)
	}
	if string(base) != rfc9421B26Base {
		t.Fatalf("base:\n%s\nwant:\n%s", base, rfc9421B26Base)
	}
	if err := Verify(sig, base, pub); err != nil {
		t.Fatalf("B.2.6 does not verify: %v", err)
	}

	t.Run("one bit of the base", func(t *testing.T) {
		for _, i := range []int{0, len(base) / 2, len(base) - 1} {
			b := append([]byte(nil), base...)
			b[i] ^= 1
			asError(t, Verify(sig, b, pub), CodeInvalidSignature)
		}
	})
	t.Run("one bit of the signature", func(t *testing.T) {
		for _, i := range []int{0, 31, 32, 63} {
			s := *sig
			s.Value = append([]byte(nil), sig.Value...)
			s.Value[i] ^= 0x80
			asError(t, Verify(&s, base, pub), CodeInvalidSignature)
		}
	})
	t.Run("other key", func(t *testing.T) {
		asError(t, Verify(sig, base, agentKey(t).Public), CodeInvalidSignature)
	})
	t.Run("base64url spelling", func(t *testing.T) {
		h2 := h.Clone()
		v := strings.TrimSuffix(strings.TrimPrefix(rfc9421B26Sig, "sig-b26=:"), ":")
		v = strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimRight(v, "="))
		h2.Set(HeaderSignature, "sig-b26=:"+v+":")
		s2, err := Parse(h2, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(s2, base, pub); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("AAuth policy refuses it", func(t *testing.T) {
		// It covers neither signature-key nor @query, and is years old.
		e := asError(t, Policy{}.Check(sig, tg, time.Unix(rfc9421B26Create, 0)), CodeInvalidSignature)
		if len(e.RequiredComponents) == 0 || !strings.Contains(e.Msg, "signature-key") || !strings.Contains(e.Msg, "@query") {
			t.Fatalf("error %+v", e)
		}
	})
}
