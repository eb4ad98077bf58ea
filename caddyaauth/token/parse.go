package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// maxTime is the largest accepted exp/iat/nbf value (2^53, the largest integer every JSON
// implementation represents exactly).
const maxTime = 1 << 53

// maxJSONDepth bounds nesting in header and payload.
const maxJSONDepth = 16

var b64 = base64.RawURLEncoding.Strict()

// Header parameters that are refused outright. None of them is needed by AAuth, and
// several would make a verifier fetch or trust attacker-chosen keys (RFC 8725 §3.10) or
// change how the signing input is computed (b64, RFC 7797).
var refusedHeaders = []string{"crit", "jku", "jwk", "x5u", "x5c", "b64", "cty", "zip", "enc"}

type parseOpts struct {
	typ        string // expected typ (compared case-insensitively, optional "application/")
	anyTyp     bool   // do not check typ (test vectors without one)
	rawPayload bool   // payload need not be a JSON claims object (test vectors)
}

// Parse checks the structure, header and claim types of a compact token WITHOUT verifying
// its signature or any claim value; see the package comment for the rules. wantTyp is
// the expected header typ (TypAgent, TypResource or TypAuth).
func Parse(raw, wantTyp string) (*Token, error) {
	return parse(raw, parseOpts{typ: wantTyp})
}

func parse(raw string, po parseOpts) (*Token, error) {
	if !po.anyTyp && po.typ == "" {
		return nil, invalid("no expected typ given")
	}
	if raw == "" {
		return nil, invalid("empty token")
	}
	if len(raw) > MaxTokenBytes {
		return nil, invalid("token is larger than %d bytes", MaxTokenBytes)
	}
	if raw[0] == '{' {
		return nil, invalid("JWS JSON serialization is not accepted (compact only)")
	}
	if n := strings.Count(raw, "."); n != 2 {
		return nil, invalid("compact serialization needs exactly 3 segments, got %d", n+1)
	}
	i := strings.IndexByte(raw, '.')
	j := i + 1 + strings.IndexByte(raw[i+1:], '.')
	segs := [3]string{raw[:i], raw[i+1 : j], raw[j+1:]}
	var dec [3][]byte
	for n, s := range segs {
		b, err := decodeSegment(s)
		if err != nil {
			return nil, invalid("%s segment: %s", segName[n], err.Error())
		}
		dec[n] = b
	}

	t := &Token{Raw: raw, signingInput: raw[:j], payload: dec[1], signature: dec[2]}
	if err := parseHeader(dec[0], po, &t.Header); err != nil {
		return nil, err
	}
	if len(t.signature) != 64 {
		// Both EdDSA (Ed25519) and ES256 (raw r‖s) signatures are exactly 64 bytes.
		return nil, invalid("signature must be 64 bytes for %s, got %d", t.Header.Alg, len(t.signature))
	}
	if !po.rawPayload {
		if err := parseClaims(t.payload, &t.Claims); err != nil {
			return nil, err
		}
	}
	return t, nil
}

var segName = [3]string{"header", "payload", "signature"}

func decodeSegment(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	for k := 0; k < len(s); k++ {
		c := s[k]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, errors.New("not unpadded base64url (bad character)")
		}
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, errors.New("not canonical base64url")
	}
	return b, nil
}

func parseHeader(b []byte, po parseOpts, h *Header) error {
	m, err := strictObject(b)
	if err != nil {
		return invalid("header: %s", err.Error())
	}
	for _, name := range refusedHeaders {
		if _, ok := m[name]; ok {
			return invalid("header parameter %q is not accepted", name)
		}
	}
	alg, ok, err := optString(m, "alg")
	if err != nil || !ok {
		return invalid("header alg is missing or not a string")
	}
	if alg != keys.JWSEdDSA && alg != keys.JWSES256 {
		return invalid("header alg %q is not accepted (only EdDSA and ES256)", truncate(alg))
	}
	kid, ok, err := optString(m, "kid")
	if err != nil || !ok || kid == "" {
		return invalid("header kid is missing or not a non-empty string")
	}
	typ, ok, err := optString(m, "typ")
	if err != nil {
		return invalid("header typ is not a string")
	}
	if !po.anyTyp {
		if !ok {
			return invalid("header typ is missing (want %s)", po.typ)
		}
		if !typMatches(typ, po.typ) {
			return invalid("header typ %q is not %s", truncate(typ), po.typ)
		}
	}
	*h = Header{Alg: alg, Kid: kid, Typ: typ}
	return nil
}

