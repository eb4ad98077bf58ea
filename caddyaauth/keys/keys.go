// Package keys holds the public and private signing keys AAuth uses for HTTP message
// signatures and JWTs: Ed25519 and ECDSA P-256 only (our choice: RFC 9421 §3.3 and RFC
// 7518 allow more). It converts between JWK members and Go crypto keys once, computes RFC
// 7638 thumbprints, and signs and verifies raw signatures (Ed25519, or ECDSA P-256 as raw
// r‖s per RFC 9421 §3.3.4).
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Algorithm names as RFC 9421 registers them.
const (
	AlgEd25519   = "ed25519"
	AlgECDSAP256 = "ecdsa-p256-sha256"
)

// JWS algorithm names for tokens signed with these keys.
const (
	JWSEdDSA = "EdDSA"
	JWSES256 = "ES256"
)

var b64 = base64.RawURLEncoding

// ErrInvalidKey is wrapped by every key-material error.
var ErrInvalidKey = errors.New("invalid key")

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

func keyErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidKey, fmt.Sprintf(format, a...))
}

// PublicKey is a verified-shape public key with its derived facts computed once.
type PublicKey struct {
	Key        crypto.PublicKey // ed25519.PublicKey or *ecdsa.PublicKey (P-256)
	KID        string           // key id, when one was given
	Thumbprint string           // RFC 7638 SHA-256 thumbprint, base64url without padding
}

// Alg is the RFC 9421 algorithm name inferred from the key type.
func (k *PublicKey) Alg() string {
	if _, ok := k.Key.(*ecdsa.PublicKey); ok {
		return AlgECDSAP256
	}
	return AlgEd25519
}

// JWSAlg is the JWS "alg" a token signed by this key must carry.
func (k *PublicKey) JWSAlg() string {
	if _, ok := k.Key.(*ecdsa.PublicKey); ok {
		return JWSES256
	}
	return JWSEdDSA
}

// Verify checks sig over msg: Ed25519 (64 bytes) or ECDSA P-256 SHA-256 as raw r‖s (64 bytes).
func (k *PublicKey) Verify(msg, sig []byte) error {
	switch pub := k.Key.(type) {
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, sig) {
			return ErrBadSignature
		}
		return nil
	case *ecdsa.PublicKey:
		if len(sig) != 64 {
			return ErrBadSignature
		}
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		h := sha256.Sum256(msg)
		if !ecdsa.Verify(pub, h[:], r, s) {
			return ErrBadSignature
		}
		return nil
	}
	return keyErr("unsupported key type %T", k.Key)
}

// Members returns the public JWK members (kty, crv, x[, y][, kid]) as a JSON-ready map.
func (k *PublicKey) Members() map[string]any {
	m := map[string]any{}
	switch pub := k.Key.(type) {
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64.EncodeToString(pub)
	case *ecdsa.PublicKey:
		x, y := ecPoint(pub)
		m["kty"], m["crv"], m["x"], m["y"] = "EC", "P-256", b64.EncodeToString(x), b64.EncodeToString(y)
	}
	if k.KID != "" {
		m["kid"] = k.KID
	}
	return m
}

// MarshalJSON renders the public JWK.
func (k *PublicKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.Members()) }

// Equal reports whether two keys are the same public key.
func (k *PublicKey) Equal(o *PublicKey) bool {
	return k != nil && o != nil && k.Thumbprint == o.Thumbprint
}

func ecPoint(pub *ecdsa.PublicKey) (x, y []byte) {
	b, err := pub.Bytes() // 0x04 || X || Y, validated at construction
	if err != nil || len(b) != 65 {
		return nil, nil
	}
	return b[1:33], b[33:]
}

