package authserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// ClaimExchangeDepth is the private claim of an auth token obtained by token exchange:
// how many exchanges led to it (1 for the exchange of a token that was not itself
// exchanged). Absent means 0. Refresh keeps it; max_exchange_depth bounds it.
const ClaimExchangeDepth = "exchange_depth"

// Token exchange (call chaining, draft-hardt-aauth §4.5.8, §11.1): a resource R1 that
// received an auth token (the upstream token) calls a resource R2, gets R2's resource
// token (agent = R1, aud = this server) and trades both for an auth token for R2 bound
// to R1's key. Two forms are accepted:
//
//   - (i) R1 signs with its own identity (jwks_uri or an agent token) and the body is
//     {"resource_token": …, "upstream_token": …} (exchange);
//   - (ii) the same body, but Signature-Key carries the upstream token (scheme=jwt) while
//     the request is signed with R1's key, found in R1's published JWKS by the resource
//     token's agent_jkt (seedExchange).
//
// Both require the upstream iss on trust_issuer, the upstream aud equal to the resource
// token's agent, and the resource token's aud equal to this server. The new token has
// agent = R1, cnf = R1's key, aud = R2, the resource token's scope, the upstream sub and
// txn carried over, no act, and exchange_depth one more than the upstream's.

// seedForm reports whether a request's Signature-Key carries an auth token (scheme=jwt
// with typ auth+jwt): token exchange in form (ii). Nothing else sends an auth token to
// the auth server.
func seedForm(hdr http.Header) bool {
	if !httpsig.Present(hdr) {
		return false
	}
	sig, err := httpsig.Parse(hdr, httpsig.DefaultLimits)
	if err != nil {
		return false
	}
	return sig.Key.Scheme == httpsig.SchemeJWT && wire.TokenType(sig.Key.Get("jwt")) == token.TypAuth
}

// exchange is form (i): the caller res (R1) is verified by its own identity.
func (h *Handler) exchange(w http.ResponseWriter, r *http.Request, res *reqverify.Result, req *tokenRequest) {
	if !req.has("resource_token") {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "token exchange needs resource_token with upstream_token", nil)
		return
	}
	up, depth, ok := h.verifyUpstream(w, r, req.UpstreamToken)
	if !ok {
		return
	}
	if _, ok := h.precheckExchange(w, r, up, req.ResourceToken); !ok {
		return
	}
	rt, ok := h.verifyResourceToken(w, r, res, req.ResourceToken)
	if !ok {
		return
	}
	h.decide(w, r, exchangeAsk(res, rt, up, depth, req.Purpose))
}

// seedExchange is form (ii). Order: the signature headers and window (no key yet); the
// upstream token (cheap checks, then its issuer's keys); only then the body (bounded);
// the resource token's claims against the upstream token (no fetch); the caller's key
// from its JWKS by agent_jkt and the request signature; the caller's rate limit; the
// resource token's signature; the policy.
func (h *Handler) seedExchange(w http.ResponseWriter, r *http.Request) {
	verdictOf(r).setKind(kindExchange)
	sig, base, err := h.verifier.Prepare(h.target(r))
	if err != nil {
		h.refuseSignature(w, r, err)
		return
	}
	raw := sig.Key.Get("jwt")
	up, depth, ok := h.verifyUpstream(w, r, raw)
	if !ok {
		return
	}
	req, ok := h.readRequest(w, r, &reqverify.Result{Signature: sig})
	if !ok {
		return
	}
	switch {
	case req.has("auth_token") || !req.has("resource_token") || !req.has("upstream_token"):
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "an auth token in Signature-Key is accepted only for token exchange: the body must carry resource_token and upstream_token", nil)
		return
	case req.UpstreamToken != raw:
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "upstream_token differs from the auth token in Signature-Key", nil)
		return
	}
	pre, ok := h.precheckExchange(w, r, up, req.ResourceToken)
	if !ok {
		return
	}
	res, ok := h.callerKey(w, r, sig, base, pre.Claims.Agent, pre.Claims.AgentJKT)
	if ok {
		verdictOf(r).setAgent(res.Agent)
	}
	if !ok || !h.allowAgent(w, r, res.Agent) {
		return
	}
	rt, ok := h.verifyResourceToken(w, r, res, req.ResourceToken)
	if !ok {
		return
	}
	h.decide(w, r, exchangeAsk(res, rt, up, depth, req.Purpose))
}

