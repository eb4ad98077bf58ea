package httpsig

import (
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: three header values. Parse must not panic and must fail only with *Error;
// when it succeeds, the result is well formed and Base must not panic.
func FuzzParse(f *testing.F) {
	for _, v := range appendixA {
		f.Add(a1Input, "sig=:"+v.sig+":", v.sigKey)
	}
	f.Add(`sig=("@method" "@authority" "@path" "@query" "content-type" "content-digest" "signature-key");created=1774920963;expires=1774921000;alg="ed25519";keyid="k";nonce="n";tag="t"`,
		"sig=:"+encStd(make([]byte, 64))+":", `sig=jwt;jwt="a.b.c"`)
	f.Add(rfc9421B26Input, rfc9421B26Sig, `sig-b26=hwk;kty="OKP"`)
	f.Add(`sig=("@foo" "host" "x");created=1`, "sig=:"+zeroSig64+":, sig=::", `sig=(scheme=hwk), sig=(scheme=jwt)`)
	f.Add("", "", "")
	f.Add("(((", ":::", "sig=(")
	f.Add(`sig=();created=999999999999999`, `sig=:`+zeroSig64+`==:`, `sig=(scheme=hwk x="\"")`)
	f.Fuzz(func(t *testing.T, in, sv, kv string) {
		h := http.Header{HeaderSignatureInput: {in}, HeaderSignature: {sv}, HeaderSignatureKey: {kv}}
		sig, err := Parse(h, DefaultLimits)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("error %v (%T) is not a coded *Error", err, err)
			}
			return
		}
		if sig.Label == "" || sig.Key.Label != sig.Label || len(sig.Value) != 64 || sig.Created <= 0 ||
			len(sig.Components) > DefaultLimits.MaxComponents || sig.Key.Scheme == "" {
			t.Fatalf("Parse accepted a malformed signature: %+v", sig)
		}
		for i, c := range sig.Components {
			if c == "" || c != strings.ToLower(c) || slices.Contains(sig.Components[:i], c) {
				t.Fatalf("component list %q", sig.Components)
			}
		}
		tg := vectorTarget(h)
		tg.Query, tg.HasQuery = "a=1", true
		if base, err := Base(sig, tg); err == nil {
			if !strings.HasSuffix(string(base), `"@signature-params": `+sig.params) {
				t.Fatalf("base does not end with the params line:\n%s", base)
			}
			_ = Verify(sig, base, agentKey(t).Public)
		}
	})
}

// isSFToken reports whether s is an RFC 8941 token.
func isSFToken(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z' || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~:/", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// FuzzParseSignatureKey: no panic; every parsed member re-formatted in either syntax
// parses back to the same label, scheme and parameters. The dictionary re-format must
// parse whenever the scheme is an RFC 8941 token (the legacy syntax allows a wider set).
func FuzzParseSignatureKey(f *testing.F) {
	for _, v := range appendixA {
		f.Add(v.sigKey)
	}
	for _, s := range []string{
		`sig=hwk;kty="EC";crv="P-256";x="a";y="b"`,
		`sig=jwt; jwt="x.y.z"`,
		`sig=(scheme=hwk x="a\"b\\c"), other=(scheme=jwt jwt="")`,
		`a=b, c=d;e="f"`,
		`sig=(scheme=h/w:k* x="1")`,
		`sig=(scheme=1abc)`,
		`sig=(hwk)`,
		`sig=(`,
		`*=*;*="*"`,
		"sig=(scheme=hwk\tx=\"a\")",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ms, err := ParseSignatureKey(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T)", err, err)
			}
			return
		}
		if len(ms) == 0 {
			return // an RFC 8941 dictionary may be empty
		}
		for _, m := range ms {
			if m.Label == "" || m.Scheme == "" {
				t.Fatalf("member without label or scheme: %+v", m)
			}
			for _, dict := range []bool{true, false} {
				out := m.Format(dict)
				back, err := ParseSignatureKey(out)
				if err != nil {
					if !dict || isSFToken(m.Scheme) {
						t.Fatalf("Format(%v) = %q does not parse: %v (from %+v)", dict, out, err, m)
					}
					continue
				}
				if len(back) != 1 || back[0].Label != m.Label || back[0].Scheme != m.Scheme ||
					back[0].Legacy == dict || !slices.Equal(back[0].Params, m.Params) {
					t.Fatalf("Format(%v) = %q parsed as %+v, want %+v", dict, out, back, m)
				}
			}
		}
	})
}

// FuzzDecodeBase64: no panic; a successful decode re-encodes to the input in the
// alphabet it used (so no value has two accepted spellings beyond padding, and the
// alphabets are never mixed).
func FuzzDecodeBase64(f *testing.F) {
	raw, _ := DecodeBase64(appendixA[0].sig)
	for _, s := range []string{
		appendixA[0].sig, encStd(raw), "", "=", "==", "A", "AA", "AA==", "AAA=", "AAAA", "AA=A",
		"-_+/", "____", "++++", "AAAAAA==", "AAAAA===", "AB==", "AAAA\nAAAA", "AA\r\n==", " AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeBase64(s)
		if err != nil {
			return
		}
		trimmed := strings.TrimRight(s, "=")
		if strings.ContainsAny(trimmed, "+/") && strings.ContainsAny(trimmed, "-_") {
			t.Fatalf("mixed alphabets accepted: %q", s)
		}
		if trimmed != s && len(s)%4 != 0 {
			t.Fatalf("bad padding accepted: %q", s)
		}
		// encoding/base64 skips CR and LF even in strict mode.
		clean := strings.NewReplacer("\r", "", "\n", "").Replace(trimmed)
		enc := base64.RawStdEncoding.EncodeToString(b)
		if strings.ContainsAny(clean, "-_") {
			enc = base64.RawURLEncoding.EncodeToString(b)
		}
		if enc != clean {
			t.Fatalf("DecodeBase64(%q) = %x, which encodes as %q", s, b, enc)
		}
	})
}
