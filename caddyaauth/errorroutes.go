package caddyaauth

import (
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// refusal is a refused request handed to the server's error routes (handle_errors):
// {http.error.message} is "<code>: <description>"; {http.aauth.error} and
// {http.aauth.error_description} carry the two parts.
type refusal struct{ e wire.Error }

func (r *refusal) Error() string {
	if r.e.Description == "" {
		return r.e.Code
	}
	return r.e.Code + ": " + r.e.Description
}

// answerError answers a refused request with status and the protocol's JSON error body
// (draft-hardt-aauth §18), unless the server's error routes (handle_errors) would
// handle it: then it returns the refusal as a Caddy error and those routes write the
// answer. Response headers already set, such as the AAuth challenge and
// WWW-Authenticate of a 401 (RFC 9110 §11.6.1), stay: Caddy runs its error routes on
// the same response.
// srv is r's server (nil: none; Handler.serverFor).
func answerError(srv *caddyhttp.Server, w http.ResponseWriter, r *http.Request, status int, e wire.Error) error {
	// caddyhttp.Error takes a stack frame and a random id: only worth it when the server
	// has error routes at all (most sites do not, and a flood of refusals should cost little).
	// Not from inside the error routes: Caddy does not run them again for their own
	// error, it logs it and answers the first error's status with an empty body.
	if srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0 && !inErrorRoutes(r.Context()) {
		herr := caddyhttp.Error(status, &refusal{e: e})
		if errorRoutesHandle(srv, r, herr) {
			return herr
		}
	}
	wire.WriteError(w, status, e)
	return nil
}

// serverFor is the Caddy server r arrived on: the one h was provisioned in, without a
// look through r's context, when h knows it.
func (h *Handler) serverFor(r *http.Request) *caddyhttp.Server {
	if h.srv != nil {
		return h.srv
	}
	return serverOf(r)
}

// inErrorRoutes reports whether ctx is a request's while Caddy runs its error routes
// (handle_errors), which it does after the primary routes returned an error.
func inErrorRoutes(ctx context.Context) bool {
	return ctx.Value(caddyhttp.ErrorCtxKey) != nil
}

// serverOf is the Caddy server r arrived on, if any.
func serverOf(r *http.Request) *caddyhttp.Server {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return srv
}

// maxErrorRouteDepth bounds how deep errorRoutesHandle looks into nested subroutes.
const maxErrorRouteDepth = 8

// errorRoutesHandle reports whether srv, r's server, has error routes of which one would
// handle herr for r: a route whose matchers match (evaluated with the error's
// placeholders set, as Caddy sets them before running the routes) and that holds a
// handler other than a subroute, or a subroute in which one would. So a site without
// handle_errors, or whose handle_errors only takes other status codes (`handle_errors
// 5xx`), keeps the JSON body, even when another site on the same server has error
// routes.
func errorRoutesHandle(srv *caddyhttp.Server, r *http.Request, herr caddyhttp.HandlerError) bool {
	if srv == nil || srv.Errors == nil || len(srv.Errors.Routes) == 0 {
		return false
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return false
	}
	if routesHandle(srv.Errors.Routes, srv.Errors.WithError(r, herr), 0) {
		return true
	}
	// No error after all: take back the placeholders WithError set for the matchers.
	for _, k := range errorPlaceholders {
		repl.Delete(k)
	}
	return false
}

// errorPlaceholders are the placeholders HTTPErrorConfig.WithError sets.
var errorPlaceholders = []string{"http.error", "http.error.status_code", "http.error.status_text",
	"http.error.id", "http.error.trace", "http.error.message"}

// routesHandle reports whether a matching route of routes (or of a subroute in one)
// holds a handler that is not a subroute.
func routesHandle(routes caddyhttp.RouteList, r *http.Request, depth int) bool {
	if depth > maxErrorRouteDepth {
		return false
	}
	for i := range routes {
		rt := &routes[i]
		if ok, err := rt.MatcherSets.AnyMatchWithError(r); err != nil || !ok {
			continue
		}
		for _, hd := range rt.Handlers {
			sub, isSub := hd.(*caddyhttp.Subroute)
			if !isSub || routesHandle(sub.Routes, r, depth+1) {
				return true
			}
		}
		if rt.Terminal {
			return false
		}
	}
	return false
}
