package authserver

import (
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Refresh (draft-hardt-aauth §11.6, §19.7): there are no refresh tokens; the agent
// presents an auth token this server issued, {"auth_token": "<token>"}, in a request
// signed with the key in the token's cnf, up to refresh_window after the token's expiry.
// The answer is a fresh token for the same grant (agent, delegate, aud, scope, sub, txn,
// exchange_depth, cnf) with a new jti, iat and exp. Each token is refreshed at most once.
// The policy is evaluated again: a request the policy now denies is refused, and one it
// sends to the user is refreshed only while a remembered decision still covers it (a
// revoked grant ends the refreshes).

// refreshNamespace keys the refreshed-token records in the replay store, apart from the
// resource token jti records.
const refreshNamespace = "refresh "

// refresh handles {"auth_token": …}; res is the verified request.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, res *reqverify.Result, req *tokenRequest) {
	if req.has("resource_token") || req.has("upstream_token") || req.has("scope") {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "auth_token (refresh) cannot be combined with resource_token, upstream_token or scope", nil)
		return
	}
	if h.refreshWindow == 0 {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidAuthToken, "this auth server does not refresh tokens (refresh_window off)", nil)
		return
	}
	old, g, ok := h.verifyRefresh(w, r, res, req.AuthToken)
	if !ok {
		return
	}
	now := h.now()
	agent := g.Agent
	if g.Self {
		agent = g.Resource
	}
	switch h.Policy.Evaluate(agent, g.Resource, strings.Fields(g.Scope)) {
	case EffectAllow:
	case EffectConsent:
		if !h.grantStands(w, r, agent, g, now) {
			return
		}
	default:
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, "policy denies this request", nil)
		return
	}
	c := &old.Claims
	until := time.Unix(c.Expiry, 0).Add(h.refreshWindow)
	fresh, err := h.replay.use(r.Context(), refreshNamespace+h.Issuer, c.ID, until, now)
	switch {
	case err != nil:
		h.serverError(w, r, "recording the refreshed token", err)
		return
	case !fresh:
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidAuthToken, "auth_token was already refreshed", nil)
		return
	}
	h.logger.Info("auth token refreshed", zap.String("agent", agent), zap.String("resource", g.Resource))
	h.issueToken(w, r, g, now)
}

// grantStands reports whether a remembered decision still covers a refresh the policy
// sends to the user: same agent, delegate, key and resource, covering the scope, made
// for the token's sub by a user who may still consent. Otherwise it answers 403.
func (h *Handler) grantStands(w http.ResponseWriter, r *http.Request, agent string, g authGrant, now time.Time) bool {
	if g.Subject == "" {
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, "the policy now asks the user; request a new token", nil)
		return false
	}
	asker := grantAsker{Agent: agent, Delegate: g.Delegate, KeyJKT: g.Key.Thumbprint, Resource: g.Resource}
	found, err := h.consent.findGrant(r.Context(), asker, strings.Fields(g.Scope), func(gr *grant) bool {
		return gr.tokenSubject() == g.Subject && h.userMayConsent(gr.User)
	}, now)
	if err != nil {
		h.serverError(w, r, "reading remembered grants", err)
		return false
	}
	if found == nil {
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, "the grant was revoked", nil)
		return false
	}
	return true
}

// verifyRefresh checks the presented token, cheapest first and with nothing fetched: our
// typ and iss, its cnf key equal to the key that signed the request, the refresh window,
// our signature, and that it belongs to the agent (and delegate) that asks. It returns
// the token and the grant it states.
func (h *Handler) verifyRefresh(w http.ResponseWriter, r *http.Request, res *reqverify.Result, raw string) (*token.Token, authGrant, bool) {
	refuse := func(msg string) (*token.Token, authGrant, bool) {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidAuthToken, msg, nil)
		return nil, authGrant{}, false
	}
	if raw == "" {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "auth_token is empty", nil)
		return nil, authGrant{}, false
	}
	tok, err := token.Parse(raw, token.TypAuth)
	if err != nil {
		return refuse("auth_token is not a valid auth token")
	}
	c := &tok.Claims
	now := h.now()
	switch {
	case c.Issuer != h.Issuer:
		return refuse("auth_token was not issued by this auth server")
	case c.Confirmation == nil || c.Confirmation.Key == nil:
		return refuse("auth_token has no cnf.jwk")
	case c.Confirmation.Key.Thumbprint != res.Key.Thumbprint:
		return refuse("the request is signed by a key other than the auth_token's cnf key")
	case c.ID == "" || c.IssuedAt == 0 || c.Expiry <= c.IssuedAt || len(c.Audience) != 1 || c.AudienceIsArray():
		return refuse("auth_token is invalid")
	case !now.Before(time.Unix(c.Expiry, 0).Add(h.refreshWindow)):
		return refuse("auth_token is past this server's refresh window")
	case time.Unix(c.IssuedAt, 0).After(now.Add(token.DefaultSkew)):
		return refuse("auth_token iat is in the future")
	}
	// Any key of the keyring: one retired since the token was issued is kept for the
	// refresh window.
	pub, err := h.key.Lookup(r.Context(), tok.Header.Kid)
	if err != nil {
		h.serverError(w, r, "auth server signing key", err)
		return nil, authGrant{}, false
	}
	if pub == nil || tok.VerifySignature(pub) != nil {
		return refuse("auth_token is not signed by this auth server's key")
	}
	g := authGrant{
		Agent: c.Agent, Delegate: c.AgentDelegate, Key: c.Confirmation.Key, Resource: c.Audience[0],
		Scope: c.Scope, Txn: c.Txn, Subject: c.Subject, Self: c.Agent == "",
	}
	agent := g.Agent
	if g.Self {
		agent = g.Resource
	}
	if agent != res.Agent || g.Delegate != res.Delegate {
		return refuse("auth_token was issued to another agent")
	}
	if g.Depth, err = exchangeDepthOf(c); err != nil {
		return refuse("auth_token " + err.Error())
	}
	return tok, g, true
}