// typMatches compares JOSE typ values case-insensitively, ignoring an "application/"
// prefix on the received value (RFC 7515 §4.1.9).
func typMatches(got, want string) bool {
	const prefix = "application/"
	if len(got) > len(prefix) && strings.EqualFold(got[:len(prefix)], prefix) {
		got = got[len(prefix):]
	}
	return strings.EqualFold(got, want)
}

// truncate shortens attacker-chosen strings quoted in error messages.
func truncate(s string) string {
	const n = 32
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func parseClaims(b []byte, c *Claims) error {
	m, err := strictObject(b)
	if err != nil {
		return invalid("payload: %s", err.Error())
	}
	for name, v := range m {
		var err error
		switch name {
		case "iss":
			c.Issuer, err = jsonString(v)
		case "sub":
			c.Subject, err = jsonString(v)
		case "jti":
			c.ID, err = jsonString(v)
		case "agent":
			c.Agent, err = jsonString(v)
		case "agent_jkt":
			c.AgentJKT, err = jsonString(v)
		case "scope":
			c.Scope, err = jsonString(v)
		case "txn":
			c.Txn, err = jsonString(v)
		case "agent_delegate":
			c.AgentDelegate, err = jsonString(v)
		case "aud":
			c.Audience, c.audArray, err = decodeAudience(v)
		case "iat":
			c.IssuedAt, err = jsonTime(v)
		case "nbf":
			c.NotBefore, err = jsonTime(v)
		case "exp":
			c.Expiry, err = jsonTime(v)
		case "cnf":
			c.Confirmation, err = decodeConfirmation(v)
		default:
			if c.Extra == nil {
				c.Extra = map[string]json.RawMessage{}
			}
			c.Extra[name] = v
		}
		if err != nil {
			return invalid("claim %q: %s", name, err.Error())
		}
	}
	return nil
}

// strictObject decodes a JSON object after checking that it is valid UTF-8, a single
// object, not nested deeper than maxJSONDepth, and free of duplicate member names at any
// level. Members are returned by their exact names.
func strictObject(b []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	if err := checkNoDuplicates(b); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// checkNoDuplicates checks that b is a single valid JSON object with no duplicate member
// names in any object (names compared after unescaping) and nesting at most maxJSONDepth.
// It validates with json.Valid and then walks the bytes with a small scanner, which is
// much cheaper than json.Decoder.Token.
func checkNoDuplicates(b []byte) error {
	if !json.Valid(b) {
		return errors.New("malformed JSON")
	}
	d := dupScanner{b: b}
	d.ws()
	if d.i >= len(b) || b[d.i] != '{' {
		return errors.New("not a JSON object")
	}
	return d.value(0)
}

// dupScanner walks JSON already accepted by json.Valid.
type dupScanner struct {
	b []byte
	i int
}

func (d *dupScanner) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// str consumes a string starting at the opening quote and returns its raw contents.
func (d *dupScanner) str() (raw []byte, escaped bool) {
	d.i++ // opening quote
	start := d.i
	for d.b[d.i] != '"' {
		if d.b[d.i] == '\\' {
			escaped = true
			d.i++
		}
		d.i++
	}
	raw = d.b[start:d.i]
	d.i++ // closing quote
	return raw, escaped
}

func (d *dupScanner) value(depth int) error {
	d.ws()
	switch d.b[d.i] {
	case '{':
		return d.object(depth + 1)
	case '[':
		if depth+1 > maxJSONDepth {
			return errors.New("JSON nested too deeply")
		}
		d.i++
		for {
			d.ws()
			if d.b[d.i] == ']' {
				d.i++
				return nil
			}
			if err := d.value(depth + 1); err != nil {
				return err
			}
			d.ws()
			if d.b[d.i] == ',' {
				d.i++
			}
		}
	case '"':
		d.str()
	default: // number, true, false, null
		for d.i < len(d.b) {
			switch d.b[d.i] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return nil
			}
			d.i++
		}
	}
	return nil
}

func (d *dupScanner) object(depth int) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deeply")
	}
	d.i++ // '{'
	var small []string
	var big map[string]struct{}
	for {
		d.ws()
		if d.b[d.i] == '}' {
			d.i++
			return nil
		}
		raw, escaped := d.str()
		name := string(raw)
		if escaped {
			var s string
			if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s); err != nil {
				return errors.New("malformed JSON")
			}
			name = s
		}
		dup := false
		if big != nil {
			_, dup = big[name]
			big[name] = struct{}{}
		} else {
			dup = slices.Contains(small, name)
			small = append(small, name)
			if len(small) > 16 {
				big = make(map[string]struct{}, 2*len(small))
				for _, n := range small {
					big[n] = struct{}{}
				}
			}
		}
		if dup {
			return errors.New("duplicate member " + strconv.Quote(truncate(name)))
		}
		d.ws()
		d.i++ // ':'
		if err := d.value(depth); err != nil {
			return err
		}
		d.ws()
		if d.b[d.i] == ',' {
			d.i++
		}
	}
}

