package keystore

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
)

// registry holds the keyrings the running configs use, one per storage and layout, so
// every handler of an identifier shares one keyring and the admin API finds them all.
var registry = struct {
	sync.Mutex
	keys map[string]*Key
}{keys: map[string]*Key{}}

// storageID names a storage for the registry: its description when it has one (the
// file system storage names its folder), else its type and address.
func storageID(st certmagic.Storage) string {
	if s, ok := st.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T %p", st, st)
}

// Acquire returns the keyring of layout l in st shared by this process, registering a
// user with policy p (defaults applied) and onRotate, called after each rotation. The
// keyring follows the merged policy of its users (the longest lifetimes and delays, the
// shortest interval). release unregisters the user; the keyring leaves the registry
// with its last user (call it from the module's Cleanup, so a reload does not leak).
func Acquire(st certmagic.Storage, l Layout, alg string, p Policy, onRotate func(Rotation)) (k *Key, release func()) {
	name := storageID(st) + "\n" + l.prefix
	registry.Lock()
	defer registry.Unlock()
	k = registry.keys[name]
	created := k == nil
	if created {
		k = NewKey(st, l, alg)
		k.stop = make(chan struct{})
		registry.keys[name] = k
	}
	u := &user{policy: p.withDefaults(), onRotate: onRotate}
	k.mu.Lock()
	k.seq++
	u.seq = k.seq
	k.users[u] = struct{}{}
	k.mu.Unlock()
	if created {
		// Only now: a watch started before its first user would read the default
		// policy and sleep its longest re-read period before looking again.
		go k.watch(k.stop)
	}
	var once sync.Once
	return k, func() {
		once.Do(func() {
			registry.Lock()
			defer registry.Unlock()
			k.mu.Lock()
			delete(k.users, u)
			last := len(k.users) == 0
			k.mu.Unlock()
			if last && registry.keys[name] == k {
				delete(registry.keys, name)
				close(k.stop)
			}
		})
	}
}

// Registered returns the keyrings in use in this process, sorted by owner and role.
func Registered() []*Key {
	registry.Lock()
	out := make([]*Key, 0, len(registry.keys))
	for _, k := range registry.keys {
		out = append(out, k)
	}
	registry.Unlock()
	slices.SortFunc(out, func(a, b *Key) int {
		if c := strings.Compare(a.layout.id, b.layout.id); c != 0 {
			return c
		}
		return strings.Compare(a.layout.role, b.layout.role)
	})
	return out
}
