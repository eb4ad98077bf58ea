package httpsig

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func BenchmarkParse(b *testing.B) {
	h := a1Header()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(h, DefaultLimits); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBase(b *testing.B) {
	h := a1Header()
	sig, err := Parse(h, DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	tg := vectorTarget(h)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Base(sig, tg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyEd25519 is the whole verifier path for Appendix A1.
func BenchmarkVerifyEd25519(b *testing.B) {
	h := a1Header()
	tg := vectorTarget(h)
	pub := agentKey(b).Public
	now := time.Unix(vectorCreated, 0)
	b.ReportAllocs()
	for b.Loop() {
		sig, err := Parse(h, DefaultLimits)
		if err != nil {
			b.Fatal(err)
		}
		if err := (Policy{}).Check(sig, tg, now); err != nil {
			b.Fatal(err)
		}
		base, err := Base(sig, tg)
		if err != nil {
			b.Fatal(err)
		}
		if err := Verify(sig, base, pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRejectMalformed: garbage headers are refused without crypto, so the cost
// must be far below BenchmarkVerifyEd25519.
func BenchmarkRejectMalformed(b *testing.B) {
	garbage := map[string]func(http.Header){
		"oversized":       func(h http.Header) { h.Set(HeaderSignatureKey, strings.Repeat("(", 64<<10)) },
		"input garbage":   func(h http.Header) { h.Set(HeaderSignatureInput, strings.Repeat("((", 500)) },
		"bad base64":      func(h http.Header) { h.Set(HeaderSignature, "sig=:"+strings.Repeat("!", 86)+":") },
		"legacy unclosed": func(h http.Header) { h.Set(HeaderSignatureKey, `sig=(scheme=hwk x="`+strings.Repeat("a", 8000)) },
		"missing":         func(h http.Header) { h.Del(HeaderSignature) },
	}
	for _, name := range []string{"missing", "oversized", "input garbage", "bad base64", "legacy unclosed"} {
		h := a1Header()
		garbage[name](h)
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(h, DefaultLimits); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
