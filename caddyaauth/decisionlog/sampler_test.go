package decisionlog

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestSampler drives one key through a clock: which lines are allowed and what each
// allowed line carries as suppressed.
func TestSampler(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		at    time.Duration // offset from t0
		lines int           // lines logged at that time
	}
	cases := []struct {
		name              string
		first, thereafter int64
		steps             []step
		allowed           []int   // 1-based numbers (over all steps) of the allowed lines
		suppressed        []int64 // what each allowed line carries
	}{
		{"under first", 3, 2, []step{{0, 3}}, []int{1, 2, 3}, []int64{0, 0, 0}},
		{"every m-th after first", 3, 2, []step{{0, 8}}, []int{1, 2, 3, 5, 7}, []int64{0, 0, 0, 1, 1}},
		{"every line with thereafter 1", 1, 1, []step{{0, 4}}, []int{1, 2, 3, 4}, []int64{0, 0, 0, 0}},
		{"new second resets, carries suppressed", 2, 10, []step{{0, 6}, {time.Second, 3}},
			[]int{1, 2, 7, 8}, []int64{0, 0, 4, 0}},
		{"same second later in it", 2, 10, []step{{0, 3}, {999 * time.Millisecond, 2}}, []int{1, 2}, []int64{0, 0}},
		{"earlier second counts in current", 1, 10, []step{{time.Second, 1}, {0, 1}, {time.Second, 1}},
			[]int{1}, []int64{0}},
		{"defaults 100/100", 0, 0, []step{{0, 250}}, append(seq(1, 100), 200), append(make([]int64, 100), 99)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Sampler{First: c.first, Thereafter: c.thereafter}
			var allowed []int
			var supp []int64
			i := 0
			for _, st := range c.steps {
				for range st.lines {
					i++
					if ok, n := s.Allow("invalid_request", t0.Add(st.at)); ok {
						allowed, supp = append(allowed, i), append(supp, n)
					} else if n != 0 {
						t.Fatalf("line %d suppressed with count %d", i, n)
					}
				}
			}
			if !slices.Equal(allowed, c.allowed) || !slices.Equal(supp, c.suppressed) {
				t.Fatalf("allowed %v suppressed %v, want %v %v", allowed, supp, c.allowed, c.suppressed)
			}
		})
	}
}

// TestSamplerKeys: keys are sampled apart; beyond maxSamplerKeys they share a bucket;
// a nil sampler allows all.
func TestSamplerKeys(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := &Sampler{First: 1, Thereafter: 1000}
	for i := range maxSamplerKeys {
		if ok, _ := s.Allow("k"+strconv.Itoa(i), now); !ok {
			t.Fatalf("first line of key %d suppressed", i)
		}
	}
	if ok, _ := s.Allow("k0", now); ok {
		t.Fatal("second line of k0 allowed")
	}
	if ok, _ := s.Allow("extra-a", now); !ok {
		t.Fatal("first overflow line suppressed")
	}
	if ok, _ := s.Allow("extra-b", now); ok {
		t.Fatal("a second overflow key got a bucket of its own")
	}
	if n := len(*s.keys.Load()); n != maxSamplerKeys {
		t.Fatalf("%d keys tracked", n)
	}
	var none *Sampler
	if ok, n := none.Allow("x", now); !ok || n != 0 {
		t.Fatal("nil sampler suppressed")
	}
}

// TestSamplerConcurrent: under concurrent use (run with -race) within one second, the
// allowed lines and the suppressed counts they carry add up to every line.
func TestSamplerConcurrent(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := new(Sampler)
	const workers, per = 8, 1000
	// Start each key's window first: racing to start it may renumber a line (documented).
	s.Allow("code0", now)
	s.Allow("code1", now)
	var mu sync.Mutex
	allowed, carried := int64(2), int64(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var a, c int64
			for range per {
				if ok, n := s.Allow("code"+strconv.Itoa(w%2), now); ok {
					a, c = a+1, c+n
				}
			}
			mu.Lock()
			allowed, carried = allowed+a, carried+c
			mu.Unlock()
		})
	}
	wg.Wait()
	// Per key 4001 lines: 100 + every 100th up to 4000 = 139 allowed. A line
	// suppressed after the last allowed one took its count stays pending.
	pending := s.keys.Load()
	var left int64
	for _, c := range *pending {
		left += c.suppressed.Load()
	}
	if allowed != 2*139 || allowed+carried+left != workers*per+2 {
		t.Fatalf("allowed %d, carried %d, pending %d", allowed, carried, left)
	}
}

// BenchmarkSamplerAllow: the hot path of a key already seen (run with -benchmem: 0
// allocs/op).
func BenchmarkSamplerAllow(b *testing.B) {
	s := new(Sampler)
	now := time.Now()
	s.Allow("invalid_signature", now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Allow("invalid_signature", now)
		}
	})
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}
