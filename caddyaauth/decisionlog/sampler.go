package decisionlog

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Sampler defaults, as in zap's production config: the first 100 lines of a key in a
// second, then every 100th.
const (
	DefaultFirst      = 100
	DefaultThereafter = 100
)

// maxSamplerKeys bounds the keys a Sampler tracks; further keys share one bucket, so a
// caller that keys by something an attacker controls cannot grow the map.
const maxSamplerKeys = 64

// Sampler thins repeated lines, per key and per second (the unix second of the time
// given): the first First lines of a key are allowed, then every Thereafter-th; the
// rest are suppressed and counted, and the count is handed to the next allowed line.
// The zero value is ready to use (First and Thereafter 0 mean the defaults). A nil
// *Sampler allows every line. A Sampler must not be copied after first use.
//
// At the boundary of a second, goroutines racing to start the new window may count a
// line or two in the wrong window; suppressed counts stay exact.
type Sampler struct {
	First      int64
	Thereafter int64

	keys     atomic.Pointer[map[string]*sampleCounter] // copied on write: lookups take no lock
	mu       sync.Mutex                                // serializes adding keys
	overflow sampleCounter                             // keys beyond maxSamplerKeys
}

type sampleCounter struct {
	sec        atomic.Int64 // unix second of the current window
	n          atomic.Int64 // lines of the key in the window
	suppressed atomic.Int64 // lines suppressed since the last allowed one
}

// Allow reports whether a line of key at now is to be written; when it is, suppressed
// is the number of lines of key suppressed since the previous allowed one.
func (s *Sampler) Allow(key string, now time.Time) (ok bool, suppressed int64) {
	if s == nil {
		return true, 0
	}
	c := s.counter(key)
	n := c.inc(now.Unix())
	first, then := s.First, s.Thereafter
	if first <= 0 {
		first = DefaultFirst
	}
	if then <= 0 {
		then = DefaultThereafter
	}
	if n > first && (n-first)%then != 0 {
		c.suppressed.Add(1)
		return false, 0
	}
	return true, c.suppressed.Swap(0)
}

// inc counts a line in the window of sec and returns its number in that window. A
// line of an earlier second (a racing caller's clock) counts in the current window.
func (c *sampleCounter) inc(sec int64) int64 {
	cur := c.sec.Load()
	if sec <= cur {
		return c.n.Add(1)
	}
	if !c.sec.CompareAndSwap(cur, sec) {
		return c.n.Add(1) // another caller started the window
	}
	c.n.Store(1)
	return 1
}

// counter returns key's counter, adding it when there is room.
func (s *Sampler) counter(key string) *sampleCounter {
	if m := s.keys.Load(); m != nil {
		if c, ok := (*m)[key]; ok {
			return c
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]*sampleCounter{}
	if old := s.keys.Load(); old != nil {
		if c, ok := (*old)[key]; ok {
			return c
		}
		if len(*old) >= maxSamplerKeys {
			return &s.overflow
		}
		next = maps.Clone(*old)
	}
	c := new(sampleCounter)
	next[key] = c
	s.keys.Store(&next)
	return c
}
