// Package assertion is the signed upstream assertion of an AAuth gateway: a short-lived
// JWT (RFC 7519) the gateway signs and sends to its upstream with every request it
// verified, carrying the verified identity (what the X-Aauth-* headers carry), the
// audience (the upstream) and the request's method and path. An origin that others can
// reach directly verifies the assertion with Verifier against the gateway's published
// JWKS (RFC 7517), so forged X-Aauth-* headers sent around the gateway are refused.
//
// draft-hardt-aauth leaves the proxy-to-origin hop open; the typ, the claims and the
// well-known path are this module's choice. The method and path claims follow the htm
// and htu claims of DPoP proofs (RFC 9449 §4.2).
package assertion

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

const (
	// Typ is the JOSE typ header of an assertion (RFC 8725 §3.11: explicit typing).
	Typ = "aauth-assertion+jwt"
	// DefaultHeader is the request header the gateway sends the assertion in.
	DefaultHeader = "X-Aauth-Assertion"
	// Lifetime is exp - iat of every assertion.
	Lifetime = 60 * time.Second
	// DefaultSkew is the clock difference Verifier tolerates on exp and iat.
	DefaultSkew = 60 * time.Second
	// PathJWKS is the well-known path of the gateway's assertion JWKS.
	PathJWKS = "/.well-known/aauth-gateway/jwks.json"
)

// Claims of an assertion: the registered claims (RFC 7519 §4.1), the request (htm, htu,
// path) and the identity the gateway verified (empty fields are omitted).
type Claims struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`

	Method string `json:"htm"`
	URL    string `json:"htu,omitempty"`
	Path   string `json:"path"`

	Level    string `json:"level,omitempty"`
	Scheme   string `json:"scheme,omitempty"`
	Agent    string `json:"agent,omitempty"`
	Delegate string `json:"delegate,omitempty"`
	Subject  string `json:"sub,omitempty"`
	Scope    string `json:"scope,omitempty"`
	Txn      string `json:"txn,omitempty"`
	JKT      string `json:"jkt,omitempty"`
	TokenIss string `json:"issuer,omitempty"`
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// NewID returns a random jti (128 bits, hex).
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Sign returns c as a compact JWS (RFC 7515 §7.1) signed by s, with iat, exp and jti
// filled in from now when they are zero.
func Sign(s *keys.Signer, c Claims, now time.Time) (string, error) {
	if s == nil || s.Public == nil || s.Public.KID == "" {
		return "", errors.New("assertion: no signing key with a kid")
	}
	if c.IssuedAt == 0 {
		c.IssuedAt = now.Unix()
	}
	if c.Expiry == 0 {
		c.Expiry = c.IssuedAt + int64(Lifetime/time.Second)
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	hb, err := json.Marshal(header{Alg: s.Public.JWSAlg(), Typ: Typ, Kid: s.Public.KID})
	if err != nil {
		return "", err
	}
	pb, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hb) + "." + enc.EncodeToString(pb)
	sig, err := s.Sign([]byte(input))
	if err != nil {
		return "", fmt.Errorf("assertion: signing: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}
