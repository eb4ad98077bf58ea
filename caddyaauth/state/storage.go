package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// Storage implements Store over a certmagic.Storage: each step takes a cross-process
// lock for the key, re-reads the key from storage, writes, and unlocks. On a
// certmagic.FileStorage (Caddy's file_system storage) on Unix the lock is flock(2) on one
// of a fixed set of stripe files under <root>/locks/aauth_state (never stale: the kernel
// drops it when the holder dies; no fsync); on other storages it is the storage's
// Lock/Unlock. Once on such a FileStorage keeps its marks in a fixed set of append-only
// logs under <root>/aauth_once instead of a file per key (see once_unix.go), so its keys
// are not files in the storage. Inside one process a mutex per key stripe queues callers
// before they contend for the storage lock, so at most one goroutine per process polls a
// held lock.
//
// The steps are exactly-once only if the storage's locks exclude other processes; a
// storage whose Lock is a no-op gives no cross-process guarantee. Every process sharing a
// file_system storage must run a version with the logged Once: an older one's Once (a
// file per key) does not see the logs, though the logged Once honours its records.
type Storage struct {
	st      certmagic.Storage
	flock   func(ctx context.Context, sum [32]byte) (func(), error) // nil: st's Lock
	files   *onceLogs                                               // non-nil: Once appends to logs
	stripes [256]sync.Mutex
}

// NewStorage returns a Store keeping its state in st.
func NewStorage(st certmagic.Storage) *Storage {
	return &Storage{st: st, flock: flockFor(st), files: onceFiles(st)}
}

// Storage returns the certmagic storage behind s.
func (s *Storage) Storage() certmagic.Storage { return s.st }

// onceRecord is what Once stores at a key: when the mark dies (unix seconds).
type onceRecord struct {
	Exp int64 `json:"exp"`
}

// Once implements Store. On a FileStorage (Unix) the mark is a line in a log; elsewhere
// the record at key is {"exp": <unix seconds>}.
func (s *Storage) Once(ctx context.Context, key string, exp time.Time) (bool, error) {
	if s.files != nil {
		return s.files.once(ctx, key, exp)
	}
	return s.onceLocked(ctx, key, exp)
}

// onceLocked is Once as an Update: under the key's lock, take the key unless it holds a
// live record.
func (s *Storage) onceLocked(ctx context.Context, key string, exp time.Time) (bool, error) {
	fresh := false
	_, err := s.Update(ctx, key, func(old []byte) ([]byte, error) {
		fresh = false
		var rec onceRecord
		if old != nil && json.Unmarshal(old, &rec) == nil && time.Now().Unix() < rec.Exp {
			return old, nil // used, and still alive
		}
		// absent, expired or unreadable: the value it guarded is dead; take it
		fresh = true
		return json.Marshal(onceRecord{Exp: exp.Unix()})
	})
	if err != nil {
		return false, err
	}
	return fresh, nil
}

// Update implements Store.
func (s *Storage) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) ([]byte, error) {
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	old, err := s.st.Load(ctx, key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return nil, fmt.Errorf("state: loading %s: %w", key, err)
	}
	val, err := fn(old)
	if err != nil {
		return nil, err
	}
	switch {
	case val == nil && old == nil:
	case val == nil:
		if err := s.st.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("state: deleting %s: %w", key, err)
		}
	case old != nil && bytes.Equal(val, old):
	default:
		if err := s.st.Store(ctx, key, val); err != nil {
			return nil, fmt.Errorf("state: storing %s: %w", key, err)
		}
	}
	return val, nil
}

// Load implements Store.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	return s.st.Load(ctx, key)
}

// tryLocker is certmagic.FileStorage's non-blocking lock; with it we poll a held lock
// every few milliseconds instead of certmagic's one second.
type tryLocker interface {
	TryLock(ctx context.Context, name string) (bool, error)
}

// lockPoll is the longest pause between attempts at a held storage lock (jittered).
var lockPoll = 20 * time.Millisecond

// lock takes the in-process stripe for key, then the storage lock for key, and returns
// the function that releases both.
func (s *Storage) lock(ctx context.Context, key string) (func(), error) {
	sum := sha256.Sum256([]byte(key))
	stripe := &s.stripes[sum[0]]
	stripe.Lock()
	if s.flock != nil {
		release, err := s.flock(ctx, sum)
		if err != nil {
			stripe.Unlock()
			return nil, fmt.Errorf("state: locking %s: %w", key, err)
		}
		return func() { release(); stripe.Unlock() }, nil
	}
	name := "aauth_state_" + hex.EncodeToString(sum[:16])
	if err := s.storageLock(ctx, name); err != nil {
		stripe.Unlock()
		return nil, fmt.Errorf("state: locking %s: %w", key, err)
	}
	return func() {
		// a failed unlock leaves a lock file that goes stale within seconds
		_ = s.st.Unlock(context.WithoutCancel(ctx), name)
		stripe.Unlock()
	}, nil
}

// storageLock blocks until it holds the storage lock name or ctx ends.
func (s *Storage) storageLock(ctx context.Context, name string) error {
	tl, ok := s.st.(tryLocker)
	if !ok {
		return s.st.Lock(ctx, name)
	}
	for {
		// FileStorage.TryLock waits up to a second on a held lock unless its context
		// ends first; a short deadline turns it into one attempt.
		tctx, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
		got, err := tl.TryLock(tctx, name)
		cancel()
		if got {
			return nil
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockPoll/4 + rand.N(lockPoll)):
		}
	}
}

// Interface guard
var _ Store = (*Storage)(nil)
