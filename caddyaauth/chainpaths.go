package caddyaauth

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// Endpoints of interaction chaining (draft-hardt-aauth §4.5.8.2): where an agent polls a
// request of ours that waits for a downstream consent, and where the person is sent on
// to the downstream auth server's consent page.
const (
	PathChainPending  = "/.well-known/aauth-resource/pending/" // + <id>
	PathChainInteract = "/.well-known/aauth-resource/interact" // ?code=<code>
)

// isChainPath reports whether path is one of the chaining endpoints.
func isChainPath(path string) bool {
	return path == PathChainInteract || (strings.HasPrefix(path, PathChainPending) && len(path) > len(PathChainPending))
}

// serveChainPath answers the chaining endpoints of a resource with an egress.
func (h *Handler) serveChainPath(w http.ResponseWriter, r *http.Request) (bool, error) {
	return false, nil
}

// chainRegistry holds the requests waiting for a downstream consent.
type chainRegistry struct{}

// serveChained runs next; step 3 swaps the answer when a downstream consent is needed.
func (h *Handler) serveChained(w http.ResponseWriter, r *http.Request, _ *reqverify.Result, _ *egress.Handle, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}
