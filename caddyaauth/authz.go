package caddyaauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// Well-known paths a resource serves (PROTOCOL.md P17, P18; Part 2 §14.1).
const (
	PathResourceMetadata     = "/.well-known/aauth-resource.json"
	PathResourceMetadataBare = "/.well-known/aauth-resource"
	PathResourceJWKS         = "/.well-known/aauth-resource/jwks.json"
	PathResourceToken        = "/.well-known/aauth-resource/token"
)

// WellKnownPaths are the paths the directive routes to the handler on every site that
// has an auth-token route, whatever the route's own matcher.
var WellKnownPaths = []string{PathResourceMetadata, PathResourceMetadataBare, PathResourceJWKS, PathResourceToken}

const defaultResourceTokenLifetime = 5 * time.Minute

// Error codes of auth-token challenges.
const (
	codeAuthTokenRequired = "auth_token_required"
	codeInvalidAuthToken  = reqverify.CodeInvalidAuthToken
	codeInsufficientScope = "insufficient_scope"
)

// validScope reports whether s is an RFC 6749 scope token.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}

// authorize decides whether a verified request carries an auth token good for this
// route; a non-empty code means it must be challenged for a new one.
func (h *Handler) authorize(res *reqverify.Result) (code, desc string) {
	if p := res.AuthTokenProblem; p != nil {
		return codeInvalidAuthToken, p.Msg
	}
	if res.Level != reqverify.LevelAuthorized || res.Token == nil {
		return codeAuthTokenRequired, "this route needs an auth token from " + h.AuthServer
	}
	granted := strings.Fields(res.Token.Claims.Scope)
	for _, want := range h.Scopes {
		if !slices.Contains(granted, want) {
			return codeInsufficientScope, fmt.Sprintf("the auth token does not grant scope %q", want)
		}
	}
	return "", ""
}

// mintResourceToken issues a resource token for a verified agent and key (P9). Callers
// must have verified the request signature first.
func (h *Handler) mintResourceToken(ctx context.Context, res *reqverify.Result, scopes []string) (string, error) {
	if h.key == nil || res.Agent == "" || res.Key == nil {
		return "", errors.New("cannot mint a resource token without a verified agent")
	}
	signer, err := h.key.Signer(ctx)
	if err != nil {
		return "", fmt.Errorf("resource signing key: %w", err)
	}
	now := h.now()
	c := token.Claims{
		Issuer:   h.Resource,
		Audience: token.Audience{h.AuthServer},
		ID:       token.NewID(),
		IssuedAt: now.Unix(),
		Expiry:   now.Add(time.Duration(h.ResourceTokenLifetime)).Unix(),
		Agent:    res.Agent,
		AgentJKT: res.Key.Thumbprint,
		Scope:    strings.Join(scopes, " "),
	}
	if h.Txn {
		c.Txn = token.NewID()
	}
	return token.Mint(signer, token.TypResource, c)
}

// authTokenChallenge answers 401 with a freshly minted resource token.
func (h *Handler) authTokenChallenge(w http.ResponseWriter, r *http.Request, _ httpsig.Target, res *reqverify.Result, code, desc string) error {
	rt, err := h.mintResourceToken(r.Context(), res, h.Scopes)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	if c := h.logger.Check(zap.DebugLevel, "aauth auth-token challenge"); c != nil {
		c.Write(zap.String("error", code), zap.String("agent", res.Agent), zap.String("jkt", res.Key.Thumbprint), zap.String("remote_ip", r.RemoteAddr))
	}
	v := fmt.Sprintf("require=auth-token; resource-token=%q; auth-server=%q", rt, h.AuthServer)
	return writeChallenge(w, v, code, desc, nil)
}

func (h *Handler) isWellKnown(r *http.Request) bool {
	return slices.Contains(WellKnownPaths, r.URL.Path)
}

