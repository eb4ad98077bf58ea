package caddyaauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Well-known paths a resource serves: its metadata (draft-hardt-aauth §13.3; also at the
// bare name without .json, our choice for older agents), its JWKS and its resource token
// endpoint (§8.3).
const (
	PathResourceMetadata     = "/.well-known/aauth-resource.json"
	PathResourceMetadataBare = "/.well-known/aauth-resource"
	PathResourceJWKS         = "/.well-known/aauth-resource/jwks.json"
	PathResourceToken        = "/.well-known/aauth-resource/token"
)

// WellKnownPaths are the paths the directive routes to the handler on every site that
// has an auth-token route, whatever the route's own matcher.
var WellKnownPaths = []string{PathResourceMetadata, PathResourceMetadataBare, PathResourceJWKS, PathResourceToken}

// isWellKnownPath reports whether path is one the guard hands to a resource's handler:
// the resource documents, the agent documents (answered only when the resource has an
// agent identity) and the interaction chaining endpoints.
func isWellKnownPath(path string) bool {
	return slices.Contains(WellKnownPaths, path) || slices.Contains(AgentWellKnownPaths, path) || isChainPath(path)
}

// serveWellKnownPath answers r when its path is one of the resource's well-known
// documents or endpoints; served is false when it is not (the request goes on).
func (h *Handler) serveWellKnownPath(w http.ResponseWriter, r *http.Request) (served bool, err error) {
	p := r.URL.Path
	switch {
	case slices.Contains(WellKnownPaths, p):
		return true, h.serveWellKnown(w, r)
	case slices.Contains(AgentWellKnownPaths, p):
		if a := h.agentHandler(); a != nil {
			return true, a.serveAgentWellKnown(w, r)
		}
	case isChainPath(p):
		return h.serveChainPath(w, r)
	}
	return false, nil
}

// serveWellKnown answers the resource's metadata, JWKS and resource token endpoint.
func (h *Handler) serveWellKnown(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case PathResourceToken:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			return writeJSONError(w, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "use POST")
		}
		return h.serveResourceToken(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeJSONError(w, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "use GET")
	}
	var body []byte
	if r.URL.Path == PathResourceJWKS {
		pubs, err := h.key.Published(r.Context())
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("resource signing key: %w", err))
		}
		body = keystore.JWKS(pubs...)
	} else {
		body, _ = json.Marshal(h.metadata())
	}
	return writeDocument(w, r, body)
}

// writeDocument answers a GET or HEAD for a public well-known JSON document (metadata or
// JWKS), cacheable for five minutes (draft-hardt-aauth §13: agents and auth servers
// cache these documents).
func writeDocument(w http.ResponseWriter, r *http.Request, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// metadata is the resource's well-known document (draft-hardt-aauth §13.3).
func (h *Handler) metadata() wire.ResourceMetadata {
	md := wire.ResourceMetadata{
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

// serveResourceToken is the resource token endpoint for proactive requests (draft-hardt-aauth
// §8.3): a signed POST {"scope": "..."} from an identified agent gets a resource token.
func (h *Handler) serveResourceToken(w http.ResponseWriter, r *http.Request) error {
	r, _ = withVerdict(r)
	res, ok, err := h.verify(w, r, h.Resource, h.target(r))
	if !ok {
		return err
	}
	verified(r, res)
	if res.Level == reqverify.LevelPseudonym {
		return h.challenge(w, r, wire.CodeIdentityRequired, "the resource token endpoint needs an identified agent", nil)
	}
	// The body is read only after the signature verified; a covered (or demanded)
	// digest is recomputed.
	body, err := reqverify.ReadSignedBody(r, res.Signature, reqverify.BodyPolicy{Max: h.MaxBody, Demanded: h.RequireComponents})
	if err != nil {
		return h.refuse(w, r, err)
	}
	var req wire.ResourceTokenRequest
	err = reqverify.ErrNotJSON
	if reqverify.IsJSON(r.Header.Get("Content-Type")) {
		err = reqverify.DecodeJSON(body, &req, "body must be a JSON object with a scope string")
	}
	if err != nil {
		return h.refuse(w, r, err)
	}
	scopes := strings.Fields(req.Scope)
	if len(scopes) == 0 {
		scopes = h.Scopes
	}
	for _, s := range scopes {
		if !h.knownScope(s) {
			h.decide(r, http.StatusBadRequest, wire.CodeInvalidScope, "unknown scope")
			return writeJSONError(w, http.StatusBadRequest, wire.CodeInvalidScope, "unknown scope: "+s)
		}
	}
	rt, err := h.mintResourceToken(r.Context(), res, scopes)
	if err != nil {
		h.decide(r, http.StatusInternalServerError, wire.CodeServerError, "")
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.decide(r, http.StatusOK, CodeOK, "")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(wire.ResourceTokenResponse{
		ResourceToken: rt,
		AuthServer:    h.AuthServer,
		Scope:         strings.Join(scopes, " "),
		ExpiresIn:     int(time.Duration(h.ResourceTokenLifetime).Seconds()),
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
	wire.WriteError(w, status, wire.Error{Code: code, Description: desc})
	return nil
}
