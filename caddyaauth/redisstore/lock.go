package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Locks follow the single-instance Redis lock pattern documented at
// https://redis.io/docs/latest/develop/use/patterns/distributed-locks/: SET key token
// NX PX ttl takes the lock, only the holder of token may renew (PEXPIRE) or release
// (DEL) it, each checked in a Lua script so the check and the change are one step. A
// holder that dies leaves a lock that expires after LockTTL.

// releaseScript deletes KEYS[1] when it still holds ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// renewScript moves the expiry of KEYS[1] to ARGV[2] ms when it still holds ARGV[1].
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// ErrNotLockOwner is returned by Unlock for a lock this process does not hold.
var ErrNotLockOwner = errors.New("lock not held by this process")

// heldLock is a lock this process holds: its token and the renewal goroutine.
type heldLock struct {
	token  string
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (l *heldLock) stop() {
	l.once.Do(func() {
		l.cancel()
		<-l.done
	})
}

// Lock takes the lock name, waiting until it is free (released, or expired after its
// holder stopped renewing it) or ctx is done.
func (s *Storage) Lock(ctx context.Context, name string) error {
	key := s.lockKey(name)
	token, err := newToken()
	if err != nil {
		return err
	}
	ttl := time.Duration(s.LockTTL)
	wait := 50 * time.Millisecond
	for {
		ok, err := s.client.SetNX(ctx, key, token, ttl).Result()
		if err != nil {
			return fmt.Errorf("redis storage lock %q: %w", name, unavailable(err))
		}
		if ok {
			s.hold(key, token, ttl)
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redis storage lock %q: %w", name, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, time.Second)
	}
}

// hold records a lock taken and renews it every third of ttl until Unlock.
func (s *Storage) hold(key, token string, ttl time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &heldLock{token: token, cancel: cancel, done: make(chan struct{})}
	s.client.mu.Lock()
	if old := s.client.locks[key]; old != nil {
		// Our earlier hold of this key expired in Redis (renewal failed) without an
		// Unlock; the new token is the one that counts.
		defer old.stop()
	}
	s.client.locks[key] = l
	s.client.mu.Unlock()
	go func() {
		defer close(l.done)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n, err := renewScript.Run(ctx, s.client, []string{key}, token, ttl.Milliseconds()).Int()
			if ctx.Err() != nil {
				return
			}
			if err != nil || n == 0 {
				s.logger.Warn("could not renew a redis storage lock; it may expire while held",
					zap.String("lock", key), zap.Bool("lost", err == nil), zap.Error(err))
			}
		}
	}()
}

// Unlock releases the lock name. It refuses (ErrNotLockOwner) a lock this process does
// not hold, and never deletes a lock another holder took after ours expired.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	key := s.lockKey(name)
	s.client.mu.Lock()
	l := s.client.locks[key]
	if l != nil {
		delete(s.client.locks, key)
	}
	s.client.mu.Unlock()
	if l == nil {
		return fmt.Errorf("redis storage unlock %q: %w", name, ErrNotLockOwner)
	}
	l.stop()
	n, err := releaseScript.Run(ctx, s.client, []string{key}, l.token).Int()
	if err != nil {
		return fmt.Errorf("redis storage unlock %q: %w", name, unavailable(err))
	}
	if n == 0 {
		return fmt.Errorf("redis storage unlock %q: the lock had expired (held longer than lock_ttl without renewal)", name)
	}
	return nil
}

func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
