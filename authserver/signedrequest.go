package authserver

import (
	"net/http"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// verifyRequest checks the HTTP signature; the token endpoint and pending URLs need an
// identified agent.
func (h *Handler) verifyRequest(w http.ResponseWriter, r *http.Request) (*reqverify.Result, bool) {
	if !httpsig.Present(r.Header) {
		h.writeError(w, r, http.StatusUnauthorized, wire.CodeInvalidSignature, "request is not signed", nil)
		return nil, false
	}
	res, err := h.verifier.Verify(r.Context(), h.target(r))
	if err != nil {
		if ue, ok := reqverify.Unavailable(err); ok {
			caddyaauth.WriteUnavailable(w, r, h.logger, h.outages, ue)
			return nil, false
		}
		if status, e, ok := reqverify.Refusal(err); ok {
			h.writeError(w, r, status, e.Code, e.Description, e.RequiredComponents)
			return nil, false
		}
		h.serverError(w, r, "verifying request signature", err)
		return nil, false
	}
	if res.Level == reqverify.LevelPseudonym || res.Agent == "" {
		h.writeError(w, r, http.StatusUnauthorized, wire.CodeInvalidSignature, "this endpoint needs an identified agent (jwks_uri or an agent token)", nil)
		return nil, false
	}
	return res, true
}

// target describes the request as the agent signed it: the issuer's authority (never the
// Host header), and method, path and query from the original request, before any
// rewrite.
func (h *Handler) target(r *http.Request) httpsig.Target {
	return caddyaauth.ReceivedTarget(r, h.authority)
}

// readSignedBody reads a POST body bound to the request signature
// (reqverify.ReadSignedBody) and answers the refusal itself; tooLarge is the text of a
// 413. The AAuth draft (draft-hardt-aauth) makes only @method, @authority, @path and
// signature-key (and @query with a query string) mandatory; body components are
// demanded only where configured. A covered Content-Digest is always recomputed over the
// body that was read (RFC 9530), so a body swapped under a signature that covers its
// digest is refused. With require_signed_body the signature must also cover
// content-type and content-digest, since the body carries the resource token, the
// purpose and clarification answers; without it an uncovered body is accepted, as the
// reference agents never sign bodies.
func (h *Handler) readSignedBody(w http.ResponseWriter, r *http.Request, res *reqverify.Result, max int64, tooLarge string) ([]byte, bool) {
	body, err := reqverify.ReadSignedBody(r, res.Signature, reqverify.BodyPolicy{Max: max, RequireSigned: h.RequireSignedBody})
	if err != nil {
		h.refuseBody(w, r, err, tooLarge)
		return nil, false
	}
	return body, true
}

// refuseBody answers a body refused by reqverify (PrecheckJSONBody, ReadSignedBody);
// tooLarge is the text of a 413.
func (h *Handler) refuseBody(w http.ResponseWriter, r *http.Request, err error, tooLarge string) {
	status, e, ok := reqverify.Refusal(err)
	switch {
	case !ok:
		status, e = http.StatusBadRequest, wire.Error{Code: wire.CodeInvalidRequest, Description: "the request body could not be read"}
	case status == http.StatusRequestEntityTooLarge:
		e.Description = tooLarge
	}
	h.writeError(w, r, status, e.Code, e.Description, e.RequiredComponents)
}
