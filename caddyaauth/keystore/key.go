package keystore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Key is the keyring of one identifier in one role, kept in Caddy storage
// (keyring.json): the key that signs now, the next key (published before it signs) and
// retired keys (published until every token they signed has expired). It is read from
// storage, or created there, on first use rather than when the config is provisioned,
// so that `caddy validate` writes nothing; it is read again every Policy.reread, so a
// rotation by another instance sharing the storage is seen without a reload.
type Key struct {
	st     certmagic.Storage
	layout Layout
	alg    string
	now    func() time.Time

	mu     sync.Mutex
	ring   *ring     // nil until read
	readAt time.Time // when ring was read from storage
	users  map[*user]struct{}
	seq    uint64        // users registered so far
	base   Policy        // the policy when no user is registered (NewKey)
	auto   bool          // an automatic rotation is running
	failed time.Time     // the last automatic rotation failed then: wait a re-read period
	stop   chan struct{} // closed when a registered Key leaves the registry (ends watch)
}

// user is one registration of a Key (a handler of the running config).
type user struct {
	policy   Policy
	onRotate func(Rotation)
	seq      uint64 // registration order: the newest user's onRotate reports a rotation
}

// Rotation describes a rotation, for the aauth_key_rotated event.
type Rotation struct {
	Owner, Role    string
	NewKID, OldKID string
	Activates      time.Time // when the new key starts signing
}

// NewKey returns the keyring of layout l in st, its first key generated with alg, with
// the default policy (no automatic rotation). Handlers use Acquire instead.
func NewKey(st certmagic.Storage, l Layout, alg string) *Key {
	return &Key{st: st, layout: l, alg: alg, now: time.Now, users: map[*user]struct{}{}}
}

// Owner is the identifier the keyring belongs to; Role its role.
func (k *Key) Owner() string { return k.layout.id }

// Role is the role of the keyring (RoleResource, RoleIssuer, ...).
func (k *Key) Role() string { return k.layout.role }

// policy is the merge of every user's policy.
func (k *Key) policy() Policy {
	p := k.base.withDefaults()
	first := true
	for u := range k.users {
		if first {
			p, first = u.policy, false
			continue
		}
		p = p.merge(u.policy)
	}
	return p
}

// current returns the keyring, read from storage (or created there) when it was never
// read or was read longer than the policy's reread ago. When a re-read fails the keyring
// read before is used. An automatic rotation that is due is started in the background.
func (k *Key) current(ctx context.Context) (*ring, error) {
	k.mu.Lock()
	now, p := k.now(), k.policy()
	if k.ring == nil || now.Sub(k.readAt) >= p.reread() {
		r, err := k.read(ctx)
		if errors.Is(err, fs.ErrNotExist) {
			r, err = k.create(ctx)
		}
		switch {
		case err == nil:
			k.ring = r
		case k.ring == nil:
			k.mu.Unlock()
			return nil, err
		}
		k.readAt = now
	}
	r := k.ring
	due := p.Interval > 0 && !k.auto && !now.Before(r.newest().Activates.Add(p.Interval)) &&
		(k.failed.IsZero() || now.Sub(k.failed) >= p.reread())
	k.auto = k.auto || due
	k.mu.Unlock()
	if due {
		go k.autoRotate(p.Interval)
	}
	return r, nil
}

// read reads the keyring from storage; fs.ErrNotExist when there is none.
func (k *Key) read(ctx context.Context) (*ring, error) {
	b, err := k.st.Load(ctx, k.layout.KeyringKey())
	if err != nil {
		return nil, err
	}
	r, err := parseRing(b)
	if err != nil {
		return nil, fmt.Errorf("stored keyring %s is unreadable (fix or remove it): %w", k.layout.KeyringKey(), err)
	}
	return r, nil
}

// locked runs fn under the keyring's storage lock, with the keyring read after the
// lock was taken (nil when there is none yet); fn's keyring, when not nil, is stored.
func (k *Key) locked(ctx context.Context, fn func(*ring) (*ring, error)) (*ring, error) {
	lock := k.layout.keygenLock()
	if err := k.st.Lock(ctx, lock); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock, err)
	}
	defer func() { _ = k.st.Unlock(context.WithoutCancel(ctx), lock) }()
	r, err := k.read(ctx)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out, err := fn(r)
	if err != nil || out == nil {
		return out, err
	}
	b, err := out.marshal()
	if err != nil {
		return nil, err
	}
	if err := k.st.Store(ctx, k.layout.KeyringKey(), b); err != nil {
		return nil, fmt.Errorf("storing keyring: %w", err)
	}
	return out, nil
}

// create stores the first keyring under the lock, unless another instance did first:
// the signing key of an older version (signing.jwk) becomes its active key, so an
// upgrade keeps its kid; else a fresh key, active at once (nothing to announce it to).
func (k *Key) create(ctx context.Context) (*ring, error) {
	var existing *ring
	r, err := k.locked(ctx, func(r *ring) (*ring, error) {
		if r != nil {
			existing = r
			return nil, nil
		}
		s, since, err := k.legacy(ctx)
		if errors.Is(err, fs.ErrNotExist) {
			s, err = keys.Generate(k.alg, "")
		}
		if err != nil {
			return nil, err
		}
		e, err := newEntry(s, since, since)
		if err != nil {
			return nil, err
		}
		return &ring{keys: []*entry{e}}, nil
	})
	if existing != nil {
		return existing, nil
	}
	return r, err
}

// legacy reads the single signing key older versions stored, with the time it was
// stored (now when storage does not say).
func (k *Key) legacy(ctx context.Context) (*keys.Signer, time.Time, error) {
	now := k.now()
	b, err := k.st.Load(ctx, k.layout.SigningKey())
	if err != nil {
		return nil, now, err
	}
	s, err := keys.ParsePrivateJWK(b)
	if err != nil {
		return nil, now, fmt.Errorf("stored signing key %s is unreadable: %w", k.layout.SigningKey(), err)
	}
	if s.Public.KID == "" {
		s.Public.KID = s.Public.Thumbprint[:16]
	}
	if info, err := k.st.Stat(ctx, k.layout.SigningKey()); err == nil && !info.Modified.IsZero() && info.Modified.Before(now) {
		now = info.Modified
	}
	return s, now, nil
}

// Signer returns the key that signs now.
func (k *Key) Signer(ctx context.Context) (*keys.Signer, error) {
	r, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	return r.active(k.now()).signer, nil
}

// Published returns the public keys of the JWKS now, newest first: the next key (if
// any), the active key and the retired keys whose tokens may still be live.
func (k *Key) Published(ctx context.Context) ([]*keys.PublicKey, error) {
	r, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	return r.published(k.now()), nil
}

// Lookup returns the public key kid of the keyring, published or not (nil when there is
// none): for the owner's own verification of what it signed.
func (k *Key) Lookup(ctx context.Context, kid string) (*keys.PublicKey, error) {
	r, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	return r.lookup(kid), nil
}
