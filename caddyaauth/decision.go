package caddyaauth

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/decisionlog"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// CodeOK is the error code of a passed request in decision logs and metrics.
const CodeOK = decisionlog.CodeOK

// verdict is what the handler knows about one request until it decides it: when the
// handler started, and the verified result once the signature verified. Each request
// has one verdict, logged and counted once (decide).
type verdict struct {
	start        time.Time
	res          *reqverify.Result
	done         bool
	made         context.Context     // the request context it was made in (madeInErrors)
	repl         *caddy.Replacer     // the request's replacer, once a handler looked it up
	placeholders verdictPlaceholders // the refusal's or the verified identity's placeholders
}

// verdictVar is the Caddy request variable holding the request's verdict. Every request
// Caddy serves has a vars map: a verdict kept there costs one map entry, where a context
// value would cost a copy of the request (WithContext) on every request, refusals
// included. Requests without Caddy's vars (built by hand) carry it in their context.
const verdictVar = "aauth.verdict"

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

// withVerdict returns r carrying a fresh verdict, unless it carries one already. The
// error routes (handle_errors) run after the primary routes decided the request: an
// aauth handler there gets a verdict of its own.
func withVerdict(r *http.Request) (*http.Request, *verdict) {
	ctx := r.Context()
	vars, _ := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any)
	if vars == nil {
		if v, ok := ctx.Value(verdictKey{}).(*verdict); ok {
			return r, v
		}
		c := &verdictContext{Context: ctx, v: verdict{start: time.Now()}}
		return r.WithContext(c), &c.v
	}
	if v, ok := vars[verdictVar].(*verdict); ok {
		if !inErrorRoutes(ctx) || v.madeInErrors() {
			return r, v
		}
	}
	v := &verdict{start: time.Now(), made: ctx}
	vars[verdictVar] = v
	return r, v
}

// madeInErrors reports whether v was made while the error routes ran. It is asked only
// when a second handler of the request finds v, so a request's first handler does not
// pay for a look through the whole context.
func (v *verdict) madeInErrors() bool {
	return v.made != nil && inErrorRoutes(v.made)
}

// verdictOf returns r's verdict; a request that reached a refusal without one (a
// well-known path served by the server guard) gets a fresh one, timed from now.
func verdictOf(r *http.Request) *verdict {
	ctx := r.Context()
	if vars, _ := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any); vars != nil {
		if v, ok := vars[verdictVar].(*verdict); ok {
			return v
		}
	} else if v, ok := ctx.Value(verdictKey{}).(*verdict); ok {
		return v
	}
	return &verdict{start: time.Now()}
}

// verified records the verified result in r's verdict, for the fields of its log line.
func verified(r *http.Request, res *reqverify.Result) {
	verdictOf(r).res = res
}

// decide logs r's verdict and counts it, once per request: status 200 and code "ok" for
// a pass (Debug, or Info with log_passes), else a refusal (Info) whose code and
// description are also set as {http.aauth.error} and {http.aauth.error_description}
// (package decisionlog). The line carries the resource, the route's level, the scheme,
// agent and key thumbprint (RFC 7638) when the signature verified, and the time spent in
// the handler; never a token, a signature or a Signature-Key value. Refusal lines are
// sampled per error code unless log_refusals is all (sampleRefusal); metrics count each.
func (h *Handler) decide(r *http.Request, status int, code, desc string) {
	v := verdictOf(r)
	if v.done {
		return
	}
	v.done = true
	elapsed := time.Since(v.start)
	pass := code == CodeOK
	h.observe(code, elapsed)
	msg := "aauth refused"
	if pass {
		msg = "aauth passed"
	}
	var suppressed int64
	if !pass {
		// handle_errors and log_append see the error whether or not a line is written.
		repl := v.repl
		if repl == nil {
			repl, _ = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		}
		if repl != nil {
			v.placeholders.refuse(repl, code, desc)
		}
		ok, n := h.sampleRefusal(code)
		if !ok {
			return
		}
		suppressed = n
	}
	d := decisionlog.Decision{Msg: msg, Pass: pass, LogPasses: h.LogPasses, Status: status, Code: code, Description: desc, Elapsed: elapsed}
	if h.logger == nil || !h.logger.Core().Enabled(d.Level()) {
		return // a pass at Debug, mostly: no fields to build (they are not free), no line
	}
	d.Fields = h.decisionFields(r, v)
	if suppressed > 0 {
		d.Fields = append(d.Fields, zap.Int64("suppressed", suppressed))
	}
	decisionlog.Log(h.logger, r, d)
}

// Values of log_refusals.
const (
	LogRefusalsSampled = "sampled"
	LogRefusalsAll     = "all"
)

func validLogRefusals(v string) error {
	switch v {
	case "", LogRefusalsSampled, LogRefusalsAll:
		return nil
	}
	return fmt.Errorf("log_refusals: unknown value %q (want sampled or all)", v)
}

// sampleRefusal asks the sampler whether to log a refusal of code, and how many lines of
// code it suppressed since the last one. It is asked before the fields are built: under
// a flood, a suppressed refusal costs no encoding and no write.
func (h *Handler) sampleRefusal(code string) (ok bool, suppressed int64) {
	if h.sampler == nil || h.LogRefusals == LogRefusalsAll {
		return true, 0
	}
	now := time.Now
	if h.now != nil {
		now = h.now
	}
	return h.sampler.Allow(code, now())
}

// decisionFields are the gateway's own fields of a decision line.
func (h *Handler) decisionFields(r *http.Request, v *verdict) []zap.Field {
	resource := h.Resource
	if resource == "" {
		resource = "https://" + r.Host
	}
	fields := []zap.Field{zap.String("resource", resource), zap.String("require", h.Require)}
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
	return fields
}

// unavailable answers 503 temporarily_unavailable (as WriteUnavailable does, or through
// handle_errors: answerError) and decides r.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, ue *reqverify.UnavailableError) error {
	h.decide(r, http.StatusServiceUnavailable, wire.CodeTemporarilyUnavailable, ue.Msg)
	noteUnavailable(w, r, h.logger, h.outages, ue)
	return answerError(h.serverFor(r), w, r, http.StatusServiceUnavailable, unavailableError(ue))
}
