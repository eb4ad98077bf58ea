package caddyaauth

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/assertion"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// PathGatewayJWKS is where the guard publishes the keys of the signed upstream assertions.
const PathGatewayJWKS = assertion.PathJWKS

// gatewayKeyID names the per-storage gateway key of routes without a resource key.
const gatewayKeyID = "upstream-assertion"

// assertionConfig is the signed upstream assertion option of the aauth handler,
// embedded in Handler (its JSON fields are the handler's).
type assertionConfig struct {
	// UpstreamAssertion is the request header in which the upstream receives a
	// short-lived JWT signed by the gateway (typ aauth-assertion+jwt) carrying the
	// verified identity, aud and the request's method and path. Empty: none is sent.
	// The Caddyfile option without an argument sets X-Aauth-Assertion.
	UpstreamAssertion string `json:"upstream_assertion,omitempty"`

	// AssertionAudience is the aud of the assertion. Default: the request's host.
	AssertionAudience string `json:"assertion_audience,omitempty"`

	assertionKey *keystore.Key // the resource key, or the gateway key in storage
}

// provisionAssertion picks the assertion key, has it generated when the config starts
// (never under `caddy validate`), and makes the guard strip the header from clients and
// publish the key.
func (h *Handler) provisionAssertion(ctx caddy.Context, guard *serverGuard, guarded bool) error {
	if h.UpstreamAssertion == "" {
		return nil
	}
	name := http.CanonicalHeaderKey(h.UpstreamAssertion)
	if !identityPrefixed(name) && !slices.Contains(h.renamed, name) {
		h.renamed = append(h.renamed, name)
	}
	role, id := keystore.RoleGateway, gatewayKeyID
	if h.key != nil {
		role, id = keystore.RoleResource, h.Resource
	}
	h.assertionKey = h.keyUser.Acquire(ctx.Storage(), role, id, keys.AlgEd25519, h.Policy(assertion.Lifetime, 0))
	k := h.assertionKey
	h.app.OnStart(func(ctx context.Context) error {
		if _, err := k.Signer(ctx); err != nil {
			return fmt.Errorf("upstream assertion key: %w", err)
		}
		return nil
	})
	if guarded {
		guard.protect(h.renamed)
		guard.serveAssertionKey(k)
	}
	return nil
}

// validateAssertion checks the option on its own.
func (h *Handler) validateAssertion() error {
	if h.AssertionAudience != "" && h.UpstreamAssertion == "" {
		return fmt.Errorf("assertion_audience needs upstream_assertion")
	}
	if h.UpstreamAssertion != "" && !validFieldName(h.UpstreamAssertion) {
		return fmt.Errorf("upstream_assertion: %q is not a header name", h.UpstreamAssertion)
	}
	return nil
}

func validFieldName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
}

// addAssertion sets the signed upstream assertion of a verified request. The client's
// copy was removed by the guard; when signing fails the header stays absent, so an origin
// that verifies assertions refuses the request (fail closed).
func (h *Handler) addAssertion(r *http.Request, res *reqverify.Result) {
	if h.UpstreamAssertion == "" || h.assertionKey == nil {
		return
	}
	r.Header.Del(h.UpstreamAssertion)
	tok, err := h.mintAssertion(r, res)
	if err != nil {
		h.logger.Error("aauth upstream assertion not sent", zap.Error(err))
		return
	}
	r.Header.Set(h.UpstreamAssertion, tok)
}

// mintAssertion signs the claims of r: iss the gateway, aud the upstream, the request's
// method and path as the gateway forwards them, and the verified identity.
func (h *Handler) mintAssertion(r *http.Request, res *reqverify.Result) (string, error) {
	signer, err := h.assertionKey.Signer(r.Context())
	if err != nil {
		return "", err
	}
	return assertion.Sign(signer, h.assertionClaims(r, res), h.now())
}

func (h *Handler) assertionClaims(r *http.Request, res *reqverify.Result) assertion.Claims {
	t := h.target(r)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	iss := h.Resource
	if iss == "" {
		iss = "https://" + t.Authority
	}
	aud := h.AssertionAudience
	if aud == "" {
		aud = strings.ToLower(r.Host)
	}
	v := identityValues(res)
	return assertion.Claims{
		Issuer: iss, Audience: aud,
		Method: r.Method, URL: scheme + "://" + t.Authority + r.URL.EscapedPath(), Path: r.URL.EscapedPath(),
		Level: v[fieldLevel], Scheme: v[fieldScheme], Agent: v[fieldAgent], Delegate: v[fieldDelegate],
		Subject: v[fieldSub], Scope: v[fieldScope], Txn: v[fieldTxn], JKT: v[fieldJKT], TokenIss: v[fieldIssuer],
	}
}

// serveAssertionKey makes the guard publish k at PathGatewayJWKS.
func (g *serverGuard) serveAssertionKey(k *keystore.Key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.assertionKeys, k) {
		g.assertionKeys = append(g.assertionKeys, k)
	}
}

// serveGatewayJWKS answers PathGatewayJWKS with every assertion key of the server.
func serveGatewayJWKS(w http.ResponseWriter, r *http.Request, ks []*keystore.Key) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	var pubs []*keys.PublicKey
	for _, k := range ks {
		published, err := k.Published(r.Context())
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("upstream assertion key: %w", err))
		}
		for _, p := range published {
			if !slices.ContainsFunc(pubs, p.Equal) {
				pubs = append(pubs, p)
			}
		}
	}
	return writeDocument(w, r, keystore.JWKS(pubs...))
}
