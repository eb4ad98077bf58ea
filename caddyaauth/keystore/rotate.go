package keystore

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Rotate adds a new key to the keyring: published at once, signing after the policy's
// publish delay; the key it follows retires once every token it signed has expired.
// It runs under the keyring's storage lock with the keyring read after the lock was
// taken, so rotations by instances sharing the storage never lose one another.
func (k *Key) Rotate(ctx context.Context) (Rotation, error) {
	rot, _, err := k.rotate(ctx, 0)
	return rot, err
}

// rotate rotates; with interval > 0 only when the newest key has been (or will have
// been) signing for interval, so instances sharing the storage rotate once per interval.
func (k *Key) rotate(ctx context.Context, interval time.Duration) (Rotation, bool, error) {
	k.mu.Lock()
	p := k.policy()
	k.mu.Unlock()
	var rot Rotation
	r, err := k.locked(ctx, func(r *ring) (*ring, error) {
		if r == nil {
			return nil, errors.New("no keyring yet")
		}
		now := k.now()
		if interval > 0 && now.Before(r.newest().Activates.Add(interval)) {
			return nil, nil
		}
		s, err := keys.Generate(k.alg, "")
		if err != nil {
			return nil, err
		}
		old, added, err := r.add(s, now, p)
		if err != nil {
			return nil, err
		}
		rot = Rotation{Owner: k.layout.id, Role: k.layout.role, NewKID: added.KID, OldKID: old.KID, Activates: added.Activates}
		return r, nil
	})
	if err != nil || r == nil {
		return rot, false, err
	}
	k.mu.Lock()
	k.ring, k.readAt = r, k.now()
	var report *user
	for u := range k.users {
		if u.onRotate != nil && (report == nil || u.seq > report.seq) {
			report = u
		}
	}
	k.mu.Unlock()
	if report != nil {
		report.onRotate(rot) // once per rotation, however many handlers share the key
	}
	return rot, true, nil
}

// autoRotate is the automatic rotation current starts when one is due.
func (k *Key) autoRotate(interval time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, rotated, err := k.rotate(ctx, interval)
	k.mu.Lock()
	k.auto, k.failed = false, time.Time{}
	switch {
	case err != nil:
		k.failed = k.now() // storage trouble: not again on every use
	case !rotated:
		k.readAt = time.Time{} // another instance rotated: read its keyring
	}
	k.mu.Unlock()
}

// watch checks a registered keyring for a due interval rotation every re-read period,
// so an idle instance rotates too. It only looks at a keyring already read (by the
// config's start or a use), so `caddy validate` still writes nothing.
func (k *Key) watch(stop <-chan struct{}) {
	for {
		k.mu.Lock()
		p, loaded := k.policy(), k.ring != nil
		k.mu.Unlock()
		if p.Interval > 0 && loaded {
			_, _ = k.current(context.Background())
		}
		select {
		case <-stop:
			return
		case <-time.After(p.reread()):
		}
	}
}

// Info is one key of a keyring as the admin API lists it (never the private key).
type Info struct {
	Owner     string    `json:"owner"`
	Role      string    `json:"role"`
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Activates time.Time `json:"activates"`
	Retires   time.Time `json:"retires,omitzero"`
}

// Infos lists the keys of the keyring, oldest first.
func (k *Key) Infos(ctx context.Context) ([]Info, error) {
	r, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	now := k.now()
	out := make([]Info, 0, len(r.keys))
	for _, e := range r.keys {
		out = append(out, Info{
			Owner: k.layout.id, Role: k.layout.role, KID: e.KID, Alg: e.signer.Public.JWSAlg(),
			State: r.state(e, now), Created: e.Created, Activates: e.Activates, Retires: e.Retires,
		})
	}
	return out, nil
}
