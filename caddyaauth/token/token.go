// Package token mints and verifies the three AAuth JWT kinds: agent tokens (agent+jwt),
// resource tokens (resource+jwt) and auth tokens (auth+jwt). See draft-hardt-aauth §7
// (agent token), §8 (resource token) and §9 (auth token); signing algorithms are EdDSA
// (Ed25519) and ES256 only, our choice.
//
// JWS signing and signature verification use jwx/v2. jwx v2 is lenient in ways that matter
// for these tokens (RFC 8725 §2.1, §3.1): it ignores the protected-header alg, accepts
// crit, JSON serialization, duplicate members, padding and surrounding whitespace. This
// package therefore parses every token itself first, strictly (Parse), and only hands a
// token to jwx once its structure, header and claims have passed:
//
//   - compact serialization only: exactly three non-empty unpadded base64url segments,
//     at most MaxTokenBytes bytes;
//   - header and payload are UTF-8 JSON objects with no duplicate member names at any
//     depth; members are matched by exact (case-sensitive) name;
//   - header alg is exactly "EdDSA" or "ES256" and must match the key type at verification;
//     typ is the expected one; kid is required; crit, jku, jwk, x5u, x5c, b64, cty, zip and
//     enc are refused (nothing in the header is ever used to find a key);
//   - registered claims have the right JSON types; exp, iat and nbf are non-negative
//     integers no larger than 2^53;
//   - cnf.jwk, when present, is a public Ed25519 or P-256 key (keys.FromAny).
//
// The Verify* functions then apply the per-kind claim rules, cheapest first, and only then
// call the KeyResolver and verify the signature, so a token from an issuer that is not on
// the allow-list never causes a key fetch.
//
// Error messages never contain the token text.
package token

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// JOSE "typ" values of the three AAuth token kinds (the draft's 2026-03 wire; package wire).
const (
	TypAgent    = wire.TypAgent
	TypResource = wire.TypResource
	TypAuth     = wire.TypAuth
)

// MaxTokenBytes caps the length of a compact token accepted by Parse (and stored by Cache).
const MaxTokenBytes = 8 << 10

// Error codes carried by *Error. Callers map them to protocol error codes (draft-hardt-aauth
// §18).
const (
	CodeInvalidToken    = "invalid_token"    // structure, header, claims or signature
	CodeExpired         = "expired"          // exp has passed
	CodeInvalidAudience = "invalid_audience" // aud missing (where required) or not ours
	CodeUntrustedIssuer = "untrusted_issuer" // iss not on the allow-list
	CodeUnknownKey      = "unknown_key"      // the KeyResolver found no key
)

// Error is the error type returned by Parse, VerifySignature and the Verify* functions.
// Msg never contains the token text.
type Error struct {
	Code string
	Msg  string
	err  error // optional cause (e.g. the resolver's error); never token text
}

func (e *Error) Error() string { return "token: " + e.Code + ": " + e.Msg }

// Unwrap returns the underlying cause, if any (for example the KeyResolver's error).
func (e *Error) Unwrap() error { return e.err }

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &token.Error{Code: token.CodeExpired}) works.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Msg == ""
}

// CodeOf returns the Code of err if it is (or wraps) an *Error, and "" otherwise.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func newErr(code, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *Error { return newErr(CodeInvalidToken, format, a...) }

// Audience is the "aud" claim. It unmarshals from a JSON string or an array of strings
// and marshals a single value as a string.
type Audience []string

// MarshalJSON writes a single audience as a string and several as an array.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string or a non-empty array of strings.
func (a *Audience) UnmarshalJSON(b []byte) error {
	v, _, err := decodeAudience(b)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Contains reports whether s is one of the audience values (exact string comparison).
func (a Audience) Contains(s string) bool {
	for _, v := range a {
		if v == s {
			return true
		}
	}
	return false
}

// Confirmation is the "cnf" claim. Only the "jwk" member is used.
type Confirmation struct {
	// JWK holds the members of cnf.jwk as received (after Parse) or as given to Mint when
	// Key is nil.
	JWK map[string]any `json:"-"`
	// Key is the parsed public key of cnf.jwk (set by Parse; preferred by Mint).
	Key *keys.PublicKey `json:"-"`
}

// MarshalJSON renders {"jwk": {...}} from Key, or from JWK when Key is nil.
func (c Confirmation) MarshalJSON() ([]byte, error) {
	switch {
	case c.Key != nil:
		return json.Marshal(map[string]any{"jwk": c.Key.Members()})
	case c.JWK != nil:
		return json.Marshal(map[string]any{"jwk": c.JWK})
	}
	return []byte("{}"), nil
}

// UnmarshalJSON reads {"jwk": {...}} and parses the key strictly with keys.FromAny.
func (c *Confirmation) UnmarshalJSON(b []byte) error {
	v, err := decodeConfirmation(b)
	if err != nil {
		return err
	}
	*c = *v
	return nil
}

// Claims are the JWT claims AAuth uses. Unknown claims are kept in Extra.
type Claims struct {
	Issuer        string        `json:"iss,omitempty"`
	Subject       string        `json:"sub,omitempty"`
	Audience      Audience      `json:"aud,omitempty"`
	ID            string        `json:"jti,omitempty"`
	IssuedAt      int64         `json:"iat,omitempty"`
	NotBefore     int64         `json:"nbf,omitempty"`
	Expiry        int64         `json:"exp,omitempty"`
	Agent         string        `json:"agent,omitempty"`
	AgentJKT      string        `json:"agent_jkt,omitempty"`
	Scope         string        `json:"scope,omitempty"`
	Txn           string        `json:"txn,omitempty"`
	AgentDelegate string        `json:"agent_delegate,omitempty"`
	Confirmation  *Confirmation `json:"cnf,omitempty"`

	// Extra holds claims other than the ones above, as raw JSON (after Parse), and extra
	// claims to add (for Mint; names of the claims above are refused).
	Extra map[string]json.RawMessage `json:"-"`

	audArray bool // aud was a JSON array in the parsed token
}

// AudienceIsArray reports whether the parsed token carried "aud" as a JSON array.
func (c *Claims) AudienceIsArray() bool { return c.audArray }

// Header is the protected JOSE header of a parsed token.
type Header struct {
	Alg string
	Kid string
	Typ string
}

// Token is a parsed (and, if returned by a Verify* function, verified) token. Tokens
// returned by the Verify* functions and by Cache.Get may be shared: treat them as
// read-only.
type Token struct {
	Raw    string
	Header Header
	Claims Claims

	signingInput string // header "." payload, as received
	payload      []byte
	signature    []byte
	verified     bool // set only by the Verify* functions after every check passed
}

// Verified reports whether t was returned by a successful Verify* call.
func (t *Token) Verified() bool { return t != nil && t.verified }

var registeredClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "jti": true, "iat": true, "nbf": true, "exp": true,
	"agent": true, "agent_jkt": true, "scope": true, "txn": true, "agent_delegate": true, "cnf": true,
}

