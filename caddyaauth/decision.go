package caddyaauth

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// CodeOK is the error code of a passed request in decision logs and metrics.
const CodeOK = "ok"

// verdict is what the handler knows about one request until it decides it: when the
// handler started, and the verified result once the signature verified. Each request
// has one verdict, logged and counted once (decide).
type verdict struct {
	start time.Time
	res   *reqverify.Result
	done  bool
}

type verdictKey struct{}

// verdictContext is a context carrying a verdict (under verdictKey), the two in one
// allocation.
type verdictContext struct {
	context.Context
	v verdict
}

func (c *verdictContext) Value(key any) any {
	if _, ok := key.(verdictKey); ok {
		return &c.v
	}
	return c.Context.Value(key)
}

// withVerdict returns r carrying a fresh verdict, unless it carries one already.
func withVerdict(r *http.Request) (*http.Request, *verdict) {
	if v, ok := r.Context().Value(verdictKey{}).(*verdict); ok {
		return r, v
	}
	c := &verdictContext{Context: r.Context(), v: verdict{start: time.Now()}}
	return r.WithContext(c), &c.v
}

// verdictOf returns r's verdict; a request that reached a refusal without one (a
// well-known path served by the server guard) gets a fresh one, timed from now.
func verdictOf(r *http.Request) *verdict {
	if v, ok := r.Context().Value(verdictKey{}).(*verdict); ok {
		return v
	}
	return &verdict{start: time.Now()}
}

// verified records the verified result in r's verdict, for the fields of its log line.
func verified(r *http.Request, res *reqverify.Result) {
	if v, ok := r.Context().Value(verdictKey{}).(*verdict); ok {
		v.res = res
	}
}

// decide logs r's verdict and counts it, once per request: status 200 and code "ok" for
// a pass (Debug, or Info with log_passes), else a refusal (Info) whose code and
// description are also set as {http.aauth.error} and {http.aauth.error_description}.
// The line carries the resource, the route's level, the scheme, agent and key
// thumbprint (RFC 7638) when the signature verified, and the time spent in the handler;
// never a token, a signature or a Signature-Key value.
func (h *Handler) decide(r *http.Request, status int, code, desc string) {
	v := verdictOf(r)
	if v.done {
		return
	}
	v.done = true
	elapsed := time.Since(v.start)
	pass := code == CodeOK
	if !pass {
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("http.aauth.error", code)
			repl.Set("http.aauth.error_description", desc)
		}
	}
	h.metrics.observe(h.serverName(), h.Require, code, elapsed)
	level, msg := zapcore.InfoLevel, "aauth refused"
	if pass {
		level, msg = zapcore.DebugLevel, "aauth passed"
		if h.LogPasses {
			level = zapcore.InfoLevel
		}
	}
	if c := h.logger.Check(level, msg); c != nil {
		c.Write(h.decisionFields(r, v, status, code, desc, elapsed)...)
	}
}

// decisionFields are the fields of a decision line.
func (h *Handler) decisionFields(r *http.Request, v *verdict, status int, code, desc string, elapsed time.Duration) []zap.Field {
	resource := h.Resource
	if resource == "" {
		resource = "https://" + r.Host
	}
	fields := []zap.Field{
		zap.String("resource", resource),
		zap.String("require", h.Require),
		zap.Int("status", status),
		zap.String("error", code),
	}
	if desc != "" {
		fields = append(fields, zap.String("error_description", desc))
	}
	if res := v.res; res != nil {
		// "level" is the log line's own key; the verified level is "verified_level".
		fields = append(fields, zap.String("verified_level", res.Level), zap.String("scheme", res.Scheme))
		if res.Agent != "" {
			fields = append(fields, zap.String("agent", res.Agent))
		}
		if res.Key != nil {
			fields = append(fields, zap.String("jkt", res.Key.Thumbprint))
		}
	}
	fields = append(fields, zap.Duration("duration", elapsed), zap.String("remote_ip", remoteIP(r)))
	// As in Caddy's access log: client_ip is the client behind trusted_proxies.
	if ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ip != "" {
		fields = append(fields, zap.String("client_ip", ip))
	}
	return fields
}

// remoteIP is the peer address of r without its port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// unavailable answers 503 temporarily_unavailable (WriteUnavailable) and decides r.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, ue *reqverify.UnavailableError) {
	h.decide(r, http.StatusServiceUnavailable, wire.CodeTemporarilyUnavailable, ue.Msg)
	WriteUnavailable(w, r, h.logger, h.outages, ue)
}
