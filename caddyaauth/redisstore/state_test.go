package redisstore

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore/redistest"
)

func TestStateOnceExactlyOnceAcrossClients(t *testing.T) {
	srv := redistest.Start(t)
	clients := [2]*Storage{newTestStorage(t, srv, 0), newTestStorage(t, srv, 0)}
	ctx := context.Background()
	for trial := range 5 {
		key := "aauth/issuer/x/jti/" + strconv.Itoa(trial)
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				ok, err := clients[i%2].Once(ctx, key, time.Now().Add(time.Minute))
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
			t.Fatalf("trial %d: %d of 50 callers were first, want exactly 1", trial, n)
		}
	}
}

func TestStateOnceExpiry(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	tests := []struct {
		name       string
		exp        time.Duration
		wait       time.Duration
		secondUsed bool // second use refused?
	}{
		{"alive", time.Minute, 0, true},
		{"expires", 300 * time.Millisecond, 500 * time.Millisecond, false},
		{"dead on arrival", -time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "once/" + tt.name
			exp := time.Now().Add(tt.exp)
			if ok, err := s.Once(ctx, key, exp); err != nil || !ok {
				t.Fatalf("first use: %v, %v", ok, err)
			}
			time.Sleep(tt.wait)
			ok, err := s.Once(ctx, key, exp.Add(time.Minute))
			if err != nil || ok == tt.secondUsed {
				t.Fatalf("second use: fresh %v, %v; want fresh %v", ok, err, !tt.secondUsed)
			}
		})
	}
}

func TestStateUpdateSerialisedAcrossClients(t *testing.T) {
	srv := redistest.Start(t)
	clients := [2]*Storage{newTestStorage(t, srv, 0), newTestStorage(t, srv, 0)}
	ctx := context.Background()
	key := "aauth/test/counter"
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, err := clients[i%2].Update(ctx, key, func(old []byte) ([]byte, error) {
				n, _ := strconv.Atoi(string(old))
				return []byte(strconv.Itoa(n + 1)), nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, err := clients[1].Load(ctx, key); err != nil || string(got) != "50" {
		t.Fatalf("counter = %q, %v; want 50 (lost updates)", got, err)
	}
	// A state machine step: of 20 racing "decide" calls exactly one moves it on.
	decided := errors.New("already decided")
	var won atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			_, err := clients[i%2].Update(ctx, "aauth/test/pending", func(old []byte) ([]byte, error) {
				if old != nil {
					return nil, decided
				}
				return []byte("approved:" + strconv.Itoa(i)), nil
			})
			switch {
			case err == nil:
				won.Add(1)
			case err != decided: // the sentinel comes back unwrapped
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d racing decisions won, want 1", n)
	}
}

func TestStateUpdateErrorDeleteAndStorageView(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	key := "aauth/issuer/x/pending/p1"
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of an absent key: %v", err)
	}
	if v, err := s.Update(ctx, key, func(old []byte) ([]byte, error) { return []byte("a"), nil }); err != nil || string(v) != "a" {
		t.Fatalf("create: %q, %v", v, err)
	}
	// What Update wrote is an ordinary storage key: List and Stat see it.
	if names, err := s.List(ctx, "aauth/issuer/x/pending", false); err != nil || len(names) != 1 || names[0] != key {
		t.Fatalf("List = %q, %v", names, err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return []byte("b"), boom }); err != boom {
		t.Fatalf("fn error: %v", err)
	}
	if v, _ := s.Load(ctx, key); string(v) != "a" {
		t.Fatalf("a refused update wrote: %q", v)
	}
	if v, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return nil, nil }); err != nil || v != nil {
		t.Fatalf("delete: %q, %v", v, err)
	}
	if s.Exists(ctx, key) {
		t.Fatal("deleted key still exists")
	}
}

func TestStateAllowSharedBudget(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestStorage(t, srv, 0), newTestStorage(t, srv, 0)
	ctx := context.Background()
	passed := 0
	for i := range 10 {
		s := a
		if i%2 == 1 {
			s = b
		}
		ok, retry, err := s.Allow(ctx, "agent:https://agent.example", 4, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			passed++
		} else if retry <= 0 || retry > 15*time.Second {
			t.Errorf("retry = %v, want (0, 15s]", retry)
		}
	}
	if passed != 4 {
		t.Fatalf("%d of 10 requests passed a budget of 4 shared by two clients", passed)
	}
	if ok, _, err := a.Allow(ctx, "agent:other", 4, time.Minute); err != nil || !ok {
		t.Fatalf("another key has its own budget: %v, %v", ok, err)
	}
	if ok, _, err := a.Allow(ctx, "any", 0, time.Minute); err != nil || !ok {
		t.Fatal("a limit of 0 is off")
	}
}

func TestStateUnavailableAndDurableAcrossRestart(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	if ok, err := s.Once(ctx, "jti/spent", exp); err != nil || !ok {
		t.Fatal(ok, err)
	}
	srv.Kill() // SIGKILL: only the append-only file survives
	if _, err := s.Once(ctx, "jti/other", exp); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Once with redis down: want ErrUnavailable, got %v", err)
	}
	if _, err := s.Update(ctx, "rec", func([]byte) ([]byte, error) { return []byte("x"), nil }); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Update with redis down: want ErrUnavailable, got %v", err)
	}
	if _, _, err := s.Allow(ctx, "k", 1, time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Allow with redis down: want ErrUnavailable, got %v", err)
	}
	if _, err := s.Load(ctx, "rec"); !errors.Is(err, ErrUnavailable) || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load with redis down: want ErrUnavailable, got %v", err)
	}
	srv.Restart()
	if ok, err := s.Once(ctx, "jti/spent", exp); err != nil || ok {
		t.Fatalf("after a restart the spent mark is gone: fresh %v, %v", ok, err)
	}
}
