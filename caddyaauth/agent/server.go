package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Paths served by Server: the agent metadata document (draft-hardt-aauth §13.1, at both
// the .json and the bare name), its JWKS, and the delegate token endpoint, a demo endpoint
// of our own (the draft leaves agent token issuance out of scope).
const (
	PathMetadata     = "/.well-known/aauth-agent.json"
	PathMetadataBare = "/.well-known/aauth-agent"
	PathJWKS         = "/jwks.json"
	PathDelegate     = "/delegate/token"
)

// DefaultTokenLifetime is the lifetime of delegate agent tokens (the reference
// implementation's 3600 s).
const DefaultTokenLifetime = time.Hour

// maxDelegateBody caps the delegate token request: a sub, one public JWK and a few
// audiences fit easily, and nothing is parsed beyond it.
const maxDelegateBody = 16 << 10

// maxSubLen bounds the delegate id copied into tokens.
const maxSubLen = 256

// Server is an agent server: it publishes the agent's metadata and JWKS so resources can
// verify jwks_uri signatures and agent tokens, and (when DelegateSecret is set) issues
// agent tokens to delegates over the demo endpoint POST /delegate/token. How delegates
// obtain agent tokens is out of scope for AAuth; the shared secret keeps the demo endpoint
// from minting tokens for anyone who can reach it.
type Server struct {
	// Signer is the agent key: its public half is published, and it signs agent tokens.
	// It must have a kid.
	Signer *keys.Signer
	// ID is the agent identifier, e.g. https://agent.example (http://127.0.0.1:PORT in dev).
	ID string
	// ClientName is the optional display name shown on consent screens.
	ClientName string
	// DelegateSecret enables POST /delegate/token, which then requires
	// "Authorization: Bearer <DelegateSecret>". Empty disables the endpoint (404).
	DelegateSecret string
	// TokenLifetime is the agent token lifetime; 0 means DefaultTokenLifetime.
	TokenLifetime time.Duration
	// ClarificationSupported is published in the agent metadata (draft-hardt-aauth §11.4,
	// §13.1): auth servers only ask clarification questions of agents that set it.
	ClarificationSupported bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Metadata is the agent metadata document (package wire).
type Metadata = wire.AgentMetadata

// DelegateRequest is the body of POST /delegate/token.
type DelegateRequest struct {
	Sub    string          `json:"sub"`
	CnfJWK map[string]any  `json:"cnf_jwk"`
	Aud    json.RawMessage `json:"aud,omitempty"` // a string or an array of strings
}

// DelegateResponse is the 200 answer of POST /delegate/token.
type DelegateResponse struct {
	AgentToken string `json:"agent_token"`
	ExpiresIn  int    `json:"expires_in"`
}

// Validate reports a configuration the server cannot work with.
func (s *Server) Validate() error {
	if s.Signer == nil || s.Signer.Private == nil || s.Signer.Public == nil {
		return errors.New("agent: server has no signing key")
	}
	if s.Signer.Public.KID == "" {
		return errors.New("agent: server key needs a kid (resources pick it from the JWKS by kid)")
	}
	u, err := url.Parse(s.ID)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("agent: server id %q must be an origin such as https://agent.example", s.ID)
	}
	return nil
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// JWKSURI is the URL of the JWKS published in the metadata.
func (s *Server) JWKSURI() string { return strings.TrimSuffix(s.ID, "/") + PathJWKS }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathMetadata, PathMetadataBare:
		if !allowGet(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "max-age=300")
		writeJSON(w, http.StatusOK, Metadata{
			Agent:                  s.ID,
			JWKSURI:                s.JWKSURI(),
			ClientName:             s.ClientName,
			ClarificationSupported: s.ClarificationSupported,
		})
	case PathJWKS:
		if !allowGet(w, r) {
			return
		}
		if s.Signer == nil || s.Signer.Public == nil {
			writeError(w, http.StatusInternalServerError, wire.CodeServerError, "no agent key configured")
			return
		}
		w.Header().Set("Cache-Control", "max-age=300")
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{s.Signer.Public.Members()}})
	case PathDelegate:
		s.serveDelegate(w, r)
	default:
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "no such endpoint")
	}
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "method not allowed")
	return false
}

