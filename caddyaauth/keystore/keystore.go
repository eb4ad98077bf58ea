// Package keystore keeps the signing keys of a resource or an auth server in Caddy
// storage (DESIGN.md §5): loaded, or generated once under a storage lock, so every
// reload, restart and cluster member sharing the storage signs with the same key and
// publishes the same kid.
package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Storage is the part of certmagic.Storage this package needs; tests pass a fake.
type Storage interface {
	certmagic.Locker
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Exists(ctx context.Context, key string) bool
}

// Prefix is where keys live: aauth/<role>/<safe id>/signing.jwk.
func Prefix(role, id string) string {
	return path.Join("aauth", role, certmagic.StorageKeys.Safe(id))
}

// KeyPath is the storage key of the private signing JWK.
func KeyPath(role, id string) string { return path.Join(Prefix(role, id), "signing.jwk") }

// LoadOrGenerate returns the signing key stored for (role, id), generating one with alg
// when there is none. Generation happens under a storage lock with a re-check after the
// lock is taken, so concurrent first starts agree on one key.
func LoadOrGenerate(ctx context.Context, st Storage, role, id, alg string) (*keys.Signer, error) {
	k := KeyPath(role, id)
	if s, err := load(ctx, st, k); err == nil {
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	lock := path.Join(Prefix(role, id), "keygen")
	if err := st.Lock(ctx, lock); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock, err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), lock) }()
	if s, err := load(ctx, st, k); err == nil {
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	s, err := keys.Generate(alg, "")
	if err != nil {
		return nil, err
	}
	// The kid is derived from the key itself: stable, unique, and meaningless.
	s.Public.KID = s.Public.Thumbprint[:16]
	b, err := s.MarshalPrivateJWK()
	if err != nil {
		return nil, err
	}
	if err := st.Store(ctx, k, b); err != nil {
		return nil, fmt.Errorf("storing signing key: %w", err)
	}
	return s, nil
}

func load(ctx context.Context, st Storage, k string) (*keys.Signer, error) {
	b, err := st.Load(ctx, k)
	if err != nil {
		return nil, err
	}
	s, err := keys.ParsePrivateJWK(b)
	if err != nil {
		return nil, fmt.Errorf("stored signing key %s is unreadable: %w", k, err)
	}
	if s.Public.KID == "" {
		s.Public.KID = s.Public.Thumbprint[:16]
	}
	return s, nil
}

// JWKS renders the public keys as a JWKS document.
func JWKS(pubs ...*keys.PublicKey) []byte {
	type set struct {
		Keys []map[string]any `json:"keys"`
	}
	out := set{Keys: []map[string]any{}}
	for _, p := range pubs {
		m := p.Members()
		m["use"] = "sig"
		m["alg"] = p.JWSAlg()
		out.Keys = append(out.Keys, m)
	}
	b, _ := json.Marshal(out)
	return b
}

// Memory is an in-memory Storage for tests.
type Memory struct {
	mu    sync.Mutex
	data  map[string][]byte
	locks map[string]chan struct{}
}

// NewMemory returns an empty in-memory storage.
func NewMemory() *Memory {
	return &Memory{data: map[string][]byte{}, locks: map[string]chan struct{}{}}
}

func (m *Memory) Store(_ context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[key] = append([]byte(nil), value...)
	return nil
}

func (m *Memory) Load(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), v...), nil
}

func (m *Memory) Exists(_ context.Context, key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.data[key]
	return ok
}

func (m *Memory) Lock(ctx context.Context, name string) error {
	for {
		m.mu.Lock()
		ch, held := m.locks[name]
		if !held {
			m.locks[name] = make(chan struct{})
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Memory) Unlock(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ch, ok := m.locks[name]; ok {
		close(ch)
		delete(m.locks, name)
	}
	return nil
}
