// Package reqverify verifies a signed AAuth request end to end: the three signature
// headers, the key behind each Signature-Key scheme (hwk inline, jwks_uri by discovery,
// jwt by verifying the agent or auth token it carries) and the RFC 9421 signature. The
// gateway and the auth server both call it, so they cannot disagree on what "verified"
// means. Cheap checks run first; nothing is fetched before the request's own signature has
// been checked where that is possible (the jwt scheme checks the HTTP signature against
// the token's cnf key before fetching the issuer's keys).
package reqverify

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Levels of assurance a verified request reaches, from weakest to strongest: a pseudonymous
// key (hwk), an identified agent, an agent holding an auth token (draft-hardt-aauth §6).
const (
	LevelPseudonym  = "pseudonym"
	LevelIdentity   = "identity"
	LevelAuthorized = "authorized"
)

// Error codes beyond the httpsig ones; defined in package wire.
const (
	CodeInvalidAgentToken = wire.CodeInvalidAgentToken
	CodeInvalidAuthToken  = wire.CodeInvalidAuthToken
	CodeKeyBindingFailed  = wire.CodeKeyBindingFailed
	CodeUnknownKey        = wire.CodeUnknownKey
)

// Error is a verification failure with a protocol error code; its text is safe to show.
type Error = httpsig.Error

func fail(code, msg string) *Error { return &Error{Code: code, Msg: msg} }

// AuthTokenPolicy says which auth tokens a verifier accepts in scheme=jwt.
type AuthTokenPolicy struct {
	Audience string   // the resource identifier
	Issuers  []string // trusted auth servers; checked before any fetch
}

// Verifier holds what verification needs; it is safe for concurrent use.
type Verifier struct {
	Discovery *discovery.Client
	Limits    httpsig.Limits
	Policy    httpsig.Policy
	Now       func() time.Time
	Dev       bool   // allow http:// and loopback identifiers
	Self      string // this verifier's identifier, checked against an agent token's aud when present
	Tokens    *token.Cache
	// AuthTokens, when set, lets scheme=jwt carry an auth+jwt token. Without it such a
	// request is refused.
	AuthTokens *AuthTokenPolicy
	// MaxTokenLifetime bounds the agent and auth tokens carried in scheme=jwt: both
	// exp - iat and exp - now must be at most this long (RFC 8725 §3.10 advice on short
	// lifetimes; the AAuth draft keeps tokens short because there is no revocation).
	// Zero means DefaultMaxTokenLifetime; there is no way to switch the bound off.
	MaxTokenLifetime time.Duration
}

// DefaultMaxTokenLifetime is the longest agent or auth token lifetime accepted when
// Verifier.MaxTokenLifetime is zero.
const DefaultMaxTokenLifetime = 24 * time.Hour

func (v *Verifier) maxTokenLifetime() time.Duration {
	if v.MaxTokenLifetime > 0 {
		return v.MaxTokenLifetime
	}
	return DefaultMaxTokenLifetime
}

