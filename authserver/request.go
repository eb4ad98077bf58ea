package authserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// maxTokenRequestBody caps the token request body (checked on Content-Length before the
// signature is verified, and enforced while reading after).
const maxTokenRequestBody = 64 << 10

// maxPurposeChars bounds the untrusted purpose text (in characters).
const maxPurposeChars = 1024

// tokenRequest is the JSON body of a token request (draft-hardt-aauth §11.1). Every member is a
// string; present records which members the body had.
type tokenRequest struct {
	ResourceToken string
	UpstreamToken string
	AuthToken     string
	Scope         string
	Purpose       string
	LoginHint     string
	Tenant        string
	DomainHint    string

	present map[string]bool
}

func (t *tokenRequest) has(name string) bool { return t.present[name] }

// field returns where a known member is stored, or nil for an unknown member.
func (t *tokenRequest) field(name string) *string {
	switch name {
	case "resource_token":
		return &t.ResourceToken
	case "upstream_token":
		return &t.UpstreamToken
	case "auth_token":
		return &t.AuthToken
	case "scope":
		return &t.Scope
	case "purpose":
		return &t.Purpose
	case "login_hint":
		return &t.LoginHint
	case "tenant":
		return &t.Tenant
	case "domain_hint":
		return &t.DomainHint
	}
	return nil
}

// parseTokenRequest decodes the body strictly: valid UTF-8, exactly one JSON object, no
// duplicate member names, only known members, every value a string, nothing after the
// object. Error texts are safe to return to the client (they never contain values).
func parseTokenRequest(body []byte) (*tokenRequest, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	bad := errors.New("request body is not a JSON object")
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, bad
	}
	req := &tokenRequest{present: map[string]bool{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad
		}
		name, ok := tok.(string)
		if !ok {
			return nil, bad
		}
		if req.present[name] {
			return nil, fmt.Errorf("member %q appears more than once", clip(name))
		}
		req.present[name] = true
		dst := req.field(name)
		if dst == nil {
			return nil, fmt.Errorf("unknown member %q", clip(name))
		}
		val, err := dec.Token()
		if err != nil {
			return nil, bad
		}
		s, ok := val.(string)
		if !ok {
			return nil, fmt.Errorf("member %q must be a string", name)
		}
		*dst = s
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, bad
	}
	if err := reqverify.EndOfJSON(dec); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(req.Purpose) > maxPurposeChars {
		return nil, fmt.Errorf("purpose is longer than %d characters", maxPurposeChars)
	}
	return req, nil
}

// clip shortens client-chosen text before it is echoed in an error.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	for i := limit; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}
