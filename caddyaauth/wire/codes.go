package wire

// Error codes carried in the "error" member of JSON error bodies (the draft's error
// responses; the member follows RFC 6749 §5.2).
const (
	// Signature and request errors (gateway, auth server).
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidSignature     = "invalid_signature"
	CodeInvalidKey           = "invalid_key"
	CodeUnsupportedAlgorithm = "unsupported_algorithm"
	CodeInvalidAgentToken    = "invalid_agent_token"
	CodeInvalidAuthToken     = "invalid_auth_token"
	CodeKeyBindingFailed     = "key_binding_failed"
	CodeUnknownKey           = "unknown_key"

	// Gateway challenges and its resource token endpoint.
	CodeIdentityRequired  = "identity_required"
	CodeAuthTokenRequired = "auth_token_required"
	CodeInsufficientScope = "insufficient_scope"
	CodeInvalidScope      = "invalid_scope"

	// Auth server token endpoint and pending URLs.
	CodeInvalidResourceToken = "invalid_resource_token"
	CodeDenied               = "denied"
	CodeAbandoned            = "abandoned"
	CodeRateLimited          = "rate_limited"
	CodeNotFound             = "not_found"
	CodeExpired              = "expired"
	CodeServerError          = "server_error"
	// A passing server condition, answered with 503 and Retry-After: a document needed
	// to verify the request (an auth server's or agent's metadata or JWKS) could not be
	// fetched, or the server's shared state (e.g. Redis) cannot be reached. The name is
	// the OAuth one (RFC 6749 §4.1.2.1).
	CodeTemporarilyUnavailable = "temporarily_unavailable"

	// Agent server delegate endpoint: a missing or wrong shared secret.
	CodeInvalidToken = "invalid_token"
)
