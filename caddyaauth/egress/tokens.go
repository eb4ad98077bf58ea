package egress

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// DefaultMaxCallers bounds the inbound tokens a TokenStore keeps downstream tokens for.
const DefaultMaxCallers = 10000

// TokenStore keeps the downstream auth tokens obtained by exchange, per inbound auth
// token: each inbound token has its own agent.TokenCache (keyed there by downstream
// resource, our key and scope), so a downstream token obtained for one caller is never
// used for another, although every exchange is signed with the same resource key. A
// cache lives until its inbound token expires: no handle can use it after that.
type TokenStore struct {
	// Max bounds the inbound tokens tracked; 0 means DefaultMaxCallers. When full, the
	// cache of the inbound token that expires first is dropped.
	Max int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*callerTokens
}

type callerTokens struct {
	cache  *agent.TokenCache
	expiry time.Time
}

func (s *TokenStore) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// For returns the downstream token cache of the inbound token, which expires at exp.
func (s *TokenStore) For(inbound string, exp time.Time) *agent.TokenCache {
	k := sha256.Sum256([]byte(inbound))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[32]byte]*callerTokens{}
	}
	if c := s.m[k]; c != nil {
		return c.cache
	}
	s.sweep(now)
	max := s.Max
	if max <= 0 {
		max = DefaultMaxCallers
	}
	for len(s.m) >= max {
		s.dropFirstExpiring()
	}
	c := &callerTokens{cache: &agent.TokenCache{Max: 64, Now: s.Now}, expiry: exp}
	s.m[k] = c
	return c.cache
}

// sweep drops the caches of expired inbound tokens.
func (s *TokenStore) sweep(now time.Time) {
	for k, c := range s.m {
		if !now.Before(c.expiry) {
			delete(s.m, k)
		}
	}
}

func (s *TokenStore) dropFirstExpiring() {
	var first [32]byte
	var at time.Time
	for k, c := range s.m {
		if at.IsZero() || c.expiry.Before(at) {
			first, at = k, c.expiry
		}
	}
	delete(s.m, first)
}

// Len is the number of inbound tokens with a cache.
func (s *TokenStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
