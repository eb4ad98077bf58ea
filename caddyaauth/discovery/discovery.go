// Package discovery fetches and caches AAuth metadata documents and JWKS
// (draft-hardt-aauth §5.1, §13, §20.8) without becoming an SSRF gadget: https only, no
// redirects, public addresses only (checked when the socket is dialled, so DNS rebinding
// cannot slip through), capped bodies, a total deadline per fetch, one shared in-flight
// fetch per URL, a bounded cache that honours Cache-Control within [MinTTL, MaxTTL],
// stale-on-error, stale-while-refresh, throttled retries of failing URLs, at most one
// unknown-kid JWKS refresh per RefreshInterval and one bad-signature JWKS refresh per
// KeyChangeInterval per issuer, and ErrUnavailable (with a retry time) for outages, so
// callers can tell "could not fetch" from "fetched, and the key is not there".
//
// The package has no Caddy imports: the gateway, the auth server and the agent library all
// use it.
package discovery

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Sentinel errors. Every error this package returns wraps one of them (plus detail), so
// callers can map them to a status code with errors.Is.
var (
	// ErrUnknownKey: the JWKS was obtained but holds no usable key with that kid/thumbprint.
	ErrUnknownKey = errors.New("discovery: unknown key")
	// ErrBlocked: the target is not allowed (non-public address, loopback name, odd IP
	// spelling, non-https). Nothing was, or will be, connected to.
	ErrBlocked = errors.New("discovery: blocked target")
	// ErrFetch: no valid document could be obtained (network, status, size, JSON, identity).
	ErrFetch = errors.New("discovery: fetch failed")
	// ErrInvalid: a malformed identifier, URL, well-known name, kid or thumbprint.
	ErrInvalid = errors.New("discovery: invalid input")
)

// Well-known document names of AAuth (draft-hardt-aauth §13).
const (
	DocAgent    = "aauth-agent"
	DocIssuer   = "aauth-issuer"
	DocResource = "aauth-resource"
)

// MaxJWKSKeys bounds how many keys a JWKS may list; a larger set is refused as invalid
// so a hostile issuer cannot make every lookup walk or convert thousands of keys.
const MaxJWKSKeys = 64

