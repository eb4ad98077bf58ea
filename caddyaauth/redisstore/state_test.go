package redisstore

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore/redistest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state/statetest"
)

// TestStateConformance runs the state.Store conformance suite on two clients of one
// real redis-server.
func TestStateConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) [2]state.Store {
		srv := redistest.Start(t)
		return [2]state.Store{newTestStorage(t, srv, 0), newTestStorage(t, srv, 0)}
	})
}

// What Update writes is an ordinary storage key: List and Exists see it.
func TestStateUpdateIsAStorageKey(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	key := "aauth/issuer/x/pending/p1"
	if _, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return []byte("a"), nil }); err != nil {
		t.Fatal(err)
	}
	if names, err := s.List(ctx, "aauth/issuer/x/pending", false); err != nil || len(names) != 1 || names[0] != key {
		t.Fatalf("List = %q, %v", names, err)
	}
	if _, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
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
