package wire

import (
	"encoding/json"
	"net/http"
)

// TokenResponse is the 200 answer of the auth server's token endpoint and of a pending
// URL once the user approved (the draft's token response).
type TokenResponse struct {
	AuthToken string `json:"auth_token"`
	ExpiresIn int64  `json:"expires_in"`
}

// PendingResponse is the body of a 202 from the token endpoint or a pending URL (the
// draft's deferred response): the request waits for the user.
type PendingResponse struct {
	Status        string `json:"status"`
	Location      string `json:"location"`
	Require       string `json:"require,omitempty"`
	Code          string `json:"code,omitempty"`
	Clarification string `json:"clarification,omitempty"`
}

// StatusPending is PendingResponse.Status while the request waits.
const StatusPending = "pending"

// ResourceTokenRequest is the body of a POST to a resource's resource token endpoint.
type ResourceTokenRequest struct {
	Scope string `json:"scope"`
}

// ResourceTokenResponse is the 200 answer of a resource's resource token endpoint. The
// members are in the order this module has always written them.
type ResourceTokenResponse struct {
	AuthServer    string `json:"auth_server"`
	ExpiresIn     int    `json:"expires_in"`
	ResourceToken string `json:"resource_token"`
	Scope         string `json:"scope"`
}

// ClarificationAnswer is the body an agent POSTs to a pending URL to answer the user's
// question.
type ClarificationAnswer struct {
	Response *string `json:"clarification_response"`
}

// AgentMetadata is the agent's well-known document (the draft's agent metadata).
type AgentMetadata struct {
	Agent                    string `json:"agent"`
	JWKSURI                  string `json:"jwks_uri"`
	ClientName               string `json:"client_name,omitempty"`
	ClarificationSupported   bool   `json:"clarification_supported,omitempty"`
	CallbackEndpoint         string `json:"callback_endpoint,omitempty"`
	LocalhostCallbackAllowed bool   `json:"localhost_callback_allowed,omitempty"`
}

// ResourceMetadata is a resource's well-known document (the draft's resource metadata).
type ResourceMetadata struct {
	Resource                      string            `json:"resource"`
	JWKSURI                       string            `json:"jwks_uri"`
	ResourceTokenEndpoint         string            `json:"resource_token_endpoint"`
	ScopeDescriptions             map[string]string `json:"scope_descriptions,omitempty"`
	AdditionalSignatureComponents []string          `json:"additional_signature_components,omitempty"`
}

// AuthServerMetadata is the auth server's well-known document (the draft's auth server
// metadata).
type AuthServerMetadata struct {
	Issuer              string `json:"issuer"`
	TokenEndpoint       string `json:"token_endpoint"`
	InteractionEndpoint string `json:"interaction_endpoint"`
	JWKSURI             string `json:"jwks_uri"`

	// AdditionalSignatureComponents lists the components the token endpoint and pending
	// URLs demand on top of the mandatory ones; present only with require_signed_body.
	AdditionalSignatureComponents []string `json:"additional_signature_components,omitempty"`
}

// ReadDocument fills dst (one of the metadata structs) from a metadata document already
// parsed into a JSON object, as a reader of optional members must: a member of the wrong
// type is left at its zero value and the others are still read.
func ReadDocument(obj map[string]any, dst any) {
	b, err := json.Marshal(obj)
	if err != nil {
		return
	}
	_ = json.Unmarshal(b, dst) // a type mismatch skips only that member
}

// TokenRequest is the body of a token request carrying a resource token (the draft's
// token request; the auth server reads it member by member, see authserver).
//
// The members are in the order this module has always written them.
type TokenRequest struct {
	Purpose       string `json:"purpose,omitempty"`
	ResourceToken string `json:"resource_token"`
	// UpstreamToken makes the request a token exchange (draft-hardt-aauth §4.5.8): the
	// auth token the calling resource received from its own caller.
	UpstreamToken string `json:"upstream_token,omitempty"`
}

// WriteInteraction answers 202: the request waits for the user at location, who enters
// code at the auth server's interaction endpoint (the draft's deferred response). The
// challenge header, Location and Retry-After (seconds) go with a PendingResponse body.
func (w *Wire) WriteInteraction(rw http.ResponseWriter, location, code, retryAfter string) error {
	hdr := rw.Header()
	if err := w.SetChallenge(hdr, Challenge{Require: RequireInteraction, Code: code}); err != nil {
		return err
	}
	hdr.Set("Location", location)
	hdr.Set("Retry-After", retryAfter)
	b, _ := json.Marshal(PendingResponse{Status: StatusPending, Location: location, Require: RequireInteraction, Code: code})
	WriteJSON(rw, http.StatusAccepted, b)
	return nil
}
