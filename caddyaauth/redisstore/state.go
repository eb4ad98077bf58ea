package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/internal/ctxsleep"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/state"
)

// The atomic steps of state.Store, done with Redis's own primitives instead of a lock
// around read and write:
//
//   - Once is SET <prefix>:once:<key> 1 NX PXAT <exp>: Redis sets the key only when it
//     is absent, as one command, so exactly one caller among all processes sees OK; the
//     mark expires by itself at exp (by the Redis server's clock).
//   - Update reads <prefix>:data:<key> under WATCH and writes it in MULTI/EXEC: the
//     transaction is refused when another client changed the key after the read, and the
//     read-modify-write starts again from the new value (optimistic locking, see
//     https://redis.io/docs/latest/develop/interact/transactions/#optimistic-locking-using-check-and-set).
//     Values use the storage layout (hash + index), so Load, List and Delete of the
//     Storage see what Update wrote.
//   - Allow is a GCRA rate limit in one Lua script, timed by the server's TIME, so every
//     instance spends from the same budget.
//
// Every error but "absent" matches ErrUnavailable: the caller fails closed.

// ErrUnavailable marks an error talking to Redis (refused, timed out, loading, read
// only, ...): the step did not happen and may succeed later. Callers answer 503.
var ErrUnavailable = errors.New("redis unavailable")

// unavailable wraps err (not nil, not redis.Nil) so it matches ErrUnavailable.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (s *Storage) onceKey(key string) string { return s.KeyPrefix + ":once:" + key }

// Once implements state.Store.
func (s *Storage) Once(ctx context.Context, key string, exp time.Time) (bool, error) {
	k := normalize(key)
	if k == "" {
		return false, errors.New("redis state once: empty key")
	}
	if !exp.After(time.Now()) {
		// A mark dead on arrival: state.Store calls every use after exp fresh (what it
		// guarded has expired too, and the caller checks that). Nothing to write.
		return true, nil
	}
	_, err := s.client.SetArgs(ctx, s.onceKey(k), "1", redis.SetArgs{Mode: "NX", ExpireAt: exp}).Result()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil):
		return false, nil // already set
	default:
		return false, fmt.Errorf("redis state once %q: %w", k, unavailable(err))
	}
}

// maxUpdateAttempts bounds the optimistic retries of one Update under contention.
const maxUpdateAttempts = 1000

// fnError carries fn's own error out of the WATCH callback, unwrapped.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// Update implements state.Store.
func (s *Storage) Update(ctx context.Context, key string, fn func(old []byte) ([]byte, error)) ([]byte, error) {
	k := normalize(key)
	if k == "" {
		return nil, errors.New("redis state update: empty key")
	}
	dk := s.dataKey(k)
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		var result []byte
		err := s.client.Watch(ctx, func(tx *redis.Tx) error {
			var err error
			result, err = s.updateTx(ctx, tx, k, fn)
			return err
		}, dk)
		var fe fnError
		switch {
		case err == nil:
			return result, nil
		case errors.As(err, &fe):
			return nil, fe.err
		case errors.Is(err, redis.TxFailedErr):
			// Another client wrote the key between our read and our write: read again.
			if err := ctxsleep.Sleep(ctx, time.Duration(rand.N(min(attempt+1, 20)))*time.Millisecond); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("redis state update %q: %w", k, unavailable(err))
		}
	}
	return nil, fmt.Errorf("redis state update %q: %w: gave up after %d conflicting writes", k, ErrUnavailable, maxUpdateAttempts)
}

// updateTx is one read-modify-write attempt on a watched key.
func (s *Storage) updateTx(ctx context.Context, tx *redis.Tx, k string, fn func([]byte) ([]byte, error)) ([]byte, error) {
	dk := s.dataKey(k)
	old, err := tx.HGet(ctx, dk, "value").Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		old = nil
	case err != nil:
		return nil, err
	}
	val, err := fn(old)
	if err != nil {
		return nil, fnError{err}
	}
	if (val == nil && old == nil) || (val != nil && old != nil && bytes.Equal(val, old)) {
		return val, nil // nothing to write
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if val == nil {
			p.Del(ctx, dk)
			p.ZRem(ctx, s.indexKey(), k)
			return nil
		}
		p.HSet(ctx, dk, "value", val, "modified", now)
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: k})
		return nil
	})
	return val, err
}

// gcraScript is the generic cell rate algorithm: KEYS[1] holds the theoretical arrival
// time (ms) of the next request; a request passes when tat - now <= window - interval,
// and moves tat on by interval. It returns {1, 0} or {0, ms until one would pass}.
var gcraScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
if tat < now then tat = now end
local allow_at = tat + interval - window
if now < allow_at then return {0, allow_at - now} end
tat = tat + interval
redis.call("SET", KEYS[1], tat, "PX", tat - now)
return {1, 0}`)

// RateLimiter is a rate limit shared by every process on the same backend: the Redis
// state backend implements it (an extension of state.Store).
type RateLimiter interface {
	// Allow takes one request for key from a budget of requests per window (a burst
	// of requests at once, then one more every window/requests); when it is refused,
	// retry is how long until one would pass. An error means the budget could not be
	// checked: fail closed.
	Allow(ctx context.Context, key string, requests int, window time.Duration) (ok bool, retry time.Duration, err error)
}

// Allow implements RateLimiter with gcraScript under <prefix>:rate:<key>.
func (s *Storage) Allow(ctx context.Context, key string, requests int, window time.Duration) (bool, time.Duration, error) {
	if requests <= 0 || window <= 0 {
		return true, 0, nil
	}
	interval := max(window.Milliseconds()/int64(requests), 1)
	res, err := gcraScript.Run(ctx, s.client, []string{s.KeyPrefix + ":rate:" + key}, interval, window.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("redis rate limit: %w", unavailable(err))
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("redis rate limit: %w: unexpected reply", ErrUnavailable)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

// Interface guards
var (
	_ state.Store = (*Storage)(nil)
	_ RateLimiter = (*Storage)(nil)
)