// New wraps a Go public key (ed25519.PublicKey or P-256 *ecdsa.PublicKey).
func New(pub crypto.PublicKey, kid string) (*PublicKey, error) {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, keyErr("Ed25519 key must be 32 bytes")
		}
		tp := thumbprint(`{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(p) + `"}`)
		return &PublicKey{Key: append(ed25519.PublicKey(nil), p...), KID: kid, Thumbprint: tp}, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, keyErr("only the P-256 curve is supported")
		}
		x, y := ecPoint(p)
		if x == nil {
			return nil, keyErr("invalid P-256 point")
		}
		tp := thumbprint(`{"crv":"P-256","kty":"EC","x":"` + b64.EncodeToString(x) + `","y":"` + b64.EncodeToString(y) + `"}`)
		return &PublicKey{Key: p, KID: kid, Thumbprint: tp}, nil
	}
	return nil, keyErr("unsupported key type %T (only Ed25519 and P-256)", pub)
}

func thumbprint(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return b64.EncodeToString(sum[:])
}

// decodeCoord decodes a strict base64url (no padding) value of exactly n bytes.
func decodeCoord(name, v string, n int) ([]byte, error) {
	if v == "" {
		return nil, keyErr("missing %q", name)
	}
	if strings.ContainsAny(v, "=+/") {
		return nil, keyErr("%q must be base64url without padding", name)
	}
	b, err := b64.Strict().DecodeString(v)
	if err != nil {
		return nil, keyErr("%q is not base64url", name)
	}
	if len(b) != n {
		return nil, keyErr("%q must be %d bytes, got %d", name, n, len(b))
	}
	return b, nil
}

// FromMembers builds a public key from JWK members. It accepts OKP/Ed25519 and EC/P-256
// only, and refuses private parts ("d") and symmetric or RSA keys. "alg", when present,
// must agree with the key type. Unknown members are ignored.
func FromMembers(m map[string]string) (*PublicKey, error) {
	if _, ok := m["d"]; ok {
		return nil, keyErr("private key material (d) is not allowed")
	}
	var pk *PublicKey
	switch m["kty"] {
	case "OKP":
		if m["crv"] != "Ed25519" {
			return nil, keyErr("OKP curve %q is not supported (only Ed25519)", m["crv"])
		}
		x, err := decodeCoord("x", m["x"], ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		pk, err = New(ed25519.PublicKey(x), m["kid"])
		if err != nil {
			return nil, err
		}
	case "EC":
		if m["crv"] != "P-256" {
			return nil, keyErr("EC curve %q is not supported (only P-256)", m["crv"])
		}
		x, err := decodeCoord("x", m["x"], 32)
		if err != nil {
			return nil, err
		}
		y, err := decodeCoord("y", m["y"], 32)
		if err != nil {
			return nil, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, keyErr("EC point is not on P-256")
		}
		pk, err = New(pub, m["kid"])
		if err != nil {
			return nil, err
		}
	case "":
		return nil, keyErr("missing kty")
	default:
		return nil, keyErr("kty %q is not supported (only OKP and EC)", m["kty"])
	}
	if alg, ok := m["alg"]; ok && alg != pk.JWSAlg() && alg != pk.Alg() {
		return nil, keyErr("alg %q does not match the key type", alg)
	}
	return pk, nil
}

// FromJSON parses one public JWK object. String members are used; others are ignored
// except "d", which is refused, and "use"/"key_ops", which must allow verification.
func FromJSON(b []byte) (*PublicKey, error) {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, keyErr("JWK is not a JSON object")
	}
	return FromAny(raw)
}

// FromAny builds a key from a decoded JSON object (as found in cnf.jwk or a JWKS).
func FromAny(raw map[string]any) (*PublicKey, error) {
	m := make(map[string]string, len(raw))
	for k, v := range raw {
		switch k {
		case "d", "p", "q", "dp", "dq", "qi", "k":
			return nil, keyErr("private or symmetric key material (%s) is not allowed", k)
		case "use":
			if s, _ := v.(string); s != "sig" {
				return nil, keyErr("key use %v is not sig", v)
			}
		case "key_ops":
			ops, _ := v.([]any)
			okVerify := false
			for _, op := range ops {
				if op == "verify" {
					okVerify = true
				}
			}
			if !okVerify {
				return nil, keyErr("key_ops does not allow verify")
			}
		}
		if s, ok := v.(string); ok {
			m[k] = s
		} else if k == "kty" || k == "crv" || k == "x" || k == "y" || k == "kid" || k == "alg" {
			return nil, keyErr("member %q must be a string", k)
		}
	}
	return FromMembers(m)
}

