// Package caddyaauth is the AAuth resource gateway for Caddy: the `aauth` HTTP handler
// verifies signed agent requests in front of backends that know nothing about AAuth,
// answers 401 challenges, and forwards the verified agent to the upstream in X-Aauth-*
// headers and {http.aauth.*} placeholders. The protocol core lives in the subpackages
// (httpsig, keys, token, discovery, reqverify), which have no Caddy imports.
package caddyaauth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/decisionlog"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/replay"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Levels a route can require: the challenge's require values (package wire).
const (
	RequirePseudonym = wire.RequirePseudonym
	RequireIdentity  = wire.RequireIdentity
	RequireAuthToken = wire.RequireAuthToken
)

// Handler verifies AAuth request signatures. Upstream headers and placeholders it sets on
// success ({http.aauth.*}):
//
//	X-Aauth-Level          {http.aauth.level}     pseudonym | identity | authorized
//	X-Aauth-Scheme         {http.aauth.scheme}    hwk | jwks_uri | jwt
//	X-Aauth-Agent          {http.aauth.agent}     agent identifier (absent for hwk)
//	X-Aauth-Delegate       {http.aauth.delegate}  agent token sub
//	X-Aauth-Key-Thumbprint {http.aauth.jkt}       RFC 7638 thumbprint of the signing key
//
// {http.auth.user.id} is set to the agent (or the key thumbprint for hwk). Every
// client-sent X-Aauth-* header is removed first, on every path.
type Handler struct {
	// Require is the level the route demands: "pseudonym" (any valid signature),
	// "identity" (jwks_uri, or jwt with an agent token) or "auth-token" (an auth token
	// from AuthServer or TrustIssuers). Default "identity".
	Require string `json:"require,omitempty"`

	// Resource is this resource's identifier, used as the audience of agent tokens.
	// Default: https://<the request's authority>.
	Resource string `json:"resource,omitempty"`

	// SignatureWindow is the allowed difference between a signature's created time and
	// now, either way. Default 60s.
	SignatureWindow caddy.Duration `json:"signature_window,omitempty"`

	// Authorities are the canonical @authority values (host[:port]) signatures must
	// cover. Default: the request's Host, lowercased, default port removed. When the Host
	// is not in the list the first entry is used, so a gateway behind a TLS-terminating
	// proxy verifies against its public name.
	Authorities []string `json:"authorities,omitempty"`

	// RequireComponents are covered components demanded beyond the four every AAuth
	// signature covers (@method, @authority, @path, signature-key): "content-type" and/or
	// "content-digest". With content-digest the body is read (up
	// to MaxBody) after the signature verified and its digest recomputed.
	RequireComponents []string `json:"require_components,omitempty"`

	// MaxBody caps the body read for a content-digest check, in bytes. Default 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// AuthServer is the auth server named in auth-token challenges; the audience of the
	// resource tokens this route mints. Required with require auth-token.
	AuthServer string `json:"auth_server,omitempty"`

	// TrustIssuers are further auth servers whose auth tokens this route accepts, besides
	// AuthServer. An auth token from any other issuer is refused before any fetch.
	TrustIssuers []string `json:"trust_issuers,omitempty"`

	// Scopes the route requires; an auth token must grant all of them. They are also the
	// scope of the resource tokens minted in challenges.
	Scopes []string `json:"scopes,omitempty"`

	// ScopeDescriptions are published in the resource metadata for consent screens.
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`

	// ResourceTokenLifetime is the lifetime of minted resource tokens. Default 5m.
	ResourceTokenLifetime caddy.Duration `json:"resource_token_lifetime,omitempty"`

	// Txn adds a random txn (transaction id) to every minted resource token; the auth
	// server copies it into the auth token and the backend sees X-Aauth-Txn.
	Txn bool `json:"txn,omitempty"`

	// Headers renames upstream header fields by key (level, scheme, agent, delegate,
	// sub, scope, jkt, txn, issuer); "-" drops the field. Placeholders are unaffected.
	Headers map[string]string `json:"headers,omitempty"`

	// KeepSignatureHeaders forwards Signature, Signature-Input and Signature-Key to the
	// upstream after verification, for backends that verify signatures themselves. By
	// default they are removed: with scheme=jwt, Signature-Key carries the agent's auth
	// token, which the backend has no use for.
	KeepSignatureHeaders bool `json:"keep_signature_headers,omitempty"`

	// Replay is the replay policy: "off" (a signed request is accepted as often as it
	// arrives within its signature window), "unsafe" (each signed request is accepted
	// once when its method is not GET, HEAD, OPTIONS or TRACE) or "all" (each signed
	// request is accepted once). Default "unsafe" on require auth-token routes, "off"
	// elsewhere. A request is identified by its RFC 9421 signature base, so a client
	// that sends the same request twice within one second must vary it (a nonce
	// signature parameter, or a covered body that differs).
	Replay string `json:"replay,omitempty"`

	// MaxTokenLifetime bounds the agent and auth tokens this route accepts: exp - iat
	// and exp - now must not exceed it. Default: the aauth app's max_token_lifetime,
	// else 24h.
	MaxTokenLifetime caddy.Duration `json:"max_token_lifetime,omitempty"`

	// AgentIdentity makes the resource an agent as well (draft-hardt-aauth §4.5.8: a
	// resource that calls other resources acts as an agent): the gateway publishes
	// agent metadata and an agent JWKS for the resource identifier, and signs its own
	// outbound requests (aauth_egress) with that key. "resource_key" reuses the resource
	// signing key; "own_key" keeps a separate Ed25519 key in storage. Needs require
	// auth-token and resource.
	AgentIdentity string `json:"agent_identity,omitempty"`

	// Egress gives the backend of every request this route passes a handle (header
	// X-Aauth-Handle, placeholder {http.aauth.handle}) with which it may call other
	// AAuth resources through an aauth_egress route on behalf of this request. It
	// implies agent_identity resource_key when agent_identity is not set.
	Egress bool `json:"egress,omitempty"`

	// LogPasses logs the decision line of a passed request at Info, like refusals;
	// by default passes are logged at Debug.
	LogPasses bool `json:"log_passes,omitempty"`

	// LogRefusals is "sampled" (the default) or "all". Sampled, the refusal lines of
	// each error code are thinned under a flood: the first 100 a second, then every
	// 100th, the next line written carrying how many were suppressed. Metrics and the
	// error placeholders still cover every request. "all" logs every refusal.
	LogRefusals string `json:"log_refusals,omitempty"`

	assertionConfig // upstream_assertion, assertion_audience (upstreamassertion.go)

	// KeyRotationConfig: key_rotation, key_publish_delay (keyrotation.go) for the keys
	// this route signs with (resource, agent and gateway keys).
	KeyRotationConfig

	logger      *zap.Logger
	app         *App          // this config's aauth app: resource registry and server guards
	key         *keystore.Key // resource signing key (auth-token routes)
	agentKey    *keystore.Key // the key of the resource's agent identity (agent_identity)
	keyUser     *KeyUser      // this route's registrations on the keyrings, released in Cleanup
	verifier    *reqverify.Verifier
	authorities []string
	renamed     []string // custom upstream header names, stripped from client requests
	now         func() time.Time

	outages       *OutageLog    // rate-limits the Warn line of 503 temporarily_unavailable
	replay        *replay.Store // nil when the replay policy is off
	replayMode    string
	releaseReplay func() error  // drops the shared replay store
	sharedReplay  *sharedReplay // replay_store shared: the entries every instance sees

	metrics *gatewayMetrics      // nil: not counted
	series  *handlerSeries       // this handler's children of metrics, by error code
	sampler *decisionlog.Sampler // refusal lines by error code; nil: every line
	server  string               // server label; set when the config starts

	srv         *caddyhttp.Server // the server the handler is in; nil when built by hand
	fingerprint string            // hash of the handler's configuration (chainfingerprint.go)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.aauth", New: func() caddy.Module { return new(Handler) }}
}

const defaultMaxBody = 1 << 20

// Provision sets defaults and looks up the aauth app (settings, discovery client,
// resource registry).
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.outages, h.sampler, h.series = new(OutageLog), new(decisionlog.Sampler), new(handlerSeries)
	if h.Require == "" {
		h.Require = RequireIdentity
	}
	if h.MaxBody == 0 {
		h.MaxBody = defaultMaxBody
	}
	if h.now == nil {
		h.now = time.Now
	}
	for _, a := range h.Authorities {
		h.authorities = append(h.authorities, httpsig.Authority("https", a))
	}
	h.renamed = h.renamedHeaders()
	h.srv, _ = ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	h.fingerprint = configFingerprint(h)
	var err error
	if h.app, err = LoadApp(ctx); err != nil {
		return err
	}
	if err := h.provisionMetrics(ctx); err != nil {
		return err
	}
	if h.keyUser, err = NewKeyUser(ctx); err != nil {
		return err
	}
	s := h.app
	guard, guarded, err := guardServer(ctx, h.app)
	if err != nil {
		return err
	}
	if guarded {
		guard.protect(h.renamed)
	}
	h.verifier = &reqverify.Verifier{
		Discovery: s.Discovery(),
		Limits:    httpsig.DefaultLimits,
		Policy:    httpsig.Policy{Window: time.Duration(h.SignatureWindow), Extra: h.RequireComponents},
		Now:       func() time.Time { return h.now() },
		Dev:       s.Dev,
		Self:      h.Resource,
		Tokens:    token.NewCache(10000),
	}
	if h.metrics != nil {
		h.verifier.Tokens.OnLookup = h.metrics.tokenLookup
	}
	h.verifier.MaxTokenLifetime = time.Duration(h.MaxTokenLifetime)
	if h.verifier.MaxTokenLifetime == 0 {
		h.verifier.MaxTokenLifetime = time.Duration(s.MaxTokenLifetime) // 0: reqverify's 24h
	}
	if err := h.provisionReplay(s); err != nil {
		return err
	}
	if h.Require == RequireAuthToken {
		if h.ResourceTokenLifetime == 0 {
			h.ResourceTokenLifetime = caddy.Duration(defaultResourceTokenLifetime)
		}
		h.verifier.AuthTokens = &reqverify.AuthTokenPolicy{
			Audience: h.Resource,
			Issuers:  append([]string{h.AuthServer}, h.TrustIssuers...),
		}
		if h.Resource != "" {
			// Loaded or generated when the config starts (or on first use), not here:
			// `caddy validate` provisions handlers and must not write storage.
			h.key = h.keyUser.Acquire(ctx.Storage(), keystore.RoleResource, h.Resource, keys.AlgEd25519,
				h.Policy(time.Duration(h.ResourceTokenLifetime), 0))
			h.app.OnStart(func(ctx context.Context) error {
				if _, err := h.key.Signer(ctx); err != nil {
					return fmt.Errorf("resource signing key: %w", err)
				}
				return nil
			})
			if err := h.provisionAgentIdentity(ctx); err != nil {
				return err
			}
			h.app.registerResource(h)
			if guarded {
				guard.serveResource(h.Resource)
			}
		}
	}
	return h.provisionAssertion(ctx, guard, guarded)
}

// Validate checks the configuration, whether it came from a Caddyfile or from JSON:
// each field on its own first, then the combinations.
func (h *Handler) Validate() error {
	dev := h.verifier != nil && h.verifier.Dev
	switch h.Require {
	case "", RequirePseudonym, RequireIdentity, RequireAuthToken:
	default:
		return fmt.Errorf("require: unknown level %q (want pseudonym, identity or auth-token)", h.Require)
	}
	if err := h.validateAssertion(); err != nil {
		return err
	}
	if err := h.KeyRotationConfig.Validate(); err != nil {
		return err
	}
	if err := h.validateScopes(); err != nil {
		return err
	}
	if lt := time.Duration(h.ResourceTokenLifetime); lt != 0 && (lt < time.Second || lt > time.Hour) {
		return fmt.Errorf("resource_token_lifetime: want a duration between 1s and 1h, got %s", lt)
	}
	if h.SignatureWindow < 0 {
		return errors.New("signature_window must be positive")
	}
	if h.MaxBody < 0 {
		return errors.New("max_body must not be negative")
	}
	if err := validLogRefusals(h.LogRefusals); err != nil {
		return err
	}
	switch h.Replay {
	case "", ReplayOff, ReplayUnsafe, ReplayAll:
	default:
		return fmt.Errorf("replay: unknown policy %q (want off, unsafe or all)", h.Replay)
	}
	if lt := time.Duration(h.MaxTokenLifetime); lt < 0 || (lt != 0 && lt < time.Second) {
		return fmt.Errorf("max_token_lifetime: want a duration of at least 1s, got %q", lt.String())
	}
	for _, c := range h.RequireComponents {
		if c != "content-type" && c != "content-digest" {
			return fmt.Errorf("require_components: unsupported component %q (want content-type or content-digest)", c)
		}
	}
	for _, a := range h.Authorities {
		if a == "" || strings.ContainsAny(a, "/?#@ ") {
			return fmt.Errorf("authority %q must be host[:port]", a)
		}
	}
	if h.Resource != "" {
		if err := discovery.ValidateIdentifier(h.Resource, dev); err != nil {
			return fmt.Errorf("resource: %v", err)
		}
	}
	if err := h.validateHeaders(); err != nil {
		return err
	}
	if h.Require == RequireAuthToken {
		if h.Resource == "" {
			return errors.New("require auth-token needs resource (this API's https identifier)")
		}
		if h.AuthServer == "" {
			return errors.New("require auth-token needs auth_server")
		}
		for _, iss := range append([]string{h.AuthServer}, h.TrustIssuers...) {
			if err := discovery.ValidateIdentifier(iss, dev); err != nil {
				return fmt.Errorf("auth server %q: %v", iss, err)
			}
		}
	} else if h.AuthServer != "" || len(h.TrustIssuers) > 0 || len(h.Scopes) > 0 {
		return errors.New("auth_server, trust_issuer and scope need require auth-token")
	}
	return h.validateAgentIdentity()
}

// validateScopes checks scope and scope_description: valid scope tokens, none twice.
func (h *Handler) validateScopes() error {
	for i, sc := range h.Scopes {
		if !wire.ValidScope(sc) {
			return fmt.Errorf("scope: %q is not a valid scope token", sc)
		}
		if slices.Contains(h.Scopes[:i], sc) {
			return fmt.Errorf("scope %q listed twice", sc)
		}
	}
	for _, sc := range slices.Sorted(maps.Keys(h.ScopeDescriptions)) {
		if !wire.ValidScope(sc) {
			return fmt.Errorf("scope_description: %q is not a valid scope token", sc)
		}
	}
	return nil
}

// validateHeaders checks the header renames: known fields, X- names or "-".
func (h *Handler) validateHeaders() error {
	for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
		if !isIdentityField(k) && k != handleField {
			return fmt.Errorf("header: unknown field %q (want one of level, scheme, agent, delegate, sub, scope, jkt, txn, issuer, handle)", k)
		}
		if v := h.Headers[k]; v != "-" && !strings.HasPrefix(strings.ToLower(v), "x-") {
			return fmt.Errorf("header: %s: custom upstream header names must start with X- (got %q)", k, v)
		}
	}
	return nil
}

// Cleanup releases the shared replay store.
func (h *Handler) Cleanup() error {
	h.keyUser.Release()
	if h.releaseReplay != nil {
		return h.releaseReplay()
	}
	return nil
}

// ServeHTTP verifies the request and either challenges it or passes it on. Every
// verdict is logged and counted once (decide); an error answered through Caddy's
// error handling (a 413, a 503, a server fault) is decided here when nothing else did.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	r, v := withVerdict(r)
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	v.repl = repl
	err := h.serve(w, r, repl, next)
	if err == nil || v.done {
		return err
	}
	// Declared here, not above: errors.As makes it escape, a heap allocation per request.
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		code := wire.CodeServerError
		switch {
		case he.StatusCode == http.StatusServiceUnavailable:
			code = wire.CodeTemporarilyUnavailable
		case he.StatusCode < 500:
			code = wire.CodeInvalidRequest
		}
		h.decide(r, he.StatusCode, code, "")
	}
	return err
}

// serve is ServeHTTP without the fallback decision.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	stripIdentityHeaders(r.Header, h.renamed)
	if h.Require == RequireAuthToken {
		if served, err := h.serveWellKnownPath(w, r); served {
			return err
		}
	}
	if rp := h.replayedRequest(r); rp != nil {
		return h.serveReplayed(w, r, repl, rp, next)
	}
	target := h.target(r)
	self := h.Resource
	if self == "" {
		self = "https://" + target.Authority
	}
	res, ok, err := h.verify(w, r, self, target)
	if !ok {
		return err
	}
	verified(r, res)
	if h.Require != RequirePseudonym && res.Level == reqverify.LevelPseudonym {
		return h.challenge(w, r, wire.CodeIdentityRequired, "this route needs an identified agent (jwks_uri or an agent token)", nil)
	}
	if h.Require == RequireAuthToken {
		if code, desc := h.authorize(res); code != "" {
			return h.authTokenChallenge(w, r, target, res, code, desc)
		}
	}
	// A covered digest is recomputed on every route (RFC 9421 §7.2.8), not only where
	// require_components demands it.
	if err := h.checkBody(r, res); err != nil {
		return h.refuse(w, r, err)
	}
	// Last: only a request that is about to reach the upstream uses up its signature.
	if err := h.checkReplay(w, r, target.Method, res); err != nil {
		var ve *httpsig.Error
		if errors.As(err, &ve) {
			return h.challenge(w, r, ve.Code, ve.Msg, nil)
		}
		if ue, ok := reqverify.Unavailable(err); ok {
			return h.unavailable(w, r, ue)
		}
		return err
	}
	h.markVerified(r, repl, res)
	if h.Egress {
		return h.serveWithHandle(w, r, repl, res, next) // decides once the handle exists
	}
	h.decide(r, http.StatusOK, CodeOK, "")
	return next.ServeHTTP(w, r)
}

// markVerified sets the verified identity for the upstream (headers, placeholders) and
// removes the signature fields unless keep_signature_headers is set.
func (h *Handler) markVerified(r *http.Request, repl *caddy.Replacer, res *reqverify.Result) {
	h.setIdentity(r, repl, res)
	h.addAssertion(r, res)
	if !h.KeepSignatureHeaders {
		r.Header.Del("Signature")
		r.Header.Del("Signature-Input")
		r.Header.Del("Signature-Key")
	}
	caddyhttp.SetVar(r.Context(), verifiedVar, true)
}

func (h *Handler) renamedHeaders() []string {
	if len(h.Headers) == 0 {
		return nil
	}
	out := make([]string, 0, len(h.Headers))
	for _, v := range h.Headers {
		if v != "-" {
			out = append(out, v)
		}
	}
	slices.Sort(out) // deterministic adaptation
	return out
}

// target describes the request as the agent signed it, with the authority from
// configuration or the Host header.
func (h *Handler) target(r *http.Request) httpsig.Target {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	authority := httpsig.Authority(scheme, r.Host)
	if len(h.authorities) > 0 && !slices.Contains(h.authorities, authority) {
		authority = h.authorities[0]
	}
	return ReceivedTarget(r, authority)
}

// ReceivedTarget describes a request for signature verification as the agent sent it:
// method, escaped path and raw query from the original request (before any rewrite,
// uri or handle_path), the given @authority, and the request's headers. The gateway and
// the auth server both use it.
func ReceivedTarget(r *http.Request, authority string) httpsig.Target {
	method, reqURI, u := r.Method, r.RequestURI, r.URL
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		method, reqURI, u = orig.Method, orig.RequestURI, orig.URL
	}
	path, query, hasQuery := splitRequestURI(reqURI, u)
	return httpsig.Target{Method: method, Authority: authority, Path: path, Query: query, HasQuery: hasQuery, Header: r.Header}
}

// splitRequestURI returns the escaped path and raw query exactly as received.
func splitRequestURI(reqURI string, u *url.URL) (path, query string, hasQuery bool) {
	if reqURI == "" || reqURI == "*" || !strings.HasPrefix(reqURI, "/") {
		// absolute-form or missing request-target: fall back to the parsed URL
		if u == nil {
			return "/", "", false
		}
		return u.EscapedPath(), u.RawQuery, u.RawQuery != "" || u.ForceQuery
	}
	if i := strings.IndexByte(reqURI, '?'); i >= 0 {
		return reqURI[:i], reqURI[i+1:], true
	}
	return reqURI, "", false
}

// checkBody applies reqverify's body rule to a verified request: when the signature covers
// content-digest (or the route demands it) the body is read within MaxBody, its digest
// recomputed, and the bytes put back so the upstream receives exactly what was verified.
func (h *Handler) checkBody(r *http.Request, res *reqverify.Result) error {
	if !reqverify.BodyCheckNeeded(res.Signature, h.RequireComponents) {
		return nil
	}
	return reqverify.CheckBody(r, h.MaxBody)
}

// verify checks the request's signature, self being the resource's identifier. ok false means the request was answered
// (a challenge for an unsigned or refused request; err is a server fault otherwise) and
// err is what the handler returns.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request, self string, target httpsig.Target) (res *reqverify.Result, ok bool, err error) {
	if !httpsig.Present(r.Header) {
		return nil, false, h.challenge(w, r, httpsig.CodeInvalidRequest, "request is not signed", nil)
	}
	if res, err = h.verifier.VerifyAs(r.Context(), target, self); err != nil {
		if _, _, refused := reqverify.Refusal(err); refused {
			return nil, false, h.refuse(w, r, err)
		}
		return nil, false, caddyhttp.Error(http.StatusInternalServerError, err)
	}
	return res, true, nil
}

// refuse answers a request refused by verification or by its body (reqverify.Refusal):
// a 401 challenge, a 413 or a 400 error body; any other error is a caddyhttp 400. A
// verification that could not be finished for an outage is a 503 (WriteUnavailable).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) error {
	if ue, ok := reqverify.Unavailable(err); ok {
		return h.unavailable(w, r, ue)
	}
	status, e, ok := reqverify.Refusal(err)
	switch {
	case !ok:
		h.decide(r, http.StatusBadRequest, wire.CodeInvalidRequest, "")
		return caddyhttp.Error(http.StatusBadRequest, err)
	case status == http.StatusUnauthorized:
		return h.challenge(w, r, e.Code, e.Description, e.RequiredComponents)
	}
	h.decide(r, status, e.Code, e.Description)
	if status == http.StatusRequestEntityTooLarge {
		return caddyhttp.Error(status, err)
	}
	return answerError(h.serverFor(r), w, r, status, e)
}

// challenge answers 401 with the route's AAuth requirement and a JSON error body
// (draft-hardt-aauth §6, §18); with handle_errors the error routes write the body and
// the challenge headers stay (answerError).
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request, code, desc string, required []string) error {
	h.decide(r, http.StatusUnauthorized, code, desc)
	require := h.Require
	if require == RequireAuthToken {
		// Without a verified identity there is nothing to mint a resource token for.
		require = RequireIdentity
	}
	return h.writeChallenge(w, r, wire.Challenge{Require: require}, wire.Error{Code: code, Description: desc, RequiredComponents: required})
}

// writeChallenge answers 401 with the challenge header, WWW-Authenticate: AAuth and the
// JSON error body (or the error routes' body, answerError).
func (h *Handler) writeChallenge(w http.ResponseWriter, r *http.Request, c wire.Challenge, e wire.Error) error {
	if err := wire.Seed.SetUnauthorized(w.Header(), c); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	return answerError(h.serverFor(r), w, r, http.StatusUnauthorized, e)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
