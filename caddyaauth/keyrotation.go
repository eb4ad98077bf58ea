package caddyaauth

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// EventKeyRotated is the Caddy event emitted after a signing key rotation, with the
// fields owner, role, new_kid, old_kid and activates (RFC 3339).
const EventKeyRotated = "aauth_key_rotated"

// Bounds of the rotation options.
const (
	minKeyRotation     = time.Minute
	maxKeyPublishDelay = 24 * time.Hour
)

// KeyRotationConfig is the key rotation option of the aauth and aauth_server handlers,
// embedded in both (its JSON fields are the handler's). Keys are rotated on request
// through the admin API (POST /aauth/keys/rotate) whatever these say.
type KeyRotationConfig struct {
	// KeyRotation rotates the signing keys this handler uses automatically once the
	// active key has signed this long (at least 1m). Default: only on request.
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`

	// KeyPublishDelay is how long a new key is in the JWKS before it signs, so that
	// verifiers holding a cached JWKS (ours answer max-age=300) see it before its first
	// token (at most 24h). Default 10m.
	KeyPublishDelay caddy.Duration `json:"key_publish_delay,omitempty"`
}

// UnmarshalKeyOption reads key_rotation or key_publish_delay; handled is false for
// another option.
func (c *KeyRotationConfig) UnmarshalKeyOption(d *caddyfile.Dispenser, opt string) (handled bool, err error) {
	var dst *caddy.Duration
	switch opt {
	case "key_rotation":
		dst = &c.KeyRotation
	case "key_publish_delay":
		dst = &c.KeyPublishDelay
	default:
		return false, nil
	}
	return true, positiveDuration(d, dst, func(v string, _ error) error {
		return d.Errf("%s: %q is not a positive duration", opt, v)
	})
}

// Validate checks the options.
func (c KeyRotationConfig) Validate() error {
	delay, every := time.Duration(c.KeyPublishDelay), time.Duration(c.KeyRotation)
	switch {
	case delay < 0 || delay > maxKeyPublishDelay:
		return fmt.Errorf("key_publish_delay: want a duration up to %s, got %s", maxKeyPublishDelay, delay)
	case every < 0 || (every != 0 && every < minKeyRotation):
		return fmt.Errorf("key_rotation: want a duration of at least %s, got %s", minKeyRotation, every)
	case every != 0 && every <= c.Policy(0, 0).PublishDelay:
		return errors.New("key_rotation must be longer than key_publish_delay (default 10m)")
	}
	return nil
}

// Policy is the keyring policy of a key whose signed artefacts live at most lifetime
// and which the owner needs for its own verification keep longer.
func (c KeyRotationConfig) Policy(lifetime, keep time.Duration) keystore.Policy {
	p := keystore.Policy{
		Lifetime: lifetime, Keep: keep,
		PublishDelay: time.Duration(c.KeyPublishDelay), Interval: time.Duration(c.KeyRotation),
	}
	if p.PublishDelay == 0 {
		p.PublishDelay = keystore.DefaultPublishDelay
	}
	return p
}

// KeyUser holds a module's registrations on the process's keyrings.
type KeyUser struct {
	ctx      caddy.Context
	events   *caddyevents.App // nil: no events (tests without Caddy)
	releases []func()
}

// NewKeyUser starts the registrations of the module provisioned with ctx, taking the
// events app (as Caddy's tls app does for its certificate events).
func NewKeyUser(ctx caddy.Context) (*KeyUser, error) {
	u := &KeyUser{ctx: ctx}
	if ctx.Context == nil {
		return u, nil
	}
	app, err := ctx.App("events")
	if err != nil {
		return nil, fmt.Errorf("events app: %w", err)
	}
	u.events, _ = app.(*caddyevents.App)
	return u, nil
}

// Acquire returns the keyring of (role, id) in st, generated with alg, with policy p;
// each rotation emits aauth_key_rotated through the events app. Release drops it.
func (u *KeyUser) Acquire(st certmagic.Storage, role, id, alg string, p keystore.Policy) *keystore.Key {
	k, release := keystore.Acquire(st, keystore.LayoutOf(role, id), alg, p, u.emit)
	u.releases = append(u.releases, release)
	return k
}

// Release drops every registration (from the module's Cleanup; nil-safe).
func (u *KeyUser) Release() {
	if u == nil {
		return
	}
	for _, r := range u.releases {
		r()
	}
	u.releases = nil
}

// emit emits aauth_key_rotated (never a key: kids and times only).
func (u *KeyUser) emit(r keystore.Rotation) {
	if u.events == nil {
		return
	}
	u.events.Emit(u.ctx, EventKeyRotated, map[string]any{
		"owner": r.Owner, "role": r.Role, "new_kid": r.NewKID, "old_kid": r.OldKID,
		"activates": r.Activates.UTC().Format(time.RFC3339),
	})
}
