// Package httpsig implements the RFC 9421 HTTP Message Signatures profile AAuth uses:
// parsing the three request headers (Signature-Input, Signature, Signature-Key in both of
// its syntaxes), building the signature base in one function shared by signer and
// verifier, and the cheap policy checks (components, time window) that run before any
// crypto. It has no Caddy imports: the gateway, the auth server and the agent all use it.
package httpsig

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// Header names.
const (
	HeaderSignatureInput = "Signature-Input"
	HeaderSignature      = "Signature"
	HeaderSignatureKey   = "Signature-Key"
)

// Limits bound the work done on a request before any signature is checked.
type Limits struct {
	MaxSignatureInput int // bytes of the combined Signature-Input value
	MaxSignature      int // bytes of the combined Signature value
	MaxSignatureKey   int // bytes of the combined Signature-Key value (it may carry a JWT)
	MaxComponents     int // covered components
}

// DefaultLimits are sized for one Ed25519 or P-256 signature and an 8 KiB JWT.
var DefaultLimits = Limits{MaxSignatureInput: 1024, MaxSignature: 512, MaxSignatureKey: 9 * 1024, MaxComponents: 16}

// RequiredComponents are what every AAuth request signature must cover (draft-hardt-aauth
// §15.3; @query too when the request has a query, our choice).
var RequiredComponents = []string{"@method", "@authority", "@path", "signature-key"}

// Signature is one parsed request signature with its Signature-Key member.
type Signature struct {
	Label      string
	Components []string
	Created    int64
	Expires    int64 // 0 when absent
	Alg        string
	KeyID      string
	Value      []byte
	Key        SigKey
	params     string    // canonical serialisation of the inner list, for @signature-params
	keyEntry   *keyEntry // the cached Signature-Key value Key came from (InlineKey)
	input      inputList // the parsed Signature-Input; Components points into it
}

// signatures recycles the Signatures of refused requests: a flood of garbage or
// expired signatures is then parsed without allocating. A Signature that parse returns
// belongs to its caller and is never put back.
var signatures = sync.Pool{New: func() any { return new(Signature) }}

// discard zeroes sig (it must not keep the request's strings alive in the pool), puts
// it back and returns err.
func discard(sig *Signature, err error) error {
	*sig = Signature{}
	signatures.Put(sig)
	return err
}

// Present reports whether the request carries any of the three signature headers. The
// names are canonical (as net/http stores received fields): indexing the map directly
// is what Header.Values does after canonicalising the name.
func Present(h http.Header) bool {
	return len(h[HeaderSignatureInput]) > 0 || len(h[HeaderSignature]) > 0 || len(h[HeaderSignatureKey]) > 0
}

// FieldValue is the raw value of a header as RFC 9421 §2.1 sees it: each field line
// trimmed, several lines joined with ", ". ok is false when the header is absent.
func FieldValue(h http.Header, name string) (string, bool) {
	vs, ok := h[name]
	if !ok {
		vs = h.Values(name) // a name not in canonical form
	}
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) == 1 {
		return strings.TrimSpace(vs[0]), true
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strings.TrimSpace(v)
	}
	return strings.Join(parts, ", "), true
}

// Parse reads the three signature headers. Sizes are checked before any parsing; exactly
// one signature is accepted and its label must be the only member of all three headers.
func Parse(h http.Header, lim Limits) (*Signature, error) {
	return parse(h, lim, nil)
}

// ParseChecked is Parse with p.Check applied as soon as Signature-Input is read: a
// request whose created time is outside the window, or that covers too little, is
// refused before its Signature and Signature-Key are decoded (cheap checks first).
func (p Policy) ParseChecked(h http.Header, lim Limits, t Target, now time.Time) (*Signature, error) {
	return parse(h, lim, func(sig *Signature) error { return p.Check(sig, t, now) })
}

