package state_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// BenchmarkOnceFileStorage is one first use of a fresh key on a file_system storage, as
// the auth server spends each resource token's jti.
func BenchmarkOnceFileStorage(b *testing.B) {
	s := state.NewStorage(&certmagic.FileStorage{Path: b.TempDir()})
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	i := 0
	for b.Loop() {
		fresh, err := s.Once(ctx, "aauth/bench/jti/"+strconv.Itoa(i), exp)
		if err != nil || !fresh {
			b.Fatalf("key %d: fresh %v, %v", i, fresh, err)
		}
		i++
	}
}
