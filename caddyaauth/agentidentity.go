package caddyaauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Values of agent_identity: which key the resource signs with when it acts as an agent.
const (
	AgentKeyResource = "resource_key" // the resource signing key
	AgentKeyOwn      = "own_key"      // a separate Ed25519 key in storage (keystore.RoleAgent)
)

// agentKeyLifetime is how long what the agent key signed may still be checked against
// its JWKS after the next key activates: a downstream resource token naming the key
// (agent_jkt) is looked up in the agent JWKS by the downstream auth server (our gateway
// caps resource tokens at 1h), and a chained request polls downstream with the key it
// started with for up to chainLifetime.
var agentKeyLifetime = max(time.Hour, chainLifetime)

// Agent documents a resource with an agent identity publishes (draft-hardt-aauth §13.1:
// a resource that calls other resources is an agent and is known by its metadata), at
// the .json name and the bare name, plus the agent JWKS.
const (
	PathAgentMetadata     = "/.well-known/aauth-agent.json"
	PathAgentMetadataBare = "/.well-known/aauth-agent"
	PathAgentJWKS         = "/.well-known/aauth-agent/jwks.json"
)

// AgentWellKnownPaths are the agent documents the guard serves for a resource whose
// routes have an agent identity.
var AgentWellKnownPaths = []string{PathAgentMetadata, PathAgentMetadataBare, PathAgentJWKS}

// agentIdentity is the effective agent_identity: egress alone implies resource_key.
func (h *Handler) agentIdentity() string {
	if h.AgentIdentity == "" && h.Egress {
		return AgentKeyResource
	}
	return h.AgentIdentity
}

// validateAgentIdentity checks agent_identity and egress.
func (h *Handler) validateAgentIdentity() error {
	switch h.AgentIdentity {
	case "", AgentKeyResource, AgentKeyOwn:
	default:
		return fmt.Errorf("agent_identity: unknown key %q (want resource_key or own_key)", h.AgentIdentity)
	}
	if h.agentIdentity() != "" && (h.Require != RequireAuthToken || h.Resource == "") {
		return errors.New("agent_identity and egress need require auth-token and resource")
	}
	return nil
}

// provisionAgentIdentity sets up the agent key of an auth-token route with an agent
// identity and checks that the other routes of the resource agree on it.
func (h *Handler) provisionAgentIdentity(ctx caddy.Context) error {
	id := h.agentIdentity()
	for _, sib := range h.app.resourceHandlers(h.Resource) {
		if o := sib.agentIdentity(); o != "" && id != "" && o != id {
			return fmt.Errorf("resource %s: agent_identity %s here but %s on another route", h.Resource, id, o)
		}
	}
	switch id {
	case AgentKeyResource:
		h.agentKey = h.keyUser.Acquire(ctx.Storage(), keystore.RoleResource, h.Resource, keys.AlgEd25519, h.Policy(agentKeyLifetime, 0))
	case AgentKeyOwn:
		h.agentKey = h.keyUser.Acquire(ctx.Storage(), keystore.RoleAgent, h.Resource, keys.AlgEd25519, h.Policy(agentKeyLifetime, 0))
		h.app.OnStart(func(ctx context.Context) error {
			if _, err := h.agentKey.Signer(ctx); err != nil {
				return fmt.Errorf("agent signing key: %w", err)
			}
			return nil
		})
	}
	return nil
}

// agentHandler returns the first route of h's resource that has an agent identity, nil
// when none has.
func (h *Handler) agentHandler() *Handler {
	for _, sib := range h.siblings() {
		if sib.agentKey != nil {
			return sib
		}
	}
	return nil
}

// agentSigner is the key the resource signs with as an agent.
func (h *Handler) agentSigner(ctx context.Context) (*keys.Signer, error) {
	if h.agentKey == nil {
		return nil, errors.New("the resource has no agent identity")
	}
	s, err := h.agentKey.Signer(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent signing key: %w", err)
	}
	return s, nil
}

// agentMetadata is the resource's agent document: the resource identifier is the agent
// identifier.
func (h *Handler) agentMetadata() wire.AgentMetadata {
	name := h.Resource
	if u, err := url.Parse(h.Resource); err == nil && u.Host != "" {
		name = u.Host
	}
	return wire.AgentMetadata{Agent: h.Resource, JWKSURI: h.Resource + PathAgentJWKS, ClientName: name}
}

// serveAgentWellKnown answers the agent metadata and the agent JWKS.
func (h *Handler) serveAgentWellKnown(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeJSONError(w, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "use GET")
	}
	var body []byte
	if r.URL.Path == PathAgentJWKS {
		if h.agentKey == nil {
			return caddyhttp.Error(http.StatusInternalServerError, errors.New("the resource has no agent identity"))
		}
		pubs, err := h.agentKey.Published(r.Context())
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("agent signing key: %w", err))
		}
		body = keystore.JWKS(pubs...)
	} else {
		body, _ = json.Marshal(h.agentMetadata())
	}
	return writeDocument(w, r, body)
}