func parse(h http.Header, lim Limits, check func(*Signature) error) (*Signature, error) {
	in, okIn := FieldValue(h, HeaderSignatureInput)
	sv, okSig := FieldValue(h, HeaderSignature)
	kv, okKey := FieldValue(h, HeaderSignatureKey)
	switch {
	case !okIn || in == "":
		return nil, fail(CodeInvalidRequest, "missing Signature-Input header")
	case !okSig || sv == "":
		return nil, fail(CodeInvalidRequest, "missing Signature header")
	case !okKey || kv == "":
		return nil, fail(CodeInvalidRequest, "missing Signature-Key header")
	case len(in) > lim.MaxSignatureInput:
		return nil, fail(CodeInvalidRequest, "Signature-Input header is too large")
	case len(sv) > lim.MaxSignature:
		return nil, fail(CodeInvalidRequest, "Signature header is too large")
	case len(kv) > lim.MaxSignatureKey:
		return nil, fail(CodeInvalidRequest, "Signature-Key header is too large")
	}

	sig := signatures.Get().(*Signature)
	if err := sig.parseInput(in, lim); err != nil {
		return nil, discard(sig, err)
	}
	if check != nil {
		if err := check(sig); err != nil {
			return nil, discard(sig, err)
		}
	}
	val, err := parseSignatureValue(sv, sig.Label)
	if err != nil {
		return nil, discard(sig, err)
	}
	sig.Value = val
	// A Signature-Key value is the same on every request of one key (hwk, jwks_uri) or
	// token (jwt): its parse is cached by its exact bytes.
	e, err := sigKeys.parse(kv)
	if err != nil {
		return nil, discard(sig, err)
	}
	if sig.Key, err = KeyFor(e.members, sig.Label); err != nil {
		return nil, discard(sig, err)
	}
	sig.keyEntry = e
	return sig, nil
}

func (sig *Signature) parseInput(in string, lim Limits) error {
	il := &sig.input
	if err := il.parse(in); err != nil {
		return err
	}
	sig.Label = il.label
	if len(il.items) > lim.MaxComponents {
		return fail(CodeInvalidSignature, "too many covered components")
	}
	for i, name := range il.items {
		if name == "" || !isLower(name) {
			return fail(CodeInvalidSignature, "component identifiers must be lowercase")
		}
		for _, prev := range il.items[:i] {
			if prev == name {
				return fail(CodeInvalidSignature, "component %q is covered twice", name)
			}
		}
	}
	sig.Components = il.items
	for _, p := range il.params {
		if err := sig.setParam(p); err != nil {
			return err
		}
	}
	if sig.Created == 0 {
		return fail(CodeInvalidSignature, "created is required")
	}
	// @signature-params is the canonical serialisation of what was received (RFC 9421 §2.3).
	var err error
	sig.params, err = il.serialization()
	return err
}

// setParam applies one signature parameter (RFC 9421 §2.3); any other is refused.
// notPositive is the refusal of a non-integer created or expires (fixed messages: a
// flood of garbage need not format them).
func notPositive(name string) *Error {
	switch name {
	case "created":
		return errCreatedNotPositive
	case "expires":
		return errExpiresNotPositive
	}
	return fail(CodeInvalidSignature, "%s must be a positive integer", name)
}

// Refusals that carry nothing of the request: one value each (callers only read errors).
var (
	errCreatedNotPositive = &Error{Code: CodeInvalidSignature, Msg: "created must be a positive integer"}
	errExpiresNotPositive = &Error{Code: CodeInvalidSignature, Msg: "expires must be a positive integer"}
	errOutsideWindow      = &Error{Code: CodeInvalidSignature, Msg: fmt.Sprintf("created is outside the allowed window of %s", DefaultWindow)}
)

func (sig *Signature) setParam(p inputParam) error {
	switch p.name {
	case "created", "expires":
		if p.kind != kindInteger || p.num <= 0 || p.num > 1<<53 {
			return notPositive(p.name)
		}
		if p.name == "created" {
			sig.Created = p.num
		} else {
			sig.Expires = p.num
		}
	case "alg", "keyid", "nonce", "tag":
		if p.kind != kindString {
			return fail(CodeInvalidSignature, "%s must be a string", p.name)
		}
		switch p.name {
		case "alg":
			sig.Alg = p.str
		case "keyid":
			sig.KeyID = p.str
		}
	default:
		return fail(CodeInvalidSignature, "unknown signature parameter %q", p.name)
	}
	return nil
}

