package keystore

import "time"

// DefaultPublishDelay is how long a new key is published before it signs. Our JWKS
// responses say max-age=300 (five minutes) and the discovery client honours max-age, so
// twice that leaves every verifier that caches our JWKS time to see the new key before
// the first token it signs arrives.
const DefaultPublishDelay = 10 * time.Minute

// Policy is how a keyring rotates.
type Policy struct {
	// Lifetime is the longest lifetime of anything the key signs (auth tokens, resource
	// tokens, assertions): a retired key stays published that long after its successor
	// activates (plus ClockSkew).
	Lifetime time.Duration
	// Keep is how long a key that left the JWKS is still kept in the keyring for the
	// owner's own use (the auth server verifies its own expired tokens on refresh).
	Keep time.Duration
	// PublishDelay is how long a new key is published before it signs. Zero: DefaultPublishDelay.
	PublishDelay time.Duration
	// Interval rotates the key automatically when the active key has been signing this
	// long. Zero: only on request.
	Interval time.Duration
}

// merge is the policy that satisfies both p and o: the longer lifetimes and delays, the
// shorter non-zero interval.
func (p Policy) merge(o Policy) Policy {
	p.Lifetime = max(p.Lifetime, o.Lifetime)
	p.Keep = max(p.Keep, o.Keep)
	p.PublishDelay = max(p.PublishDelay, o.PublishDelay)
	if p.Interval == 0 || (o.Interval != 0 && o.Interval < p.Interval) {
		p.Interval = o.Interval
	}
	return p
}

func (p Policy) withDefaults() Policy {
	if p.PublishDelay == 0 {
		p.PublishDelay = DefaultPublishDelay
	}
	return p
}

// reread is how long a keyring read from storage is used before it is read again, so a
// rotation by another instance on the same storage is seen well within the publish
// delay: a quarter of it, between 200ms and 10s.
func (p Policy) reread() time.Duration {
	return min(max(p.withDefaults().PublishDelay/4, 200*time.Millisecond), 10*time.Second)
}
