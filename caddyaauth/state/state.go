// Package state is the seam for the auth server's atomic steps: the single-use checks
// and state-machine moves that must hold exactly once across every process sharing the
// same state, not just inside one process.
//
// Single-use values (a resource token's jti, draft-hardt-aauth §16.2.3; an interaction
// code; a signature on a pending URL; a refreshed auth token's jti) go through Once.
// Records that move through states (a pending request: pending → approved/denied → done)
// go through Update, a read-modify-write that always starts from the stored value, so no
// process can answer from a copy another process has already moved on.
//
// Storage implements Store over a certmagic.Storage (every instance pointed at the same
// `storage` sees the same state; file_system locks are flock(2)ed files shared across
// processes, and Once appends its marks there to logs under flock(2)). Other backends
// (e.g. Redis with SET NX PX and WATCH or Lua) implement the same interface with native
// atomic operations.
package state

import (
	"context"
	"time"
)

// Store performs atomic steps on keys shared by every process that uses the same
// backend. Keys are slash-separated paths (certmagic storage keys, e.g.
// "aauth/issuer/<issuer>/jti/<hash>"); a key is used either with Once or with
// Update/Load, never both. All methods fail closed: on an error the caller must act as
// if the step did not happen (refuse the token, answer 5xx), never as if it succeeded.
type Store interface {
	// Once marks key as used until exp and reports whether this call was the first use:
	// fresh is true for exactly one caller among all processes, until exp. After exp the
	// mark is dead and a later Once may be fresh again (the value it guarded, e.g. a
	// token, has expired too). The backend may forget the mark after exp.
	Once(ctx context.Context, key string, exp time.Time) (fresh bool, err error)

	// Update atomically replaces the value at key with fn(old), where old is the
	// current stored value (nil when the key does not exist), read under a lock (or an
	// equivalent optimistic check) held across every process, never from a cache.
	//   - fn returns (new, nil): new is stored and returned; new == nil deletes the key
	//     (Update then returns nil, nil). A backend may skip the write when new equals
	//     old byte for byte.
	//   - fn returns (_, err): nothing is written and Update returns (nil, err) with err
	//     unwrapped, so callers can use sentinel errors to say "no change, and why".
	// fn may run more than once (an optimistic backend retries on conflict), so it must
	// have no side effects besides its return values; act on the result after Update
	// returns. Values have no expiry of their own: callers delete records they no longer
	// need.
	Update(ctx context.Context, key string, fn func(old []byte) (new []byte, err error)) ([]byte, error)

	// Load returns the value last stored at key by Update, without taking a lock (for
	// read-only answers); an absent key gives an error matching fs.ErrNotExist. A value
	// read by Load may be outdated by the time it is used, so any answer that changes
	// state must go through Update.
	Load(ctx context.Context, key string) ([]byte, error)
}