// Config tunes a Client. Zero values take the defaults given per field.
type Config struct {
	Dev              bool          // allow http:// and loopback/private hosts with ports (tests, local demos)
	Timeout          time.Duration // total per fetch, default 5s
	MaxMetadataBytes int64         // default 16 KiB
	MaxJWKSBytes     int64         // default 64 KiB
	MinTTL, MaxTTL   time.Duration // clamp for Cache-Control max-age, defaults 1m and 24h
	DefaultTTL       time.Duration // when no Cache-Control, default 10m
	RefreshInterval  time.Duration // unknown-kid refetch at most once per this per issuer, default 1m
	// KeyChangeInterval: after a signature fails with a cached key, the JWKS is
	// refetched at most once per this per issuer (RefreshKey), default 5s.
	KeyChangeInterval time.Duration
	// StaleWait: how long a lookup whose cached copy is past its freshness (but within
	// MaxTTL of the last good fetch) waits for the refresh before it is served the stale
	// copy while the refresh goes on in the background, default 250ms.
	StaleWait  time.Duration
	MaxEntries int // bound on cached documents, default 4096 (LRU eviction)
	Now        func() time.Time
	Logger     *zap.Logger // nil → no logging; client mistakes at Debug, never tokens or keys

	// MaxConcurrentFetches bounds outbound fetches in flight across all URLs (default 32),
	// so a flood of distinct identifiers cannot turn the server into a fetch amplifier.
	// Excess fetches queue within their own Timeout and then fail.
	MaxConcurrentFetches int

	// RequireSameOriginJWKS refuses a jwks_uri whose origin differs from the identifier.
	// Off by default because the specification allows a JWKS hosted elsewhere.
	RequireSameOriginJWKS bool
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 5*time.Second)
	def(&c.MinTTL, time.Minute)
	def(&c.MaxTTL, 24*time.Hour)
	def(&c.DefaultTTL, 10*time.Minute)
	def(&c.RefreshInterval, time.Minute)
	def(&c.KeyChangeInterval, 5*time.Second)
	def(&c.StaleWait, 250*time.Millisecond)
	if c.MaxTTL < c.MinTTL {
		c.MaxTTL = c.MinTTL
	}
	c.DefaultTTL = min(max(c.DefaultTTL, c.MinTTL), c.MaxTTL)
	if c.MaxMetadataBytes <= 0 {
		c.MaxMetadataBytes = 16 << 10
	}
	if c.MaxJWKSBytes <= 0 {
		c.MaxJWKSBytes = 64 << 10
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 4096
	}
	if c.MaxConcurrentFetches <= 0 {
		c.MaxConcurrentFetches = 32
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Backoff bounds for a URL whose fetch failed: retries are refused (served from the
// stale copy or failed closed) until the backoff passes, doubling from the minimum.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// Client fetches and caches discovery documents. It is safe for concurrent use; share
// one per process so the cache and single-flight actually bound outbound traffic.
type Client struct {
	cfg Config
	log *zap.Logger

	// Test hooks, set from _test.go before the first fetch.
	allowAddr func(netip.Addr) bool // replaces IsPublicAddr at dial time (non-Dev only)
	tlsConfig *tls.Config           // replaces the system-roots TLS config
	dialAddr  func(string) string   // rewrites host:port before dialling (simulated DNS)

	httpOnce sync.Once
	hc       *http.Client
	tr       *http.Transport

	base   context.Context // parent of every fetch; cancelled by Close
	cancel context.CancelFunc
	sem    chan struct{} // global fetch budget

	mu         sync.Mutex
	entries    map[docKey]*entry
	lru        *list.List // of *entry, front = most recently used
	inflight   map[docKey]*call
	lastForced map[string]time.Time // issuer id → last unknown-kid refresh ("sig " + id: bad-signature refresh)

	// jwksURIs memoises ValidateEndpointURL of the jwks_uri members of cached metadata
	// (a pure function of the string, run on every key lookup before): at most
	// maxValidJWKSURIs values, which come from fetched documents, not from requests.
	jwksURIs     sync.Map // string → *url.URL
	jwksURICount atomic.Int64

	fetches     atomic.Int64
	fetchErrors atomic.Int64
	staleServed atomic.Int64
	hits        atomic.Int64
}

// Stats is a snapshot of counters, for tests and metrics.
type Stats struct {
	Fetches     int64 // outbound HTTP requests attempted
	FetchErrors int64 // attempts that produced no valid document
	StaleServed int64 // times a stale copy was returned because a refresh failed or was throttled
	CacheHits   int64 // lookups answered from a fresh cache entry
	Entries     int   // documents (and negative entries) currently cached
}

// New returns a Client with cfg's defaults filled in.
func New(cfg Config) *Client {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:        cfg,
		log:        cfg.Logger.Named("aauth.discovery"),
		base:       ctx,
		cancel:     cancel,
		sem:        make(chan struct{}, cfg.MaxConcurrentFetches),
		entries:    map[docKey]*entry{},
		lru:        list.New(),
		inflight:   map[docKey]*call{},
		lastForced: map[string]time.Time{},
	}
}

// Close cancels in-flight fetches and drops idle connections. The cache stays readable;
// new fetches fail.
func (c *Client) Close() {
	c.cancel()
	c.mu.Lock()
	tr := c.tr
	c.mu.Unlock()
	if tr != nil {
		tr.CloseIdleConnections()
	}
}

// Stats returns the current counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return Stats{
		Fetches:     c.fetches.Load(),
		FetchErrors: c.fetchErrors.Load(),
		StaleServed: c.staleServed.Load(),
		CacheHits:   c.hits.Load(),
		Entries:     n,
	}
}

// knownDocPaths are the paths tried for the three document types (read-only).
var knownDocPaths = map[string][]string{
	DocAgent:    {wellKnown + DocAgent + ".json", wellKnown + DocAgent},
	DocIssuer:   {wellKnown + DocIssuer + ".json", wellKnown + DocIssuer},
	DocResource: {wellKnown + DocResource + ".json", wellKnown + DocResource},
}

