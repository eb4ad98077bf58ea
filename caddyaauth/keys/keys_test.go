package keys

import (
	"crypto/ed25519"
	"encoding/hex"
	"strings"
	"testing"
)

func TestThumbprintRFC8037(t *testing.T) {
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	s, err := NewSigner(ed25519.NewKeyFromSeed(seed), "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Public.Members()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"; got != want {
		t.Fatalf("x = %v, want %v", got, want)
	}
	if got, want := s.Public.Thumbprint, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("thumbprint = %s, want %s", got, want)
	}
	// BLOG-3 agent key (PROTOCOL.md §6.2).
	k, err := FromMembers(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "OF4t_ABCoiTD55tJlzcfZeyxjzQJ9nYhHg-cAisAyqg"})
	if err != nil {
		t.Fatal(err)
	}
	if k.Thumbprint != "KP-aJ1QTO_JMcP86ipWLUASDKVlpTLCNhkX80YjhWCo" {
		t.Fatalf("thumbprint = %s", k.Thumbprint)
	}
}

func TestRoundTripAndSign(t *testing.T) {
	for _, alg := range []string{AlgEd25519, AlgECDSAP256} {
		s, err := Generate(alg, "k")
		if err != nil {
			t.Fatal(err)
		}
		if s.Public.Alg() != alg {
			t.Fatalf("alg %s != %s", s.Public.Alg(), alg)
		}
		b, err := s.MarshalPrivateJWK()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ParsePrivateJWK(b)
		if err != nil {
			t.Fatal(err)
		}
		if !s2.Public.Equal(s.Public) || s2.Public.KID != "k" {
			t.Fatal("round trip changed the key")
		}
		msg := []byte("hello")
		sig, err := s2.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		pubJSON, _ := s.Public.MarshalJSON()
		pub, err := FromJSON(pubJSON)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Verify(msg, sig); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		sig[3] ^= 1
		if err := pub.Verify(msg, sig); err == nil {
			t.Fatalf("%s: flipped signature verified", alg)
		}
		if err := pub.Verify(msg, sig[:63]); err == nil {
			t.Fatalf("%s: short signature verified", alg)
		}
	}
}

func TestFromMembersRejects(t *testing.T) {
	good := "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	cases := []struct {
		name string
		m    map[string]string
		want string
	}{
		{"no kty", map[string]string{"crv": "Ed25519", "x": good}, "missing kty"},
		{"X25519", map[string]string{"kty": "OKP", "crv": "X25519", "x": good}, "not supported"},
		{"Ed448", map[string]string{"kty": "OKP", "crv": "Ed448", "x": good}, "not supported"},
		{"short x", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": good[:41]}, "x"},
		{"long x", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": good + "AAAA"}, "bytes"},
		{"padded x", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": good + "="}, "padding"},
		{"std alphabet", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": strings.ReplaceAll(good, "_", "/")}, "padding"},
		{"private d", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": good, "d": "AAAA"}, "private"},
		{"RSA", map[string]string{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "not supported"},
		{"oct", map[string]string{"kty": "oct", "k": "AQAB"}, "not supported"},
		{"EC missing y", map[string]string{"kty": "EC", "crv": "P-256", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "y"},
		{"EC off curve", map[string]string{"kty": "EC", "crv": "P-256", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"}, "not on P-256"},
		{"P-384", map[string]string{"kty": "EC", "crv": "P-384", "x": good, "y": good}, "not supported"},
		{"alg mismatch", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": good, "alg": "ES256"}, "alg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromMembers(c.m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want containing %q", err, c.want)
			}
		})
	}
	if _, err := FromMembers(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": good, "alg": "EdDSA"}); err != nil {
		t.Fatalf("matching alg refused: %v", err)
	}
}
