package token

import (
	"container/list"
	"sync"
	"time"
)

// DefaultCacheSize is the entry bound used by NewCache when max <= 0.
const DefaultCacheSize = 10000

// Cache remembers successfully verified tokens, keyed by the exact raw token text (the
// map compares the whole text on a hit, so only the very same token is found), so a
// token seen again skips parsing and signature verification. It is a bounded LRU,
// safe for concurrent use. Only tokens returned by a successful Verify* call are stored;
// every hit re-checks exp (an expired entry is evicted and reported as a miss); tokens
// longer than MaxTokenBytes are never stored.
//
// A hit means "this exact token passed verification under the options used when it was
// stored": use one Cache per verifier configuration (audience, issuers, token kind). The
// cache stores the token result only; the caller must still verify the request signature
// and every per-request binding (cnf.jwk, agent_jkt, scopes) on each use.
type Cache struct {
	mu  sync.Mutex
	max int
	ll  *list.List               // front = most recently used; values are *cacheEntry
	m   map[string]*list.Element // keyed by Token.Raw (the string is the token's own)

	// OnLookup, when set before the cache is used, is told whether each Get hit (for a
	// hit-ratio metric).
	OnLookup func(hit bool)
}

type cacheEntry struct {
	tok *Token
	exp time.Time
}

// NewCache returns a cache holding at most max tokens (DefaultCacheSize when max <= 0).
func NewCache(max int) *Cache {
	if max <= 0 {
		max = DefaultCacheSize
	}
	return &Cache{max: max, ll: list.New(), m: make(map[string]*list.Element)}
}

// Get returns the cached verified token whose raw text is exactly raw, if it has not
// expired at now. The returned token is shared: do not modify it.
func (c *Cache) Get(raw string, now time.Time) (*Token, bool) {
	if c == nil {
		return nil, false
	}
	t, ok := c.get(raw, now)
	if c.OnLookup != nil {
		c.OnLookup(ok)
	}
	return t, ok
}

func (c *Cache) get(raw string, now time.Time) (*Token, bool) {
	if raw == "" || len(raw) > MaxTokenBytes {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[raw]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.exp) {
		c.ll.Remove(el)
		delete(c.m, raw)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.tok, true
}

// Put stores t if it was returned by a successful Verify* call, has an exp, and is at
// most MaxTokenBytes long; otherwise it does nothing. The least recently used entry is
// evicted when the cache is full.
func (c *Cache) Put(t *Token) {
	if c == nil || t == nil || !t.verified || t.Claims.Expiry <= 0 || len(t.Raw) > MaxTokenBytes {
		return
	}
	e := &cacheEntry{tok: t, exp: time.Unix(t.Claims.Expiry, 0)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[t.Raw]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[t.Raw] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).tok.Raw)
	}
}

// Len returns the number of entries (expired entries not yet evicted included).
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
