// Package aauthevents emits the aauth modules' events through Caddy's events app
// (module "events"), so other modules and event handlers (for example an exec handler)
// can react to them. Event data are flat string and number fields, never a token or a
// key. Events are emitted synchronously: a subscribed handler runs before the request
// that caused the event is answered.
package aauthevents

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
)

// Event names.
const (
	TokenIssued    = "aauth_token_issued"    // issuer, agent, resource, scope, sub, jti, kind
	ConsentDecided = "aauth_consent_decided" // issuer, agent, resource, scope, user, decision
	GrantRevoked   = "aauth_grant_revoked"   // issuer, grant_id, agent, resource
	KeyRotated     = "aauth_key_rotated"     // owner, role, new_kid, old_kid, activates
)

// Emitter emits events as the module whose provisioning context it was made from (the
// event's origin). A nil *Emitter emits nothing.
type Emitter struct {
	ctx caddy.Context
	app *caddyevents.App
}

// New returns an Emitter for the module being provisioned with ctx. It loads the events
// app, as Caddy's tls and http apps do; an unconfigured events app still logs every
// event at Debug and has no subscribers.
func New(ctx caddy.Context) (*Emitter, error) {
	a, err := ctx.App("events")
	if err != nil {
		return nil, err
	}
	app, _ := a.(*caddyevents.App)
	if app == nil {
		return nil, nil
	}
	return &Emitter{ctx: ctx, app: app}, nil
}

// Emit emits the event name with data, when anything observes it (a subscriber or the
// events app's Debug log). data must not be changed afterwards.
func (e *Emitter) Emit(name string, data map[string]any) {
	if e == nil || !e.app.ShouldEmit(name) {
		return
	}
	e.app.Emit(e.ctx, name, data)
}

// Data builds event data from key, value pairs, leaving out empty values.
func Data(kv ...string) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			m[kv[i]] = kv[i+1]
		}
	}
	return m
}
