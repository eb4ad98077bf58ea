package authserver

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Token endpoint rate limit defaults: each agent may make DefaultTokenRateRequests
// signed token requests per DefaultTokenRateWindow (with a burst of as many).
const (
	DefaultTokenRateRequests = 60
	DefaultTokenRateWindow   = time.Minute

	maxTokenRateRequests = 100000
	minTokenRateWindow   = time.Second
	maxTokenRateWindow   = 24 * time.Hour

	// maxTokenLimiterKeys bounds the agents the limiter tracks at once; past it (after
	// dropping idle agents) new agents are refused until one goes idle.
	maxTokenLimiterKeys = 100000
)

// RateLimit bounds requests per key: at most Requests in any Window, spread evenly
// (a burst of Requests at once is allowed, then one more every Window/Requests).
type RateLimit struct {
	// Requests per Window. Default 60.
	Requests int `json:"requests,omitempty"`
	// Window is the period Requests are counted over. Default 1m.
	Window caddy.Duration `json:"window,omitempty"`
	// Off disables the limit.
	Off bool `json:"off,omitempty"`
}

// sharedRateLimiter is a rate limit kept outside the process, shared by every instance
// (the Redis state backend's Allow: the same GCRA as tokenLimiter, in Redis).
type sharedRateLimiter interface {
	Allow(ctx context.Context, key string, requests int, window time.Duration) (ok bool, retry time.Duration, err error)
}

// tokenLimiter is a GCRA (generic cell rate algorithm) limiter keyed by agent: for each
// key it keeps the theoretical arrival time (tat) of the next request. A request at now
// passes when tat - now <= window - interval, and moves tat on by one interval. Memory
// is one time per active key, bounded by max keys.
type tokenLimiter struct {
	mu       sync.Mutex
	interval time.Duration // window / requests
	window   time.Duration
	max      int
	tat      map[string]time.Time
	swept    time.Time // last sweep made because the map was full
}

func newTokenLimiter(maxKeys int) *tokenLimiter {
	l := &tokenLimiter{max: maxKeys, tat: map[string]time.Time{}}
	l.configure(DefaultTokenRateRequests, DefaultTokenRateWindow)
	return l
}

// configure sets the rate (requests per window); the newest config wins. requests <= 0
// turns the limit off.
func (l *tokenLimiter) configure(requests int, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if requests <= 0 || window <= 0 {
		l.interval, l.window = 0, 0
		return
	}
	l.interval, l.window = window/time.Duration(requests), window
	if l.interval <= 0 {
		l.interval = time.Nanosecond
	}
}

// allow takes one request for key at now; when it is refused, retry is how long until
// the next one would pass.
func (l *tokenLimiter) allow(key string, now time.Time) (ok bool, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.interval == 0 {
		return true, 0
	}
	tat, seen := l.tat[key]
	if !seen || tat.Before(now) {
		tat = now
	}
	allowAt := tat.Add(l.interval - l.window) // earliest time this request may pass
	if now.Before(allowAt) {
		return false, allowAt.Sub(now)
	}
	if !seen && len(l.tat) >= l.max {
		// Full: drop idle keys, at most once a second (a flood of new agents must not
		// make every request scan the map).
		if now.Sub(l.swept) >= time.Second || now.Before(l.swept) {
			l.swept = now
			l.sweepLocked(now)
		}
		if len(l.tat) >= l.max {
			return false, max(l.interval, time.Second)
		}
	}
	l.tat[key] = tat.Add(l.interval)
	return true, 0
}

// sweep drops keys whose budget is full again (tat in the past).
func (l *tokenLimiter) sweep(now time.Time) {
	l.mu.Lock()
	l.sweepLocked(now)
	l.mu.Unlock()
}

func (l *tokenLimiter) sweepLocked(now time.Time) {
	for k, t := range l.tat {
		if !t.After(now) {
			delete(l.tat, k)
		}
	}
}
