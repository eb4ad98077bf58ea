package egress

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Error codes the egress answers the backend with (besides the downstream auth server's
// own codes, passed on from a refused exchange).
const (
	CodeInvalidHandle       = "invalid_handle"
	CodeInteractionRequired = "interaction_required"
	CodeForbidden           = "forbidden"
	CodeInvalidTarget       = "invalid_target"
	CodeBadGateway          = "bad_gateway"
)

// WriteError answers the backend for a failed call (ErrorFor): 503 interaction_required
// (with Retry-After) when the downstream auth server wants the user's consent, which
// the gateway relays to its caller; the auth server's refusal (403 as 403, others as
// 502) with its code; 403 for a target the dial rules refuse; 502 otherwise.
func WriteError(w http.ResponseWriter, err error) {
	var pe *agent.PendingError
	if errors.As(err, &pe) {
		secs := max(int(pe.RetryAfter.Seconds()), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	status, e := ErrorFor(err)
	wire.WriteError(w, status, e)
}

// ErrorFor is the status and JSON error WriteError answers for err.
func ErrorFor(err error) (int, wire.Error) {
	var pe *agent.PendingError
	var te *agent.TokenError
	var fe *agent.FlowError
	switch {
	case errors.As(err, &pe):
		return http.StatusServiceUnavailable, wire.Error{Code: CodeInteractionRequired,
			Description: "the downstream auth server needs the user's consent; the gateway asks its caller and runs this request again once approved"}
	case errors.As(err, &te):
		status := http.StatusBadGateway
		if te.Status == http.StatusForbidden {
			status = http.StatusForbidden
		}
		code := te.Code
		if code == "" {
			code = CodeBadGateway
		}
		return status, wire.Error{Code: code, Description: "token exchange refused: " + te.Description}
	case errors.Is(err, discovery.ErrBlocked):
		return http.StatusForbidden, wire.Error{Code: CodeForbidden, Description: "the target's address may not be dialled"}
	case errors.As(err, &fe):
		return http.StatusBadGateway, wire.Error{Code: CodeBadGateway, Description: "the downstream auth-token flow failed at step " + fe.Step}
	}
	return http.StatusBadGateway, wire.Error{Code: CodeBadGateway, Description: "the downstream call failed"}
}
