package assertion

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
)

// Errors of Verify; every refusal wraps ErrInvalid.
var (
	ErrInvalid = errors.New("assertion: invalid")
	ErrMissing = fmt.Errorf("%w: no assertion header", ErrInvalid)
)

// Verifier checks the assertion of a request at the origin. The zero Skew is
// DefaultSkew; the zero Header is DefaultHeader; a nil Client is http.DefaultClient.
type Verifier struct {
	JWKSURL  string        // the gateway's https://<gateway>/.well-known/aauth-gateway/jwks.json
	Audience string        // the aud the gateway puts in (assertion_audience, default its Host)
	Issuer   string        // when set, iss must equal it
	Header   string        // request header carrying the assertion
	Skew     time.Duration // tolerated clock difference on exp and iat
	Client   *http.Client
	Now      func() time.Time
	// Seen, when set, makes every assertion single use: its jti is remembered until it
	// can no longer be accepted (exp + Skew), and a second request carrying it is
	// refused. Share one store (replay.New) between the origin's handlers. Without it
	// an assertion is a bearer credential for its method and path until it expires.
	Seen *replay.Store
}

func (v Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func reject(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

// Verify checks the request's assertion: JOSE header (typ, alg, kid), signature against
// the gateway's JWKS, aud, iss, iat and exp (with Skew), and that htm and path are the
// request's method and path. Cheap checks come before any JWKS fetch.
func (v Verifier) Verify(r *http.Request) (Claims, error) {
	name := v.Header
	if name == "" {
		name = DefaultHeader
	}
	vals := r.Header.Values(name)
	if len(vals) == 0 {
		return Claims{}, ErrMissing
	}
	if len(vals) > 1 {
		return Claims{}, reject("more than one assertion")
	}
	hdr, c, input, sig, err := decode(vals[0])
	if err != nil {
		return Claims{}, err
	}
	if err := v.checkClaims(r, c); err != nil {
		return Claims{}, err
	}
	key, err := v.key(r.Context(), hdr.Kid)
	if err != nil {
		return Claims{}, err
	}
	if key.JWSAlg() != hdr.Alg {
		return Claims{}, reject("alg %q does not match the key", hdr.Alg)
	}
	if err := key.Verify([]byte(input), sig); err != nil {
		return Claims{}, reject("bad signature")
	}
	if v.Seen != nil {
		// Last, so only a verified assertion takes a place in the store.
		if err := v.Seen.Use(replay.KeyOf([]byte(c.ID)), time.Unix(c.Expiry, 0).Add(v.skew()+time.Second), v.now()); err != nil {
			return Claims{}, reject("assertion already used (%v)", err)
		}
	}
	return c, nil
}

// decode splits and parses a compact JWS without verifying it.
func decode(raw string) (h header, c Claims, input string, sig []byte, err error) {
	parts := strings.Split(raw, ".")
	if len(raw) > 8192 || len(parts) != 3 {
		return h, c, "", nil, reject("not a compact JWS")
	}
	enc := base64.RawURLEncoding
	hb, err1 := enc.DecodeString(parts[0])
	pb, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return h, c, "", nil, reject("bad base64url")
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, c, "", nil, reject("bad header")
	}
	if h.Typ != Typ || (h.Alg != keys.JWSEdDSA && h.Alg != keys.JWSES256) || h.Kid == "" {
		return h, c, "", nil, reject("header typ %q alg %q kid %q not accepted", h.Typ, h.Alg, h.Kid)
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return h, c, "", nil, reject("bad claims")
	}
	return h, c, parts[0] + "." + parts[1], sig, nil
}

func (v Verifier) skew() time.Duration {
	if v.Skew == 0 {
		return DefaultSkew
	}
	return v.Skew
}

func (v Verifier) checkClaims(r *http.Request, c Claims) error {
	skew := v.skew()
	now := v.now().Unix()
	switch {
	case v.Audience == "" || c.Audience != v.Audience:
		return reject("aud %q is not %q", c.Audience, v.Audience)
	case v.Issuer != "" && c.Issuer != v.Issuer:
		return reject("iss %q is not %q", c.Issuer, v.Issuer)
	case c.Expiry == 0 || now > c.Expiry+int64(skew/time.Second):
		return reject("expired")
	case c.IssuedAt > now+int64(skew/time.Second) || c.Expiry-c.IssuedAt > int64(Lifetime/time.Second):
		return reject("iat in the future or lifetime too long")
	case c.Method != r.Method:
		return reject("htm %q is not the request's method %q", c.Method, r.Method)
	case c.Path != r.URL.EscapedPath():
		return reject("path %q is not the request's path %q", c.Path, r.URL.EscapedPath())
	}
	return nil
}

// jwksCache keeps each JWKS URL's keys by kid; an unknown kid refetches at most every
// minRefetch, so a flood of forged kids does not flood the gateway.
type jwksCache struct {
	mu      sync.Mutex
	keys    map[string]*keys.PublicKey
	fetched time.Time
}

var (
	cachesMu sync.Mutex
	caches   = map[string]*jwksCache{}
)

const (
	minRefetch = 10 * time.Second
	maxAge     = 5 * time.Minute
)

func cacheOf(url string) *jwksCache {
	cachesMu.Lock()
	defer cachesMu.Unlock()
	c := caches[url]
	if c == nil {
		c = &jwksCache{}
		caches[url] = c
	}
	return c
}

// key returns the gateway key kid, fetching the JWKS when it is unknown or stale.
func (v Verifier) key(ctx context.Context, kid string) (*keys.PublicKey, error) {
	if v.JWKSURL == "" {
		return nil, errors.New("assertion: Verifier.JWKSURL is not set")
	}
	c := cacheOf(v.JWKSURL)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	k := c.keys[kid]
	stale := now.Sub(c.fetched) > maxAge
	if (k == nil || stale) && now.Sub(c.fetched) >= minRefetch {
		fresh, err := v.fetch(ctx)
		if err != nil && k == nil {
			return nil, err
		}
		if err == nil {
			c.keys, c.fetched = fresh, now
			k = fresh[kid]
		}
	}
	if k == nil {
		return nil, reject("unknown kid %q", kid)
	}
	return k, nil
}

func (v Verifier) fetch(ctx context.Context) (map[string]*keys.PublicKey, error) {
	client := v.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("assertion: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("assertion: fetching JWKS: status %d %v", resp.StatusCode, err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("assertion: JWKS: %w", err)
	}
	out := map[string]*keys.PublicKey{}
	for _, m := range set.Keys {
		if k, err := keys.FromAny(m); err == nil && k.KID != "" {
			out[k.KID] = k
		}
	}
	return out, nil
}

type ctxKey struct{}

// Middleware verifies every request's assertion and answers 401 when it fails; the
// verified claims are in the request context (FromContext). The X-Aauth-* headers are
// trustworthy only after it passed: the claims are what the gateway signed.
func (v Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r)
		if err != nil {
			status := http.StatusUnauthorized
			if !errors.Is(err, ErrInvalid) {
				status = http.StatusServiceUnavailable // JWKS unreachable: not the client's fault
			}
			http.Error(w, http.StatusText(status), status)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}

// FromContext returns the claims Middleware verified.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(Claims)
	return c, ok
}
