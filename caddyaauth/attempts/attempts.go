// Package attempts limits wrong attempts per client: wrong interaction codes and failed
// sign-ins at an auth server's consent pages, unknown codes at a resource's chaining
// interact endpoint (draft-hardt-aauth: interaction codes must be rate limited). A key
// that made the limit of wrong attempts in a fixed window is refused until the window
// ends.
package attempts

import (
	"sync"
	"time"
)

// Limiter counts wrong attempts per key in a fixed window and refuses a key that
// reached the limit until its window ends. Attempts in progress count too, up to a slack,
// so parallel attempts cannot all pass a check made before any of them failed: the work
// (bcrypt, lookups) a key can cause per window is bounded by limit+slack. Memory is
// bounded by max keys.
type Limiter struct {
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

// InflightSlack is how many attempts beyond the limit may be in progress at once (many
// people behind one address signing in at the same moment).
const InflightSlack = 256

// New returns a limiter of limit wrong attempts per key in each window of win, tracking
// at most maxKeys keys at once.
func New(limit int, win time.Duration, maxKeys int) *Limiter {
	return &Limiter{limit: limit, window: win, max: maxKeys, m: map[string]*window{}}
}

// Take starts an attempt for key; false means the key is at its limit. Every true must
// be followed by Done.
func (l *Limiter) Take(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windowLocked(key, now)
	if w.n >= l.limit || w.n+w.inflight >= l.limit+InflightSlack {
		return false
	}
	w.inflight++
	return true
}

// Done ends an attempt; a wrong one counts toward the limit.
func (l *Limiter) Done(key string, now time.Time, wrong bool) {
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
func (l *Limiter) windowLocked(key string, now time.Time) *window {
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

// Sweep drops the keys whose window ended and that have no attempt in progress.
func (l *Limiter) Sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *Limiter) sweepLocked(now time.Time) {
	for k, w := range l.m {
		if now.Sub(w.start) >= l.window && w.inflight == 0 {
			delete(l.m, k)
		}
	}
}

// Len is the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
