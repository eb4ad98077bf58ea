// Package authserver is the AAuth auth server (AS) for Caddy: the `aauth_server` HTTP
// handler (module http.handlers.aauth_server) publishes the AS metadata and JWKS and runs
// the token endpoint, which verifies the agent's signed request and the resource token it
// carries, applies the configured policy and issues auth tokens (draft-hardt-aauth §9.1 auth
// token, §10–§11 token endpoint and deferred responses, §13.2 AS metadata, §16.2.3
// resource token verification, §18 errors).
//
// Endpoints, at fixed paths relative to the site (absolute URLs in documents are always
// built from the configured issuer, never from the Host header):
//
//	GET|HEAD /.well-known/aauth-issuer.json   AS metadata (also at the bare name)
//	GET|HEAD /jwks.json                       the AS signing keys
//	POST     /token                           token endpoint: resource access, self-access,
//	                                          token exchange, refresh
//	GET|POST /pending/{id}                    pending URL: signed polls (Prefer: wait=N
//	                                          long polls) and clarification answers
//	GET|POST /interact                        consent pages: code entry, login, consent
//	GET      /interact/style.css              their style sheet
//	GET|POST /interact/grants                 the signed-in user's remembered decisions
//
// Every other path is passed to the next handler.
//
// Besides resource access ({"resource_token"}), the token endpoint serves self-access
// ({"scope"}, selfaccess.go, draft-hardt-aauth §4.5.5), token exchange
// ({"resource_token", "upstream_token"} in two forms, exchange.go, §4.5.8) and refresh
// ({"auth_token"}, refresh.go, §11.6).
//
// The consent flow (policy outcome "consent", draft-hardt-aauth §10–§11): the token endpoint
// stores the verified request behind a pending URL and answers 202 with an interaction
// code; the user enters the code at /interact, signs in (built-in Users, or UserFrom an
// authentication handler in front), sees the verified facts and approves or denies; the
// agent's next poll gets the token (sub = the user), 403 denied or 408 expired, and 404
// afterwards. A long poll (Prefer: wait=N) is held up to MaxPollWait, so the server's
// write_timeout (if set) must be longer than MaxPollWait. An approval can be remembered
// (RememberFor); remembered grants are listed and revoked through the admin API
// (admin.api.aauth_grants) or by the user at /interact/grants.
//
// Trust at the edges: each signed message is accepted once on a pending URL (a captured
// poll cannot be replayed to take the token); undecided requests are bounded per agent,
// per agent domain, per resource and in all (admissions.go); each agent's token requests
// are rate limited (TokenRateLimit); a resource token's jti is recorded only for a
// request that then succeeds; and the browser is sent back only to the agent's declared
// callback, and only after an approval.
package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/aauthevents"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Paths served by the handler, relative to the site.
const (
	PathMetadata     = "/.well-known/aauth-issuer.json"
	PathMetadataBare = "/.well-known/aauth-issuer"
	PathJWKS         = "/jwks.json"
	PathToken        = "/token"
	PathInteract     = "/interact"
	PathPending      = "/pending/"
)

// Defaults and limits.
const (
	DefaultTokenLifetime   = time.Hour
	MaxShortTokenLifetime  = time.Hour // longer lifetimes need AllowLongTokens
	DefaultSignatureWindow = httpsig.DefaultWindow

	// maxResourceTokenLifetime bounds exp - iat of an accepted resource token, and so
	// how long a jti record must be kept (the AAuth draft's resource token section sets
	// no maximum; its examples live minutes). An hour is the longest resource_token_lifetime the gateway
	// of this module accepts (default 5m), so an agent that runs its own "resource"
	// cannot make the server keep a record for longer.
	maxResourceTokenLifetime = time.Hour

	// DefaultMaxExchangeDepth is the default max_exchange_depth: how many token
	// exchanges a call chain may go through; MaxExchangeDepthLimit is the largest value
	// accepted.
	DefaultMaxExchangeDepth = 3
	MaxExchangeDepthLimit   = 16

	// DefaultRefreshWindow is how long after expiry an auth token can be refreshed;
	// MaxRefreshWindow is the largest refresh_window accepted.
	DefaultRefreshWindow = 24 * time.Hour
	MaxRefreshWindow     = 30 * 24 * time.Hour
)