// secretOK compares the bearer secret in constant time. Both sides are hashed first so
// the comparison does not leak the secret's length either.
func (s *Server) secretOK(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	scheme, got, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	a := sha256.Sum256([]byte(strings.TrimSpace(got)))
	b := sha256.Sum256([]byte(s.DelegateSecret))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func (s *Server) serveDelegate(w http.ResponseWriter, r *http.Request) {
	if s.DelegateSecret == "" {
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "no such endpoint")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "method not allowed")
		return
	}
	// Authenticate before reading the body: nothing an unauthenticated caller sends is
	// parsed.
	if !s.secretOK(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="aauth-agent"`)
		writeError(w, http.StatusUnauthorized, wire.CodeInvalidToken, "missing or wrong delegate secret")
		return
	}
	req, pub, aud, err := readDelegateRequest(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error())
		return
	}
	if s.Signer == nil || s.Signer.Public == nil || s.Signer.Public.KID == "" {
		writeError(w, http.StatusInternalServerError, wire.CodeServerError, "no agent key configured")
		return
	}
	tok, expiresIn, err := s.mintDelegateToken(req.Sub, pub, aud)
	if err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeServerError, "could not mint the agent token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, DelegateResponse{AgentToken: tok, ExpiresIn: expiresIn})
}

// readDelegateRequest reads and checks the body of a delegate token request: one JSON
// object with sub, cnf_jwk and an optional aud. An error's text is the description of
// the 400 answer.
func readDelegateRequest(w http.ResponseWriter, r *http.Request) (req DelegateRequest, pub *keys.PublicKey, aud token.Audience, err error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDelegateBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, nil, nil, fmt.Errorf("request body exceeds %d bytes", maxDelegateBody)
		}
		return req, nil, nil, errors.New("could not read the request body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return req, nil, nil, errors.New("body must be a JSON object with sub (string), cnf_jwk (object) and optional aud (string or array)")
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return req, nil, nil, errors.New("unexpected data after the JSON object")
	}
	if req.Sub == "" {
		return req, nil, nil, errors.New("sub is required")
	}
	if len(req.Sub) > maxSubLen {
		return req, nil, nil, errors.New("sub is too long")
	}
	if req.CnfJWK == nil {
		return req, nil, nil, errors.New("cnf_jwk is required")
	}
	if pub, err = keys.FromAny(req.CnfJWK); err != nil {
		return req, nil, nil, errors.New("cnf_jwk: " + err.Error())
	}
	if aud, err = parseAudience(req.Aud); err != nil {
		return req, nil, nil, err
	}
	return req, pub, aud, nil
}

// mintDelegateToken mints an agent token for the delegate sub whose key is pub, valid for
// TokenLifetime, and returns it with its lifetime in seconds.
func (s *Server) mintDelegateToken(sub string, pub *keys.PublicKey, aud token.Audience) (string, int, error) {
	lifetime := s.TokenLifetime
	if lifetime <= 0 {
		lifetime = DefaultTokenLifetime
	}
	iat := s.now().Unix()
	exp := iat + int64(lifetime/time.Second)
	tok, err := token.Mint(s.Signer, token.TypAgent, token.Claims{
		Issuer:       s.ID,
		Subject:      sub,
		Audience:     aud,
		ID:           token.NewID(),
		IssuedAt:     iat,
		Expiry:       exp,
		Confirmation: &token.Confirmation{Key: pub},
	})
	return tok, int(exp - iat), err
}

// parseAudience accepts an absent or null aud, a non-empty string, or a non-empty array
// of non-empty strings.
func parseAudience(raw json.RawMessage) (token.Audience, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, errors.New("aud must not be empty")
		}
		return token.Audience{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("aud must be a string or an array of strings")
	}
	if len(many) == 0 {
		return nil, errors.New("aud must not be an empty array")
	}
	for _, a := range many {
		if a == "" {
			return nil, errors.New("aud must not contain empty strings")
		}
	}
	return token.Audience(many), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	if status >= 400 {
		w.Header().Set("Cache-Control", "no-store")
	}
	writeJSON(w, status, wire.Error{Code: code, Description: desc})
}

// maxDelegateResponse caps what RequestDelegateToken reads from the agent server.
const maxDelegateResponse = 64 << 10

// RequestDelegateToken asks the agent server at serverURL (its origin, or the full
// /delegate/token URL) for an agent token binding delegate's public key to sub. The
// returned token is checked to carry exactly that key, so a confused or hostile server
// cannot hand the delegate a token it could not use. client nil means a client with a
// 30 s timeout.
func RequestDelegateToken(ctx context.Context, client *http.Client, serverURL, secret, sub string, delegate *keys.Signer, aud []string) (string, int, error) {
	if delegate == nil || delegate.Public == nil {
		return "", 0, errors.New("agent: no delegate key")
	}
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	endpoint := serverURL
	if !strings.HasSuffix(strings.TrimSuffix(endpoint, "/"), PathDelegate) {
		endpoint = strings.TrimSuffix(endpoint, "/") + PathDelegate
	}
	payload := map[string]any{"sub": sub, "cnf_jwk": delegate.Public.Members()}
	switch len(aud) {
	case 0:
	case 1:
		payload["aud"] = aud[0]
	default:
		payload["aud"] = aud
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return "", 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(b))
	if err != nil {
		return "", 0, fmt.Errorf("agent: delegate token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("agent: delegate token request: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxDelegateResponse+1))
	if err != nil {
		return "", 0, fmt.Errorf("agent: reading delegate token response: %w", err)
	}
	if len(rb) > maxDelegateResponse {
		return "", 0, errors.New("agent: delegate token response is too large")
	}
	if resp.StatusCode != http.StatusOK {
		if e := wire.DecodeError(rb); e.Code != "" {
			if e.Description != "" {
				return "", 0, fmt.Errorf("agent: delegate token request failed: %s: %s: %s", resp.Status, e.Code, e.Description)
			}
			return "", 0, fmt.Errorf("agent: delegate token request failed: %s: %s", resp.Status, e.Code)
		}
		return "", 0, fmt.Errorf("agent: delegate token request failed: %s", resp.Status)
	}
	var out DelegateResponse
	if err := json.Unmarshal(rb, &out); err != nil || out.AgentToken == "" {
		return "", 0, errors.New("agent: delegate token response has no agent_token")
	}
	t, err := token.Parse(out.AgentToken, token.TypAgent)
	if err != nil {
		return "", 0, fmt.Errorf("agent: the server returned an unusable agent token: %w", err)
	}
	if t.Claims.Confirmation == nil || t.Claims.Confirmation.Key == nil ||
		t.Claims.Confirmation.Key.Thumbprint != delegate.Public.Thumbprint {
		return "", 0, errors.New("agent: the agent token is not bound to the delegate key")
	}
	return out.AgentToken, out.ExpiresIn, nil
}
