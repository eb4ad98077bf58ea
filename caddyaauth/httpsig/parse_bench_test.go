package httpsig

import (
	"strings"
	"testing"
)

// BenchmarkParseSignatureKey parses Signature-Key values in both syntaxes: an hwk key and
// a jwt member carrying a token of about 1 KiB.
func BenchmarkParseSignatureKey(b *testing.B) {
	jwt := strings.Repeat("eyJhbGciOiJFZERTQSJ9", 50) + ".x.y"
	for name, v := range map[string]string{
		"hwk_legacy": hwkValue(otherSigner(), "sig", false),
		"hwk_dict":   hwkValue(otherSigner(), "sig", true),
		"jwt_legacy": SigKey{Label: "sig", Scheme: SchemeJWT, Params: []Param{{"jwt", jwt}}}.Format(false),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseSignatureKey(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseSignatureInput parses a Signature-Input value with the AAuth components,
// created, keyid and nonce.
func BenchmarkParseSignatureInput(b *testing.B) {
	in := `sig=("@method" "@authority" "@path" "@query" "signature-key");created=1774920963;keyid="k1";nonce="bm9uY2Utdm9sdWU"`
	b.ReportAllocs()
	for b.Loop() {
		var sig Signature
		if err := sig.parseInput(in, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}
