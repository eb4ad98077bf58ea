package caddyaauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/promreg"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
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

// serveChainPath answers the chaining endpoints of h's resource; served is false when
// the resource has no egress state (the request goes on to the routes).
func (h *Handler) serveChainPath(w http.ResponseWriter, r *http.Request) (bool, error) {
	st := h.app.egressState()
	if st == nil {
		return false, nil
	}
	endpoint := "pending"
	if r.URL.Path == PathChainInteract {
		endpoint = "interact"
	}
	ln := newEndpointLine(h.logger, "aauth chain", zap.String("endpoint", endpoint), zap.String("resource", h.Resource))
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		return true, ln.refuse(w, r, http.StatusMethodNotAllowed, wire.Error{Code: wire.CodeInvalidRequest, Description: "use GET"})
	}
	if r.URL.Path == PathChainInteract {
		return true, h.serveChainInteract(w, r, st, ln)
	}
	id := strings.TrimPrefix(r.URL.Path, PathChainPending)
	if st.shared != nil {
		return true, h.serveSharedChainPoll(w, r, st, id, ln)
	}
	rec := st.chains.get(id)
	if rec == nil || rec.handler.Resource != h.Resource {
		return true, ln.refuse(w, r, http.StatusNotFound, errNoSuchPending)
	}
	return true, rec.handler.serveChainPoll(w, r, st, rec, ln)
}

// serveChainInteract sends the person on to the downstream auth server's consent page
// for the interaction our code stands for. A 502 is logged by ServeHTTP's fallback
// decision; every other answer by ln.
func (h *Handler) serveChainInteract(w http.ResponseWriter, r *http.Request, st *egressState, ln *endpointLine) error {
	ip, now := ClientIP(r), h.now()
	if !st.chains.misses.Take(ip, now) {
		h.metrics.limited(promreg.LimiterChainInteract)
		w.Header().Set("Retry-After", strconv.Itoa(int(chainWrongWindow/time.Second)))
		return ln.refuse(w, r, http.StatusTooManyRequests, wire.Error{Code: wire.CodeRateLimited, Description: "too many unknown codes from this client; try again in a minute"})
	}
	resource, pe, err := st.interactionOf(r.Context(), r.URL.Query().Get("code"), now)
	known := err == nil && pe != nil && resource == h.Resource
	st.chains.misses.Done(ip, now, err == nil && !known)
	if err != nil {
		return h.chainStateUnavailable(w, err)
	}
	if !known {
		return ln.refuse(w, r, http.StatusBadRequest, wire.Error{Code: wire.CodeInvalidRequest, Description: "unknown or expired code"})
	}
	target, err := downstreamInteractionURL(r.Context(), h.app, pe)
	if err != nil {
		return caddyhttp.Error(http.StatusBadGateway, err)
	}
	ln.log(r, http.StatusSeeOther, CodeOK, "")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}
