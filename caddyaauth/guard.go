package caddyaauth

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// serverGuard is the first handler of every HTTP server that has an aauth handler,
// wherever that handler sits (top level, handle, handle_path, route, nested subroutes,
// hand-written JSON). For every request of the server, before any user route runs, it
//   - removes client-sent identity headers (X-Aauth-*, renamed fields), as fields,
//     as Connection options and as trailers, so only what an aauth handler verified
//     reaches an upstream;
//   - serves the resource's well-known documents (metadata, JWKS, resource token
//     endpoint) for the resources this server protects, so they are reachable whatever
//     matcher or block the protected routes have.
//
// A guard is installed while the http app provisions the server's routes: the first
// aauth handler (or aauth_strip) provisioned in the server moves the server's route list
// behind the guard. The routes are still provisioned and compiled by Caddy itself; the
// guard only owns the chain's first link.
type serverGuard struct {
	app *App

	mu            sync.RWMutex
	headers       []string        // renamed upstream identity headers of this server's handlers
	resources     []string        // resource identifiers served by this server's auth-token routes
	assertionKeys []*keystore.Key // upstream assertion keys, published at PathGatewayJWKS

	rest    caddyhttp.RouteList // the server's own routes, provisioned in place by Caddy
	once    sync.Once
	compile caddyhttp.Handler
}

// errUnguardable is returned when an aauth handler is provisioned where no guard can be
// put in front of the server's routes any more: in a named route or in handle_errors of a
// server whose primary routes have no aauth handler.
var errUnguardable = errors.New("an aauth handler in a named route (invoke) or in handle_errors needs a guard in front of the server's routes, " +
	"which can only be added from the server's primary routes: add the `aauth_strip` directive at the top of the site " +
	"(JSON: a route {\"handle\":[{\"handler\":\"aauth_strip\"}]} among the server's routes)")

// guardServer returns the guard of the server being provisioned in ctx, installing it
// in front of the server's routes the first time. ok is false when ctx provisions no
// HTTP server (a handler built by hand, as in unit tests).
func guardServer(ctx caddy.Context, app *App) (g *serverGuard, ok bool, err error) {
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || app == nil {
		return nil, false, nil
	}
	app.reg.mu.Lock()
	defer app.reg.mu.Unlock()
	if g := app.reg.guards[srv]; g != nil {
		return g, true, nil
	}
	// The http app provisions a server's primary routes in place and compiles them
	// right after; while one of them is provisioning, its HandlersRaw is still set.
	// Error routes and named routes are provisioned after the compile: too late.
	if !slices.ContainsFunc(srv.Routes, func(rt caddyhttp.Route) bool { return rt.HandlersRaw != nil }) {
		return nil, false, errUnguardable
	}
	g = &serverGuard{app: app, rest: srv.Routes}
	route := caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{g}}
	if err := route.ProvisionHandlers(ctx, nil); err != nil {
		return nil, false, err
	}
	srv.Routes = caddyhttp.RouteList{route}
	app.reg.guards[srv] = g
	return g, true, nil
}

// protect adds renamed identity headers to strip on this server.
func (g *serverGuard) protect(headers []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, h := range headers {
		if !slices.ContainsFunc(g.headers, func(o string) bool { return strings.EqualFold(o, h) }) {
			g.headers = append(g.headers, h)
		}
	}
}

// serveResource makes the guard answer resource's well-known paths.
func (g *serverGuard) serveResource(resource string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.resources, resource) {
		g.resources = append(g.resources, resource)
	}
}

// ServeHTTP sanitizes the request, answers well-known documents, and runs the server's
// routes.
func (g *serverGuard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	g.mu.RLock()
	headers, resources, akeys := g.headers, g.resources, g.assertionKeys
	g.mu.RUnlock()
	sanitizeRequest(r, headers)
	if len(akeys) > 0 && r.URL.Path == PathGatewayJWKS {
		return serveGatewayJWKS(w, r, akeys)
	}
	if len(resources) > 0 && isWellKnownPath(r.URL.Path) {
		if h := g.app.wellKnownHandler(resources, r); h != nil {
			if served, err := h.serveWellKnownPath(w, r); served {
				return err
			}
		}
	}
	// The server's top-level chain always ends in the same terminal handler, so the
	// routes are compiled once, on first use (after Caddy provisioned them).
	g.once.Do(func() {
		c := g.rest.Compile(next)
		g.mu.Lock() // replay reads it under the lock, outside the once
		g.compile = c
		g.mu.Unlock()
	})
	return g.compile.ServeHTTP(w, r)
}

