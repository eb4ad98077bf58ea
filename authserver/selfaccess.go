package authserver

import (
	"net/http"
	"strings"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// maxSelfScopeChars bounds the scope of a self-access request (the scope of a resource
// token is bounded by the token size; this one comes straight from the body).
const maxSelfScopeChars = 1024

// selfAccess handles {"scope": "…"} without a resource token (draft-hardt-aauth §4.5.5):
// an identified agent asks for a token for itself, e.g. for single sign-on or for its own
// delegates. The policy sees the agent as both agent and resource; the token has aud =
// the agent, no agent claim, cnf.jwk = the signing key, the requested scope and, after
// consent, sub = the user. verifyRequest already refused an unidentified (hwk) caller.
func (h *Handler) selfAccess(w http.ResponseWriter, r *http.Request, res *reqverify.Result, req *tokenRequest) {
	scope := strings.Join(strings.Fields(req.Scope), " ")
	switch {
	case scope == "":
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "scope is empty", nil)
		return
	case len(scope) > maxSelfScopeChars:
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "scope is longer than 1024 characters", nil)
		return
	case !printableASCII(scope):
		// The scope ends up in a token that gateways forward in headers.
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "scope must be printable ASCII", nil)
		return
	}
	h.decide(w, r, &tokenAsk{
		Agent: res.Agent, Delegate: res.Delegate, Scheme: res.Scheme, Key: res.Key,
		Resource: res.Agent, Scope: scope, Purpose: req.Purpose, Self: true,
	})
}

// printableASCII reports whether s has only characters 0x20–0x7e (what a gateway can
// forward in a header).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
