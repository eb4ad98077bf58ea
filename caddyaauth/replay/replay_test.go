package replay

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Unix(1774920963, 0)

func TestUseOnceThenRefused(t *testing.T) {
	s := New(100)
	k := KeyOf([]byte("base A"))
	exp := t0.Add(61 * time.Second)
	if err := s.Use(k, exp, t0); err != nil {
		t.Fatal(err)
	}
	// Refused for the whole window, up to the last second it could be accepted.
	for _, at := range []time.Duration{0, time.Second, 60 * time.Second} {
		if err := s.Use(k, exp, t0.Add(at)); !errors.Is(err, ErrReplay) {
			t.Fatalf("at +%s: %v, want ErrReplay", at, err)
		}
	}
	// Another base is a different message.
	if err := s.Use(KeyOf([]byte("base B")), exp, t0); err != nil {
		t.Fatal(err)
	}
	// Once the window is over the entry is dropped (the signature itself is refused by
	// the time check by then).
	if err := s.Use(k, exp.Add(time.Minute), exp); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// C5: N identical requests at once, exactly one wins.
func TestConcurrentUseExactlyOne(t *testing.T) {
	s := New(0)
	k := KeyOf([]byte("same request"))
	var ok, replayed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch err := s.Use(k, t0.Add(time.Minute), t0); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplay):
				replayed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 49 {
		t.Fatalf("ok=%d replayed=%d", ok.Load(), replayed.Load())
	}
}

// C6: bounded memory; a full store refuses (fails closed) rather than forgetting a live
// entry, and expired entries make room again.
func TestCapacityFailsClosedAndExpiryFreesRoom(t *testing.T) {
	s := New(shardCount * 4) // 4 per shard
	var keys []Key
	full := 0
	for i := 0; i < 1000 && full == 0; i++ {
		k := KeyOf(fmt.Appendf(nil, "req %d", i))
		switch err := s.Use(k, t0.Add(time.Minute), t0); {
		case err == nil:
			keys = append(keys, k)
		case errors.Is(err, ErrFull):
			full++
		default:
			t.Fatal(err)
		}
	}
	if full == 0 {
		t.Fatal("store never filled")
	}
	if s.Len() > shardCount*4 {
		t.Fatalf("Len %d over capacity", s.Len())
	}
	// Every stored entry is still refused: nothing live was evicted.
	for _, k := range keys {
		if err := s.Use(k, t0.Add(time.Minute), t0.Add(30*time.Second)); !errors.Is(err, ErrReplay) {
			t.Fatalf("live entry forgotten: %v", err)
		}
	}
	// After the window the old entries are swept on insert and new requests fit.
	later := t0.Add(time.Minute)
	for i := range 200 {
		k := KeyOf(fmt.Appendf(nil, "later %d", i))
		if err := s.Use(k, later.Add(time.Minute), later); err != nil && !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
	}
	if s.Len() > shardCount*4 {
		t.Fatalf("Len %d over capacity", s.Len())
	}
	for _, k := range keys {
		if err := s.Use(k, later.Add(time.Minute), later); errors.Is(err, ErrReplay) {
			t.Fatal("expired entry still refused")
		}
	}
}

// C7: a clock that goes backwards never drops a live entry.
func TestClockBackwards(t *testing.T) {
	s := New(100)
	k := KeyOf([]byte("x"))
	if err := s.Use(k, t0.Add(time.Minute), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(k, t0.Add(time.Minute), t0.Add(-time.Hour)); !errors.Is(err, ErrReplay) {
		t.Fatalf("after a backward jump: %v", err)
	}
}

func TestAlreadyExpiredNotStored(t *testing.T) {
	s := New(100)
	if err := s.Use(KeyOf([]byte("x")), t0, t0); err != nil || s.Len() != 0 {
		t.Fatalf("err=%v len=%d", err, s.Len())
	}
}

func BenchmarkUse(b *testing.B) {
	s := New(0)
	base := make([]byte, 1500) // a jwt-scheme base with an auth token
	now := time.Now()
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		i++
		base[0], base[1], base[2], base[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		if err := s.Use(KeyOf(base), now.Add(time.Minute), now); err != nil && !errors.Is(err, ErrFull) {
			b.Fatal(err)
		}
	}
}

// Forget undoes a Use (the request was not let through), so the next Use succeeds once.
func TestForget(t *testing.T) {
	s := New(100)
	k := KeyOf([]byte("base F"))
	exp := t0.Add(61 * time.Second)
	if err := s.Use(k, exp, t0); err != nil {
		t.Fatal(err)
	}
	s.Forget(k)
	s.Forget(KeyOf([]byte("never used"))) // a no-op
	if err := s.Use(k, exp, t0); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
	if err := s.Use(k, exp, t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("second use after Forget: %v, want ErrReplay", err)
	}
	if err := s.Use(k, exp.Add(time.Minute), exp); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}
