package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// ErrUnavailable marks a fetch that failed for a reason that may pass on its own (the
// server did not answer, timed out, answered 5xx, 408 or 429, the connection broke, or
// the outbound fetch budget was exhausted) while no usable cached copy existed. Callers
// answer such failures with 503 and Retry-After (RFC 9110 §15.6.4, §10.2.3) instead of
// calling the credential bad. A document that was fetched and is wrong (4xx, not JSON,
// the wrong identifier, no such key) is not ErrUnavailable.
var ErrUnavailable = errors.New("discovery: temporarily unavailable")

// UnavailableError is the error of an ErrUnavailable failure: which document could not
// be fetched and when the client will try it again. It also wraps ErrFetch.
type UnavailableError struct {
	Kind       string        // "metadata" or "jwks"
	URL        string        // the document's URL (clipped)
	RetryAfter time.Duration // until the failure backoff ends; at least a second
	err        error
}

func (e *UnavailableError) Error() string { return e.err.Error() }

// Unwrap exposes ErrUnavailable and the underlying failure (which wraps ErrFetch).
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// Unavailable returns the UnavailableError in err's chain, if any.
func Unavailable(err error) (*UnavailableError, bool) {
	var ue *UnavailableError
	ok := errors.As(err, &ue)
	return ue, ok
}

// errTransient marks the failures fetch considers passing; run turns them into an
// *UnavailableError.
var errTransient = errors.New("transient")

// transientStatus reports whether a non-200 answer is an outage rather than a verdict.
func transientStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// asUnavailable wraps a fetch failure marked transient as an *UnavailableError; other
// errors are returned as they are.
func asUnavailable(err error, k *kind, u string, retry time.Duration) error {
	if err == nil || !errors.Is(err, errTransient) {
		return err
	}
	if ue, ok := Unavailable(err); ok {
		cp := *ue
		cp.RetryAfter = max(retry, time.Second)
		return &cp
	}
	return &UnavailableError{Kind: k.name, URL: clip(u), RetryAfter: max(retry, time.Second), err: err}
}

// transient wraps err as a passing failure.
func transient(err error) error { return fmt.Errorf("%w (%w)", err, errTransient) }

// RefreshKey is for a signature that failed to verify with old, the key Key returned
// for kid: the issuer may have replaced the key under the same kid. It refetches id's
// JWKS at once, unless a JWKS younger than a second is cached or such a refresh of this
// identifier (or JWKS URL) ran within KeyChangeInterval, and returns the key now listed
// under kid when it differs from old. Otherwise it returns an ErrUnknownKey error and
// the caller keeps its verdict. Fetch failures are returned as they are.
func (c *Client) RefreshKey(ctx context.Context, id, doc, kid string, old *keys.PublicKey) (*keys.PublicKey, error) {
	if kid == "" || len(kid) > 256 || old == nil {
		return nil, invalid("kid must be 1 to 256 bytes and the old key set")
	}
	unchanged := fmt.Errorf("%w: no other key under kid %q in the JWKS of %s", ErrUnknownKey, clip(kid), id)
	md, err := c.metadata(ctx, id, doc)
	if err != nil {
		return nil, err
	}
	raw, _ := md["jwks_uri"].(string)
	if _, err := ValidateEndpointURL(raw, c.cfg.Dev); err != nil {
		return nil, err
	}
	if !c.allowKeyChange(id, jwksKey(raw)) {
		c.log.Debug("signature failed, key refresh throttled", zap.String("id", id))
		return nil, unchanged
	}
	v, err := c.get(ctx, jwksKey(raw), true, owner{})
	if err != nil {
		return nil, err
	}
	if k := v.(*keySet).byKID[kid]; k != nil && !k.Equal(old) {
		c.log.Info("key replaced under the same kid", zap.String("id", id), zap.String("kid", clip(kid)))
		return k, nil
	}
	return nil, unchanged
}

// allowKeyChange claims the bad-signature refresh slot of id and of the JWKS entry.
func (c *Client) allowKeyChange(id string, key docKey) bool {
	now := c.cfg.Now()
	ri := c.cfg.KeyChangeInterval
	slot := "sig " + id
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.lastForced[slot]; ok && now.Sub(t) < ri {
		return false
	}
	e := c.entries[key]
	if e != nil && (now.Sub(e.fetchedAt) < minRefetchAge || now.Sub(e.sigForcedAt) < ri) {
		return false
	}
	if len(c.lastForced) >= c.cfg.MaxEntries {
		c.pruneForced(now)
	}
	c.lastForced[slot] = now
	if e != nil {
		e.sigForcedAt = now
	}
	return true
}

// pruneForced drops refresh claims older than the longer of the two refresh intervals;
// when the map is still full (a cardinality flood) it is cleared, which only loses
// per-identifier memory: the per-URL stamps still bound refreshes. Called with c.mu held.
func (c *Client) pruneForced(now time.Time) {
	ri := max(c.cfg.RefreshInterval, c.cfg.KeyChangeInterval)
	for k, t := range c.lastForced {
		if now.Sub(t) >= ri {
			delete(c.lastForced, k)
		}
	}
	if len(c.lastForced) >= c.cfg.MaxEntries {
		clear(c.lastForced)
	}
}