// Signer is a private signing key with its public half.
type Signer struct {
	Private crypto.Signer // ed25519.PrivateKey or *ecdsa.PrivateKey (P-256)
	Public  *PublicKey
}

// NewSigner wraps a private key.
func NewSigner(priv crypto.Signer, kid string) (*Signer, error) {
	pub, err := New(priv.Public(), kid)
	if err != nil {
		return nil, err
	}
	return &Signer{Private: priv, Public: pub}, nil
}

// Generate makes a fresh key: alg is AlgEd25519 (default when empty) or AlgECDSAP256.
func Generate(alg, kid string) (*Signer, error) {
	switch alg {
	case "", AlgEd25519, "Ed25519", JWSEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return NewSigner(priv, kid)
	case AlgECDSAP256, "P-256", JWSES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return NewSigner(priv, kid)
	}
	return nil, keyErr("unknown algorithm %q (use ed25519 or ecdsa-p256-sha256)", alg)
}

// Sign signs msg: Ed25519, or ECDSA P-256 SHA-256 as raw r‖s.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	switch priv := s.Private.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, msg), nil
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(msg)
		r, sv, err := ecdsa.Sign(rand.Reader, priv, h[:])
		if err != nil {
			return nil, err
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		sv.FillBytes(out[32:])
		return out, nil
	}
	return nil, keyErr("unsupported private key %T", s.Private)
}

// MarshalPrivateJWK renders the private key as a JWK (for storage; never log it).
func (s *Signer) MarshalPrivateJWK() ([]byte, error) {
	m := s.Public.Members()
	switch priv := s.Private.(type) {
	case ed25519.PrivateKey:
		m["d"] = b64.EncodeToString(priv.Seed())
	case *ecdsa.PrivateKey:
		d, err := priv.Bytes()
		if err != nil {
			return nil, err
		}
		m["d"] = b64.EncodeToString(d)
	default:
		return nil, keyErr("unsupported private key %T", s.Private)
	}
	return json.Marshal(m)
}

// ParsePrivateJWK reads a private JWK written by MarshalPrivateJWK (or any OKP/Ed25519 or
// EC/P-256 private JWK).
func ParsePrivateJWK(b []byte) (*Signer, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, keyErr("private JWK is not a JSON object")
	}
	d, _ := m["d"].(string)
	kid, _ := m["kid"].(string)
	kty, _ := m["kty"].(string)
	crv, _ := m["crv"].(string)
	switch {
	case kty == "OKP" && crv == "Ed25519":
		priv, err := decodeCoord("d", d, ed25519.SeedSize)
		if err != nil {
			return nil, err
		}
		s, err := NewSigner(ed25519.NewKeyFromSeed(priv), kid)
		if err != nil {
			return nil, err
		}
		return s, checkPublicMatches(m, s)
	case kty == "EC" && crv == "P-256":
		db, err := decodeCoord("d", d, 32)
		if err != nil {
			return nil, err
		}
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), db)
		if err != nil {
			return nil, keyErr("invalid P-256 private scalar")
		}
		s, err := NewSigner(priv, kid)
		if err != nil {
			return nil, err
		}
		return s, checkPublicMatches(m, s)
	}
	return nil, keyErr("unsupported private JWK (kty %q, crv %q)", kty, crv)
}

func checkPublicMatches(m map[string]any, s *Signer) error {
	want := s.Public.Members()
	for _, k := range []string{"x", "y"} {
		if v, ok := m[k]; ok && v != want[k] {
			return keyErr("public member %q does not match the private key", k)
		}
	}
	return nil
}