// serveWellKnown answers the resource's metadata, JWKS and resource token endpoint.
func (h *Handler) serveWellKnown(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case PathResourceToken:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			return writeJSONError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		}
		return h.serveResourceToken(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeJSONError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
	}
	var body []byte
	if r.URL.Path == PathResourceJWKS {
		signer, err := h.key.Signer(r.Context())
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("resource signing key: %w", err))
		}
		body = keystore.JWKS(signer.Public)
	} else {
		body, _ = json.Marshal(h.metadata())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// resourceMetadata is the resource's well-known document (P18).
type resourceMetadata struct {
	Resource                      string            `json:"resource"`
	JWKSURI                       string            `json:"jwks_uri"`
	ResourceTokenEndpoint         string            `json:"resource_token_endpoint"`
	ScopeDescriptions             map[string]string `json:"scope_descriptions,omitempty"`
	AdditionalSignatureComponents []string          `json:"additional_signature_components,omitempty"`
}

func (h *Handler) metadata() resourceMetadata {
	md := resourceMetadata{
		Resource:              h.Resource,
		JWKSURI:               h.Resource + PathResourceJWKS,
		ResourceTokenEndpoint: h.Resource + PathResourceToken,
	}
	for _, sib := range h.siblings() {
		for sc, text := range sib.ScopeDescriptions {
			if md.ScopeDescriptions == nil {
				md.ScopeDescriptions = map[string]string{}
			}
			if _, dup := md.ScopeDescriptions[sc]; !dup || sib == h {
				md.ScopeDescriptions[sc] = text
			}
		}
		for _, c := range sib.RequireComponents {
			if !slices.Contains(md.AdditionalSignatureComponents, c) {
				md.AdditionalSignatureComponents = append(md.AdditionalSignatureComponents, c)
			}
		}
	}
	return md
}

// siblings are the auth-token handlers of h's resource in this config, h first, so the
// well-known documents describe every route of the resource: all their scope
// descriptions in the metadata, all their scopes at the resource token endpoint.
func (h *Handler) siblings() []*Handler {
	out := []*Handler{h}
	if h.app == nil { // built by hand, as in unit tests
		return out
	}
	for _, o := range h.app.resourceHandlers(h.Resource) {
		if o != h {
			out = append(out, o)
		}
	}
	return out
}

// serveResourceToken is the resource token endpoint for proactive requests (Part 2
// §14.1): a signed POST {"scope": "..."} from an identified agent gets a resource token.
func (h *Handler) serveResourceToken(w http.ResponseWriter, r *http.Request) error {
	if !httpsig.Present(r.Header) {
		return h.challenge(w, r, httpsig.CodeInvalidRequest, "request is not signed", nil)
	}
	res, err := h.verifier.Verify(r.Context(), h.target(r))
	if err != nil {
		var ve *httpsig.Error
		if errors.As(err, &ve) {
			return h.challenge(w, r, ve.Code, ve.Msg, ve.RequiredComponents)
		}
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	if res.Level == reqverify.LevelPseudonym {
		return h.challenge(w, r, "identity_required", "the resource token endpoint needs an identified agent", nil)
	}
	// The body is read only after the signature verified; a covered (or demanded)
	// digest is recomputed.
	if err := h.checkBody(r, res); err != nil {
		var ve *httpsig.Error
		if errors.As(err, &ve) {
			return h.challenge(w, r, ve.Code, ve.Msg, nil)
		}
		return err
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return writeJSONError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/json")
	}
	var req struct {
		Scope string `json:"scope"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return writeJSONError(w, http.StatusBadRequest, "invalid_request", "body must be a JSON object with a scope string")
	}
	scopes := strings.Fields(req.Scope)
	if len(scopes) == 0 {
		scopes = h.Scopes
	}
	for _, s := range scopes {
		if !h.knownScope(s) {
			return writeJSONError(w, http.StatusBadRequest, "invalid_scope", "unknown scope: "+s)
		}
	}
	rt, err := h.mintResourceToken(r.Context(), res, scopes)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(map[string]any{
		"resource_token": rt,
		"auth_server":    h.AuthServer,
		"scope":          strings.Join(scopes, " "),
		"expires_in":     int(time.Duration(h.ResourceTokenLifetime).Seconds()),
	})
}

func (h *Handler) knownScope(s string) bool {
	for _, sib := range h.siblings() {
		if slices.Contains(sib.Scopes, s) {
			return true
		}
		if _, ok := sib.ScopeDescriptions[s]; ok {
			return true
		}
	}
	return false
}

func writeJSONError(w http.ResponseWriter, status int, code, desc string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}
