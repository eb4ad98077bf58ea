// Package statetest is the conformance suite every state.Store backend must pass: the
// exactly-once and read-modify-write promises of package state, checked with two
// clients of one backend, as two processes sharing it would use it.
package statetest

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// NewPair returns two clients of one fresh backend.
type NewPair func(t *testing.T) [2]state.Store

// Run runs every conformance test against the backend newPair makes.
func Run(t *testing.T, newPair NewPair) {
	t.Run("OnceExactlyOnceAcrossClients", func(t *testing.T) { onceExactlyOnce(t, newPair(t)) })
	t.Run("OnceExpiry", func(t *testing.T) { onceExpiry(t, newPair(t)[0]) })
	t.Run("UpdateSerialisedAcrossClients", func(t *testing.T) { updateSerialised(t, newPair(t)) })
	t.Run("OneDecisionWins", func(t *testing.T) { oneDecisionWins(t, newPair(t)) })
	t.Run("UpdateErrorAndDelete", func(t *testing.T) { updateErrorAndDelete(t, newPair(t)[0]) })
}

func onceExactlyOnce(t *testing.T, c [2]state.Store) {
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	for trial := range 5 {
		key := "aauth/test/jti/" + strconv.Itoa(trial)
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				ok, err := c[i%2].Once(ctx, key, exp)
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
			t.Fatalf("trial %d: %d of 40 callers were first, want exactly 1", trial, n)
		}
	}
}

func onceExpiry(t *testing.T, s state.Store) {
	ctx := context.Background()
	tests := []struct {
		name        string
		exp, wait   time.Duration
		secondFresh bool
	}{
		{"alive", time.Minute, 0, false},
		{"expires", 300 * time.Millisecond, 500 * time.Millisecond, true},
		{"dead on arrival", -time.Second, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "aauth/test/once/" + tt.name
			exp := time.Now().Add(tt.exp)
			if ok, err := s.Once(ctx, key, exp); err != nil || !ok {
				t.Fatalf("first use: fresh %v, %v", ok, err)
			}
			time.Sleep(tt.wait)
			if ok, err := s.Once(ctx, key, exp.Add(time.Minute)); err != nil || ok != tt.secondFresh {
				t.Fatalf("second use: fresh %v, %v; want fresh %v", ok, err, tt.secondFresh)
			}
		})
	}
}

func updateSerialised(t *testing.T, c [2]state.Store) {
	ctx := context.Background()
	key := "aauth/test/counter.json"
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			_, err := c[i%2].Update(ctx, key, func(old []byte) ([]byte, error) {
				n, _ := strconv.Atoi(string(old))
				return []byte(strconv.Itoa(n + 1)), nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, err := c[1].Load(ctx, key); err != nil || string(got) != "40" {
		t.Fatalf("counter = %q, %v; want 40 (lost updates)", got, err)
	}
}

// oneDecisionWins is a state machine step: of 20 racing "decide" calls exactly one
// moves the record on, and the losers get the sentinel back unwrapped.
func oneDecisionWins(t *testing.T, c [2]state.Store) {
	ctx := context.Background()
	decided := errors.New("already decided")
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := c[i%2].Update(ctx, "aauth/test/pending.json", func(old []byte) ([]byte, error) {
				if old != nil {
					return nil, decided
				}
				return []byte("approved:" + strconv.Itoa(i)), nil
			})
			switch {
			case err == nil:
				won.Add(1)
			case err != decided:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d racing decisions won, want 1", n)
	}
}

func updateErrorAndDelete(t *testing.T, s state.Store) {
	ctx := context.Background()
	key := "aauth/test/rec.json"
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of an absent key: %v, want fs.ErrNotExist", err)
	}
	create := func(old []byte) ([]byte, error) {
		if old != nil {
			t.Errorf("old = %q, want nil", old)
		}
		return []byte("a"), nil
	}
	if v, err := s.Update(ctx, key, create); err != nil || string(v) != "a" {
		t.Fatalf("create: %q, %v", v, err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return []byte("b"), boom }); err != boom {
		t.Fatalf("fn error: %v, want the sentinel unwrapped", err)
	}
	if v, _ := s.Load(ctx, key); string(v) != "a" {
		t.Fatalf("a refused update wrote: %q", v)
	}
	if v, err := s.Update(ctx, key, func([]byte) ([]byte, error) { return nil, nil }); err != nil || v != nil {
		t.Fatalf("delete: %q, %v", v, err)
	}
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after delete: %v, want fs.ErrNotExist", err)
	}
}
