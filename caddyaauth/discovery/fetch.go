package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// statusError is a non-200 answer; Metadata falls back from name.json to the bare name
// only on this error.
type statusError struct{ code int }

func (e *statusError) Error() string {
	if e.code >= 300 && e.code < 400 {
		return fmt.Sprintf("status %d (redirects are not followed)", e.code)
	}
	return fmt.Sprintf("status %d", e.code)
}

// client builds the HTTP client on first use so tests can set the hooks after New. The
// transport is private to discovery: no proxy from the environment (a proxy would dial on
// our behalf and bypass the address check), no decompression, few idle connections.
func (c *Client) client() *http.Client {
	c.httpOnce.Do(func() {
		d := &net.Dialer{Timeout: c.cfg.Timeout, KeepAlive: 30 * time.Second, Control: c.control}
		tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.tlsConfig != nil {
			tlsConf = c.tlsConfig.Clone()
		}
		tr := &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if c.dialAddr != nil {
					addr = c.dialAddr(addr)
				}
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:        tlsConf,
			TLSHandshakeTimeout:    c.cfg.Timeout,
			ResponseHeaderTimeout:  c.cfg.Timeout,
			ExpectContinueTimeout:  0,
			DisableCompression:     true,
			MaxIdleConns:           32,
			MaxIdleConnsPerHost:    2,
			MaxConnsPerHost:        4,
			IdleConnTimeout:        90 * time.Second,
			MaxResponseHeaderBytes: 16 << 10,
			ForceAttemptHTTP2:      true,
		}
		hc := &http.Client{
			Transport: tr,
			Timeout:   c.cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx then fails as a non-200 status
			},
		}
		c.mu.Lock()
		c.tr, c.hc = tr, hc
		c.mu.Unlock()
	})
	return c.hc
}

// control runs after DNS resolution, just before connect(2), for every address tried. That
// is the only place a rebinding resolver cannot get around.
func (c *Client) control(network, address string, _ syscall.RawConn) error {
	if c.cfg.Dev {
		return nil
	}
	allow := IsPublicAddr
	if c.allowAddr != nil {
		allow = c.allowAddr
	}
	return checkDial(network, address, allow)
}

// DialControl is the dial rule of discovery fetches as a net.Dialer Control function,
// for other outbound clients that must not become SSRF gadgets (the gateway's egress):
// TCP only, and only addresses IsPublicAddr accepts, checked after DNS resolution just
// before connect(2). In dev it is nil (anything may be dialled).
func DialControl(dev bool) func(network, address string, c syscall.RawConn) error {
	if dev {
		return nil
	}
	return func(network, address string, _ syscall.RawConn) error {
		return checkDial(network, address, IsPublicAddr)
	}
}

// checkDial refuses a dial that is not TCP to an address allow accepts.
func checkDial(network, address string, allow func(netip.Addr) bool) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s", ErrBlocked, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable dial address", ErrBlocked)
	}
	if a := ap.Addr().WithZone("").Unmap(); !allow(a) {
		return fmt.Errorf("%w: refusing to dial non-public address %s", ErrBlocked, a)
	}
	return nil
}

