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
// no aauth handler verified. Every aauth handler already puts a guard that does this in
// front of its server's routes; aauth_strip is for the one layout where that cannot
// happen by itself: aauth handlers only in named routes or handle_errors. It leaves
// alone a request an aauth handler has already verified, so route order does not matter.
type Strip struct {
	// Headers are further upstream header names to remove (renamed identity headers).
	Headers []string `json:"headers,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Strip) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.aauth_strip", New: func() caddy.Module { return new(Strip) }}
}

// Provision puts the server guard in front of the server's routes (see serverGuard);
// placing aauth_strip among a server's primary routes protects a server whose aauth
// handlers are only in named routes or handle_errors.
func (s *Strip) Provision(ctx caddy.Context) error {
	app, err := LoadApp(ctx)
	if err != nil {
		return err
	}
	g, ok, err := guardServer(ctx, app)
	if err != nil {
		return err
	}
	if ok {
		g.protect(s.Headers)
	}
	return nil
}

// ServeHTTP strips the identity headers unless this request was verified.
func (s *Strip) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if v, _ := caddyhttp.GetVar(r.Context(), verifiedVar).(bool); !v {
		stripIdentityHeaders(r.Header, s.Headers)
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Strip)(nil)
	_ caddy.Provisioner           = (*Strip)(nil)
)