// isLower reports whether s has no upper-case letter (as s == strings.ToLower(s), without
// the copy).
func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			return s == strings.ToLower(s)
		}
	}
	return true
}

// parseSignatureValue accepts RFC 8941 byte sequences in the standard base64 alphabet and
// the base64url alphabet the draft's 2026-03 reference implementation sends, padded or
// not. It needs its own small parser because a strict structured-field parser refuses "-"
// and "_".
func parseSignatureValue(sv, label string) ([]byte, error) {
	var out []byte
	found := false
	for member := range strings.SplitSeq(sv, ",") {
		member = strings.Trim(member, " \t")
		eq := strings.IndexByte(member, '=')
		if eq <= 0 {
			return nil, fail(CodeInvalidSignature, "malformed Signature header")
		}
		name, rest := member[:eq], member[eq+1:]
		if (&scan{s: name}).key() != name {
			return nil, fail(CodeInvalidSignature, "malformed Signature label")
		}
		if name != label {
			return nil, fail(CodeInvalidSignature, "Signature has a member %q that Signature-Input does not declare", name)
		}
		if len(rest) < 2 || rest[0] != ':' || rest[len(rest)-1] != ':' {
			return nil, fail(CodeInvalidSignature, "Signature value must be a byte sequence :…:")
		}
		b, err := DecodeBase64(rest[1 : len(rest)-1])
		if err != nil {
			return nil, fail(CodeInvalidSignature, "Signature value is not valid base64")
		}
		out, found = b, true // last member wins, as for a structured dictionary
	}
	if !found {
		return nil, fail(CodeInvalidSignature, "Signature has no member %q", label)
	}
	if len(out) != 64 {
		return nil, fail(CodeInvalidSignature, "signature must be 64 bytes, got %d", len(out))
	}
	return out, nil
}

// DecodeBase64 decodes standard base64 or base64url, with or without padding, but not a
// mix of the two alphabets.
func DecodeBase64(s string) ([]byte, error) {
	trimmed := strings.TrimRight(s, "=")
	if len(s)-len(trimmed) > 2 {
		return nil, base64.CorruptInputError(len(trimmed))
	}
	std := strings.ContainsAny(trimmed, "+/")
	url := strings.ContainsAny(trimmed, "-_")
	if std && url {
		return nil, base64.CorruptInputError(0)
	}
	if trimmed != s && len(s)%4 != 0 {
		return nil, base64.CorruptInputError(len(s))
	}
	if url {
		return base64.RawURLEncoding.Strict().DecodeString(trimmed)
	}
	return base64.RawStdEncoding.Strict().DecodeString(trimmed)
}

// Target is the request as the verifier (or signer) sees it. Path and Query are the
// escaped forms as received, before any rewrite.
type Target struct {
	Method    string
	Authority string // host[:port], lowercase, default port removed
	Path      string // escaped path; empty means "/"
	Query     string // raw query without "?"
	HasQuery  bool
	Header    http.Header
}

// Base builds the RFC 9421 signature base for the covered components of sig. Signer and
// verifier both call it, so the two can never disagree on the bytes.
func Base(sig *Signature, t Target) ([]byte, error) {
	var vals [16]string // DefaultLimits.MaxComponents: one allocation for the base alone
	values := vals[:0]
	size := len(`"@signature-params": `) + len(sig.params)
	for _, c := range sig.Components {
		v, err := componentValue(c, t)
		if err != nil {
			return nil, err
		}
		values = append(values, v)
		size += len(c) + len(v) + len(`"": `+"\n")
	}
	b := make([]byte, 0, size)
	for i, c := range sig.Components {
		b = append(b, '"')
		b = append(b, c...)
		b = append(b, `": `...)
		b = append(b, values[i]...)
		b = append(b, '\n')
	}
	b = append(b, `"@signature-params": `...)
	b = append(b, sig.params...)
	return b, nil
}