const wellKnown = "/.well-known/"

// docPaths returns the candidate well-known paths for doc, in fetch order, and the member
// that must equal the identifier ("" for an unknown document type).
func docPaths(doc string) (paths []string, member string, err error) {
	if paths, ok := knownDocPaths[doc]; ok {
		return paths, idMember(doc), nil
	}
	if err := ValidateWellKnownName(doc); err != nil {
		return nil, "", err
	}
	return []string{wellKnown + doc}, idMember(doc), nil
}

func idMember(name string) string {
	switch {
	case strings.HasPrefix(name, DocAgent):
		return "agent"
	case strings.HasPrefix(name, DocIssuer):
		return "issuer"
	case strings.HasPrefix(name, DocResource):
		return "resource"
	}
	return ""
}

// checkIdentity is the mix-up defence: the document must say it belongs to id. For a
// document name without a known type, at least one of agent/issuer/resource must be
// present and every one present must equal id.
func checkIdentity(obj map[string]any, member, id string) error {
	if member != "" {
		if v, _ := obj[member].(string); v != id {
			return fmt.Errorf("member %q does not equal the identifier", member)
		}
		return nil
	}
	found := false
	for _, m := range []string{"agent", "issuer", "resource"} {
		v, ok := obj[m]
		if !ok {
			continue
		}
		if s, _ := v.(string); s != id {
			return fmt.Errorf("member %q does not equal the identifier", m)
		}
		found = true
	}
	if !found {
		return errors.New("document names no agent, issuer or resource")
	}
	return nil
}

// Metadata fetches the AAuth metadata document of an identifier. doc is DocAgent,
// DocIssuer or DocResource (then {id}/.well-known/{doc}.json is tried first and the bare
// name second, our choice: draft-hardt-aauth of March 2026 names the .json form, older
// revisions the bare name), or an explicit name from a Signature-Key `well-known` parameter (validated; tried exactly as
// given). The identifying member ("agent", "issuer", "resource", chosen by the name's
// prefix) must equal id exactly. The result is a shallow copy of the cached object: do
// not modify nested values.
func (c *Client) Metadata(ctx context.Context, id, doc string) (map[string]any, error) {
	obj, err := c.metadata(ctx, id, doc)
	if err != nil {
		return nil, err
	}
	return maps.Clone(obj), nil
}

// metadata returns the cached (shared, read-only) object.
func (c *Client) metadata(ctx context.Context, id, doc string) (map[string]any, error) {
	if err := ValidateIdentifier(id, c.cfg.Dev); err != nil {
		c.log.Debug("refused identifier", zap.String("id", clip(id)), zap.Error(err))
		return nil, err
	}
	paths, member, err := docPaths(doc)
	if err != nil {
		c.log.Debug("refused well-known name", zap.String("name", clip(doc)), zap.Error(err))
		return nil, err
	}
	var firstErr error
	for _, path := range paths {
		v, err := c.get(ctx, metadataKey(id, path), false, owner{member, id})
		if err == nil {
			return v.(map[string]any), nil
		}
		if firstErr == nil || (errors.Is(err, ErrUnavailable) && !errors.Is(firstErr, ErrUnavailable)) {
			// An outage of the second name outranks "not served" of the first.
			firstErr = err
		}
		// Only "not served here" moves on to the bare name; anything else (blocked,
		// timeout, a bad document) would fail the same way or must not be masked.
		var se *statusError
		if !errors.As(err, &se) {
			break
		}
	}
	return nil, firstErr
}

// maxValidJWKSURIs bounds the memo of validated jwks_uri values.
const maxValidJWKSURIs = 4096

// validJWKSURI is ValidateEndpointURL(raw, Dev), memoised for the values that pass (the
// returned URL is shared: callers only read it).
func (c *Client) validJWKSURI(raw string) (*url.URL, error) {
	if u, ok := c.jwksURIs.Load(raw); ok {
		return u.(*url.URL), nil
	}
	u, err := ValidateEndpointURL(raw, c.cfg.Dev)
	if err == nil && c.jwksURICount.Add(1) <= maxValidJWKSURIs {
		c.jwksURIs.Store(raw, u)
	}
	return u, err
}

