package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
)

// selfAccessRequest is the body of a self-access token request (draft-hardt-aauth §4.5.5,
// §11.1): the scope, and no resource token.
type selfAccessRequest struct {
	Scope   string `json:"scope"`
	Purpose string `json:"purpose,omitempty"`
}

// selfAccessDeadline bounds the retries of a self-access token request the auth server
// cannot decide (there is no resource token whose expiry would bound them).
const selfAccessDeadline = time.Minute

// SelfAccessToken obtains an auth token whose audience is the agent itself
// (draft-hardt-aauth §4.5.5, for single sign-on or the agent's own delegates) granting
// scope (space-separated) from the auth server authServer: a token request
// {"scope": …} (with Purpose) signed with Identity and sent to the token endpoint that
// authServer's metadata names. A deferred answer (202) goes to AwaitToken as in the
// challenge flow; without AwaitToken the *PendingError is returned. The token is checked
// (§17.1: authServer's signature, aud = our agent identifier, cnf = our key, no agent
// other than us) and cached under our agent identifier: while it is usable, a call for
// the same auth server and scope returns it, and once expired (within RefreshWindow) it
// is refreshed before a new token is asked for. Concurrent calls for the same auth
// server, key and scope share one request.
func (t *Transport) SelfAccessToken(ctx context.Context, authServer, scope string) (CachedToken, error) {
	if err := t.check(); err != nil {
		return CachedToken{}, err
	}
	if t.Identity == nil {
		return CachedToken{}, errors.New("agent: a self-access token needs an Identity (jwks_uri or jwt)")
	}
	scope = strings.Join(strings.Fields(scope), " ")
	if scope == "" {
		return CachedToken{}, errors.New("agent: a self-access token needs a scope")
	}
	if err := discovery.ValidateIdentifier(authServer, t.Dev); err != nil {
		return CachedToken{}, flowErr(StepAuthServer, "auth server %q is not a valid identifier (http and loopback need Dev): %w", authServer, err)
	}
	me, err := agentID(t.Identity)
	if err != nil {
		return CachedToken{}, &FlowError{Step: StepAgent, Err: err}
	}
	jkt := t.Identity.Signer.Public.Thumbprint
	if ct, ok := t.cache().getScope(me, jkt, authServer, scope); ok {
		t.logf("using the cached self-access token from %s (scope %q, expires %s)", authServer, scope, ct.Expiry.UTC().Format(time.RFC3339))
		return ct, nil
	}
	key := "self\x00" + authServer + "\x00" + jkt + "\x00" + scope
	return t.flights().do(ctx, key,
		func(ctx context.Context) (CachedToken, error) {
			if ct, ok, err := t.refreshCached(ctx, me, authServer, scope); err != nil || ok {
				return ct, err
			}
			return t.obtainSelfAccess(ctx, me, authServer, scope)
		},
		func() { t.logf("a self-access token request to %s is already in progress; waiting for it", authServer) })
}

// obtainSelfAccess asks as for a self-access token for scope, and caches it.
func (t *Transport) obtainSelfAccess(ctx context.Context, me, as, scope string) (CachedToken, error) {
	endpoint, interact, err := t.tokenEndpoint(ctx, as, t.now().Add(selfAccessDeadline))
	if err != nil {
		return CachedToken{}, err
	}
	t.logf("auth server %s: token endpoint %s; asking for a self-access token (scope %q)", as, endpoint.Redacted(), scope)
	body, err := json.Marshal(selfAccessRequest{Scope: scope, Purpose: t.Purpose})
	if err != nil {
		return CachedToken{}, &FlowError{Step: StepTokenRequest, Err: err}
	}
	raw, expiresIn, err := t.retryTokenCall(ctx, as, t.now().Add(selfAccessDeadline), func() (string, int64, error) {
		return t.postToken(ctx, endpoint, body, t.Identity, me, as, interact)
	})
	if raw, expiresIn, err = t.awaitToken(ctx, raw, expiresIn, err); err != nil {
		return CachedToken{}, err
	}
	ct, tok, err := t.checkIssued(ctx, raw, expiresIn, me, as, me)
	if err != nil {
		return CachedToken{}, err
	}
	t.cache().Put(ct)
	t.logf("self-access token received: typ %s, iss %s, scope %q, expires %s",
		tok.Header.Typ, tok.Claims.Issuer, tok.Claims.Scope, unixTime(tok.Claims.Expiry))
	return ct, nil
}
