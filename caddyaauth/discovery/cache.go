package discovery

import (
	"container/list"
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// kind is a document type: its body cap and how a decoded object becomes a cached value.
type kind struct {
	name     string
	maxBytes func(*Config) int64
}

var (
	kindMetadata = &kind{"metadata", func(c *Config) int64 { return c.MaxMetadataBytes }}
	kindJWKS     = &kind{"jwks", func(c *Config) int64 { return c.MaxJWKSBytes }}
)

// docKey names a cache entry. It includes the kind so a URL fetched as metadata is never
// served as a JWKS (or the other way round) when a document points jwks_uri at itself.
// A struct of the URL's parts, not a joined string: a lookup, done on every request
// naming a jwks_uri agent, then allocates nothing. A metadata document's URL is split
// after the identifier (which has no path), a JWKS URL not at all, so each URL has one
// key per kind.
type docKey struct {
	kind       *kind
	base, path string
}

// url is the document's URL.
func (k docKey) url() string { return k.base + k.path }

// metadataKey names the metadata document at path under the identifier id.
func metadataKey(id, path string) docKey { return docKey{kind: kindMetadata, base: id, path: path} }

// jwksKey names the JWKS at u.
func jwksKey(u string) docKey { return docKey{kind: kindJWKS, base: u} }

// owner is who a metadata document must say it belongs to (checkIdentity); the zero
// owner checks nothing (a JWKS).
type owner struct{ member, id string }

// minRefetchAge: a JWKS fetched less than this long ago is not fetched again for an
// unknown kid or a failed signature; it is as current as a refetch would be.
const minRefetchAge = time.Second

// entry is one cached URL: the last valid value (if any) and the failure state.
type entry struct {
	key  docKey
	elem *list.Element

	val        any // map[string]any (metadata) or *keySet (JWKS); nil if never valid
	fetchedAt  time.Time
	expires    time.Time // fresh until
	staleUntil time.Time // servable on refresh failure until
	forcedAt   time.Time // last unknown-kid refresh
	// sigForcedAt is the last bad-signature refresh (RefreshKey).
	sigForcedAt time.Time

	err     error         // last failure
	retryAt time.Time     // no new fetch before this (negative cache)
	backoff time.Duration // current failure backoff
}

// call is one shared in-flight fetch.
type call struct {
	done chan struct{}
	val  any
	err  error
}

// get returns the value for u: fresh from the cache, or from a single shared fetch. force
// skips a fresh cache entry (unknown-kid refresh) but still honours the failure backoff.
// The fetch runs detached from ctx with its own Timeout, so a waiter that gives up does
// not cancel it for the others. A copy past its freshness but within its stale limit is
// served when the refresh takes longer than StaleWait; the refresh goes on in the
// background.
func (c *Client) get(ctx context.Context, key docKey, force bool, own owner) (any, error) {
	k := key.kind
	now := c.cfg.Now()
	c.mu.Lock()
	var stale any
	if e := c.entries[key]; e != nil {
		c.lru.MoveToFront(e.elem)
		// e is only read under c.mu: a concurrent fetch rewrites it.
		if val := e.val; val != nil && !force && now.Before(e.expires) {
			c.mu.Unlock()
			c.hits.Add(1)
			return val, nil
		}
		if now.Before(e.retryAt) {
			if val := e.val; val != nil && now.Before(e.staleUntil) {
				c.mu.Unlock()
				c.staleServed.Add(1)
				return val, nil
			}
			err := asUnavailable(e.err, k, key.url(), e.retryAt.Sub(now))
			c.mu.Unlock()
			return nil, err
		}
		if !force && e.val != nil && now.Before(e.staleUntil) {
			stale = e.val
		}
	}
	u := key.url()
	cl := c.inflight[key]
	if cl == nil {
		cl = &call{done: make(chan struct{})}
		c.inflight[key] = cl
		go c.run(key, u, own, cl)
	}
	c.mu.Unlock()
	return c.wait(ctx, cl, k, u, stale)
}

// wait waits for the shared fetch cl. With a stale copy in hand it waits at most
// StaleWait and then serves the copy.
func (c *Client) wait(ctx context.Context, cl *call, k *kind, u string, stale any) (any, error) {
	var slow <-chan time.Time
	if stale != nil {
		t := time.NewTimer(c.cfg.StaleWait)
		defer t.Stop()
		slow = t.C
	}
	select {
	case <-cl.done:
		return cl.val, cl.err
	case <-slow:
		c.staleServed.Add(1)
		c.log.Debug("discovery refresh slow, serving cached copy", zap.String("kind", k.name), zap.String("url", clip(u)))
		return stale, nil
	case <-ctx.Done():
		err := transient(fmt.Errorf("%w: %s: %w", ErrFetch, clip(u), context.Cause(ctx)))
		return nil, asUnavailable(err, k, u, time.Second)
	}
}

// run performs the shared fetch and records the outcome. Only valid documents become
// values; a failure sets a doubling backoff and, when a value within its stale limit
// exists, hands that out instead (logged at Warn once per failed fetch).
func (c *Client) run(key docKey, u string, own owner, cl *call) {
	k := key.kind
	ctx, cancel := context.WithTimeout(c.base, c.cfg.Timeout)
	defer cancel()
	val, ttl, err := c.fetch(ctx, k, u, own)
	fetchErr := err
	now := c.cfg.Now()

	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &entry{key: key}
		e.elem = c.lru.PushFront(e)
		c.entries[key] = e
	} else {
		c.lru.MoveToFront(e.elem)
	}
	stale := false
	if err == nil {
		e.val, e.fetchedAt = val, now
		e.expires = now.Add(ttl)
		e.staleUntil = now.Add(c.cfg.MaxTTL)
		e.err, e.retryAt, e.backoff = nil, time.Time{}, 0
	} else {
		e.backoff = min(max(2*e.backoff, minBackoff), maxBackoff)
		e.retryAt = now.Add(e.backoff)
		err = asUnavailable(err, k, u, e.backoff)
		e.err = err
		if e.val != nil && now.Before(e.staleUntil) {
			val, err, stale = e.val, nil, true
		}
	}
	backoff := e.backoff
	delete(c.inflight, key)
	for c.lru.Len() > c.cfg.MaxEntries {
		old := c.lru.Remove(c.lru.Back()).(*entry)
		delete(c.entries, old.key)
	}
	c.mu.Unlock()

	switch {
	case stale:
		c.fetchErrors.Add(1)
		c.staleServed.Add(1)
		c.log.Warn("discovery refresh failed, serving cached copy",
			zap.String("kind", k.name), zap.String("url", clip(u)), zap.Duration("retry_in", backoff), zap.Error(fetchErr))
	case err != nil:
		c.fetchErrors.Add(1)
		c.log.Debug("discovery fetch failed", zap.String("kind", k.name), zap.String("url", clip(u)),
			zap.Duration("retry_in", backoff), zap.Error(err))
	}
	cl.val, cl.err = val, err
	close(cl.done)
}
