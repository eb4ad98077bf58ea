package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"time"
)

// refreshRequest is the body of a refresh (draft-hardt-aauth §11.6): the expired token.
type refreshRequest struct {
	AuthToken string `json:"auth_token"`
}

// refreshOrObtain is the work of one auth-token flow for challenge c (scope is the
// resource token's scope, read unverified): a usable cached token for the same grant is
// used as it is; otherwise an expired cached token for the same
// resource, key, auth server and scope is refreshed first; only when there is none or
// the auth server refuses to refresh it does the challenge flow run.
func (t *Transport) refreshOrObtain(ctx context.Context, u *url.URL, c Challenge, scope string) (CachedToken, error) {
	// A usable cached token for exactly this grant (another route of the resource was
	// tried with a token of another scope first) answers the challenge at once.
	if ct, ok := t.cache().getScope(t.resourceID(u), t.Identity.Signer.Public.Thumbprint, c.AuthServer, scope); ok {
		t.logf("using the cached auth token for scope %q", scope)
		return ct, nil
	}
	ct, ok, err := t.refreshCached(ctx, t.resourceID(u), c.AuthServer, scope)
	if err != nil || ok {
		return ct, err
	}
	return t.obtainAuthToken(ctx, u, c)
}

// refreshCached refreshes the newest expired cached token for (resID, our key) issued by
// as with scope, if the cache holds one within its refresh window. ok is false when
// there is none, or when the auth server refused the refresh (a 4xx answer, or a token
// that fails the agent's checks): the old token is then dropped and the caller runs the
// challenge flow. When the auth server cannot decide (5xx, unreachable) the request is
// retried like any token request, and the last error is returned; the old token stays
// cached for a later attempt.
func (t *Transport) refreshCached(ctx context.Context, resID, as, scope string) (CachedToken, bool, error) {
	old, found := t.cache().refreshable(resID, t.Identity.Signer.Public.Thumbprint, as, scope)
	if !found {
		return CachedToken{}, false, nil
	}
	t.logf("refreshing the expired auth token for %s at %s (scope %q, expired %s)",
		resID, as, scope, old.Expiry.UTC().Format(time.RFC3339))
	ct, err := t.refresh(ctx, old)
	var te *TokenError
	var pe *PendingError
	var fe *FlowError
	switch {
	case err == nil:
		t.cache().Delete(resID, old.Token)
		t.cache().Put(ct)
		t.logf("auth token refreshed for %s: scope %q, expires %s", resID, ct.Scope, ct.Expiry.UTC().Format(time.RFC3339))
		return ct, true, nil
	case errors.As(err, &te) && !te.Temporary(), errors.As(err, &pe), errors.As(err, &fe) && fe.Step == StepAuthToken:
		t.cache().Delete(resID, old.Token)
		t.logf("refresh refused (%v); dropped the expired token, running the challenge flow", err)
		return CachedToken{}, false, nil
	}
	// The auth server could not decide (5xx or unreachable, after the retries), its
	// metadata could not be had, or ctx ended.
	t.logf("refresh failed (%v); keeping the expired token for a later attempt", err)
	return CachedToken{}, false, err
}

// refresh asks old's issuer for a fresh token for the same grant (draft-hardt-aauth
// §11.6): a token request {"auth_token": <old>} signed with Identity, whose key is the
// one in old's cnf. The answer is checked like a newly issued token (§17.1). The auth
// server's metadata gives the token endpoint, as in the challenge flow.
func (t *Transport) refresh(ctx context.Context, old CachedToken) (CachedToken, error) {
	me, err := agentID(t.Identity)
	if err != nil {
		return CachedToken{}, &FlowError{Step: StepAgent, Err: err}
	}
	endpoint, interact, err := t.tokenEndpoint(ctx, old.Issuer, old.Expiry.Add(RefreshWindow))
	if err != nil {
		return CachedToken{}, err
	}
	body, err := json.Marshal(refreshRequest{AuthToken: old.Token})
	if err != nil {
		return CachedToken{}, &FlowError{Step: StepTokenRequest, Err: err}
	}
	raw, expiresIn, err := t.retryTokenCall(ctx, old.Issuer, old.Expiry.Add(RefreshWindow), func() (string, int64, error) {
		return t.postToken(ctx, endpoint, body, t.Identity, old.Resource, old.Issuer, interact)
	})
	if err != nil {
		return CachedToken{}, err
	}
	ct, _, err := t.checkIssued(ctx, raw, expiresIn, old.Resource, old.Issuer, me)
	return ct, err
}
