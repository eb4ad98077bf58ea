package keystore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// ClockSkew is the margin added to a retiring key's last token expiry before the key
// leaves the JWKS: verifiers accept tokens up to this much past exp (the skew
// token verification allows).
const ClockSkew = time.Minute

// Key states, as the admin API lists them.
const (
	StateNext    = "next"    // published, not signing yet
	StateActive  = "active"  // the key that signs now
	StateRetired = "retired" // no longer signing; published until its retire time
)

// entry is one key of a keyring as stored (keyring.json). Times are UTC.
type entry struct {
	KID       string          `json:"kid"`
	JWK       json.RawMessage `json:"jwk"` // the private JWK (never log it)
	Created   time.Time       `json:"created"`
	Activates time.Time       `json:"activates"`
	Retires   time.Time       `json:"retires,omitzero"` // zero: not retiring yet

	signer *keys.Signer
}

// ringFile is the stored keyring.
type ringFile struct {
	Keys []*entry `json:"keys"`
}

// ring is a keyring in memory: its keys sorted by activation, oldest first.
type ring struct {
	keys []*entry
}

// parseRing reads a stored keyring; an unreadable one is an error, never replaced.
func parseRing(b []byte) (*ring, error) {
	var f ringFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if len(f.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	for i, e := range f.Keys {
		if e == nil || e.KID == "" || e.Activates.IsZero() {
			return nil, fmt.Errorf("key %d has no kid or activation time", i)
		}
		s, err := keys.ParsePrivateJWK(e.JWK)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", e.KID, err)
		}
		s.Public.KID = e.KID
		e.signer = s
	}
	r := &ring{keys: f.Keys}
	r.sort()
	return r, nil
}

func (r *ring) marshal() ([]byte, error) {
	return json.MarshalIndent(ringFile{Keys: r.keys}, "", "\t")
}

func (r *ring) sort() {
	slices.SortStableFunc(r.keys, func(a, b *entry) int { return a.Activates.Compare(b.Activates) })
}

// newEntry makes an entry of s, created at created and signing from activates.
func newEntry(s *keys.Signer, created, activates time.Time) (*entry, error) {
	if s.Public.KID == "" {
		// The kid is derived from the key itself: stable, unique, and meaningless.
		s.Public.KID = s.Public.Thumbprint[:16]
	}
	b, err := s.MarshalPrivateJWK()
	if err != nil {
		return nil, err
	}
	return &entry{KID: s.Public.KID, JWK: b, Created: created.UTC(), Activates: activates.UTC(), signer: s}, nil
}

// active is the key that signs at now: the newest whose activation has come. Before
// the first activation (a clock set back) the oldest key signs.
func (r *ring) active(now time.Time) *entry {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if !r.keys[i].Activates.After(now) {
			return r.keys[i]
		}
	}
	return r.keys[0]
}

// published are the keys of the JWKS at now: from creation (a next key is published
// before it signs) until the retire time, the active key always.
func (r *ring) published(now time.Time) []*keys.PublicKey {
	act := r.active(now)
	var out []*keys.PublicKey
	for i := len(r.keys) - 1; i >= 0; i-- {
		e := r.keys[i]
		live := !e.Created.After(now) && (e.Retires.IsZero() || now.Before(e.Retires))
		if e == act || live {
			out = append(out, e.signer.Public)
		}
	}
	return out
}

// lookup is the key kid, published or not yet pruned: the owner's own verification
// (a refresh of an expired token) may need a key that left the JWKS.
func (r *ring) lookup(kid string) *keys.PublicKey {
	for _, e := range r.keys {
		if e.KID == kid {
			return e.signer.Public
		}
	}
	return nil
}

// state is e's state at now.
func (r *ring) state(e *entry, now time.Time) string {
	switch act := r.active(now); {
	case e == act:
		return StateActive
	case e.Activates.After(act.Activates):
		return StateNext
	}
	return StateRetired
}

// newest is the key activated last (or to be activated next).
func (r *ring) newest() *entry { return r.keys[len(r.keys)-1] }

// add appends s, published now and signing from now+p.PublishDelay, and sets the retire
// time of the key it follows: its last token is signed just before s activates and lives
// p.Lifetime, plus ClockSkew. Keys whose retire time passed more than p.Keep ago are
// dropped. It returns the entry that s follows.
func (r *ring) add(s *keys.Signer, now time.Time, p Policy) (old, added *entry, err error) {
	old = r.newest()
	activates := now.Add(p.PublishDelay)
	if activates.Before(old.Activates) {
		activates = old.Activates // a shorter delay after a longer one: never sign before the previous key
	}
	if added, err = newEntry(s, now, activates); err != nil {
		return nil, nil, err
	}
	if r.lookup(added.KID) != nil {
		return nil, nil, fmt.Errorf("kid %s already in the keyring", added.KID)
	}
	old.Retires = activates.Add(p.Lifetime + ClockSkew).UTC()
	r.keys = slices.DeleteFunc(r.keys, func(e *entry) bool {
		return !e.Retires.IsZero() && !now.Before(e.Retires.Add(p.Keep))
	})
	r.keys = append(r.keys, added)
	r.sort()
	return old, added, nil
}
