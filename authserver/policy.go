package authserver

import (
	"errors"
	"fmt"
	"slices"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Policy outcomes (rule effects and the default).
const (
	EffectAllow   = "allow"
	EffectConsent = "consent"
	EffectDeny    = "deny"
)

// Wildcard matches any agent or any resource in a rule condition.
const Wildcard = "*"

// Policy decides what the token endpoint does with a verified request: issue a token
// directly (allow), ask the user (consent), or refuse (deny).
//
// Evaluation, for the requesting agent, the resource (the resource token's iss) and the
// requested scopes (the resource token's scope, split on spaces):
//
//  1. deny if any deny rule matches;
//  2. else consent if any consent rule matches;
//  3. else allow if any allow rule matches;
//  4. else Default (deny when unset).
//
// Rule order does not matter. A rule matches when every condition it has matches; a rule
// with no conditions matches every request. Conditions:
//
//   - agents: the agent identifier equals one of the values (exact string), or a value
//     is "*";
//   - resources: the resource identifier equals one of the values, or a value is "*";
//   - scopes, in deny and consent rules: the request asks for ANY of the listed scopes
//     (so a request with no scope never matches);
//   - scopes, in allow rules: EVERY requested scope is listed (so an allow rule never
//     grants a scope it does not name; a request with no scope matches).
type Policy struct {
	// Rules are the policy rules; their order does not matter (see Policy).
	Rules []Rule `json:"rules,omitempty"`

	// Default is the outcome when no rule matches: "allow", "consent" or "deny".
	// Default "deny".
	Default string `json:"default,omitempty"`
}

// Rule is one policy rule: an effect and optional conditions, all of which must match.
type Rule struct {
	// Effect is "allow", "consent" or "deny".
	Effect string `json:"effect"`

	// Agents limits the rule to these agent identifiers ("*" for any). Absent means
	// any agent.
	Agents []string `json:"agents,omitempty"`

	// Resources limits the rule to these resource identifiers (the resource token's
	// iss; "*" for any). Absent means any resource.
	Resources []string `json:"resources,omitempty"`

	// Scopes limits the rule by the requested scopes: a deny or consent rule matches
	// when any requested scope is listed, an allow rule only when every requested scope
	// is listed. Absent means any scopes.
	Scopes []string `json:"scopes,omitempty"`
}

// Evaluate returns the outcome (EffectAllow, EffectConsent or EffectDeny) for a request.
func (p *Policy) Evaluate(agent, resource string, scopes []string) string {
	def := EffectDeny
	if p == nil {
		return def
	}
	if p.Default != "" {
		def = p.Default
	}
	var consent, allow bool
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.matches(agent, resource, scopes) {
			continue
		}
		switch r.Effect {
		case EffectDeny:
			return EffectDeny
		case EffectConsent:
			consent = true
		case EffectAllow:
			allow = true
		}
	}
	switch {
	case consent:
		return EffectConsent
	case allow:
		return EffectAllow
	}
	return def
}

// canConsent reports whether the policy can send a request to the user.
func (p *Policy) canConsent() bool {
	if p == nil {
		return false
	}
	if p.Default == EffectConsent {
		return true
	}
	for _, r := range p.Rules {
		if r.Effect == EffectConsent {
			return true
		}
	}
	return false
}

func (r *Rule) matches(agent, resource string, scopes []string) bool {
	if r.Agents != nil && !matchID(r.Agents, agent) {
		return false
	}
	if r.Resources != nil && !matchID(r.Resources, resource) {
		return false
	}
	if r.Scopes != nil {
		if r.Effect == EffectAllow {
			for _, s := range scopes {
				if !slices.Contains(r.Scopes, s) {
					return false
				}
			}
		} else if !slices.ContainsFunc(scopes, func(s string) bool { return slices.Contains(r.Scopes, s) }) {
			return false
		}
	}
	return true
}

func matchID(list []string, id string) bool {
	return slices.Contains(list, Wildcard) || slices.Contains(list, id)
}

func validEffect(e string) bool {
	return e == EffectAllow || e == EffectConsent || e == EffectDeny
}

// validate checks the policy; dev relaxes identifier checks as for discovery.
func (p *Policy) validate(dev bool) error {
	if p == nil {
		return nil
	}
	if p.Default != "" && !validEffect(p.Default) {
		return fmt.Errorf("policy default: unknown effect %q (want allow, consent or deny)", p.Default)
	}
	for i, r := range p.Rules {
		if !validEffect(r.Effect) {
			return fmt.Errorf("policy rule %d: unknown effect %q (want allow, consent or deny)", i, r.Effect)
		}
		if err := checkIDs(r.Agents, dev); err != nil {
			return fmt.Errorf("policy rule %d: agents: %v", i, err)
		}
		if err := checkIDs(r.Resources, dev); err != nil {
			return fmt.Errorf("policy rule %d: resources: %v", i, err)
		}
		if err := checkScopes(r.Scopes); err != nil {
			return fmt.Errorf("policy rule %d: scopes: %v", i, err)
		}
		for _, list := range [][]string{r.Agents, r.Resources, r.Scopes} {
			for j, v := range list {
				if slices.Contains(list[:j], v) {
					return fmt.Errorf("policy rule %d: %s listed twice", i, v)
				}
			}
		}
	}
	return nil
}

func checkIDs(ids []string, dev bool) error {
	if ids != nil && len(ids) == 0 {
		return errors.New("empty list (leave it out to match any)")
	}
	for _, id := range ids {
		if id == Wildcard {
			continue
		}
		if err := discovery.ValidateIdentifier(id, dev); err != nil {
			return err
		}
	}
	return nil
}

func checkScopes(scopes []string) error {
	if scopes != nil && len(scopes) == 0 {
		return errors.New("empty list (leave it out to match any)")
	}
	for _, s := range scopes {
		switch {
		case s == "":
			return errors.New("empty scope")
		case s == Wildcard:
			return errors.New(`"*" is not a scope; leave the scope condition out to match any scopes`)
		case !wire.ValidScope(s):
			return fmt.Errorf("scope %q is not an RFC 6749 scope token (printable ASCII without space, quote or backslash)", s)
		}
	}
	return nil
}
