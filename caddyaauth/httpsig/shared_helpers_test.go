package httpsig

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/internal/shareddata"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func sharedTestdata(t testing.TB, sub string) string { return shareddata.Dir(t, sub) }

func findSharedTestdata(sub string) (string, error) { return shareddata.Find(sub) }

// a1Input is the Signature-Input common to the Appendix A vectors.
const a1Input = `sig=("@method" "@authority" "@path" "signature-key");created=1774920963`

// a1Header returns the three headers of Appendix A1 (legacy hwk).
func a1Header() http.Header {
	h := http.Header{}
	h.Set(HeaderSignatureInput, a1Input)
	h.Set(HeaderSignature, "sig=:"+appendixA[0].sig+":")
	h.Set(HeaderSignatureKey, appendixA[0].sigKey)
	return h
}

// otherKey is a second deterministic Ed25519 key (the RFC 8032 test-2 secret).
func otherKey(testing.TB) *keys.Signer { return otherSigner() }

func otherSigner() *keys.Signer {
	seed, _ := hex.DecodeString("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
	s, err := keys.NewSigner(ed25519.NewKeyFromSeed(seed), "auth-key-1")
	if err != nil {
		panic(err)
	}
	return s
}

// hwkValue is the legacy or dictionary hwk Signature-Key member for s under label.
func hwkValue(s *keys.Signer, label string, dictionary bool) string {
	return hwkKey(s).withLabel(label).Format(dictionary)
}

func hwkKey(s *keys.Signer) SigKey {
	m := s.Public.Members()
	k := SigKey{Scheme: SchemeHWK}
	for _, n := range []string{"kty", "crv", "x", "y"} {
		if v, ok := m[n].(string); ok {
			k.Params = append(k.Params, Param{n, v})
		}
	}
	return k
}

func (k SigKey) withLabel(l string) SigKey { k.Label = l; return k }

// signHeaders replaces the Signature header with a valid signature by s over the base
// that h and tg produce, so that only the property a test changes can make it fail.
func signHeaders(t testing.TB, h http.Header, tg Target, s *keys.Signer, label string) {
	t.Helper()
	h.Set(HeaderSignature, label+"=:"+encStd(make([]byte, 64))+":")
	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		t.Fatalf("signHeaders: parse: %v", err)
	}
	base, err := Base(sig, tg)
	if err != nil {
		t.Fatalf("signHeaders: base: %v", err)
	}
	raw, err := s.Sign(base)
	if err != nil {
		t.Fatal(err)
	}
	h.Set(HeaderSignature, label+"=:"+encStd(raw)+":")
}

// verifyRequest runs the verifier pipeline and reports the stage that failed:
// "parse", "check", "key", "base", "verify", or "" when the signature is accepted.
// For hwk the key comes from the Signature-Key member; otherwise fallback is used
// (standing in for a jwks_uri or jwt key lookup).
func verifyRequest(h http.Header, tg Target, pol Policy, now time.Time, fallback *keys.PublicKey) (*Signature, string, error) {
	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		return nil, "parse", err
	}
	if err := pol.Check(sig, tg, now); err != nil {
		return sig, "check", err
	}
	pub := fallback
	if sig.Key.Scheme == SchemeHWK {
		if pub, err = keys.FromMembers(sig.Key.Map()); err != nil {
			return sig, "key", &Error{Code: CodeInvalidKey, Msg: err.Error()}
		}
	}
	base, err := Base(sig, tg)
	if err != nil {
		return sig, "base", err
	}
	if err := Verify(sig, base, pub); err != nil {
		return sig, "verify", err
	}
	return sig, "", nil
}

// asError asserts err is an *Error with the given code.
func asError(t testing.TB, err error, code string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *httpsig.Error with code %q", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %q (%v), want %q", e.Code, e, code)
	}
	return e
}

func TestFindSharedTestdataMissing(t *testing.T) {
	_, err := findSharedTestdata("no-such-folder")
	if err == nil || !strings.Contains(err.Error(), "no-such-folder") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v", err)
	}
}
