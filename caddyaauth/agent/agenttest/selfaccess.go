package agenttest

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Kinds of token request, as recorded by AuthServer.Kinds (draft-hardt-aauth §11.1).
const (
	KindResource   = "resource_token" // resource access: {"resource_token": …}
	KindSelfAccess = "scope"          // self-access: {"scope": …} without a resource token
	KindRefresh    = "auth_token"     // refresh: {"auth_token": <expired token>}
)

// tokenRequest is what the fake reads from a token request body.
type tokenRequest struct {
	ResourceToken string `json:"resource_token"`
	Scope         string `json:"scope"`
	AuthToken     string `json:"auth_token"`
	Purpose       string `json:"purpose"`
}

func (r *tokenRequest) kind() string {
	switch {
	case r.AuthToken != "":
		return KindRefresh
	case r.ResourceToken != "":
		return KindResource
	case r.Scope != "":
		return KindSelfAccess
	}
	return ""
}

// Kinds lists the kinds of the token requests received (KindResource, KindSelfAccess,
// KindRefresh, or "" for a body with none of them), in order.
func (a *AuthServer) Kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.kinds)
}

// SetRefreshAnswer installs f, called on a refresh request once the request and the old
// token have been verified; when f returns true it has answered and no token is issued.
// SetAnswer does not apply to refreshes.
func (a *AuthServer) SetRefreshAnswer(f func(http.ResponseWriter) bool) {
	a.mu.Lock()
	a.refreshAnswer = f
	a.mu.Unlock()
}

// serveSelfAccess issues a token whose audience is the agent itself, without an agent
// claim (draft-hardt-aauth §4.5.5), for the requested scope; with EnableConsent it is
// deferred like any other request. SetAnswer applies.
func (a *AuthServer) serveSelfAccess(w http.ResponseWriter, res *reqverify.Result, scope string) {
	a.mu.Lock()
	answer, consent := a.answer, a.consent != nil
	a.mu.Unlock()
	if answer != nil && answer(w) {
		return
	}
	now := time.Now()
	c := token.Claims{
		Issuer: a.ID, Audience: token.Audience{res.Agent}, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(),
		Scope: scope, Confirmation: &token.Confirmation{Key: res.Key},
	}
	if consent {
		a.deferRequest(w, res, c)
		return
	}
	a.issue(w, c)
}

// serveRefresh checks an expired token (ours, signed by us, within 24 h of exp, bound to
// the key that signed the request) and issues a fresh one for the same grant.
func (a *AuthServer) serveRefresh(w http.ResponseWriter, r *http.Request, res *reqverify.Result, raw string) {
	old, err := token.Parse(raw, token.TypAuth)
	if err != nil || len(old.Claims.Audience) != 1 {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidAuthToken, "not an auth token")
		return
	}
	verify := token.VerifyAuthToken
	if old.Claims.Agent == "" {
		verify = token.VerifySelfAccessToken
	}
	o := token.Options{Now: time.Now(), Audience: old.Claims.Audience[0], Issuers: []string{a.ID}, ExpiredGrace: 24 * time.Hour}
	old, err = verify(r.Context(), raw, o, func(context.Context, string, string) (*keys.PublicKey, error) { return a.Signer().Public, nil })
	if err != nil {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidAuthToken, err.Error())
		return
	}
	if cnf := old.Claims.Confirmation; cnf.Key.Thumbprint != res.Key.Thumbprint {
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidAuthToken, "the refresh is signed by a key other than cnf")
		return
	}
	a.mu.Lock()
	answer := a.refreshAnswer
	a.mu.Unlock()
	if answer != nil && answer(w) {
		return
	}
	c := old.Claims
	now := time.Now()
	c.ID, c.IssuedAt, c.Expiry, c.Extra = token.NewID(), now.Unix(), now.Add(time.Hour).Unix(), nil
	a.issue(w, c)
}

// issue mints c (after MutateAuthTokens) and answers 200.
func (a *AuthServer) issue(w http.ResponseWriter, c token.Claims) {
	a.mu.Lock()
	mutate := a.mutate
	a.mu.Unlock()
	if mutate != nil {
		mutate(&c)
	}
	at, err := token.Mint(a.Signer(), token.TypAuth, c)
	if err != nil {
		a.fail(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, wire.TokenResponse{AuthToken: at, ExpiresIn: 3600})
}