// refuseSignature answers a request whose signature could not be verified.
func (h *Handler) refuseSignature(w http.ResponseWriter, r *http.Request, err error) {
	if ue, ok := reqverify.Unavailable(err); ok {
		caddyaauth.WriteUnavailable(w, r, h.logger, h.outages, ue)
		return
	}
	if status, e, ok := reqverify.Refusal(err); ok {
		h.writeError(w, r, status, e.Code, e.Description, e.RequiredComponents)
		return
	}
	h.serverError(w, r, "verifying request signature", err)
}

// exchangeAsk is what an exchange asks for: the caller res for the resource of rt, on
// behalf of the upstream token's sub, with its txn (else the resource token's).
func exchangeAsk(res *reqverify.Result, rt, up *token.Token, depth int, purpose string) *tokenAsk {
	txn := up.Claims.Txn
	if txn == "" {
		txn = rt.Claims.Txn
	}
	return &tokenAsk{
		Agent: res.Agent, Delegate: res.Delegate, Scheme: res.Scheme, Key: res.Key,
		Resource: rt.Claims.Issuer, Scope: rt.Claims.Scope, Txn: txn, Purpose: purpose,
		Subject: up.Claims.Subject, Depth: depth,
		UpstreamIssuer: up.Claims.Issuer, UpstreamAgent: up.Claims.Agent, RT: rt,
	}
}

// verifyUpstream verifies the upstream auth token: cheap checks first (structure, iss on
// trust_issuer, a single aud), then exp/iat and the signature with the keys its issuer
// publishes, then the claims carried over, and the depth the new token would have. It
// returns that depth; ok false means the request was answered.
func (h *Handler) verifyUpstream(w http.ResponseWriter, r *http.Request, raw string) (*token.Token, int, bool) {
	refuse := func(msg string) (*token.Token, int, bool) {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidAuthToken, msg, nil)
		return nil, 0, false
	}
	if raw == "" {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "upstream_token is empty", nil)
		return nil, 0, false
	}
	pre, err := token.Parse(raw, token.TypAuth)
	if err != nil {
		return refuse("upstream token is not a valid auth token")
	}
	if !slices.Contains(h.TrustIssuers, pre.Claims.Issuer) {
		return refuse("upstream issuer is not trusted")
	}
	if len(pre.Claims.Audience) != 1 || pre.Claims.AudienceIsArray() {
		return refuse("upstream token must have a single aud")
	}
	up, err := token.VerifyAuthToken(r.Context(), raw, token.Options{
		Now:         h.now(),
		Audience:    pre.Claims.Audience[0],
		Issuers:     h.TrustIssuers,
		MaxLifetime: reqverify.DefaultMaxTokenLifetime,
	}, h.issuerKey)
	if ue, ok := reqverify.AsUnavailable(err, "the upstream auth server's", pre.Claims.Issuer); ok {
		caddyaauth.WriteUnavailable(w, r, h.logger, h.outages, ue)
		return nil, 0, false
	}
	if err != nil {
		return refuse(upstreamMessage(err))
	}
	c := &up.Claims
	for _, v := range []string{c.Subject, c.Txn, c.Agent, c.Scope} {
		if len(v) > maxClaimChars || !printableASCII(v) {
			return refuse("upstream token has a claim that cannot be carried over")
		}
	}
	depth, err := exchangeDepthOf(c)
	if err != nil {
		return refuse("upstream token " + err.Error())
	}
	if depth+1 > h.maxDepth {
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, fmt.Sprintf("token exchange chain is deeper than %d", h.maxDepth), nil)
		return nil, 0, false
	}
	return up, depth + 1, true
}

// maxClaimChars bounds claims carried from an upstream token (gateways forward them in
// headers).
const maxClaimChars = 1024

// exchangeDepthOf reads the exchange_depth claim (absent: 0).
func exchangeDepthOf(c *token.Claims) (int, error) {
	v, ok := c.Extra[ClaimExchangeDepth]
	if !ok {
		return 0, nil
	}
	s := string(v)
	if s == "" || len(s) > 4 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("exchange_depth is not a small non-negative integer")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("exchange_depth is not a small non-negative integer")
	}
	return n, nil
}

