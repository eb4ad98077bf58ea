package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/promreg"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// serveToken is the token endpoint. Order: method, Content-Type and Content-Length (no
// body read), the request signature (the body is read only after it verified, so an
// unauthenticated client never gets 100 Continue), the agent's rate limit, the body, the
// resource token, the policy and bounds, its jti, and finally the auth token. A token
// exchange in the seed form (an auth token in Signature-Key) takes its own path
// (seedExchange), since its signing key is named by the body.
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	w, r, done := h.track(w, r, "token")
	defer done()
	if r.Method != http.MethodPost {
		h.methodNotAllowed(w, r, http.MethodPost)
		return
	}
	if err := reqverify.PrecheckJSONBody(r, maxTokenRequestBody); err != nil {
		h.refuseBody(w, r, err, tokenBodyTooLarge)
		return
	}
	if seedForm(r.Header) {
		h.seedExchange(w, r)
		return
	}

	res, ok := h.verifyRequest(w, r)
	if !ok {
		return
	}
	tv := verdictOf(r)
	tv.setAgent(res.Agent)
	// Per agent, after the signature (an unverified agent id would let anyone spend
	// another agent's budget) and before the body, the resource token and the jti record.
	if !h.allowAgent(w, r, res.Agent) {
		return
	}

	req, ok := h.readRequest(w, r, res)
	if !ok {
		return
	}

	switch {
	case req.has("auth_token"):
		tv.setKind(kindRefresh)
		h.refresh(w, r, res, req)
	case req.has("upstream_token"):
		tv.setKind(kindExchange)
		h.exchange(w, r, res, req)
	case req.has("resource_token"):
		tv.setKind(kindDirect) // kindConsent once the policy asks the user (decide)
		h.resourceAccess(w, r, res, req)
	case req.has("scope"):
		tv.setKind(kindSelf)
		h.selfAccess(w, r, res, req)
	default:
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "unsupported request", nil)
	}
}

// allowAgent takes one token request from the agent's rate budget, or answers 429.
func (h *Handler) allowAgent(w http.ResponseWriter, r *http.Request, agent string) bool {
	ok, retry := true, time.Duration(0)
	if h.sharedLimit != nil {
		n, window := h.tokenRate()
		sum := sha256.Sum256([]byte(h.Issuer + "\n" + agent))
		var err error
		ok, retry, err = h.sharedLimit.Allow(r.Context(), "token/"+hex.EncodeToString(sum[:]), n, window)
		if err != nil {
			h.serverError(w, r, "token rate limit", err)
			return false
		}
	} else {
		ok, retry = h.consent.tokens.allow(agent, h.now())
	}
	if !ok {
		h.metrics.limited(promreg.LimiterToken)
		w.Header().Set("Retry-After", strconv.FormatInt(int64((retry+time.Second-1)/time.Second), 10))
		h.writeError(w, r, http.StatusTooManyRequests, wire.CodeRateLimited, "too many token requests from this agent; retry later", nil)
	}
	return ok
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
	rt, ok := h.verifyResourceToken(w, r, res, req.ResourceToken)
	if !ok {
		return
	}
	c := &rt.Claims
	h.decide(w, r, &tokenAsk{
		Agent: res.Agent, Delegate: res.Delegate, Scheme: res.Scheme, Key: res.Key,
		Resource: c.Issuer, Scope: c.Scope, Txn: c.Txn, Purpose: req.Purpose, RT: rt,
	})
}

// verifyResourceToken verifies a resource token presented by the verified caller res:
// signature with the resource's published keys, aud = this server, lifetime, and that it
// was issued to this caller (agent) for the key that signed the request (agent_jkt).
func (h *Handler) verifyResourceToken(w http.ResponseWriter, r *http.Request, res *reqverify.Result, raw string) (*token.Token, bool) {
	if raw == "" {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "resource_token is empty", nil)
		return nil, false
	}
	rt, err := token.VerifyResourceToken(r.Context(), raw, token.Options{
		Now:         h.now(),
		Audience:    h.Issuer,
		MaxLifetime: maxResourceTokenLifetime,
	}, h.resourceKey)
	if ue, ok := reqverify.AsUnavailable(err, "the resource's", ""); ok {
		caddyaauth.WriteUnavailable(w, r, h.logger, h.outages, ue)
		return nil, false
	}
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, resourceTokenMessage(err), nil)
		return nil, false
	}
	c := &rt.Claims
	if c.Agent != res.Agent {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token was issued to another agent", nil)
		return nil, false
	}
	if c.AgentJKT != res.Key.Thumbprint {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "agent_jkt does not match the key that signed this request", nil)
		return nil, false
	}
	return rt, true
}

// tokenAsk is a verified token request for the policy to decide: who asks (agent,
// delegate, key and how it was verified), for what (resource, scope, txn) and, after a
// token exchange, on whose behalf. Resource access, self-access and token exchange all
// end in decide.
type tokenAsk struct {
	Agent, Delegate, Scheme string
	Key                     *keys.PublicKey
	Resource, Scope, Txn    string
	Purpose                 string

	// Self marks self-access (draft-hardt-aauth §4.5.5): Resource is the agent itself and
	// the token has no agent claim.
	Self bool

	// Token exchange (draft-hardt-aauth §4.5.8): the upstream token's sub (carried over
	// into the new token) and where it came from, and the new token's exchange_depth.
	Subject                       string
	Depth                         int
	UpstreamIssuer, UpstreamAgent string

	// RT is the verified resource token whose jti the request spends (nil for
	// self-access).
	RT *token.Token
}

