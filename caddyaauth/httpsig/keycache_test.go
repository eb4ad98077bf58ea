package httpsig

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// A cached Signature-Key gives the same key as parsing it; a value that differs in one
// byte is another entry with its own key, and an append by a caller does not reach
// the entry.
func TestKeyCacheExactBytes(t *testing.T) {
	a, b := agentKey(t), otherKey(t)
	va, vb := hwkValue(a, "sig", false), hwkValue(b, "sig", false)
	c := newKeyCache(8, 1<<20)
	for i := 0; i < 2; i++ {
		ea, err := c.parse(va)
		if err != nil {
			t.Fatal(err)
		}
		eb, _ := c.parse(vb)
		ka, err := ea.inlineKey(ea.members[0])
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := eb.inlineKey(eb.members[0])
		if ka.Thumbprint != a.Public.Thumbprint || kb.Thumbprint != b.Public.Thumbprint {
			t.Fatalf("round %d: keys %s %s", i, ka.Thumbprint, kb.Thumbprint)
		}
	}
	if c.len() != 2 {
		t.Fatalf("%d entries", c.len())
	}
	e, _ := c.parse(va)
	k, _ := KeyFor(e.members, "sig")
	_ = append(k.Params, Param{"kid", "x"})
	if e2, _ := c.parse(va); len(e2.members[0].Params) != 3 || e2.members[0].Has("kid") {
		t.Fatalf("append reached the cache: %+v", e2.members[0])
	}
	// A value one byte away (another x) is not served from a's entry.
	x := a.Public.Members()["x"].(string)
	flipped := strings.Replace(va, x, x[:10]+string(x[10]^1)+x[11:], 1)
	ef, err := c.parse(flipped)
	if err != nil {
		t.Fatal(err)
	}
	if kf, err := ef.inlineKey(ef.members[0]); err == nil && kf.Thumbprint == a.Public.Thumbprint {
		t.Fatal("a different value got a's key")
	}
}

// Distinct values never grow the cache past its bounds, in entries or bytes; values that
// do not parse are not kept.
func TestKeyCacheBounded(t *testing.T) {
	c := newKeyCache(16, 4096)
	for i := 0; i < 10000; i++ {
		v := fmt.Sprintf(`sig=(scheme=hwk kty="OKP" crv="Ed25519" x="%043d")`, i)
		if _, err := c.parse(v); err != nil {
			t.Fatal(err)
		}
		if _, err := c.parse(fmt.Sprintf(`sig=(scheme=hwk x=%d`, i)); err == nil {
			t.Fatal("garbage parsed")
		}
		if c.len() > 16 || c.bytes > 4096 {
			t.Fatalf("after %d: %d entries, %d bytes", i, c.len(), c.bytes)
		}
	}
	big := `sig=(scheme=jwt jwt="` + strings.Repeat("a", 3000) + `")`
	for i := 0; i < 3; i++ {
		if _, err := c.parse(big + strings.Repeat(" ", i)); err != nil {
			t.Fatal(err)
		}
		if c.bytes > 4096 {
			t.Fatalf("%d bytes", c.bytes)
		}
	}
	if _, err := c.parse(`sig=(scheme=jwt jwt="` + strings.Repeat("a", 5000) + `")`); err != nil || c.bytes > 4096 {
		t.Fatalf("value over the byte bound: %v, %d bytes", err, c.bytes)
	}
	// The newest entries are the ones kept.
	if _, ok := c.m[big+"  "]; !ok {
		t.Fatal("newest entry evicted")
	}
}

// Parse goes through the cache: the second request of a key gets the same inline key,
// and an hwk member whose parameters are not a valid key is refused both times.
func TestParseUsesKeyCache(t *testing.T) {
	h := a1Header()
	s1, err := Parse(h, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := Parse(h, DefaultLimits)
	k1, err1 := s1.InlineKey()
	k2, err2 := s2.InlineKey()
	if err1 != nil || err2 != nil || k1 != k2 || k1.Thumbprint != agentKey(t).Public.Thumbprint {
		t.Fatalf("inline keys %v %v (%v %v)", k1, k2, err1, err2)
	}
	bad := http.Header{}
	for k, v := range h {
		bad[k] = v
	}
	bad.Set(HeaderSignatureKey, `sig=(scheme=hwk kty="OKP" crv="Ed25519" x="AAAA")`)
	for i := 0; i < 2; i++ {
		sig, err := Parse(bad, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sig.InlineKey(); err == nil || !strings.Contains(err.Error(), keys.ErrInvalidKey.Error()) {
			t.Fatalf("round %d: bad inline key accepted: %v", i, err)
		}
	}
}
