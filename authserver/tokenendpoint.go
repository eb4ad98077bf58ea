package authserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// serveToken is the token endpoint. Order: method, Content-Type and Content-Length (no
// body read), the request signature (the body is read only after it verified, so an
// unauthenticated client never gets 100 Continue), the agent's rate limit, the body, the
// resource token, the policy and bounds, its jti, and finally the auth token.
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.methodNotAllowed(w, r, http.MethodPost)
		return
	}
	if err := reqverify.PrecheckJSONBody(r, maxTokenRequestBody); err != nil {
		h.refuseBody(w, r, err, tokenBodyTooLarge)
		return
	}

	res, ok := h.verifyRequest(w, r)
	if !ok {
		return
	}
	// Per agent, after the signature (an unverified agent id would let anyone spend
	// another agent's budget) and before the body, the resource token and the jti record.
	if ok, retry := h.consent.tokens.allow(res.Agent, h.now()); !ok {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((retry+time.Second-1)/time.Second), 10))
		h.writeError(w, r, http.StatusTooManyRequests, wire.CodeRateLimited, "too many token requests from this agent; retry later", nil)
		return
	}

	req, ok := h.readRequest(w, r, res)
	if !ok {
		return
	}

	switch {
	case req.has("auth_token"):
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "refresh (auth_token) is not supported yet", nil)
	case req.has("upstream_token"):
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "token exchange (upstream_token) is not supported yet", nil)
	case req.has("resource_token"):
		h.resourceAccess(w, r, res, req)
	default:
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "unsupported request", nil)
	}
}

// readRequest reads (bounded, bound to the signature) and parses the body.
func (h *Handler) readRequest(w http.ResponseWriter, r *http.Request, res *reqverify.Result) (*tokenRequest, bool) {
	body, ok := h.readSignedBody(w, r, res, maxTokenRequestBody, tokenBodyTooLarge)
	if !ok {
		return nil, false
	}
	req, err := parseTokenRequest(body)
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error(), nil)
		return nil, false
	}
	return req, true
}

// resourceAccess handles {"resource_token": …} (draft-hardt-aauth §11.1–§11.2, verified
// as in §16.2.3).
func (h *Handler) resourceAccess(w http.ResponseWriter, r *http.Request, res *reqverify.Result, req *tokenRequest) {
	if req.ResourceToken == "" {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "resource_token is empty", nil)
		return
	}
	now := h.now()
	rt, err := token.VerifyResourceToken(r.Context(), req.ResourceToken, token.Options{
		Now:         now,
		Audience:    h.Issuer,
		MaxLifetime: maxResourceTokenLifetime,
	}, h.resourceKey)
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, resourceTokenMessage(err), nil)
		return
	}
	c := &rt.Claims
	if c.Agent != res.Agent {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token was issued to another agent", nil)
		return
	}
	if c.AgentJKT != res.Key.Thumbprint {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "agent_jkt does not match the key that signed this request", nil)
		return
	}
	// The policy outcome is the switch point of the request's fate. Everything that can
	// still refuse the request (policy, a direct grant without scope, the bounds on
	// undecided requests) is decided before the jti is spent, so only a request that then
	// succeeds writes a jti record: refused requests cause no storage growth.
	effect := h.Policy.Evaluate(res.Agent, c.Issuer, strings.Fields(c.Scope))
	if effect != EffectAllow && effect != EffectConsent {
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, "policy denies this request", nil)
		return
	}
	var (
		remembered *grant         // consent: a remembered decision covers the request
		pending    *pendingRecord // consent: otherwise, the admitted pending request
	)
	if effect == EffectAllow {
		if c.Scope == "" {
			// Without a user (sub), scope is what makes an auth token valid at the resource.
			h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token has no scope, which a direct grant needs", nil)
			return
		}
	} else {
		var ok bool
		if remembered, pending, ok = h.prepareConsent(w, r, res, rt, req, now); !ok {
			return
		}
	}
	fresh, err := h.replay.use(r.Context(), c.Issuer, c.ID, time.Unix(c.Expiry, 0), now)
	if err != nil || !fresh {
		if pending != nil {
			h.consent.release(pending.ID)
		}
		if err != nil {
			h.serverError(w, r, "checking resource token jti", err)
		} else {
			h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token already used", nil)
		}
		return
	}
	switch {
	case effect == EffectAllow:
		h.issueToken(w, r, authGrant{
			Agent: res.Agent, Delegate: res.Delegate, Key: res.Key, Resource: c.Issuer,
			Scope: c.Scope, Txn: c.Txn,
		}, now)
	case remembered != nil:
		h.logger.Info("remembered consent applies",
			zap.String("agent", res.Agent), zap.String("resource", c.Issuer),
			zap.String("user", remembered.User), zap.String("grant", remembered.ID))
		h.issueToken(w, r, authGrant{
			Agent: res.Agent, Delegate: res.Delegate, Key: res.Key, Resource: c.Issuer,
			Scope: c.Scope, Txn: c.Txn, Subject: remembered.User,
		}, now)
	default:
		h.createPending(w, r, pending)
	}
}

