package token

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// mintVerified mints an auth token with the given jti and lifetime and verifies it.
func mintVerified(t testing.TB, jti string, exp int64) *Token {
	t.Helper()
	as := asSigner(t)
	raw, err := Mint(as, TypAuth, Claims{Issuer: asID, Audience: Audience{resourceID}, ID: jti,
		IssuedAt: nowUnix - 10, Expiry: exp, Agent: agentID, Scope: "data.read",
		Confirmation: &Confirmation{Key: agentSigner(t).Public}})
	if err != nil {
		t.Fatal(err)
	}
	r := &resolver{iss: asID, key: as.Public}
	tok, err := VerifyAuthToken(context.Background(), raw, Options{Now: testNow, Audience: resourceID, Issuers: []string{asID}}, r.resolve)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCacheExpiry(t *testing.T) {
	c := NewCache(0)
	tok := mintVerified(t, "j1", nowUnix+100)
	c.Put(tok)
	if got, ok := c.Get(tok.Raw, testNow); !ok || got != tok {
		t.Fatal("miss before exp")
	}
	if _, ok := c.Get(tok.Raw, time.Unix(nowUnix+99, 999999999)); !ok {
		t.Fatal("miss just before exp")
	}
	// F1: at exp the entry is a miss and is evicted.
	if _, ok := c.Get(tok.Raw, time.Unix(nowUnix+100, 0)); ok {
		t.Fatal("hit at exp")
	}
	if c.Len() != 0 {
		t.Fatalf("expired entry not evicted: len %d", c.Len())
	}
	// Clock jumping backwards after eviction does not resurrect it.
	if _, ok := c.Get(tok.Raw, testNow); ok {
		t.Fatal("hit after eviction")
	}
}

func TestCacheOneByteDifferent(t *testing.T) {
	c := NewCache(10)
	tok := mintVerified(t, "j1", nowUnix+100)
	c.Put(tok)
	raw := tok.Raw
	for _, variant := range []string{
		raw[:len(raw)-1] + string(raw[len(raw)-1]^1),
		string(raw[0]^1) + raw[1:],
		raw + "A",
		raw[:len(raw)-1],
		" " + raw,
		strings.ToUpper(raw),
	} {
		if _, ok := c.Get(variant, testNow); ok {
			t.Fatalf("variant of a cached token hit")
		}
	}
	if _, ok := c.Get(raw, testNow); !ok {
		t.Fatal("original missed")
	}
}

func TestCacheOnlyVerifiedAndSmall(t *testing.T) {
	c := NewCache(10)
	tok := mintVerified(t, "j1", nowUnix+100)

	// F3: a parsed but unverified token is never stored.
	parsed, err := Parse(tok.Raw, TypAuth)
	if err != nil {
		t.Fatal(err)
	}
	c.Put(parsed)
	c.Put(nil)
	if c.Len() != 0 {
		t.Fatal("unverified token cached")
	}
	// F4: an oversized token is never stored or looked up.
	big := *tok
	big.Raw = tok.Raw + strings.Repeat("A", MaxTokenBytes)
	c.Put(&big)
	if c.Len() != 0 {
		t.Fatal("oversized token cached")
	}
	if _, ok := c.Get(big.Raw, testNow); ok {
		t.Fatal("oversized lookup hit")
	}
	// A nil cache is a no-op.
	var nc *Cache
	nc.Put(tok)
	if _, ok := nc.Get(tok.Raw, testNow); ok || nc.Len() != 0 {
		t.Fatal("nil cache")
	}
}

func TestCacheBound(t *testing.T) {
	const max = 3
	c := NewCache(max)
	toks := make([]*Token, 6)
	for i := range toks {
		toks[i] = mintVerified(t, fmt.Sprintf("j%d", i), nowUnix+1000)
	}
	for i := 0; i < 3; i++ {
		c.Put(toks[i])
	}
	// Touch 0 so 1 becomes the least recently used.
	if _, ok := c.Get(toks[0].Raw, testNow); !ok {
		t.Fatal("miss")
	}
	c.Put(toks[3])
	if c.Len() != max {
		t.Fatalf("len %d", c.Len())
	}
	if _, ok := c.Get(toks[1].Raw, testNow); ok {
		t.Fatal("LRU entry not evicted")
	}
	for _, i := range []int{0, 2, 3} {
		if _, ok := c.Get(toks[i].Raw, testNow); !ok {
			t.Fatalf("entry %d evicted", i)
		}
	}
	for i := range toks {
		c.Put(toks[i])
		c.Put(toks[i]) // re-put of an existing entry does not grow the cache
		if c.Len() > max {
			t.Fatalf("len %d > %d", c.Len(), max)
		}
	}
	if NewCache(-1).max != DefaultCacheSize {
		t.Fatal("default size")
	}
}

// TestCacheConcurrent (F7) interleaves hits, misses, puts and expiry evictions from many
// goroutines; run with -race.
func TestCacheConcurrent(t *testing.T) {
	c := NewCache(8)
	toks := make([]*Token, 16)
	for i := range toks {
		exp := nowUnix + 1000
		if i%4 == 0 {
			exp = nowUnix + 1 // expires during the test's clock sweep
		}
		toks[i] = mintVerified(t, fmt.Sprintf("c%d", i), exp)
	}
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				tok := toks[(g+i)%len(toks)]
				now := time.Unix(nowUnix+int64(i%3), 0)
				switch i % 3 {
				case 0:
					c.Put(tok)
				default:
					if got, ok := c.Get(tok.Raw, now); ok {
						if got.Raw != tok.Raw {
							t.Error("wrong token returned")
							return
						}
						if !now.Before(time.Unix(got.Claims.Expiry, 0)) {
							t.Error("expired token returned")
							return
						}
					}
				}
				if c.Len() > 8 {
					t.Error("bound exceeded")
					return
				}
			}
		}(g)
	}
	wg.Wait()
}
