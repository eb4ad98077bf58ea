package caddyaauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

const defaultResourceTokenLifetime = 5 * time.Minute

// authorize decides whether a verified request carries an auth token good for this
// route; a non-empty code means it must be challenged for a new one.
func (h *Handler) authorize(res *reqverify.Result) (code, desc string) {
	if p := res.AuthTokenProblem; p != nil {
		return wire.CodeInvalidAuthToken, p.Msg
	}
	if res.Level != reqverify.LevelAuthorized || res.Token == nil {
		return wire.CodeAuthTokenRequired, "this route needs an auth token from " + h.AuthServer
	}
	granted := strings.Fields(res.Token.Claims.Scope)
	for _, want := range h.Scopes {
		if !slices.Contains(granted, want) {
			return wire.CodeInsufficientScope, fmt.Sprintf("the auth token does not grant scope %q", want)
		}
	}
	return "", ""
}

// mintResourceToken issues a resource token for a verified agent and key (draft-hardt-aauth
// §8.1). Callers
// must have verified the request signature first.
func (h *Handler) mintResourceToken(ctx context.Context, res *reqverify.Result, scopes []string) (string, error) {
	if h.key == nil || res.Agent == "" || res.Key == nil {
		return "", errors.New("cannot mint a resource token without a verified agent")
	}
	signer, err := h.key.Signer(ctx)
	if err != nil {
		return "", fmt.Errorf("resource signing key: %w", err)
	}
	now := h.now()
	c := token.Claims{
		Issuer:   h.Resource,
		Audience: token.Audience{h.AuthServer},
		ID:       token.NewID(),
		IssuedAt: now.Unix(),
		Expiry:   now.Add(time.Duration(h.ResourceTokenLifetime)).Unix(),
		Agent:    res.Agent,
		AgentJKT: res.Key.Thumbprint,
		Scope:    strings.Join(scopes, " "),
	}
	if h.Txn {
		c.Txn = token.NewID()
	}
	return token.Mint(signer, token.TypResource, c)
}

// authTokenChallenge answers 401 with a freshly minted resource token.
func (h *Handler) authTokenChallenge(w http.ResponseWriter, r *http.Request, _ httpsig.Target, res *reqverify.Result, code, desc string) error {
	rt, err := h.mintResourceToken(r.Context(), res, h.Scopes)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.decide(r, http.StatusUnauthorized, code, desc)
	c := wire.Challenge{Require: wire.RequireAuthToken, ResourceToken: rt, AuthServer: h.AuthServer}
	return writeChallenge(w, r, c, wire.Error{Code: code, Description: desc})
}
