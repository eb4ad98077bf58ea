package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state/statetest"
)

// twoInstances returns two Stores over the same directory, each with its own stripes,
// as two processes sharing a file_system storage would have.
func twoInstances(t *testing.T) [2]*state.Storage {
	dir := t.TempDir()
	return [2]*state.Storage{
		state.NewStorage(&certmagic.FileStorage{Path: dir}),
		state.NewStorage(&certmagic.FileStorage{Path: dir}),
	}
}

// TestConformance runs the state.Store conformance suite on two Storages over one
// directory.
func TestConformance(t *testing.T) {
	statetest.Run(t, func(t *testing.T) [2]state.Store {
		inst := twoInstances(t)
		return [2]state.Store{inst[0], inst[1]}
	})
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