// precheckExchange checks the resource token's claims against the verified upstream
// token before anything about it is fetched: aud = this server, an agent equal to the
// upstream aud, an agent_jkt. It returns the parsed (not yet verified) resource token.
func (h *Handler) precheckExchange(w http.ResponseWriter, r *http.Request, up *token.Token, raw string) (*token.Token, bool) {
	if raw == "" {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "resource_token is empty", nil)
		return nil, false
	}
	bad := func(code, msg string) (*token.Token, bool) {
		h.writeError(w, r, http.StatusBadRequest, code, msg, nil)
		return nil, false
	}
	pre, err := token.Parse(raw, token.TypResource)
	if err != nil {
		return bad(wire.CodeInvalidResourceToken, "resource token is invalid")
	}
	c := &pre.Claims
	switch {
	case len(c.Audience) != 1 || c.AudienceIsArray() || c.Audience[0] != h.Issuer:
		return bad(wire.CodeInvalidResourceToken, "resource token is not addressed to this auth server")
	case c.Agent == "":
		return bad(wire.CodeInvalidResourceToken, "resource token has no agent")
	case len(c.AgentJKT) != 43:
		return bad(wire.CodeInvalidResourceToken, "resource token has no valid agent_jkt")
	case c.Agent != up.Claims.Audience[0]:
		return bad(wire.CodeInvalidAuthToken, "upstream token was issued for another resource than the one that asks (its aud is not the resource token's agent)")
	}
	return pre, true
}

// callerKey finds the form (ii) caller's signing key, the key with thumbprint jkt in the
// JWKS agent publishes (agent metadata first, resource metadata second), and verifies the
// request signature with it. The result is the verified caller, as if it had signed with
// jwks_uri (its pending URL is polled that way).
func (h *Handler) callerKey(w http.ResponseWriter, r *http.Request, sig *httpsig.Signature, base []byte, agent, jkt string) (*reqverify.Result, bool) {
	if err := discovery.ValidateIdentifier(agent, h.dev); err != nil {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidResourceToken, "resource token agent is not a valid identifier", nil)
		return nil, false
	}
	ctx := r.Context()
	key, err := h.discovery.KeyByThumbprint(ctx, agent, discovery.DocAgent, jkt)
	if err != nil && !errors.Is(err, discovery.ErrBlocked) && !errors.Is(err, discovery.ErrInvalid) {
		key, err = h.discovery.KeyByThumbprint(ctx, agent, discovery.DocResource, jkt)
	}
	if ue, ok := reqverify.AsUnavailable(err, "the calling resource's", agent); ok {
		caddyaauth.WriteUnavailable(w, r, h.logger, h.outages, ue)
		return nil, false
	}
	if err != nil {
		msg := "the calling resource's keys could not be fetched"
		if errors.Is(err, discovery.ErrUnknownKey) {
			msg = "no key with the resource token's agent_jkt in the calling resource's published JWKS"
		}
		h.writeError(w, r, http.StatusUnauthorized, wire.CodeUnknownKey, msg, nil)
		return nil, false
	}
	if err := httpsig.Verify(sig, base, key); err != nil {
		h.writeError(w, r, http.StatusUnauthorized, wire.CodeInvalidSignature, "request is not signed by the key the resource token names (agent_jkt)", nil)
		return nil, false
	}
	return &reqverify.Result{
		Signature: sig, Base: base, Scheme: httpsig.SchemeJWKSURI, Key: key,
		Level: reqverify.LevelIdentity, Agent: agent,
	}, true
}

// issuerKey resolves an upstream auth token's signing key: this server's own key for its
// own tokens, else the key the issuer publishes ({iss}/.well-known/aauth-issuer.json →
// jwks_uri). Only called for an issuer on trust_issuer.
func (h *Handler) issuerKey(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
	if iss == h.Issuer {
		pub, err := h.key.Lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		if pub == nil {
			return nil, discovery.ErrUnknownKey
		}
		return pub, nil
	}
	if err := discovery.ValidateIdentifier(iss, h.dev); err != nil {
		return nil, err
	}
	return h.discovery.Key(ctx, iss, discovery.DocIssuer, kid)
}

// upstreamMessage describes an upstream token failure without echoing the token.
func upstreamMessage(err error) string {
	var te *token.Error
	if !errors.As(err, &te) {
		return "upstream token is invalid"
	}
	switch te.Code {
	case token.CodeExpired:
		return "upstream token has expired"
	case token.CodeUntrustedIssuer:
		return "upstream issuer is not trusted"
	case token.CodeUnknownKey:
		if errors.Is(err, discovery.ErrUnknownKey) {
			return "upstream token is not signed by a key its issuer publishes"
		}
		return "the upstream issuer's keys could not be fetched"
	case token.CodeInvalidToken:
		return "upstream token is invalid: " + te.Msg
	}
	return "upstream token is invalid"
}
