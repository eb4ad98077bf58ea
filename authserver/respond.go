package authserver

import (
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// stateRetryAfter is the Retry-After (seconds) of a 503 for an unreachable state store.
const stateRetryAfter = "2"

// writeError answers a refused request with the protocol's JSON error body;
// required lists the components a signature must cover, when that is the refusal.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, status int, code, desc string, required []string) {
	if c := h.logger.Check(zap.DebugLevel, "token endpoint refused request"); c != nil {
		c.Write(zap.Int("status", status), zap.String("error", code), zap.String("reason", desc),
			zap.String("path", r.URL.Path), zap.String("remote_ip", r.RemoteAddr))
	}
	verdictOf(r).refused(code, desc)
	wire.WriteError(w, status, wire.Error{Code: code, Description: desc, RequiredComponents: required})
}

// serverError logs a server fault and answers 500 without details. When the fault is
// that the shared state (Redis) cannot be reached, it answers 503 with Retry-After and
// logs at WARN: the step did not happen (fail closed) and will work when the state
// store is back.
func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, redisstore.ErrUnavailable) {
		h.logger.Warn(what+": shared state unavailable", zap.Error(err), zap.String("remote_ip", r.RemoteAddr))
		w.Header().Set("Retry-After", stateRetryAfter)
		wire.WriteError(w, http.StatusServiceUnavailable, wire.Error{Code: wire.CodeTemporarilyUnavailable,
			Description: "the auth server's state store is unavailable; retry later"})
		return
	}
	h.logger.Error(what, zap.Error(err), zap.String("remote_ip", r.RemoteAddr))
	wire.WriteError(w, http.StatusInternalServerError, wire.Error{Code: wire.CodeServerError, Description: "internal error"})
}

// writeJSON answers status with v as its JSON body (500 server_error if v cannot be encoded).
func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	wire.WriteJSON(w, status, b)
}