func optString(m map[string]json.RawMessage, name string) (string, bool, error) {
	v, ok := m[name]
	if !ok {
		return "", false, nil
	}
	s, err := jsonString(v)
	return s, true, err
}

func jsonString(v json.RawMessage) (string, error) {
	if len(v) == 0 || v[0] != '"' {
		return "", errors.New("must be a string")
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", errors.New("must be a string")
	}
	return s, nil
}

// jsonTime accepts a JSON integer 0 ≤ n ≤ 2^53 written without fraction or exponent.
func jsonTime(v json.RawMessage) (int64, error) {
	if len(v) == 0 || len(v) > 16 {
		return 0, errors.New("must be an integer between 0 and 2^53")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errors.New("must be an integer between 0 and 2^53")
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n > maxTime {
		return 0, errors.New("must be an integer between 0 and 2^53")
	}
	return n, nil
}

// decodeAudience accepts a string or a non-empty array of strings.
func decodeAudience(v []byte) (Audience, bool, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		s, err := jsonString(v)
		if err != nil {
			return nil, false, err
		}
		return Audience{s}, false, nil
	}
	if len(v) == 0 || v[0] != '[' {
		return nil, false, errors.New("must be a string or an array of strings")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil || len(raw) == 0 {
		return nil, false, errors.New("must be a string or a non-empty array of strings")
	}
	out := make(Audience, 0, len(raw))
	for _, r := range raw {
		s, err := jsonString(r)
		if err != nil {
			return nil, false, errors.New("array members must be strings")
		}
		out = append(out, s)
	}
	return out, true, nil
}

// decodeConfirmation reads a cnf object. When it has a "jwk" member, that member must be
// a public Ed25519 or P-256 JWK (keys.FromAny refuses "d" and other key types).
func decodeConfirmation(v []byte) (*Confirmation, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil || m == nil {
		return nil, errors.New("must be a JSON object")
	}
	c := &Confirmation{}
	jwk, ok := m["jwk"]
	if !ok {
		return c, nil
	}
	var members map[string]any
	if err := json.Unmarshal(jwk, &members); err != nil || members == nil {
		return nil, errors.New("jwk must be a JSON object")
	}
	k, err := keys.FromAny(members)
	if err != nil {
		return nil, errors.New("jwk: " + err.Error())
	}
	c.JWK, c.Key = members, k
	return c, nil
}
