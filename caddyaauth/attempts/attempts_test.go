package attempts

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func TestLimitAndWindow(t *testing.T) {
	l := New(10, time.Minute, 100)
	for i := range 10 {
		if !l.Take("198.51.100.7", t0) {
			t.Fatalf("refused after %d wrong attempts", i)
		}
		l.Done("198.51.100.7", t0, true)
	}
	if l.Take("198.51.100.7", t0) {
		t.Fatal("not refused after the limit")
	}
	if !l.Take("198.51.100.8", t0) {
		t.Fatal("another key is refused")
	}
	l.Done("198.51.100.8", t0, false)
	if !l.Take("198.51.100.7", t0.Add(time.Minute)) {
		t.Fatal("still refused after the window")
	}
	// Right attempts do not count.
	for range 50 {
		if !l.Take("198.51.100.9", t0) {
			t.Fatal("right attempts were counted")
		}
		l.Done("198.51.100.9", t0, false)
	}
}

func TestMemoryBounded(t *testing.T) {
	l := New(10, time.Minute, 100)
	for i := range 1000 {
		key := fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		l.Take(key, t0)
		l.Done(key, t0, true)
	}
	if l.Len() > 100 {
		t.Fatalf("%d entries, want at most 100", l.Len())
	}
	l.Sweep(t0.Add(time.Minute))
	if l.Len() != 0 {
		t.Fatalf("%d entries after their windows ended", l.Len())
	}
}

// Parallel attempts cannot all slip past the limit: of 1000 started before any of them
// is done, only limit+InflightSlack are let through.
func TestParallelAttempts(t *testing.T) {
	l := New(10, time.Minute, 100)
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			if l.Take("198.51.100.1", t0) {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	if passed.Load() != 10+InflightSlack {
		t.Fatalf("%d parallel attempts passed, want %d", passed.Load(), 10+InflightSlack)
	}
	// When they turn out wrong, the key is refused; right ones free their slot.
	for range 10 {
		l.Done("198.51.100.1", t0, true)
	}
	for range InflightSlack {
		l.Done("198.51.100.1", t0, false)
	}
	if l.Take("198.51.100.1", t0) {
		t.Fatal("a key with 10 wrong attempts must be refused")
	}
	ok := New(10, time.Minute, 100)
	for range 50 {
		if !ok.Take("198.51.100.2", t0) {
			t.Fatal("50 attempts in progress from one address must pass (people behind one NAT)")
		}
	}
}