// replay runs a request the gateway replays (interaction chaining) through the server's
// routes, sanitized like any request. The routes have been compiled: the original
// request went through them.
func (g *serverGuard) replay(w http.ResponseWriter, r *http.Request) error {
	g.mu.RLock()
	headers, compiled := g.headers, g.compile
	g.mu.RUnlock()
	sanitizeRequest(r, headers)
	if compiled == nil {
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("aauth: the server's routes are not compiled yet"))
	}
	return compiled.ServeHTTP(w, r)
}

// guardOf returns the guard of srv, nil when it has none.
func (a *App) guardOf(srv *caddyhttp.Server) *serverGuard {
	if a == nil || a.reg == nil || srv == nil {
		return nil
	}
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	return a.reg.guards[srv]
}

// sanitizeRequest removes client-sent identity headers from r: as header fields, as
// Connection options (RFC 9110 §7.6.1: a proxy deletes the fields a Connection header
// names, which would delete the verified header set later), and as trailer fields
// (RFC 9110 §6.5), both declared ones now and received ones when the body ends.
func sanitizeRequest(r *http.Request, renamed []string) {
	stripIdentityHeaders(r.Header, renamed)
	if conn := r.Header.Values("Connection"); len(conn) > 0 && namesIdentityField(conn, renamed) {
		r.Header["Connection"] = connectionWithout(conn, renamed)
		if len(r.Header["Connection"]) == 0 {
			delete(r.Header, "Connection")
		}
	}
	if r.Trailer != nil || r.Header.Get("Trailer") != "" {
		stripIdentityHeaders(r.Trailer, renamed)
		if tr := r.Header.Values("Trailer"); len(tr) > 0 && namesIdentityField(tr, renamed) {
			r.Header["Trailer"] = connectionWithout(tr, renamed)
			if len(r.Header["Trailer"]) == 0 {
				delete(r.Header, "Trailer")
			}
		}
	}
	// Trailers can follow a body of unknown length (HTTP/1.1 chunked) or any HTTP/2 and
	// HTTP/3 body, and a declared Trailer field announces them.
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength < 0 || r.ProtoMajor >= 2 || r.Trailer != nil) {
		r.Body = &trailerStripper{ReadCloser: r.Body, r: r, renamed: renamed}
	}
}

// namesIdentityField reports whether a list-valued field (Connection, Trailer) names an
// identity header; most requests' do not, and are left as they are.
func namesIdentityField(values []string, renamed []string) bool {
	for _, v := range values {
		for rest, more := v, true; more; {
			var tok string
			tok, rest, more = strings.Cut(rest, ",")
			if isIdentityHeaderName(strings.TrimSpace(tok), renamed) {
				return true
			}
		}
	}
	return false
}

// connectionWithout drops identity header names from a list-valued field (Connection,
// Trailer), keeping the other members as sent.
func connectionWithout(values []string, renamed []string) []string {
	var out []string
	for _, v := range values {
		var keep []string
		for _, tok := range strings.Split(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || isIdentityHeaderName(tok, renamed) {
				continue
			}
			keep = append(keep, tok)
		}
		if len(keep) > 0 {
			out = append(out, strings.Join(keep, ", "))
		}
	}
	return out
}

// trailerStripper removes identity fields from the request's trailers once the body has
// been read to its end, which is when net/http fills them in.
type trailerStripper struct {
	io.ReadCloser
	r       *http.Request
	renamed []string
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err != nil && t.r.Trailer != nil {
		stripIdentityHeaders(t.r.Trailer, t.renamed)
	}
	return n, err
}

// Interface guards
var _ caddyhttp.MiddlewareHandler = (*serverGuard)(nil)
