package caddyaauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	for _, want := range h.Scopes {
		if !grants(res.Token.Claims.Scope, want) {
			return wire.CodeInsufficientScope, fmt.Sprintf("the auth token does not grant scope %q", want)
		}
	}
	return "", ""
}

// grants reports whether the space-separated scope list (RFC 6749 §3.3) holds want, as
// slices.Contains(strings.Fields(scope), want) does, without building the list.
func grants(scope, want string) bool {
	for rest := scope; rest != ""; {
		rest = strings.TrimLeft(rest, " \t\n\v\f\r")
		end := strings.IndexAny(rest, " \t\n\v\f\r")
		if end < 0 {
			end = len(rest)
		}
		if rest[:end] == want && want != "" {
			return true
		}
		rest = rest[end:]
	}
	return false
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
	return h.writeChallenge(w, r, c, wire.Error{Code: code, Description: desc})
}
