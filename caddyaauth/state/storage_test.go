package state

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// twoInstances returns two Stores over the same directory, each with its own stripes,
// as two processes sharing a file_system storage would have.
func twoInstances(t *testing.T) [2]*Storage {
	dir := t.TempDir()
	return [2]*Storage{
		NewStorage(&certmagic.FileStorage{Path: dir}),
		NewStorage(&certmagic.FileStorage{Path: dir}),
	}
}

func TestOnceExactlyOnceAcrossInstances(t *testing.T) {
	inst := twoInstances(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	for trial := range 5 {
		key := "aauth/test/jti/" + strconv.Itoa(trial)
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				ok, err := inst[i%2].Once(ctx, key, exp)
				if err != nil {
					t.Error(err)
				}
				if ok {
					fresh.Add(1)
				}
			})
		}
		wg.Wait()
		if n := fresh.Load(); n != 1 {
			t.Fatalf("trial %d: %d fresh uses, want 1", trial, n)
		}
	}
}

func TestOnceExpiredMarkIsFreshAgain(t *testing.T) {
	s := twoInstances(t)[0]
	ctx := context.Background()
	tests := []struct {
		name string
		exp  time.Time
		want bool // second use fresh?
	}{
		{"alive", time.Now().Add(time.Minute), false},
		{"dead", time.Now().Add(-time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "aauth/test/once/" + tt.name
			if ok, err := s.Once(ctx, key, tt.exp); err != nil || !ok {
				t.Fatalf("first use: %v %v", ok, err)
			}
			if ok, err := s.Once(ctx, key, tt.exp); err != nil || ok != tt.want {
				t.Fatalf("second use: fresh %v (%v), want %v", ok, err, tt.want)
			}
		})
	}
}

func TestUpdateCountsAcrossInstances(t *testing.T) {
	inst := twoInstances(t)
	ctx := context.Background()
	key := "aauth/test/counter.json"
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			_, err := inst[i%2].Update(ctx, key, func(old []byte) ([]byte, error) {
				n, _ := strconv.Atoi(string(old))
				return []byte(strconv.Itoa(n + 1)), nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := inst[1].Load(ctx, key)
	if err != nil || string(got) != "40" {
		t.Fatalf("counter = %q (%v), want 40", got, err)
	}
}

func TestUpdateErrorAndDelete(t *testing.T) {
	s := twoInstances(t)[0]
	ctx := context.Background()
	key := "aauth/test/rec.json"
	errDecided := errors.New("already decided")
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of absent key: %v, want fs.ErrNotExist", err)
	}
	if v, err := s.Update(ctx, key, func(old []byte) ([]byte, error) {
		if old != nil {
			t.Errorf("old = %q, want nil", old)
		}
		return []byte("a"), nil
	}); err != nil || string(v) != "a" {
		t.Fatalf("create: %q %v", v, err)
	}
	if _, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return []byte("b"), errDecided }); err != errDecided {
		t.Fatalf("fn error: %v, want the sentinel unwrapped", err)
	}
	if v, _ := s.Load(ctx, key); string(v) != "a" {
		t.Fatalf("after a refused update: %q, want a", v)
	}
	if v, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return nil, nil }); err != nil || v != nil {
		t.Fatalf("delete: %q %v", v, err)
	}
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after delete: %v, want fs.ErrNotExist", err)
	}
}

func TestUpdateRespectsContext(t *testing.T) {
	inst := twoInstances(t)
	key := "aauth/test/held.json"
	hold := make(chan struct{})
	held := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_, _ = inst[0].Update(context.Background(), key, func([]byte) ([]byte, error) {
			close(held)
			<-hold
			return []byte("x"), nil
		})
	}()
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := inst[1].Update(ctx, key, func([]byte) ([]byte, error) { return []byte("y"), nil })
	close(hold)
	<-finished
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("update against a held lock: %v, want deadline exceeded", err)
	}
}
