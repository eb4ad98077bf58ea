// Package decisionlog writes the decision lines of the aauth modules: one structured
// log line per verdict of a gateway route, a token endpoint request, an egress call or
// a chaining endpoint, with the fields every such line shares (status, error code and
// description, time spent, remote and client address). Refusals are logged at Info,
// passes at Debug unless the caller asks for Info. A refusal's code and description are
// also set as the {http.aauth.error} and {http.aauth.error_description} placeholders,
// for log_append and handle_errors. Callers add their own fields; none may be a token,
// a signature or a key. A Sampler thins a flood of lines per key (first 100 a second,
// then every 100th, as zap's production config does), so that a flood of refusals
// cannot fill the disk; the next line written carries how many were suppressed.
package decisionlog

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// CodeOK is the error code of a passed request in decision lines and metrics.
const CodeOK = "ok"

// Placeholders set on a refusal.
const (
	PlaceholderError       = "http.aauth.error"
	PlaceholderDescription = "http.aauth.error_description"
)

// Decision is one verdict.
type Decision struct {
	Msg         string        // the line's message, e.g. "aauth refused"
	Pass        bool          // a pass (Debug unless LogPasses) rather than a refusal (Info)
	LogPasses   bool          // log a pass at Info
	Status      int           // the HTTP status answered
	Code        string        // the error code; CodeOK for a pass
	Description string        // the error description, if any
	Elapsed     time.Duration // time spent deciding
	Fields      []zap.Field   // the caller's own fields, before the shared ones
}

// Level is the level of d's line.
func (d Decision) Level() zapcore.Level {
	if d.Pass && !d.LogPasses {
		return zapcore.DebugLevel
	}
	return zapcore.InfoLevel
}

// Write logs d for request r (and sets the error placeholders of a refusal).
func Write(logger *zap.Logger, r *http.Request, d Decision) {
	if !d.Pass {
		SetError(r, d.Code, d.Description)
	}
	Log(logger, r, d)
}

// Log logs d for request r, leaving the placeholders to the caller.
func Log(logger *zap.Logger, r *http.Request, d Decision) {
	if logger == nil {
		return
	}
	c := logger.Check(d.Level(), d.Msg)
	if c == nil {
		return
	}
	fields := append(d.Fields, zap.Int("status", d.Status), zap.String("error", d.Code))
	if d.Description != "" {
		fields = append(fields, zap.String("error_description", d.Description))
	}
	fields = append(fields, zap.Duration("duration", d.Elapsed), zap.String("remote_ip", RemoteIP(r)))
	// As in Caddy's access log: client_ip is the client behind trusted_proxies.
	if ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ip != "" {
		fields = append(fields, zap.String("client_ip", ip))
	}
	c.Write(fields...)
}

// SetError sets the error placeholders of r's replacer, when it has one.
func SetError(r *http.Request, code, desc string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set(PlaceholderError, boxedCode(code))
		repl.Set(PlaceholderDescription, desc)
	}
}

// boxedCodes holds error codes (a small fixed set) as interface values, so setting the
// placeholder does not allocate one on every refusal; at most maxBoxedCodes.
var boxedCodes = struct {
	sync.RWMutex
	m map[string]any
}{m: map[string]any{}}

const maxBoxedCodes = 64

func boxedCode(code string) any {
	boxedCodes.RLock()
	v, ok := boxedCodes.m[code]
	boxedCodes.RUnlock()
	if ok {
		return v
	}
	v = code
	boxedCodes.Lock()
	if len(boxedCodes.m) < maxBoxedCodes {
		boxedCodes.m[code] = v
	}
	boxedCodes.Unlock()
	return v
}

// RemoteIP is the peer address of r without its port.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
