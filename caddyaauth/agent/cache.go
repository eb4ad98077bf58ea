package agent

import (
	"sync"
	"time"
)

// DefaultTokenCacheSize bounds a TokenCache whose Max is zero.
const DefaultTokenCacheSize = 256

// TokenExpiryMargin is how long before its exp a cached auth token stops being used, so
// a token is not sent when it would expire on the way or a few seconds into the
// resource's clock.
const TokenExpiryMargin = 30 * time.Second

// CachedToken is an auth token the agent obtained and checked (draft-hardt-aauth §17.1).
type CachedToken struct {
	Resource string    // the resource identifier (the token's aud)
	KeyJKT   string    // the thumbprint of the key the token is bound to (its cnf.jwk)
	Issuer   string    // the auth server that issued it
	Scope    string    // the granted scope, space-separated
	Expiry   time.Time // the token's exp (or the shorter expires_in)
	// Token is the auth token itself. It is bound to the agent's key (cnf.jwk), so it is
	// useless without that key, but it is still never logged.
	Token string
}

// RefreshWindow is how long past its expiry a cached auth token is kept so that it can
// be refreshed (draft-hardt-aauth §11.6: a signed token request {"auth_token": …} by the
// key in its cnf). Such a token is never sent to a resource. It matches the auth
// server's default refresh window; a server with a shorter one refuses the refresh, and
// the agent then runs the challenge flow as usual.
const RefreshWindow = 24 * time.Hour

// usable reports whether the token may still be sent at now.
func (c *CachedToken) usable(now time.Time) bool {
	return now.Before(c.Expiry.Add(-TokenExpiryMargin))
}

// dead reports whether the token is past its refresh window at now: it is of no use.
func (c *CachedToken) dead(now time.Time) bool {
	return now.After(c.Expiry.Add(RefreshWindow))
}

// TokenCache holds auth tokens per resource identifier and key thumbprint (and scope), so
// a second request to a resource is signed with the token straight away and costs one
// round trip. A token that is no longer usable is kept for RefreshWindow past its
// expiry, for a refresh only; Get never returns it. A cache may be shared by Transports with different keys: a token is only
// ever handed to a caller asking with the thumbprint of the key it is bound to. It is
// bounded (the entry that was stored longest ago goes first) and safe for concurrent use.
// The zero value is ready to use.
type TokenCache struct {
	// Max bounds the number of tokens held; 0 means DefaultTokenCacheSize.
	Max int
	// Now is the clock used to decide whether a token is still usable; nil means time.Now.
	Now func() time.Time

	mu  sync.Mutex
	m   map[string]map[tokenKey]*tokenEntry // resource → (key thumbprint, scope) → entry
	n   int
	seq uint64
}

// tokenKey identifies a token among those of one resource.
type tokenKey struct {
	jkt, scope string
}

type tokenEntry struct {
	tok CachedToken
	seq uint64 // store order: the newest token of a resource and key is the one Get returns
}

// NewTokenCache returns a cache holding at most max tokens (DefaultTokenCacheSize when
// max <= 0).
func NewTokenCache(max int) *TokenCache {
	return &TokenCache{Max: max}
}

func (c *TokenCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *TokenCache) max() int {
	if c.Max > 0 {
		return c.Max
	}
	return DefaultTokenCacheSize
}

// Get returns the most recently stored token for the resource, bound to the key whose
// thumbprint is jkt, that is still usable (more than TokenExpiryMargin before its
// expiry). Tokens past their refresh window are dropped. An empty jkt matches nothing.
func (c *TokenCache) Get(resourceID, jkt string) (CachedToken, bool) {
	now := c.now()
	return c.find(resourceID, jkt, func(t *CachedToken) bool { return t.usable(now) })
}

// getScope is Get for tokens issued by issuer granting exactly scope.
func (c *TokenCache) getScope(resourceID, jkt, issuer, scope string) (CachedToken, bool) {
	now := c.now()
	return c.find(resourceID, jkt, func(t *CachedToken) bool {
		return t.usable(now) && t.Issuer == issuer && t.Scope == scope
	})
}

// refreshable returns the most recently stored token for the resource and key, issued
// by issuer with exactly scope, that is no longer usable but still within its refresh
// window.
func (c *TokenCache) refreshable(resourceID, jkt, issuer, scope string) (CachedToken, bool) {
	now := c.now()
	return c.find(resourceID, jkt, func(t *CachedToken) bool {
		return !t.usable(now) && t.Issuer == issuer && t.Scope == scope
	})
}

// find returns the most recently stored token of the resource bound to jkt for which ok
// holds, dropping the resource's tokens that are past their refresh window.
func (c *TokenCache) find(resourceID, jkt string, ok func(*CachedToken) bool) (CachedToken, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *tokenEntry
	for k, e := range c.m[resourceID] {
		if e.tok.dead(now) {
			c.remove(resourceID, k)
			continue
		}
		if k.jkt != jkt || jkt == "" || !ok(&e.tok) {
			continue
		}
		if best == nil || e.seq > best.seq {
			best = e
		}
	}
	if best == nil {
		return CachedToken{}, false
	}
	return best.tok, true
}

// Put stores t under its resource, key thumbprint and scope, replacing a token stored
// there before. A token without resource, key thumbprint or text, or one past its
// refresh window, is not stored. A token that is already too close to its expiry to be
// sent (an auth server issuing very short lifetimes) is still stored: Get never returns
// it, but it can be refreshed.
func (c *TokenCache) Put(t CachedToken) {
	if t.Resource == "" || t.KeyJKT == "" || t.Token == "" || t.dead(c.now()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[tokenKey]*tokenEntry{}
	}
	byKey := c.m[t.Resource]
	if byKey == nil {
		byKey = map[tokenKey]*tokenEntry{}
		c.m[t.Resource] = byKey
	}
	c.seq++
	k := tokenKey{jkt: t.KeyJKT, scope: t.Scope}
	if _, ok := byKey[k]; !ok {
		c.n++
	}
	byKey[k] = &tokenEntry{tok: t, seq: c.seq}
	for c.n > c.max() {
		c.evict()
	}
}

// Delete drops the resource's token whose text is authToken, or all of the resource's
// tokens (for every key) when authToken is empty. Naming the token means a caller that
// saw one token refused cannot throw away a fresher one another request has just stored.
func (c *TokenCache) Delete(resourceID, authToken string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m[resourceID] {
		if authToken == "" || e.tok.Token == authToken {
			c.remove(resourceID, k)
		}
	}
}

// Len returns the number of tokens held, including expired ones kept for a refresh.
func (c *TokenCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// remove deletes one entry; c.mu is held.
func (c *TokenCache) remove(resource string, k tokenKey) {
	byKey := c.m[resource]
	if _, ok := byKey[k]; !ok {
		return
	}
	delete(byKey, k)
	c.n--
	if len(byKey) == 0 {
		delete(c.m, resource)
	}
}

// evict drops one entry: one no longer usable (kept only for a refresh) if there is any,
// else the one stored longest ago.
// A linear scan is fine for a cache of a few hundred tokens. c.mu is held.
func (c *TokenCache) evict() {
	now := c.now()
	var oldRes string
	var oldKey tokenKey
	var oldest uint64
	for res, byKey := range c.m {
		for k, e := range byKey {
			if !e.tok.usable(now) {
				c.remove(res, k)
				return
			}
			if oldest == 0 || e.seq < oldest {
				oldRes, oldKey, oldest = res, k, e.seq
			}
		}
	}
	if oldest != 0 {
		c.remove(oldRes, oldKey)
	}
}
