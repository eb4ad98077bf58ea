package caddyaauth

import (
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// HeaderHandle is the upstream header carrying the egress handle (renamable with
// `header handle <X-Name>`; placeholder {http.aauth.handle}).
const HeaderHandle = "X-Aauth-Handle"

// handleHeader is the upstream name of the handle header; "" when it is not forwarded.
func (h *Handler) handleHeader() string {
	name := HeaderHandle
	if alt, ok := h.Headers[handleField]; ok {
		name = alt
	}
	if name == "-" {
		return ""
	}
	return name
}

// serveWithHandle passes a verified request of an egress route on with a fresh handle:
// bound to the inbound auth token (and its exp), this resource and its agent key, and
// the key that signed the request, and valid only while next runs.
func (h *Handler) serveWithHandle(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, res *reqverify.Result, next caddyhttp.Handler) error {
	st := h.app.egressState()
	if st == nil || res.Token == nil {
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("aauth egress: no egress state or no auth token"))
	}
	signer, err := h.agentSigner(r.Context())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	hd := &egress.Handle{Inbound: res.Token.Raw, Expiry: time.Unix(res.Token.Claims.Expiry, 0), Resource: h.Resource,
		Signer: signer, AgentJKT: res.Key.Thumbprint}
	if err := st.handles.Mint(hd); err != nil {
		w.Header().Set("Retry-After", "1")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	defer st.handles.Finish(hd)
	if name := h.handleHeader(); name != "" {
		r.Header.Set(name, hd.ID)
	}
	repl.Set("http.aauth.handle", hd.ID)
	h.decide(r, http.StatusOK, CodeOK, "")
	return h.serveChained(w, r, res, hd, next)
}
