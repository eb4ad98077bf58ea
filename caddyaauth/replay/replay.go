// Package replay is a bounded single-use store for signed requests: a request whose
// signature base was seen once is refused for as long as its signature could still be
// accepted. It implements the "cache recently seen signatures" option of the AAuth draft
// (March 2026, §20.11, security considerations: replay) and RFC 9421 §7.2.2, and has no
// Caddy imports.
//
// Keys are the first 128 bits of SHA-256 over the RFC 9421 §2.5 signature base. The base
// covers @signature-params (created, and nonce when the signer sends one) and the
// Signature-Key value, so equal keys mean the same signed message. Keying on the base
// rather than on the Signature value matters for ECDSA: (r, s) and (r, n-s) both verify,
// so an attacker could replay a P-256 request under a different Signature value.
//
// Memory is bounded: each entry lives until the end of its signature's acceptance
// window and is then dropped (a min-heap per shard, swept on every insert), and the store
// holds at most Capacity entries. When a shard is full of entries that are still live
// the store refuses the new request (ErrFull): evicting a live entry would let its
// request be replayed, so the store fails closed instead.
package replay

import (
	"container/heap"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Key identifies one signed message.
type Key [16]byte

// KeyOf returns the key of a signature base.
func KeyOf(base []byte) Key {
	sum := sha256.Sum256(base)
	var k Key
	copy(k[:], sum[:])
	return k
}

// Errors returned by Store.Use.
var (
	ErrReplay = errors.New("replay: the signed request was already used")
	ErrFull   = errors.New("replay: store is full")
)

// DefaultCapacity is the entry bound of New when capacity <= 0: about 1M entries,
// roughly 70 MB when full.
const DefaultCapacity = 1 << 20

const shardCount = 16

// Store is safe for concurrent use.
type Store struct {
	perShard int
	shards   [shardCount]shard
}

type shard struct {
	mu sync.Mutex
	m  map[Key]int64 // expiry, Unix seconds
	h  expHeap
}

// New returns a store holding at most capacity live entries (DefaultCapacity when
// capacity <= 0).
func New(capacity int) *Store {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	per := (capacity + shardCount - 1) / shardCount
	s := &Store{perShard: per}
	for i := range s.shards {
		s.shards[i].m = make(map[Key]int64)
	}
	return s
}

// Use records k as used until expires (exclusive) and reports nil, or ErrReplay when k
// is already recorded and has not expired at now, or ErrFull. The check and the insert
// are one atomic step, so of several concurrent uses of one key exactly one succeeds.
// expires should be the first instant at which the signature can no longer be accepted
// (created + window + 1 s); entries with expires <= now are not stored.
func (s *Store) Use(k Key, expires, now time.Time) error {
	sh := &s.shards[k[0]%shardCount]
	exp, n := expires.Unix(), now.Unix()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(n)
	if _, ok := sh.m[k]; ok {
		return ErrReplay
	}
	if exp <= n {
		return nil // could not be accepted again anyway
	}
	if len(sh.m) >= s.perShard {
		return ErrFull
	}
	sh.m[k] = exp
	heap.Push(&sh.h, entry{exp: exp, key: k})
	return nil
}

// Forget drops k, so that a later Use of k succeeds again. Callers use it to undo a Use
// whose request was not accepted after all (a second, shared store could not be asked):
// the signed request was never let through, so it may still be used once.
func (s *Store) Forget(k Key) {
	sh := &s.shards[k[0]%shardCount]
	sh.mu.Lock()
	delete(sh.m, k) // its heap entry finds no match when it is swept
	sh.mu.Unlock()
}

// Len returns the number of stored entries (some may have expired but not been swept).
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// sweep drops the entries that expired at now (Unix seconds).
func (sh *shard) sweep(now int64) {
	for len(sh.h) > 0 && sh.h[0].exp <= now {
		e := heap.Pop(&sh.h).(entry)
		if sh.m[e.key] == e.exp {
			delete(sh.m, e.key)
		}
	}
}

type entry struct {
	exp int64
	key Key
}

type expHeap []entry

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
