package httpsig

import (
	"slices"
	"sync"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Bounds of the Signature-Key cache: a distinct value per request (a hostile client, or
// many agents) costs at most this much memory, whatever the number of values.
const (
	keyCacheEntries = 1024
	keyCacheBytes   = 1 << 20
)

// sigKeys is the process's Signature-Key cache. Parsing a value, and building the public
// key an hwk member carries, are functions of the value's bytes alone, so one cache
// keyed by the exact bytes serves every verifier: a value that differs in any byte is
// another entry, and a hit gives exactly what parsing those bytes gives.
var sigKeys = newKeyCache(keyCacheEntries, keyCacheBytes)

// keyEntry is one parsed Signature-Key value, and the inline key of its member (hwk),
// built on first use.
type keyEntry struct {
	members []SigKey

	once   sync.Once
	inline *keys.PublicKey
	err    error
}

// keyCache remembers successfully parsed Signature-Key values by their exact bytes. It
// holds at most max entries and maxBytes of values and evicts the oldest entry first
// (FIFO: a hit takes only the read lock). Values that fail to parse are not kept.
type keyCache struct {
	mu       sync.RWMutex
	m        map[string]*keyEntry
	order    []string // ring of keys, oldest at head
	head     int
	bytes    int
	max      int
	maxBytes int
}

func newKeyCache(max, maxBytes int) *keyCache {
	return &keyCache{m: make(map[string]*keyEntry, max), order: make([]string, 0, max), max: max, maxBytes: maxBytes}
}

// parse returns the entry for the Signature-Key value raw, parsing it on a miss.
func (c *keyCache) parse(raw string) (*keyEntry, error) {
	c.mu.RLock()
	e := c.m[raw]
	c.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	members, err := ParseSignatureKey(raw)
	if err != nil {
		return nil, err
	}
	for i := range members {
		// Shared between requests: an append by a caller must not write into the entry.
		members[i].Params = slices.Clip(members[i].Params)
	}
	e = &keyEntry{members: members}
	if len(raw) > c.maxBytes {
		return e, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[raw]; old != nil {
		return old, nil
	}
	for len(c.m) > 0 && (len(c.m) >= c.max || c.bytes+len(raw) > c.maxBytes) {
		c.evictOldest()
	}
	c.m[raw] = e
	c.bytes += len(raw)
	if len(c.order) < c.max {
		c.order = append(c.order, raw)
	} else {
		c.order[(c.head+len(c.m)-1)%c.max] = raw
	}
	return e, nil
}

// evictOldest drops the entry at the head of the ring; c.mu is held.
func (c *keyCache) evictOldest() {
	k := c.order[c.head]
	c.order[c.head] = ""
	c.head = (c.head + 1) % c.max
	delete(c.m, k)
	c.bytes -= len(k)
}

// len is the number of cached values.
func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// inlineKey is the public key of an hwk member given by its JWK parameters
// (draft-hardt-aauth §15.2), built once per entry.
func (e *keyEntry) inlineKey(k SigKey) (*keys.PublicKey, error) {
	e.once.Do(func() { e.inline, e.err = keys.FromMembers(k.Map()) })
	return e.inline, e.err
}

// InlineKey returns the public key the Signature-Key member carries inline as JWK
// parameters (the hwk scheme). It is built once per distinct Signature-Key value and
// shared: treat it as read-only.
func (sig *Signature) InlineKey() (*keys.PublicKey, error) {
	if sig.keyEntry != nil {
		return sig.keyEntry.inlineKey(sig.Key)
	}
	return keys.FromMembers(sig.Key.Map())
}
