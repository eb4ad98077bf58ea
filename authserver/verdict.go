package authserver

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/decisionlog"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/statusrec"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Outcomes of a token request, in decision lines and in
// caddy_aauth_token_requests_total.
const (
	outcomeIssued  = "issued"  // 200 with an auth token
	outcomePending = "pending" // 202: the user is asked (draft-hardt-aauth §10.2)
	outcomeRefused = "refused" // an error answer
	outcomeWaiting = "waiting" // a poll or clarification answer that decided nothing
)

// Kinds of token requests and issued tokens (the kind of aauth_token_issued).
const (
	kindDirect   = "direct"   // resource access the policy allows
	kindConsent  = "consent"  // issued after a user's approval, now or remembered
	kindExchange = "exchange" // token exchange (draft-hardt-aauth §4.5.8)
	kindRefresh  = "refresh"  // refresh (§11.6)
	kindSelf     = "self"     // self-access (§4.5.5)
)

// tokenVerdict is what the token endpoint or a pending URL knows about one request until
// it answered: logged and counted once, when the handler returns (track).
type tokenVerdict struct {
	start                  time.Time
	endpoint               string // "token" or "pending"
	kind                   string
	agent, resource, scope string
	outcome                string      // issued, pending, or "" until then
	code, desc             string      // the refusal's error, as written by writeError
	extra                  []zap.Field // about an issued token: user, delegate, depth, lifetime
}

type tokenVerdictKey struct{}

// verdictOf is r's token verdict; nil outside the token endpoint and pending URLs (its
// methods then do nothing).
func verdictOf(r *http.Request) *tokenVerdict {
	tv, _ := r.Context().Value(tokenVerdictKey{}).(*tokenVerdict)
	return tv
}

func (tv *tokenVerdict) setKind(kind string) {
	if tv != nil {
		tv.kind = kind
	}
}

func (tv *tokenVerdict) setAgent(agent string) {
	if tv != nil {
		tv.agent = agent
	}
}

func (tv *tokenVerdict) setAsk(resource, scope string) {
	if tv != nil {
		tv.resource, tv.scope = resource, scope
	}
}

func (tv *tokenVerdict) refused(code, desc string) {
	if tv != nil && tv.code == "" {
		tv.code, tv.desc = code, desc
	}
}

func (tv *tokenVerdict) decided(outcome string) {
	if tv != nil {
		tv.outcome = outcome
	}
}

// track starts the verdict of a request to endpoint; the returned function logs and
// counts it once the request was answered.
func (h *Handler) track(w http.ResponseWriter, r *http.Request, endpoint string) (http.ResponseWriter, *http.Request, func()) {
	tv := &tokenVerdict{start: time.Now(), endpoint: endpoint}
	sw := &statusrec.Writer{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), tokenVerdictKey{}, tv))
	return sw, r, func() { h.finishVerdict(r, tv, sw.Status) }
}

// finishVerdict writes the decision line of a token request (package decisionlog):
// issued and pending at Info, refusals at Info with their error code, answers that
// decided nothing (a poll still waiting) at Debug; and counts it in
// caddy_aauth_token_requests_total.
// The line names the agent, resource, scope and kind; never a token.
func (h *Handler) finishVerdict(r *http.Request, tv *tokenVerdict, status int) {
	outcome, code := tv.outcome, decisionlog.CodeOK
	switch {
	case outcome != "":
	case status < http.StatusBadRequest:
		outcome = outcomeWaiting
	default:
		outcome, code = outcomeRefused, tv.code
		if code == "" {
			code = statusCode(status)
		}
	}
	// A pending URL counts only its terminal answers: the token, denied or expired.
	terminal := tv.endpoint == "token" || outcome == outcomeIssued || code == wire.CodeDenied || code == wire.CodeExpired
	if outcome != outcomeWaiting && terminal {
		h.metrics.tokenRequest(tv.kind, outcome, code)
	}
	fields := []zap.Field{zap.String("endpoint", tv.endpoint), zap.String("outcome", outcome)}
	for _, f := range [][2]string{{"kind", tv.kind}, {"agent", tv.agent}, {"resource", tv.resource}, {"scope", tv.scope}} {
		if f[1] != "" {
			fields = append(fields, zap.String(f[0], f[1]))
		}
	}
	fields = append(fields, tv.extra...)
	decisionlog.Write(h.logger, r, decisionlog.Decision{
		Msg: "aauth token " + outcome, Pass: outcome != outcomeRefused, LogPasses: outcome != outcomeWaiting,
		Status: status, Code: code, Description: tv.desc, Elapsed: time.Since(tv.start), Fields: fields,
	})
}

// statusCode is the error code of an answer written without writeError (a server fault,
// an outage).
func statusCode(status int) string {
	switch status {
	case http.StatusServiceUnavailable:
		return wire.CodeTemporarilyUnavailable
	case http.StatusInternalServerError:
		return wire.CodeServerError
	}
	return wire.CodeInvalidRequest
}
