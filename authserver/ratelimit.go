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

// rateLimiter counts wrong attempts per key in a fixed window and refuses a key that
// reached the limit until its window ends. Attempts in progress count too, up to a slack,
// so parallel attempts cannot all pass a check made before any of them failed: the work
// (bcrypt, lookups) a key can cause per window is bounded by limit+slack. Memory is
// bounded by max keys.
type rateLimiter struct {
	limit  int
	window time.Duration
	max    int

	mu sync.Mutex
	m  map[string]*window
}

type window struct {
	start    time.Time
	n        int // wrong attempts in this window
	inflight int // attempts taken and not yet done
}

// inflightSlack is how many attempts beyond the limit may be in progress at once (many
// people behind one address signing in at the same moment).
const inflightSlack = 256

func newRateLimiter(limit int, win time.Duration, maxKeys int) *rateLimiter {
	return &rateLimiter{limit: limit, window: win, max: maxKeys, m: map[string]*window{}}
}

// take starts an attempt for key; false means the key is at its limit. Every true must
// be followed by done.
func (l *rateLimiter) take(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windowLocked(key, now)
	if w.n >= l.limit || w.n+w.inflight >= l.limit+inflightSlack {
		return false
	}
	w.inflight++
	return true
}

// done ends an attempt; a wrong one counts toward the limit.
func (l *rateLimiter) done(key string, now time.Time, wrong bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windowLocked(key, now)
	if w.inflight > 0 {
		w.inflight--
	}
	if wrong {
		w.n++
	}
}

// windowLocked returns key's current window, starting a new one (attempts in progress
// carry over) when the old one ended.
func (l *rateLimiter) windowLocked(key string, now time.Time) *window {
	w, ok := l.m[key]
	if ok && now.Sub(w.start) < l.window {
		return w
	}
	inflight := 0
	if ok {
		inflight = w.inflight
	} else if len(l.m) >= l.max {
		l.sweepLocked(now)
		for k, old := range l.m { // still full: drop an idle entry
			if len(l.m) < l.max {
				break
			}
			if old.inflight == 0 {
				delete(l.m, k)
			}
		}
	}
	w = &window{start: now, inflight: inflight}
	l.m[key] = w
	return w
}

func (l *rateLimiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *rateLimiter) sweepLocked(now time.Time) {
	for k, w := range l.m {
		if now.Sub(w.start) >= l.window && w.inflight == 0 {
			delete(l.m, k)
		}
	}
}
