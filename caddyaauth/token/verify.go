package token

import (
	"context"
	"slices"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// KeyResolver returns the issuer's public key with the given kid (for example from the
// issuer's JWKS). It is called only after every cheap check has passed, and only for an
// issuer on Options.Issuers when that list is set.
type KeyResolver func(ctx context.Context, iss, kid string) (*keys.PublicKey, error)

// DefaultSkew is the allowed clock skew for iat and nbf in the future.
const DefaultSkew = 60 * time.Second

// Options configure the Verify* functions.
type Options struct {
	// Now is the verifier's clock (required; injected so tests can replay fixed vectors).
	Now time.Time
	// Skew is how far in the future iat and nbf may be (default DefaultSkew when zero).
	// exp gets no grace: the token is expired once Now >= exp.
	Skew time.Duration
	// Audience is the verifier's own identifier, compared by exact string.
	//   - auth and resource tokens: required; aud must be a single string equal to it (an
	//     array, even with one member, is refused, as in the reference implementation).
	//   - agent tokens: aud is optional; when present it may be a string or an array and
	//     must contain Audience. An agent token with aud is refused when Audience is empty.
	Audience string
	// Issuers is the allow-list of iss values (exact strings). When non-empty, iss must be
	// on it before the KeyResolver is called.
	Issuers []string
	// MaxLifetime, when > 0, bounds exp - iat and exp - Now.
	MaxLifetime time.Duration
	// ExpiredGrace, when > 0, accepts a token whose exp passed less than ExpiredGrace ago
	// (the refresh request of draft-hardt-aauth §19.7 only; the caller must check
	// Token.Expired). Leave it zero everywhere else.
	ExpiredGrace time.Duration
}

// Expired reports whether the token's exp has passed at now (now >= exp).
func (t *Token) Expired(now time.Time) bool {
	return !now.Before(time.Unix(t.Claims.Expiry, 0))
}

type kindRules struct {
	typ          string
	name         string
	audRequired  bool // aud required and must be a single string equal to Options.Audience
	needSub      bool
	needAud      bool
	needCnf      bool
	needAgent    bool
	needAgentJKT bool
	needSubScope bool // at least one of sub, scope
}

var (
	agentRules = kindRules{typ: TypAgent, name: "agent token",
		needSub: true, needCnf: true}
	resourceRules = kindRules{typ: TypResource, name: "resource token",
		audRequired: true, needAud: true, needAgent: true, needAgentJKT: true}
	authRules = kindRules{typ: TypAuth, name: "auth token",
		audRequired: true, needAud: true, needCnf: true, needAgent: true, needSubScope: true}
)

// VerifyAgentToken verifies an agent token (typ agent+jwt, draft-hardt-aauth §16.2.1):
// iss, sub, jti, cnf.jwk, iat and exp are required; aud is optional (see
// Options.Audience). Checking that iss is a valid https identifier is the caller's job.
func VerifyAgentToken(ctx context.Context, raw string, o Options, resolve KeyResolver) (*Token, error) {
	return verify(ctx, raw, o, resolve, &agentRules)
}

// VerifyResourceToken verifies a resource token (typ resource+jwt, draft-hardt-aauth
// §8.1, §16.2.3): iss, aud (= Options.Audience, this AS), jti, agent, agent_jkt, iat and
// exp are required. Matching agent and agent_jkt against the request, and jti replay, are
// the caller's job.
func VerifyResourceToken(ctx context.Context, raw string, o Options, resolve KeyResolver) (*Token, error) {
	return verify(ctx, raw, o, resolve, &resourceRules)
}

// VerifyAuthToken verifies an auth token (typ auth+jwt, draft-hardt-aauth §9.1, §16.2.2):
// iss, aud (= Options.Audience, this resource), jti, cnf.jwk, iat, exp, agent and at
// least one of sub and scope are required. Key binding (cnf.jwk = the request's signing
// key) and scope checks are the caller's job.
func VerifyAuthToken(ctx context.Context, raw string, o Options, resolve KeyResolver) (*Token, error) {
	return verify(ctx, raw, o, resolve, &authRules)
}

func verify(ctx context.Context, raw string, o Options, resolve KeyResolver, r *kindRules) (*Token, error) {
	skew, err := checkOptions(o, resolve, r)
	if err != nil {
		return nil, err
	}

	// 1. Structure, header (alg, typ, kid, refused parameters) and claim types.
	t, err := Parse(raw, r.typ)
	if err != nil {
		return nil, err
	}
	c := &t.Claims

	// 2. Issuer: present, and on the allow-list before anything is fetched.
	if c.Issuer == "" {
		return nil, invalid("%s has no iss", r.name)
	}
	if len(o.Issuers) > 0 && !slices.Contains(o.Issuers, c.Issuer) {
		return nil, newErr(CodeUntrustedIssuer, "iss is not a trusted issuer")
	}

	// 3. Time, 4. audience, 5. required claims.
	if err := checkTime(c, o, skew, r); err != nil {
		return nil, err
	}
	if err := checkAudience(c, o, r); err != nil {
		return nil, err
	}
	if err := checkRequired(c, r); err != nil {
		return nil, err
	}

	// 6. Key and signature, last.
	k, err := resolve(ctx, c.Issuer, t.Header.Kid)
	if err != nil {
		return nil, &Error{Code: CodeUnknownKey, Msg: "no key for the token's issuer and kid", err: err}
	}
	if k == nil {
		return nil, newErr(CodeUnknownKey, "no key for the token's issuer and kid")
	}
	if err := t.VerifySignature(k); err != nil {
		return nil, err
	}
	t.verified = true
	return t, nil
}

// checkOptions refuses a misconfigured verifier and returns the clock skew to allow.
func checkOptions(o Options, resolve KeyResolver, r *kindRules) (skew time.Duration, err error) {
	if o.Now.IsZero() {
		return 0, invalid("verifier misconfigured: Options.Now is not set")
	}
	if resolve == nil {
		return 0, newErr(CodeUnknownKey, "verifier misconfigured: no key resolver")
	}
	if r.audRequired && o.Audience == "" {
		return 0, newErr(CodeInvalidAudience, "verifier misconfigured: Options.Audience is required (%s)", r.name)
	}
	skew = o.Skew
	if skew == 0 {
		skew = DefaultSkew
	} else if skew < 0 {
		skew = 0
	}
	return skew, nil
}

// checkTime checks exp (with o.ExpiredGrace), iat and nbf against o.Now and skew, and the
// lifetime against o.MaxLifetime.
func checkTime(c *Claims, o Options, skew time.Duration, r *kindRules) error {
	if c.Expiry == 0 {
		return invalid("%s has no exp", r.name)
	}
	if c.IssuedAt == 0 {
		return invalid("%s has no iat", r.name)
	}
	exp := time.Unix(c.Expiry, 0)
	if !o.Now.Before(exp) && (o.ExpiredGrace <= 0 || !o.Now.Before(exp.Add(o.ExpiredGrace))) {
		return newErr(CodeExpired, "%s has expired", r.name)
	}
	latest := o.Now.Add(skew)
	if time.Unix(c.IssuedAt, 0).After(latest) {
		return invalid("%s iat is in the future", r.name)
	}
	if c.NotBefore != 0 && time.Unix(c.NotBefore, 0).After(latest) {
		return invalid("%s is not valid yet (nbf)", r.name)
	}
	if c.Expiry <= c.IssuedAt {
		return invalid("%s exp is not after iat", r.name)
	}
	if o.MaxLifetime > 0 {
		max := int64(o.MaxLifetime / time.Second)
		if c.Expiry-c.IssuedAt > max {
			return invalid("%s lifetime exceeds %s", r.name, o.MaxLifetime)
		}
		if c.Expiry-o.Now.Unix() > max {
			return invalid("%s exp is more than %s away", r.name, o.MaxLifetime)
		}
	}
	return nil
}

// checkAudience checks aud: exactly o.Audience, as a single string, where the kind
// requires one; otherwise, when present, it must include o.Audience.
func checkAudience(c *Claims, o Options, r *kindRules) error {
	if r.audRequired {
		if len(c.Audience) == 0 {
			return newErr(CodeInvalidAudience, "%s has no aud", r.name)
		}
		if c.audArray || len(c.Audience) != 1 || c.Audience[0] != o.Audience {
			return newErr(CodeInvalidAudience, "%s aud is not this verifier", r.name)
		}
	} else if len(c.Audience) > 0 {
		if o.Audience == "" || !c.Audience.Contains(o.Audience) {
			return newErr(CodeInvalidAudience, "%s aud does not include this verifier", r.name)
		}
	}
	return nil
}

// checkRequired checks that the claims the token kind requires are present.
func checkRequired(c *Claims, r *kindRules) error {
	if c.ID == "" {
		return invalid("%s has no jti", r.name)
	}
	if r.needSub && c.Subject == "" {
		return invalid("%s has no sub", r.name)
	}
	if r.needCnf && (c.Confirmation == nil || c.Confirmation.Key == nil) {
		return invalid("%s has no cnf.jwk", r.name)
	}
	if r.needAgent && c.Agent == "" {
		return invalid("%s has no agent", r.name)
	}
	if r.needAgentJKT && c.AgentJKT == "" {
		return invalid("%s has no agent_jkt", r.name)
	}
	if r.needSubScope && c.Subject == "" && c.Scope == "" {
		return invalid("%s has neither sub nor scope", r.name)
	}
	return nil
}