// fetch GETs u once and turns the body into a cached value. It never follows redirects,
// accepts only 200 with a JSON content type and an identity encoding, and reads at most the
// kind's cap (cap+1 bytes are read so an oversized body is detected, not truncated).
func (c *Client) fetch(ctx context.Context, k *kind, u string, own owner) (any, time.Duration, error) {
	fail := func(err error) (any, time.Duration, error) {
		return nil, 0, fmt.Errorf("%w: %s %s: %w", ErrFetch, k.name, clip(u), err)
	}
	if !c.cfg.Dev && !strings.HasPrefix(u, "https://") {
		return fail(fmt.Errorf("%w: not https", ErrBlocked))
	}
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return fail(transient(fmt.Errorf("fetch budget exhausted: %w", ctx.Err())))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "caddy-aauth-discovery/1")
	c.fetches.Add(1)
	resp, err := c.client().Do(req)
	if err != nil {
		if errors.Is(err, ErrBlocked) {
			return fail(err)
		}
		return fail(transient(err)) // refused, reset, timed out: the server may come back
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if transientStatus(resp.StatusCode) {
			return fail(transient(&statusError{resp.StatusCode}))
		}
		return fail(&statusError{resp.StatusCode})
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(fmt.Errorf("content encoding %q refused", clip(ce)))
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return fail(fmt.Errorf("content type %q is not JSON", clip(resp.Header.Get("Content-Type"))))
	}
	limit := k.maxBytes(&c.cfg)
	if resp.ContentLength > limit {
		return fail(fmt.Errorf("body of %d bytes exceeds the %d-byte cap", resp.ContentLength, limit))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fail(transient(err))
	}
	if int64(len(body)) > limit {
		return fail(fmt.Errorf("body exceeds the %d-byte cap", limit))
	}
	obj, err := decodeObject(body)
	if err != nil {
		return fail(err)
	}
	var val any
	switch {
	case k == kindJWKS:
		val, err = parseJWKS(obj)
	case own != owner{}:
		val, err = obj, checkIdentity(obj, own.member, own.id)
	default:
		val = obj
	}
	if err != nil {
		return fail(err)
	}
	return val, c.ttl(resp.Header, c.cfg.Now()), nil
}

// ttl derives the freshness lifetime from Cache-Control (s-maxage over max-age, since
// this cache is shared by every request of the server), else Expires, else DefaultTTL,
// clamped to [MinTTL, MaxTTL]. no-store and no-cache mean "as short as allowed": MinTTL
// still applies so a hostile origin cannot force a fetch per request.
func (c *Client) ttl(h http.Header, now time.Time) time.Duration {
	maxAge, sMaxAge := int64(-1), int64(-1)
	for _, line := range h.Values("Cache-Control") {
		for _, part := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			val = strings.Trim(strings.TrimSpace(val), `"`)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return c.cfg.MinTTL
			case "max-age":
				maxAge = parseSeconds(val)
			case "s-maxage":
				sMaxAge = parseSeconds(val)
			}
		}
	}
	var d time.Duration
	switch {
	case sMaxAge >= 0:
		d = time.Duration(sMaxAge) * time.Second
	case maxAge >= 0:
		d = time.Duration(maxAge) * time.Second
	case h.Get("Expires") != "":
		t, err := http.ParseTime(h.Get("Expires"))
		if err != nil { // RFC 9111: an invalid Expires means already expired
			return c.cfg.MinTTL
		}
		base := now
		if dt, err := http.ParseTime(h.Get("Date")); err == nil {
			base = dt
		}
		d = t.Sub(base)
	default:
		return c.cfg.DefaultTTL
	}
	return min(max(d, c.cfg.MinTTL), c.cfg.MaxTTL)
}

// parseSeconds reads a delta-seconds value; huge values saturate, junk counts as absent.
func parseSeconds(s string) int64 {
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return int64(1<<63-1) / int64(time.Second)
		}
		return -1
	}
	return min(int64(n), int64(1<<63-1)/int64(time.Second))
}

const maxJSONDepth = 32

// decodeObject decodes a JSON object and refuses duplicate member names at any depth,
// nesting deeper than maxJSONDepth, and trailing data. Duplicates matter here because
// parsers disagree on which one wins, which is how an "issuer" or "kid" mix-up is made.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("body is not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("body is not a JSON object")
	}
	obj, err := decodeObjectBody(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return obj, nil
}

func decodeObjectBody(dec *json.Decoder, depth int) (map[string]any, error) {
	obj := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("invalid JSON")
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON")
		}
		if _, dup := obj[name]; dup {
			return nil, fmt.Errorf("duplicate JSON member %q", clip(name))
		}
		v, err := decodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		obj[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, errors.New("invalid JSON")
	}
	return obj, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("invalid JSON")
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, float64, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	switch d {
	case '{':
		return decodeObjectBody(dec, depth+1)
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // the closing ']'
			return nil, errors.New("invalid JSON")
		}
		return arr, nil
	}
	return nil, errors.New("invalid JSON")
}
