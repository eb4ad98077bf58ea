package caddyaauth

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Strip{})
}

// verifiedVar marks a request an aauth handler has verified and given identity headers.
const verifiedVar = "aauth.verified"

// Strip removes client-sent X-Aauth-* headers (and the renamed ones) from requests that
// no aauth handler verified, so a backend behind a site with aauth routes never sees
// forged identity headers on its other paths (CADDY-GUIDE pitfall 8). The aauth
// directive adds one on every site it is used on, without a matcher; it leaves alone a
// request an aauth handler has already verified, so route order does not matter.
type Strip struct {
	// Headers are further upstream header names to remove (renamed identity headers).
	Headers []string `json:"headers,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Strip) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.aauth_strip", New: func() caddy.Module { return new(Strip) }}
}

// ServeHTTP strips the identity headers unless this request was verified.
func (s Strip) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if v, _ := caddyhttp.GetVar(r.Context(), verifiedVar).(bool); !v {
		stripIdentityHeaders(r.Header, s.Headers)
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var _ caddyhttp.MiddlewareHandler = (*Strip)(nil)