// Handler is the AAuth auth server. See the package documentation for its endpoints and
// Policy for how requests are decided.
type Handler struct {
	// Issuer is this auth server's identifier (required): an https origin with no path,
	// e.g. https://auth.example.com (http:// and loopback hosts only with the global
	// `aauth { dev }` switch). It is the iss of every auth token, the audience resource
	// tokens must name, the base of every URL in the metadata, and the @authority agents
	// must sign.
	Issuer string `json:"issuer,omitempty"`

	// TokenLifetime is the lifetime of issued auth tokens, in whole seconds. Default 1h;
	// more than 1h requires AllowLongTokens.
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`

	// AllowLongTokens permits a TokenLifetime above 1h. Without it, auth tokens live
	// at most one hour, so a leaked token is short-lived.
	AllowLongTokens bool `json:"allow_long_tokens,omitempty"`

	// RequireSignedBody demands that the signatures of token requests (POST /token) and
	// clarification answers (POST /pending/<id>) cover content-type and content-digest,
	// and publishes them as additional_signature_components in the metadata. By default
	// the body need not be covered (AAuth makes only @method, @authority, @path and
	// signature-key mandatory, and the reference agents never sign the body);
	// a Content-Digest the signature does cover is always recomputed and checked.
	RequireSignedBody bool `json:"require_signed_body,omitempty"`

	// AllowUnsignedBody is deprecated and has no effect: accepting uncovered bodies is now
	// the default (see RequireSignedBody). It is still accepted so that old configs load,
	// with a warning; it conflicts with RequireSignedBody.
	AllowUnsignedBody bool `json:"allow_unsigned_body,omitempty"`

	// SignatureWindow is the allowed difference between a token request signature's
	// created time and now, either way. Default 60s.
	SignatureWindow caddy.Duration `json:"signature_window,omitempty"`

	// TrustIssuers are upstream auth servers whose auth tokens this server accepts in
	// token exchange (call chaining, draft-hardt-aauth §4.5.8): a request carrying
	// upstream_token is refused unless the upstream token's iss is one of these (exact
	// string). The upstream token is verified with the keys that issuer publishes
	// ({iss}/.well-known/aauth-issuer.json → jwks_uri).
	TrustIssuers []string `json:"trust_issuers,omitempty"`

	// MaxExchangeDepth bounds call chains: a token obtained by exchange carries the
	// private claim exchange_depth (1 for an exchange of a plain token, one more for each
	// further exchange), and an exchange that would exceed MaxExchangeDepth is refused
	// with 403. Default 3; at most 16.
	MaxExchangeDepth int `json:"max_exchange_depth,omitempty"`

	// RefreshWindow is how long after its expiry an auth token this server issued can
	// still be refreshed (draft-hardt-aauth §11.6, a signed {"auth_token": …} from the
	// key in its cnf). Default 24h; at most 30 days. See RefreshOff.
	RefreshWindow caddy.Duration `json:"refresh_window,omitempty"`

	// RefreshOff disables refresh: every {"auth_token": …} request is refused.
	// Conflicts with RefreshWindow.
	RefreshOff bool `json:"refresh_off,omitempty"`

	// Policy decides each verified token request: allow (issue a token), consent (ask the
	// user) or deny. Without a policy every request is denied.
	Policy *Policy `json:"policy,omitempty"`

	// PendingLifetime is how long the user has to decide on a consent request (and, once
	// approved, how long the agent has to collect the token); it is also the lifetime of
	// the interaction code. Default 10m.
	PendingLifetime caddy.Duration `json:"pending_lifetime,omitempty"`

	// MaxPollWait caps the `Prefer: wait=N` long poll on the pending URL. Default 30s.
	// A server write_timeout, if set, must be longer.
	MaxPollWait caddy.Duration `json:"max_poll_wait,omitempty"`

	// RememberFor is how long a "Remember this decision" approval lets the same agent get
	// tokens for the same resource and scopes without asking. Default 30 days.
	RememberFor caddy.Duration `json:"remember_for,omitempty"`

	// Users are the built-in accounts of the consent pages (bcrypt hashes, as printed by
	// `caddy hash-password`). Mutually exclusive with UserFrom.
	Users []User `json:"users,omitempty"`

	// UserFrom takes the consenting user from a placeholder set by a Caddy authentication
	// handler placed in front of /interact (e.g. {http.auth.user.id}); there is then no
	// login form. Mutually exclusive with Users.
	UserFrom string `json:"user_from,omitempty"`

	// TokenRateLimit bounds the signed token requests each agent (by identifier) may make
	// to the token endpoint: Requests per Window, default 60 per minute; past it the
	// endpoint answers 429 with Retry-After before reading the body. Counted per process,
	// kept across config reloads; with a Redis state backend (or Redis storage) counted
	// in Redis for all instances together. {"off": true} disables it.
	TokenRateLimit *RateLimit `json:"token_rate_limit,omitempty"`

	// KeyRotationConfig: key_rotation and key_publish_delay of the signing key. A retired
	// key stays in the JWKS for token_lifetime after its successor activates (plus a
	// minute of clock skew), and in storage for refresh_window longer, so tokens it
	// signed can still be refreshed.
	caddyaauth.KeyRotationConfig

	logger    *zap.Logger
	now       func() time.Time
	dev       bool
	authority string // @authority agents sign: the issuer's host[:port]
	lifetime  time.Duration
	window    time.Duration       // signature window
	key       *keystore.Key       // signing keyring, read or created on first use or at start
	keyUser   *caddyaauth.KeyUser // the registration on key, released in Cleanup
	verifier  *reqverify.Verifier
	discovery *discovery.Client
	replay    *replayStore
	consent   *consentStore
	outages   *caddyaauth.OutageLog // rate-limits the Warn line of 503 temporarily_unavailable
	metadata  []byte
	// sharedLimit, when the records' store has one (Redis), counts the token rate
	// limit for every instance together instead of per process.
	sharedLimit sharedRateLimiter

	pendingLifetime time.Duration
	maxPollWait     time.Duration
	rememberFor     time.Duration
	maxDepth        int           // max_exchange_depth, default applied
	refreshWindow   time.Duration // 0: refresh is off

	metrics *serverMetrics       // nil: not counted
	events  *aauthevents.Emitter // nil: no events

	replayKey  string // replayPool reference, released in Cleanup
	consentKey string // consentPool reference, released in Cleanup
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.aauth_server", New: func() caddy.Module { return new(Handler) }}
}

// Metadata is the auth server metadata document (package wire).
type Metadata = wire.AuthServerMetadata

// bodyComponents are the covered components require_signed_body demands.
var bodyComponents = []string{"content-type", "content-digest"}

// deps is what provisioning needs from its environment; Provision takes it from Caddy,
// tests build it directly.
type deps struct {
	storage   certmagic.Storage // signing keys
	state     certmagic.Storage // records (pending, codes, jti, grants); nil: storage
	discovery *discovery.Client
	dev       bool
	logger    *zap.Logger
	now       func() time.Time
	keys      *caddyaauth.KeyUser // nil: no events on key rotation
}

// records is where the replay and consent stores keep their records: the state
// backend when one is configured, else the storage.
func (d deps) records() certmagic.Storage {
	if d.state != nil {
		return d.state
	}
	return d.storage
}

// Provision takes the settings and the discovery client from the aauth app and
// references on the shared replay and consent stores. Nothing is written to storage
// here (`caddy validate` provisions too): the signing key and the interaction key are
// loaded or generated when the config starts, or on first use.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := caddyaauth.LoadApp(ctx)
	if err != nil {
		return err
	}
	d := deps{storage: ctx.Storage(), discovery: app.Discovery(), dev: app.Dev, logger: h.logger}
	if d.keys, err = caddyaauth.NewKeyUser(ctx); err != nil {
		return err
	}
	if st := app.State(); st != nil {
		d.state = st
	}
	if err := h.provision(ctx, d); err != nil {
		return err
	}
	if h.metrics, err = newServerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if h.events, err = aauthevents.New(ctx); err != nil {
		return err
	}
	h.consent.events.Store(h.events)
	app.OnStart(h.start)
	return nil
}

// start loads or generates the keys this server writes to storage: the signing key and
// the consent pages' interaction key.
func (h *Handler) start(ctx context.Context) error {
	if _, err := h.key.Signer(ctx); err != nil {
		return fmt.Errorf("auth server signing key: %w", err)
	}
	if _, err := h.consent.interactSecret(ctx); err != nil {
		return fmt.Errorf("auth server interaction key: %w", err)
	}
	return nil
}

// provision is Provision without Caddy: tests call it with a certmagic.FileStorage,
// their own discovery client and a fixed clock.
func (h *Handler) provision(ctx context.Context, d deps) error {
	h.logger = d.logger
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	h.outages = new(caddyaauth.OutageLog)
	h.now = d.now
	if h.now == nil {
		h.now = time.Now
	}
	h.dev = d.dev
	h.discovery = d.discovery
	h.lifetime = time.Duration(h.TokenLifetime)
	if h.lifetime == 0 {
		h.lifetime = DefaultTokenLifetime
	}
	window := time.Duration(h.SignatureWindow)
	if window == 0 {
		window = DefaultSignatureWindow
	}
	h.window = window

	// The issuer names the storage keys: check it before touching storage.
	authority, err := issuerAuthority(h.Issuer, h.dev)
	if err != nil {
		return err
	}
	h.authority = authority

	if d.storage == nil {
		return errors.New("no storage for the signing key")
	}

	records := d.records()
	h.sharedLimit, _ = records.(sharedRateLimiter)
	replay, err := loadReplayStore(h.Issuer, records, h.logger)
	if err != nil {
		return err
	}
	h.replay, h.replayKey = replay, h.Issuer

	consent, err := loadConsentStore(ctx, h.Issuer, records, h.logger)
	if err != nil {
		return err
	}
	h.consent, h.consentKey = consent, h.Issuer
	h.pendingLifetime = durationOr(h.PendingLifetime, DefaultPendingLifetime)
	h.maxPollWait = durationOr(h.MaxPollWait, DefaultMaxPollWait)
	h.rememberFor = durationOr(h.RememberFor, DefaultRememberFor)
	h.consent.tokens.configure(h.tokenRate())
	h.maxDepth = h.MaxExchangeDepth
	if h.maxDepth == 0 {
		h.maxDepth = DefaultMaxExchangeDepth
	}
	if !h.RefreshOff {
		h.refreshWindow = durationOr(h.RefreshWindow, DefaultRefreshWindow)
	}
	h.keyUser = d.keys
	if h.keyUser == nil {
		h.keyUser, _ = caddyaauth.NewKeyUser(caddy.Context{})
	}
	h.key = h.keyUser.Acquire(d.storage, keystore.RoleIssuer, h.Issuer, keys.AlgEd25519, h.KeyRotationConfig.Policy(h.lifetime, h.refreshWindow))

	h.verifier = &reqverify.Verifier{
		Discovery: h.discovery,
		Limits:    httpsig.DefaultLimits,
		Policy:    httpsig.Policy{Window: window},
		Now:       func() time.Time { return h.now() },
		Dev:       h.dev,
		Self:      h.Issuer,
		Tokens:    token.NewCache(10000),
	}

	if h.AllowUnsignedBody {
		h.logger.Warn("allow_unsigned_body is deprecated and has no effect: token requests and clarification answers need not cover the body unless require_signed_body is set; remove the option")
	}
	md, err := json.Marshal(h.buildMetadata())
	if err != nil {
		return err
	}
	h.metadata = md
	return nil
}

// issuerAuthority checks the configured issuer identifier and returns the @authority
// that requests to this server are signed for.
func issuerAuthority(issuer string, dev bool) (string, error) {
	if issuer == "" {
		return "", errors.New("issuer is required")
	}
	if err := discovery.ValidateIdentifier(issuer, dev); err != nil {
		return "", fmt.Errorf("issuer: %v", err)
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return "", fmt.Errorf("issuer: %v", err)
	}
	return httpsig.Authority(u.Scheme, u.Host), nil
}

// buildMetadata is the AS metadata document, with absolute URLs built from the issuer.
func (h *Handler) buildMetadata() Metadata {
	meta := Metadata{
		Issuer:              h.Issuer,
		TokenEndpoint:       h.Issuer + PathToken,
		InteractionEndpoint: h.Issuer + PathInteract,
		JWKSURI:             h.Issuer + PathJWKS,
	}
	if h.RequireSignedBody {
		meta.AdditionalSignatureComponents = bodyComponents
	}
	return meta
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if _, err := issuerAuthority(h.Issuer, h.dev); err != nil {
		return err
	}
	if err := h.KeyRotationConfig.Validate(); err != nil {
		return err
	}
	lt := time.Duration(h.TokenLifetime)
	switch {
	case lt < 0:
		return errors.New("token_lifetime must not be negative")
	case lt != 0 && lt < time.Second:
		return errors.New("token_lifetime must be at least 1s")
	case lt%time.Second != 0:
		return errors.New("token_lifetime must be a whole number of seconds")
	case lt > MaxShortTokenLifetime && !h.AllowLongTokens:
		return fmt.Errorf("token_lifetime %s is over %s; add allow_long_tokens to permit it", lt, MaxShortTokenLifetime)
	}
	if h.SignatureWindow < 0 {
		return errors.New("signature_window must not be negative")
	}
	if h.RequireSignedBody && h.AllowUnsignedBody {
		return errors.New("require_signed_body conflicts with the deprecated allow_unsigned_body; remove allow_unsigned_body")
	}
	seen := map[string]bool{}
	for _, iss := range h.TrustIssuers {
		if err := discovery.ValidateIdentifier(iss, h.dev); err != nil {
			return fmt.Errorf("trust_issuer: %v", err)
		}
		if seen[iss] {
			return fmt.Errorf("trust_issuer %s specified more than once", iss)
		}
		seen[iss] = true
	}
	if err := h.validateConsent(); err != nil {
		return err
	}
	if err := h.validateChaining(); err != nil {
		return err
	}
	if err := h.validateRateLimit(); err != nil {
		return err
	}
	return h.Policy.validate(h.dev)
}

// validateConsent checks the consent flow options.
func (h *Handler) validateConsent() error {
	if pl := time.Duration(h.PendingLifetime); pl < 0 || (pl != 0 && (pl < 10*time.Second || pl > 24*time.Hour)) {
		return errors.New("pending_lifetime must be between 10s and 24h")
	}
	if w := time.Duration(h.MaxPollWait); w < 0 || w > 5*time.Minute {
		return errors.New("max_poll_wait must be between 0 and 5m")
	}
	if rf := time.Duration(h.RememberFor); rf < 0 || rf > 366*24*time.Hour {
		return errors.New("remember_for must be between 0 and 366d")
	}
	if len(h.Users) > 0 && h.UserFrom != "" {
		return errors.New("user and user_from are mutually exclusive")
	}
	if err := checkUsers(h.Users); err != nil {
		return err
	}
	if h.UserFrom != "" && !strings.Contains(h.UserFrom, "{") {
		return fmt.Errorf("user_from %q is not a placeholder (e.g. {http.auth.user.id})", h.UserFrom)
	}
	if h.Policy.canConsent() && len(h.Users) == 0 && h.UserFrom == "" {
		return errors.New("consent needs users: user or user_from")
	}
	return nil
}

// validateChaining checks max_exchange_depth and refresh_window.
func (h *Handler) validateChaining() error {
	if d := h.MaxExchangeDepth; d < 0 || d > MaxExchangeDepthLimit {
		return fmt.Errorf("max_exchange_depth must be between 1 and %d, got %d", MaxExchangeDepthLimit, d)
	}
	if w := time.Duration(h.RefreshWindow); w < 0 || w > MaxRefreshWindow {
		return fmt.Errorf("refresh_window must be positive and at most %s, got %s", humanDuration(MaxRefreshWindow), w)
	}
	if h.RefreshOff && h.RefreshWindow != 0 {
		return errors.New("refresh_window conflicts with refresh_off (refresh_window off)")
	}
	return nil
}

// tokenRate is the configured token endpoint rate (requests 0: off).
func (h *Handler) tokenRate() (int, time.Duration) {
	rl := h.TokenRateLimit
	switch {
	case rl == nil:
		return DefaultTokenRateRequests, DefaultTokenRateWindow
	case rl.Off:
		return 0, 0
	}
	n := rl.Requests
	if n == 0 {
		n = DefaultTokenRateRequests
	}
	return n, durationOr(rl.Window, DefaultTokenRateWindow)
}

// validateRateLimit checks token_rate_limit.
func (h *Handler) validateRateLimit() error {
	rl := h.TokenRateLimit
	if rl == nil {
		return nil
	}
	if rl.Off {
		if rl.Requests != 0 || rl.Window != 0 {
			return errors.New("token_rate_limit: off cannot have requests or window")
		}
		return nil
	}
	if rl.Requests < 0 || rl.Requests > maxTokenRateRequests {
		return fmt.Errorf("token_rate_limit: requests must be a whole number from 1 to %d, got %q", maxTokenRateRequests, strconv.Itoa(rl.Requests))
	}
	if w := time.Duration(rl.Window); w != 0 && (w < minTokenRateWindow || w > maxTokenRateWindow) {
		return fmt.Errorf("token_rate_limit: window must be between %s and %s, got %s", minTokenRateWindow, maxTokenRateWindow, w)
	}
	return nil
}

func durationOr(d caddy.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Cleanup releases the shared consent and replay stores. It is safe after a partial
// Provision.
func (h *Handler) Cleanup() error {
	h.keyUser.Release()
	var errs []error
	if h.consentKey != "" {
		if _, err := consentPool.Delete(h.consentKey); err != nil {
			errs = append(errs, err)
		}
		h.consentKey = ""
	}
	if h.replayKey != "" {
		if _, err := replayPool.Delete(h.replayKey); err != nil {
			errs = append(errs, err)
		}
		h.replayKey = ""
	}
	return errors.Join(errs...)
}

// ServeHTTP serves the auth server endpoints and passes every other path on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	switch r.URL.Path {
	case PathMetadata, PathMetadataBare:
		h.serveDocument(w, r, h.metadata)
		return nil
	case PathJWKS:
		pubs, err := h.key.Published(r.Context())
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("auth server signing key: %w", err))
		}
		h.serveDocument(w, r, keystore.JWKS(pubs...))
		return nil
	case PathToken:
		h.serveToken(w, r)
		return nil
	case PathInteract, PathInteractStyle, PathInteractGrants:
		h.serveInteract(w, r)
		return nil
	}
	if strings.HasPrefix(r.URL.Path, PathPending) {
		h.servePending(w, r)
		return nil
	}
	return next.ServeHTTP(w, r)
}

// serveDocument answers GET and HEAD with a cacheable JSON document.
func (h *Handler) serveDocument(w http.ResponseWriter, r *http.Request, doc []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "public, max-age=300")
	hdr.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(doc)
	}
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	h.writeError(w, r, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "method not allowed", nil)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