// Result is a verified request.
type Result struct {
	Signature *httpsig.Signature
	// Base is the RFC 9421 §2.5 signature base the signature was verified over. It
	// covers @signature-params (created, nonce, …) and the Signature-Key value, so two
	// requests with the same base are the same signed message (a replay).
	Base     []byte
	Scheme   string
	Key      *keys.PublicKey // the key that signed the request
	Level    string
	Agent    string // jwks_uri id, agent token iss, or auth token agent
	Delegate string // agent token sub, or auth token agent_delegate
	Token    *token.Token
	TokenTyp string // agent+jwt or auth+jwt when Scheme is jwt
	// AuthTokenProblem is set when an auth token was authentic but not usable here
	// (expired, or for another audience). The request is then only identified: Level is
	// LevelIdentity and Agent comes from the token.
	AuthTokenProblem *Error
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify checks a request described by t (whose Header holds the signature headers).
func (v *Verifier) Verify(ctx context.Context, t httpsig.Target) (*Result, error) {
	return v.VerifyAs(ctx, t, v.Self)
}

// VerifyAs is Verify for a verifier whose identifier is self instead of v.Self (a
// gateway without a configured resource is the authority the request was sent to).
func (v *Verifier) VerifyAs(ctx context.Context, t httpsig.Target, self string) (*Result, error) {
	sig, base, err := v.Prepare(t)
	if err != nil {
		return nil, err
	}
	res := &Result{Signature: sig, Base: base, Scheme: sig.Key.Scheme}
	switch sig.Key.Scheme {
	case httpsig.SchemeHWK:
		err = v.hwk(sig, base, res)
	case httpsig.SchemeJWKSURI:
		err = v.jwksURI(ctx, sig, base, res)
	case httpsig.SchemeJWT:
		err = v.jwt(ctx, sig, base, res, self)
	default:
		return nil, fail(httpsig.CodeInvalidKey, "unsupported Signature-Key scheme")
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Prepare runs the checks of Verify that need no key: it parses the three signature
// headers, applies the policy (covered components, created/expires window) and the
// algorithm allow-list, and builds the RFC 9421 §2.5 signature base. The caller then
// verifies the signature itself with httpsig.Verify(sig, base, key). It serves requests
// whose signing key is found another way than through their Signature-Key scheme (the
// auth server's token exchange, where the key is named by a resource token's agent_jkt).
func (v *Verifier) Prepare(t httpsig.Target) (*httpsig.Signature, []byte, error) {
	lim := v.Limits
	if lim == (httpsig.Limits{}) {
		lim = httpsig.DefaultLimits
	}
	sig, err := v.Policy.ParseChecked(t.Header, lim, t, v.now())
	if err != nil {
		return nil, nil, err
	}
	// An algorithm no supported key can have is refused before any key is fetched.
	if sig.Alg != "" && sig.Alg != keys.AlgEd25519 && sig.Alg != keys.AlgECDSAP256 {
		return nil, nil, fail(httpsig.CodeUnsupportedAlgorithm, "unsupported alg (use ed25519 or ecdsa-p256-sha256)")
	}
	base, err := httpsig.Base(sig, t)
	if err != nil {
		return nil, nil, err
	}
	return sig, base, nil
}

func (v *Verifier) hwk(sig *httpsig.Signature, base []byte, res *Result) error {
	if sig.Key.Has("alg") {
		return fail(httpsig.CodeInvalidKey, "hwk must not carry alg")
	}
	pub, err := sig.InlineKey()
	if err != nil {
		return fail(httpsig.CodeInvalidKey, err.Error())
	}
	if err := httpsig.Verify(sig, base, pub); err != nil {
		return err
	}
	res.Key, res.Level = pub, LevelPseudonym
	return nil
}

func (v *Verifier) jwksURI(ctx context.Context, sig *httpsig.Signature, base []byte, res *Result) error {
	id, kid := sig.Key.Get("id"), sig.Key.Get("kid")
	if id == "" || kid == "" {
		return fail(httpsig.CodeInvalidKey, "jwks_uri requires id and kid")
	}
	if sig.Key.Has("jwks") {
		return fail(httpsig.CodeInvalidKey, "the jwks parameter is not supported; publish metadata at id")
	}
	if err := discovery.ValidateIdentifier(id, v.Dev); err != nil {
		return fail(httpsig.CodeInvalidKey, "agent id is not a valid identifier")
	}
	doc := "aauth-agent"
	if wk := sig.Key.Get("well-known"); wk != "" {
		doc = wk
	}
	pub, err := v.Discovery.Key(ctx, id, doc, kid)
	if err != nil {
		if ue := unavailable(err, "the agent's", id); ue != nil {
			return ue
		}
		if errors.Is(err, discovery.ErrUnknownKey) {
			return fail(CodeUnknownKey, "no key with that kid in the agent's JWKS")
		}
		return fail(CodeUnknownKey, "the agent's keys could not be fetched")
	}
	if pub, err = v.verifyWithKeyChange(ctx, sig, base, id, doc, kid, pub); err != nil {
		return err
	}
	res.Key, res.Level, res.Agent = pub, LevelIdentity, id
	return nil
}

func (v *Verifier) jwt(ctx context.Context, sig *httpsig.Signature, base []byte, res *Result, self string) error {
	raw := sig.Key.Get("jwt")
	if raw == "" {
		return fail(httpsig.CodeInvalidKey, "jwt scheme requires a jwt parameter")
	}
	now := v.now()
	if cached, ok := v.Tokens.Get(raw, now); ok {
		// This very token text verified here before, as an agent or an auth token: its
		// verified header says which, without peeking at the text again.
		res.TokenTyp = wire.NormalizeTokenType(cached.Header.Typ)
		// The cache holds tokens verified by this verifier, but self may differ per
		// request (a gateway without a configured resource): check the audience again.
		if res.TokenTyp == token.TypAgent && len(cached.Claims.Audience) > 0 && !cached.Claims.Audience.Contains(self) {
			return fail(CodeInvalidAgentToken, "token is for another audience")
		}
		return v.bind(sig, base, res, cached, false)
	}
	// Structure and claims first, then the request signature with the token's cnf key,
	// and only then the token's own signature, which may need a fetch.
	typ := wire.TokenType(raw)
	switch typ {
	case token.TypAgent, token.TypAuth:
	default:
		return fail(CodeInvalidAgentToken, "the jwt scheme needs an agent+jwt or auth+jwt token")
	}
	res.TokenTyp = typ
	pre, err := token.Parse(raw, typ)
	if err != nil {
		return fail(codeFor(typ), "token is malformed")
	}
	if pre.Claims.Confirmation == nil || pre.Claims.Confirmation.Key == nil {
		return fail(codeFor(typ), "token has no cnf.jwk")
	}
	// A lifetime over the bound is refused before any signature check or fetch (the
	// token package checks it again with the same bound).
	if err := checkLifetime(pre, now, v.maxTokenLifetime()); err != nil {
		return fail(codeFor(typ), err.Error())
	}
	if typ == token.TypAuth {
		// The cheapest refusal first: an issuer this route does not trust.
		if v.AuthTokens == nil {
			return fail(CodeInvalidAuthToken, "auth tokens are not accepted here")
		}
		if !slices.Contains(v.AuthTokens.Issuers, pre.Claims.Issuer) {
			return fail(CodeInvalidAuthToken, "token issuer is not trusted here")
		}
	}
	if err := httpsig.Verify(sig, base, pre.Claims.Confirmation.Key); err != nil {
		return fail(CodeKeyBindingFailed, "request is not signed by the token's cnf key")
	}
	var tok *token.Token
	switch typ {
	case token.TypAgent:
		opts := token.Options{Now: now, Audience: self, MaxLifetime: v.maxTokenLifetime()}
		// The resolver refuses an iss that is not a valid identifier before fetching.
		tok, err = v.verifyToken(ctx, discovery.DocAgent, func(r token.KeyResolver) (*token.Token, error) {
			return token.VerifyAgentToken(ctx, raw, opts, r)
		})
	case token.TypAuth:
		opts := token.Options{Now: now, Audience: v.AuthTokens.Audience, Issuers: v.AuthTokens.Issuers, MaxLifetime: v.maxTokenLifetime()}
		tok, err = v.verifyToken(ctx, discovery.DocIssuer, func(r token.KeyResolver) (*token.Token, error) {
			return token.VerifyAuthToken(ctx, raw, opts, r)
		})
		if err != nil && !isUnavailable(err) {
			return v.staleAuthToken(ctx, raw, pre, opts, err, res)
		}
	}
	if ue := unavailable(err, issuerRole(typ), pre.Claims.Issuer); ue != nil {
		return ue
	}
	if err != nil {
		return tokenError(typ, err)
	}
	if err := checkNames(tok, typ); err != nil {
		return err
	}
	v.Tokens.Put(tok)
	// The request signature was checked against this token's cnf key above (tok and pre
	// are the same text).
	return v.bind(sig, base, res, tok, true)
}

// staleAuthToken handles an auth token that is authentic but unusable here: expired, or
// issued for another resource. Such a token still proves who the agent is (a trusted
// auth server vouched for it and the request is signed with its cnf key), so the
// gateway can answer with a fresh resource token and the agent can recover
// (draft-hardt-aauth §6). Anything else is a plain failure.
func (v *Verifier) staleAuthToken(ctx context.Context, raw string, pre *token.Token, opts token.Options, cause error, res *Result) error {
	code := token.CodeOf(cause)
	if code != token.CodeExpired && code != token.CodeInvalidAudience {
		return tokenError(token.TypAuth, cause)
	}
	relaxed := opts
	relaxed.ExpiredGrace = StaleAuthTokenGrace
	if len(pre.Claims.Audience) == 1 {
		relaxed.Audience = pre.Claims.Audience[0]
	}
	tok, err := token.VerifyAuthToken(ctx, raw, relaxed, v.issuerKeyResolver())
	if ue := unavailable(err, issuerRole(token.TypAuth), pre.Claims.Issuer); ue != nil {
		return ue
	}
	if err != nil || tok.Claims.Agent == "" || checkNames(tok, token.TypAuth) != nil {
		return tokenError(token.TypAuth, cause)
	}
	res.Key, res.Token = tok.Claims.Confirmation.Key, tok
	res.Level, res.Agent, res.Delegate = LevelIdentity, tok.Claims.Agent, tok.Claims.AgentDelegate
	res.AuthTokenProblem = tokenError(token.TypAuth, cause).(*Error)
	return nil
}

// checkLifetime refuses a token valid for longer than max: exp - iat, or exp - now (a
// token whose iat is missing or in the past would otherwise escape the bound).
func checkLifetime(t *token.Token, now time.Time, max time.Duration) error {
	c := &t.Claims
	if c.IssuedAt != 0 && c.Expiry-c.IssuedAt > int64(max/time.Second) {
		return errors.New("token lifetime exceeds the maximum of " + max.String())
	}
	if c.Expiry-now.Unix() > int64(max/time.Second) {
		return errors.New("token expiry is further away than the maximum lifetime of " + max.String())
	}
	return nil
}

// StaleAuthTokenGrace is how long after expiry an auth token still identifies its agent
// for the purpose of issuing a new resource token.
const StaleAuthTokenGrace = 24 * time.Hour

// checkNames refuses a token whose identity claims would be unsafe to forward in
// upstream headers: they come from agent servers and auth servers, not from us.
func checkNames(tok *token.Token, typ string) error {
	for _, v := range []string{tok.Claims.Issuer, tok.Claims.Subject, tok.Claims.Agent, tok.Claims.AgentDelegate, tok.Claims.Scope, tok.Claims.Txn} {
		if len(v) > maxNameLen {
			return fail(codeFor(typ), "token claim is too long")
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fail(codeFor(typ), "token claim has characters that cannot be forwarded")
			}
		}
	}
	return nil
}

// maxNameLen bounds identity claims forwarded upstream.
const maxNameLen = 1024

// bind finishes a jwt-scheme verification with a verified token: the request must be
// signed by the token's cnf key.
func (v *Verifier) bind(sig *httpsig.Signature, base []byte, res *Result, tok *token.Token, verified bool) error {
	cnf := tok.Claims.Confirmation
	if cnf == nil || cnf.Key == nil {
		return fail(codeFor(res.TokenTyp), "token has no cnf.jwk")
	}
	if !verified {
		if err := httpsig.Verify(sig, base, cnf.Key); err != nil {
			return fail(CodeKeyBindingFailed, "request is not signed by the token's cnf key")
		}
	}
	res.Key, res.Token = cnf.Key, tok
	if res.TokenTyp == token.TypAgent {
		res.Level, res.Agent, res.Delegate = LevelIdentity, tok.Claims.Issuer, tok.Claims.Subject
	} else {
		res.Level, res.Agent, res.Delegate = LevelAuthorized, tok.Claims.Agent, tok.Claims.AgentDelegate
	}
	return nil
}

func (v *Verifier) issuerKeyResolver() token.KeyResolver {
	return func(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
		if err := discovery.ValidateIdentifier(iss, v.Dev); err != nil {
			return nil, err
		}
		return v.Discovery.Key(ctx, iss, "aauth-issuer", kid)
	}
}

// issuerRole names the issuer of a token kind in an UnavailableError message.
func issuerRole(typ string) string {
	if typ == token.TypAuth {
		return "the auth server's"
	}
	return "the agent server's"
}

func isUnavailable(err error) bool { return errors.Is(err, discovery.ErrUnavailable) }

func codeFor(typ string) string {
	if typ == token.TypAuth {
		return CodeInvalidAuthToken
	}
	return CodeInvalidAgentToken
}

// tokenError maps a token failure to a protocol error without echoing the token.
func tokenError(typ string, err error) error {
	var te *token.Error
	msg := "token verification failed"
	if errors.As(err, &te) {
		switch te.Code {
		case token.CodeExpired:
			msg = "token has expired"
		case token.CodeInvalidAudience:
			msg = "token is for another audience"
		case token.CodeUntrustedIssuer:
			msg = "token issuer is not trusted here"
		case token.CodeUnknownKey:
			msg = "token signing key could not be found"
		default:
			msg = "token is invalid: " + te.Msg
		}
	}
	return fail(codeFor(typ), msg)
}