// grant is what a token issued for the ask states; user is the consenting user (empty
// for a direct grant). A sub carried over by an exchange wins over the user.
func (a *tokenAsk) grant(user string) authGrant {
	sub := a.Subject
	if sub == "" {
		sub = user
	}
	return authGrant{
		Agent: a.Agent, Delegate: a.Delegate, Key: a.Key, Resource: a.Resource,
		Scope: a.Scope, Txn: a.Txn, Subject: sub, Self: a.Self, Depth: a.Depth,
	}
}

// decide applies the policy to a verified ask and answers: 403 (deny), 200 with a token
// (allow, or consent covered by a remembered grant) or 202 with a pending URL (consent).
// The policy outcome is the switch point of the request's fate. Everything that can still
// refuse the request (policy, a direct grant with nothing to grant, the bounds on
// undecided requests) is decided before the resource token's jti is spent, so only a
// request that then succeeds writes a jti record: refused requests cause no storage
// growth.
func (h *Handler) decide(w http.ResponseWriter, r *http.Request, ask *tokenAsk) {
	now := h.now()
	tv := verdictOf(r)
	tv.setAsk(ask.Resource, ask.Scope)
	effect := h.Policy.Evaluate(ask.Agent, ask.Resource, strings.Fields(ask.Scope))
	if effect == EffectConsent && tv != nil && tv.kind == kindDirect {
		tv.setKind(kindConsent)
	}
	if effect != EffectAllow && effect != EffectConsent {
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, "policy denies this request", nil)
		return
	}
	var (
		remembered *grant         // consent: a remembered decision covers the request
		pending    *pendingRecord // consent: otherwise, the admitted pending request
	)
	if effect == EffectAllow {
		if ask.Scope == "" && ask.Subject == "" {
			// Without a user (sub), scope is what makes an auth token valid at the resource.
			h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token has no scope, which a direct grant needs", nil)
			return
		}
	} else {
		var ok bool
		if remembered, pending, ok = h.prepareConsent(w, r, ask, now); !ok {
			return
		}
	}
	if !h.spendResourceToken(w, r, ask.RT, pending, now) {
		return
	}
	switch {
	case effect == EffectAllow:
		h.issueToken(w, r, ask.grant(""), now)
	case remembered != nil:
		h.logger.Info("remembered consent applies",
			zap.String("agent", ask.Agent), zap.String("resource", ask.Resource),
			zap.String("user", remembered.User), zap.String("grant", remembered.ID))
		h.issueToken(w, r, ask.grant(remembered.User), now)
	default:
		h.createPending(w, r, pending)
	}
}

// spendResourceToken records the resource token's jti (a resource token is accepted
// once); on a replay or a storage failure it answers, releases the admitted pending
// request and returns false. A nil rt (self-access) spends nothing.
func (h *Handler) spendResourceToken(w http.ResponseWriter, r *http.Request, rt *token.Token, pending *pendingRecord, now time.Time) bool {
	if rt == nil {
		return true
	}
	c := &rt.Claims
	fresh, err := h.replay.use(r.Context(), c.Issuer, c.ID, time.Unix(c.Expiry, 0), now)
	if err == nil && fresh {
		return true
	}
	if pending != nil {
		h.consent.release(r.Context(), pending.ID)
	}
	if err != nil {
		h.serverError(w, r, "checking resource token jti", err)
	} else {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token already used", nil)
	}
	return false
}

// authGrant is what an auth token states: who may use it (the agent and its key), where
// (the resource), for what (scope, txn) and for whom (the consenting user, if any). A
// self-access token (Self) is for the agent itself: aud = the agent, no agent claim. Depth
// is the exchange_depth of a token obtained by exchange (0: none).
type authGrant struct {
	Agent, Delegate string
	Key             *keys.PublicKey
	Resource        string
	Scope, Txn      string
	Subject         string
	Self            bool
	Depth           int
}

// issueToken mints a token for g and answers 200.
func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, g authGrant, now time.Time) {
	t, err := h.mintAuthToken(r.Context(), g, now)
	if err != nil {
		h.serverError(w, r, "minting auth token", err)
		return
	}
	kind := kindDirect
	if tv := verdictOf(r); tv != nil && tv.kind != "" {
		kind = tv.kind
	}
	h.issued(r, g, t, kind)
	h.writeJSON(w, http.StatusOK, wire.TokenResponse{AuthToken: t.raw, ExpiresIn: t.lifetime})
}

// mintedToken is an auth token just signed: its text, lifetime in seconds and jti.
type mintedToken struct {
	raw      string
	lifetime int64
	jti      string
}

// mintAuthToken signs an auth+jwt for g: iss, aud = the resource, a fresh jti, iat/exp,
// agent (not for self-access), agent_delegate, sub, scope, txn, cnf.jwk = the agent's
// signing key, and exchange_depth after a token exchange.
func (h *Handler) mintAuthToken(ctx context.Context, g authGrant, now time.Time) (mintedToken, error) {
	signer, err := h.key.Signer(ctx)
	if err != nil {
		return mintedToken{}, fmt.Errorf("auth server signing key: %w", err)
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
	if g.Self {
		claims.Agent = ""
	}
	if g.Depth > 0 {
		claims.Extra = map[string]json.RawMessage{ClaimExchangeDepth: json.RawMessage(strconv.Itoa(g.Depth))}
	}
	raw, err := token.Mint(signer, token.TypAuth, claims)
	return mintedToken{raw: raw, lifetime: lifetime, jti: claims.ID}, err
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
