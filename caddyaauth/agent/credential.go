package agent

import (
	"errors"
	"fmt"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Credential says how a request is signed: which key, and what the Signature-Key header
// tells the verifier about where that key comes from. Build one with HWK, JWKSURI or
// Delegate; the zero value is not usable.
type Credential struct {
	// Scheme is httpsig.SchemeHWK, httpsig.SchemeJWKSURI or httpsig.SchemeJWT.
	Scheme string
	// Signer is the private key that signs requests: the agent key (hwk, jwks_uri) or the
	// delegate key bound by the agent token's cnf.jwk (jwt).
	Signer *keys.Signer
	// ID is the agent identifier (an https origin) for jwks_uri.
	ID string
	// WellKnown is the optional "well-known" parameter of jwks_uri (the draft form's
	// metadata document name). The AAuth profile omits it, so it is empty by default.
	WellKnown string
	// AgentToken is the token for the jwt scheme: an agent+jwt (Delegate) or an auth+jwt
	// (AuthToken). It is sent on every request, but it is bound to Signer, so it is
	// useless to whoever reads it without the key.
	AgentToken string
}

// HWK is a pseudonymous credential: the public key travels inline in Signature-Key, which
// proves possession of the key and nothing else.
func HWK(s *keys.Signer) *Credential {
	return &Credential{Scheme: httpsig.SchemeHWK, Signer: s}
}

// JWKSURI is an identified credential: the verifier fetches the key from the agent's
// published JWKS (found through id's /.well-known/aauth-agent.json) by the signer's kid.
func JWKSURI(s *keys.Signer, id string) *Credential {
	return &Credential{Scheme: httpsig.SchemeJWKSURI, Signer: s, ID: id}
}

// Delegate is an identified credential for a delegate (for example one instance of a
// fleet) holding its own key s and an agent token, issued by the agent server, whose
// cnf.jwk is s's public key.
func Delegate(s *keys.Signer, agentToken string) *Credential {
	return &Credential{Scheme: httpsig.SchemeJWT, Signer: s, AgentToken: agentToken}
}

// AuthToken is the credential for a request authorised by an auth token (draft-hardt-aauth
// §9.2): scheme jwt carrying the auth+jwt, signed with s, the key of the token's cnf.jwk
// (the agent key, or the delegate key for a delegate).
func AuthToken(s *keys.Signer, authToken string) *Credential {
	return &Credential{Scheme: httpsig.SchemeJWT, Signer: s, AgentToken: authToken}
}

// Validate reports a credential that cannot sign, so a misconfiguration shows up as one
// clear error rather than as a 401 from the resource.
func (c *Credential) Validate() error {
	if c == nil {
		return errors.New("agent: nil credential")
	}
	if c.Signer == nil || c.Signer.Private == nil || c.Signer.Public == nil {
		return fmt.Errorf("agent: %s credential has no signing key", c.Scheme)
	}
	switch c.Scheme {
	case httpsig.SchemeHWK:
	case httpsig.SchemeJWKSURI:
		if c.ID == "" {
			return errors.New("agent: jwks_uri credential has no agent id")
		}
		if c.Signer.Public.KID == "" {
			return errors.New("agent: jwks_uri credential needs a key with a kid")
		}
	case httpsig.SchemeJWT:
		if c.AgentToken == "" {
			return errors.New("agent: jwt credential has no agent token")
		}
	default:
		return fmt.Errorf("agent: unknown signature scheme %q", c.Scheme)
	}
	return nil
}

// Identified reports whether the credential proves an agent identity (jwks_uri or jwt),
// which is what a require=identity challenge asks for.
func (c *Credential) Identified() bool {
	return c != nil && (c.Scheme == httpsig.SchemeJWKSURI || c.Scheme == httpsig.SchemeJWT)
}

// SigKey builds the Signature-Key member for this credential. hwk carries only the key's
// public members (kty, crv, x[, y]): the HTTP Signature Keys draft
// (draft-hardt-httpbis-signature-key, scheme hwk) forbids alg and discourages kid.
// The label is filled in by httpsig.Sign.
func (c *Credential) SigKey() httpsig.SigKey {
	k := httpsig.SigKey{Scheme: c.Scheme}
	switch c.Scheme {
	case httpsig.SchemeHWK:
		var m map[string]any
		if c.Signer != nil && c.Signer.Public != nil {
			m = c.Signer.Public.Members()
		}
		for _, name := range []string{"kty", "crv", "x", "y"} {
			if v, ok := m[name].(string); ok {
				k.Params = append(k.Params, httpsig.Param{Name: name, Value: v})
			}
		}
	case httpsig.SchemeJWKSURI:
		kid := ""
		if c.Signer != nil && c.Signer.Public != nil {
			kid = c.Signer.Public.KID
		}
		k.Params = append(k.Params, httpsig.Param{Name: "id", Value: c.ID})
		if c.WellKnown != "" {
			k.Params = append(k.Params, httpsig.Param{Name: "well-known", Value: c.WellKnown})
		}
		k.Params = append(k.Params, httpsig.Param{Name: "kid", Value: kid})
	case httpsig.SchemeJWT:
		k.Params = append(k.Params, httpsig.Param{Name: "jwt", Value: c.AgentToken})
	}
	return k
}

// String describes the credential for logs without revealing secrets: the agent token is
// summarised by its typ, never printed.
func (c *Credential) String() string {
	if c == nil {
		return "unsigned"
	}
	tp := ""
	if c.Signer != nil && c.Signer.Public != nil {
		tp = c.Signer.Public.Thumbprint
	}
	switch c.Scheme {
	case httpsig.SchemeHWK:
		return "hwk (key thumbprint " + tp + ")"
	case httpsig.SchemeJWKSURI:
		kid := ""
		if c.Signer != nil && c.Signer.Public != nil {
			kid = c.Signer.Public.KID
		}
		return fmt.Sprintf("jwks_uri (id %s, kid %s)", c.ID, kid)
	case httpsig.SchemeJWT:
		typ := TokenType(c.AgentToken)
		if typ == "" {
			typ = "unknown"
		}
		if typ == wire.TypAuth {
			return fmt.Sprintf("jwt (token typ %s, key thumbprint %s)", typ, tp)
		}
		return fmt.Sprintf("jwt (token typ %s, delegate key thumbprint %s)", typ, tp)
	}
	return c.Scheme
}

// TokenType returns the typ header of a compact JWT without verifying anything, or ""
// when it cannot be read (wire.TokenType). It exists so logs can name a token's kind
// without printing the token.
func TokenType(raw string) string { return wire.TokenType(raw) }