// Key resolves the public key with this kid: metadata → jwks_uri (validated like an
// endpoint URL) → JWKS → key by kid. On an unknown kid the JWKS is refetched, but at most
// once per RefreshInterval per identifier (and per JWKS URL), so a flood of random kids
// cannot turn into a flood of fetches; otherwise ErrUnknownKey.
func (c *Client) Key(ctx context.Context, id, doc, kid string) (*keys.PublicKey, error) {
	if kid == "" || len(kid) > 256 {
		return nil, invalid("kid must be 1 to 256 bytes")
	}
	return c.lookup(ctx, id, doc, func(ks *keySet) *keys.PublicKey { return ks.byKID[kid] },
		func() error { return fmt.Errorf("%w: kid %q not in the JWKS of %s", ErrUnknownKey, clip(kid), id) })
}

// KeyByThumbprint finds the key whose RFC 7638 SHA-256 thumbprint equals jkt, with the
// same refresh rule as Key.
func (c *Client) KeyByThumbprint(ctx context.Context, id, doc, jkt string) (*keys.PublicKey, error) {
	if len(jkt) != 43 { // base64url of 32 bytes without padding
		return nil, invalid("thumbprint must be 43 base64url characters")
	}
	return c.lookup(ctx, id, doc, func(ks *keySet) *keys.PublicKey { return ks.byThumbprint[jkt] },
		func() error { return fmt.Errorf("%w: thumbprint not in the JWKS of %s", ErrUnknownKey, id) })
}

func (c *Client) lookup(ctx context.Context, id, doc string, find func(*keySet) *keys.PublicKey, notFound func() error) (*keys.PublicKey, error) {
	md, err := c.metadata(ctx, id, doc)
	if err != nil {
		return nil, err
	}
	raw, _ := md["jwks_uri"].(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: metadata of %s has no jwks_uri", ErrFetch, id)
	}
	u, err := c.validJWKSURI(raw)
	if err != nil {
		c.log.Debug("refused jwks_uri", zap.String("id", id), zap.Error(err))
		return nil, err
	}
	if c.cfg.RequireSameOriginJWKS && u.Scheme+"://"+u.Host != id {
		return nil, fmt.Errorf("%w: jwks_uri of %s is on another origin", ErrBlocked, id)
	}
	jwksURL := raw
	v, err := c.get(ctx, jwksKey(jwksURL), false, owner{})
	if err != nil {
		return nil, err
	}
	if k := find(v.(*keySet)); k != nil {
		return k, nil
	}
	if !c.allowRefresh(id, jwksKey(jwksURL)) {
		c.log.Debug("unknown key, refresh throttled", zap.String("id", id))
		return nil, notFound()
	}
	v, err = c.get(ctx, jwksKey(jwksURL), true, owner{})
	if err != nil {
		return nil, err
	}
	if k := find(v.(*keySet)); k != nil {
		return k, nil
	}
	c.log.Debug("unknown key after refresh", zap.String("id", id))
	return nil, notFound()
}

// allowRefresh claims the unknown-kid refresh slot for id and the JWKS cache entry. It
// refuses when either was refreshed within RefreshInterval, or the JWKS was fetched
// within minRefetchAge: a JWKS fetched a while ago (but still fresh by its max-age) is
// refetched, so a key published since, such as the next key of a rotation, verifies
// at once.
func (c *Client) allowRefresh(id string, key docKey) bool {
	now := c.cfg.Now()
	ri := c.cfg.RefreshInterval
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.lastForced[id]; ok && now.Sub(t) < ri {
		return false
	}
	e := c.entries[key]
	if e != nil && (now.Sub(e.fetchedAt) < minRefetchAge || now.Sub(e.forcedAt) < ri) {
		return false
	}
	if len(c.lastForced) >= c.cfg.MaxEntries {
		c.pruneForced(now)
	}
	c.lastForced[id] = now
	if e != nil {
		e.forcedAt = now
	}
	return true
}