// authGrant is what an auth token states: who may use it (the agent and its key), where
// (the resource), for what (scope, txn) and for whom (the consenting user, if any).
type authGrant struct {
	Agent, Delegate string
	Key             *keys.PublicKey
	Resource        string
	Scope, Txn      string
	Subject         string
}

// issueToken mints a token for g and answers 200.
func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, g authGrant, now time.Time) {
	raw, lifetime, err := h.mintAuthToken(r.Context(), g, now)
	if err != nil {
		h.serverError(w, r, "minting auth token", err)
		return
	}
	h.logger.Info("auth token issued",
		zap.String("agent", g.Agent),
		zap.String("delegate", g.Delegate),
		zap.String("resource", g.Resource),
		zap.String("scope", g.Scope),
		zap.String("user", g.Subject),
		zap.Int64("expires_in", lifetime))
	h.writeJSON(w, http.StatusOK, wire.TokenResponse{AuthToken: raw, ExpiresIn: lifetime})
}

// mintAuthToken signs an auth+jwt for g: iss, aud = the resource, a fresh jti, iat/exp,
// agent, agent_delegate, sub, scope, txn and cnf.jwk = the agent's signing key.
func (h *Handler) mintAuthToken(ctx context.Context, g authGrant, now time.Time) (string, int64, error) {
	signer, err := h.key.Signer(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("auth server signing key: %w", err)
	}
	lifetime := int64(h.lifetime / time.Second)
	iat := now.Unix()
	claims := token.Claims{
		Issuer:        h.Issuer,
		Subject:       g.Subject,
		Audience:      token.Audience{g.Resource},
		ID:            token.NewID(),
		IssuedAt:      iat,
		Expiry:        iat + lifetime,
		Agent:         g.Agent,
		Scope:         g.Scope,
		Txn:           g.Txn,
		AgentDelegate: g.Delegate,
		Confirmation:  &token.Confirmation{Key: g.Key},
	}
	raw, err := token.Mint(signer, token.TypAuth, claims)
	return raw, lifetime, err
}

// resourceKey resolves a resource token's signing key from the resource's published
// metadata and JWKS.
func (h *Handler) resourceKey(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
	if err := discovery.ValidateIdentifier(iss, h.dev); err != nil {
		return nil, err
	}
	return h.discovery.Key(ctx, iss, discovery.DocResource, kid)
}

// resourceTokenMessage describes a resource token failure without echoing the token.
func resourceTokenMessage(err error) string {
	var te *token.Error
	if !errors.As(err, &te) {
		return "resource token is invalid"
	}
	switch te.Code {
	case token.CodeExpired:
		return "resource token has expired"
	case token.CodeInvalidAudience:
		return "resource token is not addressed to this auth server"
	case token.CodeUnknownKey:
		switch {
		case errors.Is(err, discovery.ErrInvalid), errors.Is(err, discovery.ErrBlocked):
			return "resource token iss is not a valid resource identifier"
		case errors.Is(err, discovery.ErrUnknownKey):
			return "resource token is not signed by a key the resource publishes"
		}
		return "the resource's keys could not be fetched"
	case token.CodeInvalidToken:
		return "resource token is invalid: " + te.Msg
	}
	return "resource token is invalid"
}

// tokenBodyTooLarge is the text of a 413 from the token endpoint.
const tokenBodyTooLarge = "request body is larger than 64 KiB"