// Mint signs c as a compact JWS with the header {"alg", "kid", "typ"}: alg from the key
// (EdDSA or ES256), kid = s.Public.KID (required), typ one of TypAgent, TypResource,
// TypAuth. It does not fill in missing claims (jti, iat, exp): the caller sets them (see
// NewID).
func Mint(s *keys.Signer, typ string, c Claims) (string, error) {
	if s == nil || s.Private == nil || s.Public == nil {
		return "", errors.New("token: mint: no signing key")
	}
	if s.Public.KID == "" {
		return "", errors.New("token: mint: the signing key has no kid")
	}
	switch typ {
	case TypAgent, TypResource, TypAuth:
	default:
		return "", fmt.Errorf("token: mint: unknown typ %q", typ)
	}
	if c.IssuedAt < 0 || c.NotBefore < 0 || c.Expiry < 0 ||
		c.IssuedAt > maxTime || c.NotBefore > maxTime || c.Expiry > maxTime {
		return "", errors.New("token: mint: time claims must be between 0 and 2^53")
	}
	if cnf := c.Confirmation; cnf != nil && cnf.Key == nil {
		if cnf.JWK == nil {
			return "", errors.New("token: mint: cnf without a key")
		}
		// Never put private key material (or an unsupported key) into a token.
		if _, err := keys.FromAny(cnf.JWK); err != nil {
			return "", fmt.Errorf("token: mint: cnf.jwk: %w", err)
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("token: mint: %w", err)
	}
	if len(c.Extra) > 0 {
		m := map[string]json.RawMessage{}
		if err := json.Unmarshal(payload, &m); err != nil {
			return "", fmt.Errorf("token: mint: %w", err)
		}
		for k, v := range c.Extra {
			if registeredClaims[k] {
				return "", fmt.Errorf("token: mint: extra claim %q collides with a registered claim", k)
			}
			if !json.Valid(v) {
				return "", fmt.Errorf("token: mint: extra claim %q is not valid JSON", k)
			}
			m[k] = v
		}
		if payload, err = json.Marshal(m); err != nil {
			return "", fmt.Errorf("token: mint: %w", err)
		}
	}

	alg := jwa.SignatureAlgorithm(s.Public.JWSAlg())
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, s.Public.KID); err != nil {
		return "", fmt.Errorf("token: mint: %w", err)
	}
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", fmt.Errorf("token: mint: %w", err)
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, s.Private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("token: mint: sign: %w", err)
	}
	if len(out) > MaxTokenBytes {
		return "", fmt.Errorf("token: mint: token is %d bytes, over the %d-byte limit", len(out), MaxTokenBytes)
	}
	return string(out), nil
}

// NewID returns a random 128-bit identifier in UUIDv4 form (for jti), from crypto/rand.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("token: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// VerifySignature verifies the JWS signature of a parsed token with k, using jwx/v2. It
// first requires the header alg to equal k.JWSAlg() (no alg/key-type confusion) and, when
// both the header kid and k.KID are set, that they are equal. It does not check claims;
// use the Verify* functions for that.
func (t *Token) VerifySignature(k *keys.PublicKey) error {
	if t == nil || t.signingInput == "" {
		return invalid("token was not produced by Parse")
	}
	if k == nil || k.Key == nil {
		return newErr(CodeUnknownKey, "no verification key")
	}
	want := k.JWSAlg()
	if t.Header.Alg != want {
		return invalid("header alg %q does not match the key type (%s)", t.Header.Alg, want)
	}
	if t.Header.Kid != "" && k.KID != "" && t.Header.Kid != k.KID {
		return invalid("header kid does not match the key's kid")
	}
	payload, err := jws.Verify([]byte(t.Raw), jws.WithCompact(), jws.WithKey(jwa.SignatureAlgorithm(want), k.Key))
	if err != nil {
		return &Error{Code: CodeInvalidToken, Msg: "signature does not verify", err: keys.ErrBadSignature}
	}
	// Defence in depth: jwx must have verified exactly the payload this package parsed.
	if !bytes.Equal(payload, t.payload) {
		return invalid("signature verified over a different payload")
	}
	return nil
}
