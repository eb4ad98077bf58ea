package authserver

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/aauthevents"
)

// issued marks r's verdict issued and emits aauth_token_issued (package aauthevents):
// issuer, agent, resource, scope, sub (if any), jti and kind; never the token.
func (h *Handler) issued(r *http.Request, g authGrant, t mintedToken, kind string) {
	tv := verdictOf(r)
	tv.decided(outcomeIssued)
	tv.setKind(kind)
	tv.setAsk(g.Resource, g.Scope)
	if tv != nil {
		tv.extra = append(tv.extra, zap.String("user", g.Subject), zap.String("delegate", g.Delegate),
			zap.Int("exchange_depth", g.Depth), zap.Int64("expires_in", t.lifetime))
	}
	h.events.Emit(aauthevents.TokenIssued, aauthevents.Data(
		"issuer", h.Issuer, "agent", g.Agent, "resource", g.Resource, "scope", g.Scope,
		"sub", g.Subject, "jti", t.jti, "kind", kind))
}

// consentDecided counts a user's decision and emits aauth_consent_decided: issuer,
// agent, resource, scope, user and decision (approved or denied).
func (h *Handler) consentDecided(rec *pendingRecord, approved bool) {
	decision := decisionDenied
	if approved {
		decision = decisionApproved
	}
	h.metrics.consentDecided(decision)
	h.events.Emit(aauthevents.ConsentDecided, aauthevents.Data(
		"issuer", h.Issuer, "agent", rec.Agent, "resource", rec.Resource, "scope", rec.Scope,
		"user", rec.User, "decision", decision))
}

// grantRevoked emits aauth_grant_revoked for g, through the emitter of the newest
// config that uses the store (the admin API has none of its own).
func (s *consentStore) grantRevoked(g *grant) {
	s.events.Load().Emit(aauthevents.GrantRevoked, aauthevents.Data(
		"issuer", s.issuer, "grant_id", g.ID, "agent", g.Agent, "resource", g.Resource))
}
