package reqverify

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// BodyComponents are the covered components that bind a body to its signature: the
// media type and the RFC 9530 Content-Digest.
var BodyComponents = []string{"content-type", "content-digest"}

// BodyPolicy is how an endpoint reads the body of a request whose signature verified.
type BodyPolicy struct {
	// Max caps the body, in bytes (must be positive). A Content-Length above it is
	// refused without reading.
	Max int64
	// Demanded are the components the route demands beyond the mandatory ones
	// (BodyCheckNeeded): with content-digest the digest is checked even when a signature
	// that lacks it got through.
	Demanded []string
	// RequireSigned demands that the signature cover content-type and content-digest
	// (BodyComponents); a body that is not so bound is refused with a 401 that lists the
	// required components.
	RequireSigned bool
}

// BodyError is a body refused before or while it was decoded: a 400 invalid_request
// whose text is safe to return (it never contains body values).
type BodyError struct{ Msg string }

func (e *BodyError) Error() string { return e.Msg }

// ReadSignedBody is the one path by which an endpoint reads a signed body. Call it only
// after Verify succeeded (reading the body sends 100 Continue, which an unauthenticated
// client must not get), and before the signature is spent (a replay record, a pending
// URL's used-signature record), so a copy of the request with a swapped body cannot use
// up the agent's signature. A covered Content-Digest is always recomputed over the
// bytes read (RFC 9421 §7.2.8; RFC 9530 §6). The body is put back into r.Body.
//
// Errors: *Error (a 401: digest missing, malformed or wrong, or RequireSigned not met,
// with RequiredComponents), ErrBodyTooLarge (a 413), or a read error (a 400). Refusal
// maps them to a status and an error body.
func ReadSignedBody(r *http.Request, sig *httpsig.Signature, p BodyPolicy) ([]byte, error) {
	if BodyCheckNeeded(sig, p.Demanded) {
		if err := CheckBody(r, p.Max); err != nil {
			return nil, err
		}
	}
	body, err := readBody(r, p.Max)
	if err != nil {
		return nil, err
	}
	putBack(r, body)
	if p.RequireSigned && !(sig != nil && sig.Covers("content-digest") && sig.Covers("content-type")) {
		required := append(append([]string(nil), httpsig.RequiredComponents...), BodyComponents...)
		return nil, &Error{Code: wire.CodeInvalidSignature, Msg: "the signature must cover content-type and content-digest of the body", RequiredComponents: required}
	}
	return body, nil
}

// Refusal maps an error of Verify, CheckBody, ReadSignedBody or DecodeJSON to the status
// and error body an endpoint answers: *Error → 401 with its code (and required
// components), *UnavailableError → 503 temporarily_unavailable (the caller adds
// Retry-After), ErrBodyTooLarge → 413, *BodyError → 400 invalid_request. ok is false for
// any other error: a server fault for Verify, an unreadable body (400) for the others.
func Refusal(err error) (status int, e wire.Error, ok bool) {
	if ve, isVE := err.(*Error); isVE {
		// The usual refusal, unwrapped (an *Error wraps nothing): no errors.As needed.
		return http.StatusUnauthorized, wire.Error{Code: ve.Code, Description: ve.Msg, RequiredComponents: ve.RequiredComponents}, true
	}
	var ve *Error
	var be *BodyError
	var ue *UnavailableError
	switch {
	case errors.As(err, &ue):
		status, e := unavailableRefusal(ue)
		return status, e, true
	case errors.As(err, &ve):
		return http.StatusUnauthorized, wire.Error{Code: ve.Code, Description: ve.Msg, RequiredComponents: ve.RequiredComponents}, true
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge, wire.Error{Code: wire.CodeInvalidRequest, Description: "request body is too large"}, true
	case errors.As(err, &be):
		return http.StatusBadRequest, wire.Error{Code: wire.CodeInvalidRequest, Description: be.Msg}, true
	}
	return 0, wire.Error{}, false
}

// IsJSON reports whether a Content-Type is application/json with, if any, the charset
// utf-8 (RFC 8259 §8.1: JSON exchanged between systems is UTF-8).
func IsJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return true
}

// PrecheckJSONBody is what an endpoint that takes a JSON body checks before the
// signature is verified, without reading the body: the Content-Type (ErrNotJSON) and the
// announced Content-Length (ErrBodyTooLarge). Refusal maps both.
func PrecheckJSONBody(r *http.Request, max int64) error {
	if !IsJSON(r.Header.Get("Content-Type")) {
		return ErrNotJSON
	}
	if r.ContentLength > max {
		return ErrBodyTooLarge
	}
	return nil
}

// ErrNotJSON is the BodyError for a Content-Type that IsJSON refuses.
var ErrNotJSON = &BodyError{Msg: "Content-Type must be application/json"}

// DecodeJSON decodes a request body strictly into dst: valid UTF-8 (RFC 8259 §8.1),
// exactly one JSON value, no member dst does not know (DisallowUnknownFields), and
// nothing but white space after it. Errors are *BodyError; notValue is the text for a
// body that is not the expected object (it must not contain body values).
func DecodeJSON(body []byte, dst any, notValue string) error {
	if !utf8.Valid(body) {
		return &BodyError{Msg: "request body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return &BodyError{Msg: notValue}
	}
	return EndOfJSON(dec)
}

// EndOfJSON is the one trailing-data rule: after the JSON value only white space may
// follow. It returns a *BodyError otherwise.
func EndOfJSON(dec *json.Decoder) error {
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &BodyError{Msg: "unexpected data after the JSON object"}
	}
	return nil
}
