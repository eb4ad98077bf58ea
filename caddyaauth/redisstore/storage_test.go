package redisstore

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore/redistest"
)

// newTestStorage returns a storage with a client of its own (as a separate process
// would have) on srv, closed when t ends.
func newTestStorage(t *testing.T, srv *redistest.Server, lockTTL time.Duration) *Storage {
	t.Helper()
	cfg := Config{Address: srv.Addr, KeyPrefix: "test", DialTimeout: 1e9, ReadTimeout: 1e9}
	c := NewClient(cfg)
	t.Cleanup(func() { _ = c.Destruct() })
	return New(c, cfg, lockTTL)
}

func TestStorageStoreLoadStatExistsDelete(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	for _, k := range []string{"certs/a/cert.pem", "certs/a/key.pem", "certs/b/cert.pem", "top"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatalf("Store %s: %v", k, err)
		}
	}
	if got, err := s.Load(ctx, "certs/a/key.pem"); err != nil || string(got) != "v:certs/a/key.pem" {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if _, err := s.Load(ctx, "certs/a/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: want fs.ErrNotExist, got %v", err)
	}
	tests := []struct {
		key      string
		exists   bool
		terminal bool
		size     int64
	}{
		{"certs/a/cert.pem", true, true, int64(len("v:certs/a/cert.pem"))},
		{"/certs/a/cert.pem/", true, true, int64(len("v:certs/a/cert.pem"))}, // same key
		{"certs/a", true, false, 0},
		{"certs", true, false, 0},
		{"cert", false, false, 0}, // a prefix of a name is not a directory
		{"certs/c", false, false, 0},
	}
	for _, tt := range tests {
		if got := s.Exists(ctx, tt.key); got != tt.exists {
			t.Errorf("Exists(%q) = %v, want %v", tt.key, got, tt.exists)
		}
		info, err := s.Stat(ctx, tt.key)
		if !tt.exists {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat(%q): want fs.ErrNotExist, got %v", tt.key, err)
			}
			continue
		}
		if err != nil || info.IsTerminal != tt.terminal || info.Size != tt.size {
			t.Errorf("Stat(%q) = %+v, %v; want terminal %v size %d", tt.key, info, err, tt.terminal, tt.size)
		}
		if tt.terminal && time.Since(info.Modified) > time.Minute {
			t.Errorf("Stat(%q).Modified = %v, want about now", tt.key, info.Modified)
		}
	}
	// Delete a directory: everything below goes, siblings stay.
	if err := s.Delete(ctx, "certs/a"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certs/a") || s.Exists(ctx, "certs/a/cert.pem") || !s.Exists(ctx, "certs/b/cert.pem") {
		t.Fatal("Delete of a directory removed the wrong keys")
	}
	if err := s.Delete(ctx, "top"); err != nil || s.Exists(ctx, "top") {
		t.Fatalf("Delete of a key: %v", err)
	}
	if err := s.Delete(ctx, "never/stored"); err != nil {
		t.Fatalf("Delete of a missing key: want nil, got %v", err)
	}
}

func TestStorageList(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	for _, k := range []string{"acme/a/b/c", "acme/a/d", "acme/e", "acme-x/f", "other"} {
		if err := s.Store(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir       string
		recursive bool
		want      []string
		notExist  bool
	}{
		{"acme", false, []string{"acme/a", "acme/e"}, false},
		{"acme/", false, []string{"acme/a", "acme/e"}, false},
		{"acme", true, []string{"acme/a", "acme/a/b", "acme/a/b/c", "acme/a/d", "acme/e"}, false},
		{"acme/a/b", false, []string{"acme/a/b/c"}, false},
		{"", false, []string{"acme", "acme-x", "other"}, false},
		{"acme/e", false, []string{}, false}, // a file lists as empty, as in FileStorage
		{"missing", false, nil, true},
		{"acm", true, nil, true},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.dir, tt.recursive)
		if tt.notExist {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("List(%q, %v): want fs.ErrNotExist, got %v, %v", tt.dir, tt.recursive, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", tt.dir, tt.recursive, got, err, tt.want)
		}
	}
}

func TestStorageLockContention(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestStorage(t, srv, 0), newTestStorage(t, srv, 0)
	ctx := context.Background()
	if err := a.Lock(ctx, "issue/example.com"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := b.Lock(short, "issue/example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second client took a held lock: %v", err)
	}
	// Another name is independent.
	if err := b.Lock(ctx, "issue/other"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue/example.com") }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("Lock returned while the lock was held: %v", err)
	default:
	}
	if err := a.Unlock(ctx, "issue/example.com"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Lock did not return after the holder unlocked")
	}
	for _, name := range []string{"issue/example.com", "issue/other"} {
		if err := b.Unlock(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStorageLockRenewedWhileHeldExpiresWhenHolderDies(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestStorage(t, srv, time.Second), newTestStorage(t, srv, time.Second)
	ctx := context.Background()
	if err := a.Lock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	// Held past several TTLs: renewal keeps it.
	short, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if err := b.Lock(short, "job"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a renewed lock was taken: %v", err)
	}
	// The holder "dies": renewal stops without a release. The lock is stale after TTL.
	a.client.mu.Lock()
	held := a.client.locks[a.lockKey("job")]
	delete(a.client.locks, a.lockKey("job"))
	a.client.mu.Unlock()
	held.stop()
	start := time.Now()
	wait, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := b.Lock(wait, "job"); err != nil {
		t.Fatalf("stale lock never expired: %v", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("took %v to take a stale lock with lock_ttl 1s", d)
	}
	if err := b.Unlock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
}

func TestStorageUnlockByNonOwnerRefused(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newTestStorage(t, srv, 0), newTestStorage(t, srv, 0)
	ctx := context.Background()
	if err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "x"); !errors.Is(err, ErrNotLockOwner) {
		t.Fatalf("Unlock by a non-owner: want ErrNotLockOwner, got %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := b.Lock(short, "x"); err == nil {
		t.Fatal("the non-owner's Unlock released the lock")
	}
	if err := a.Unlock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "x"); !errors.Is(err, ErrNotLockOwner) {
		t.Fatalf("second Unlock: want ErrNotLockOwner, got %v", err)
	}
}

func TestStorageUnreachableFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := newTestStorage(t, srv, 0)
	ctx := context.Background()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if _, err := s.Load(ctx, "k"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load with redis down: want a connection error, got %v", err)
	}
	if err := s.Store(ctx, "k2", []byte("v")); err == nil {
		t.Fatal("Store with redis down succeeded")
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Lock(short, "l"); err == nil {
		t.Fatal("Lock with redis down succeeded")
	}
	srv.Restart() // the append-only file brings the key back
	if got, err := s.Load(ctx, "k"); err != nil || string(got) != "v" {
		t.Fatalf("after restart: Load = %q, %v", got, err)
	}
}