func componentValue(c string, t Target) (string, error) {
	switch c {
	case "@method":
		return t.Method, nil
	case "@authority":
		return t.Authority, nil
	case "@path":
		if t.Path == "" {
			return "/", nil
		}
		return t.Path, nil
	case "@query":
		return "?" + t.Query, nil
	case "host":
		// Go never shows Host as a field (and HTTP/2 has none): cover @authority instead.
		return "", fail(CodeInvalidSignature, "the host field cannot be covered; cover @authority")
	}
	if strings.HasPrefix(c, "@") {
		return "", fail(CodeInvalidSignature, "derived component %q is not supported", c)
	}
	v, ok := FieldValue(t.Header, canonicalName(c))
	if !ok {
		return "", fail(CodeInvalidSignature, "covered header %q is not present", c)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fail(CodeInvalidSignature, "covered header %q contains a line break", c)
	}
	return v, nil
}

// canonicalName is the canonical header key of a covered field; the fields AAuth
// signatures cover are spelled out so that looking them up does not allocate.
func canonicalName(c string) string {
	switch c {
	case "signature-key":
		return HeaderSignatureKey
	case "content-type":
		return "Content-Type"
	case "content-digest":
		return "Content-Digest"
	}
	return c // http.Header canonicalises it
}

// Policy holds the cheap checks made before any key lookup or crypto.
type Policy struct {
	Window time.Duration // allowed |now - created|; 0 means DefaultWindow
	Extra  []string      // components demanded in addition to RequiredComponents
}

// DefaultWindow is the allowed |now - created| of a signature when none is configured.
const DefaultWindow = 60 * time.Second

// EffectiveWindow is p.Window, or DefaultWindow when it is not set.
func (p Policy) EffectiveWindow() time.Duration {
	if p.Window <= 0 {
		return DefaultWindow
	}
	return p.Window
}

// Check enforces the covered components (RequiredComponents) and the time window of the
// created and expires parameters (RFC 9421 §2.3; draft-hardt-aauth §15.4) at now.
func (p Policy) Check(sig *Signature, t Target, now time.Time) error {
	if !sig.coversAll(RequiredComponents) || !sig.coversAll(p.Extra) || t.HasQuery && !sig.Covers("@query") {
		required := append(append([]string(nil), RequiredComponents...), p.Extra...)
		if t.HasQuery {
			required = append(required, "@query")
		}
		var missing []string
		for _, r := range required {
			if !sig.Covers(r) {
				missing = append(missing, r)
			}
		}
		e := fail(CodeInvalidSignature, "signature does not cover %s", strings.Join(missing, ", "))
		e.RequiredComponents = required
		return e
	}
	window := p.EffectiveWindow()
	created := time.Unix(sig.Created, 0)
	if d := now.Sub(created); d > window || d < -window {
		if window == DefaultWindow {
			return errOutsideWindow
		}
		return fail(CodeInvalidSignature, "created is outside the allowed window of %s", window)
	}
	if sig.Expires != 0 {
		if sig.Expires < sig.Created {
			return fail(CodeInvalidSignature, "expires is before created")
		}
		if now.Unix() >= sig.Expires {
			return fail(CodeInvalidSignature, "signature has expired")
		}
	}
	return nil
}

func (sig *Signature) coversAll(cs []string) bool {
	for _, c := range cs {
		if !sig.Covers(c) {
			return false
		}
	}
	return true
}

// Covers reports whether the component is covered.
func (sig *Signature) Covers(c string) bool {
	for _, x := range sig.Components {
		if x == c {
			return true
		}
	}
	return false
}

// Verify checks the signature over base with pub. An alg parameter, when present, must
// name the algorithm the key implies (RFC 9421 §3.3: Ed25519 or ecdsa-p256-sha256; other
// algorithms are refused, our choice).
func Verify(sig *Signature, base []byte, pub *keys.PublicKey) error {
	if sig.Alg != "" && sig.Alg != pub.Alg() {
		return fail(CodeUnsupportedAlgorithm, "alg %q does not match the %s key", sig.Alg, pub.Alg())
	}
	if err := pub.Verify(base, sig.Value); err != nil {
		return fail(CodeInvalidSignature, "signature verification failed")
	}
	return nil
}
