package agent

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// awaitToken hands a deferred token request (err a *PendingError, draft-hardt-aauth
// §11.3) to AwaitToken, when set, and returns the auth token it got; expires_in is then
// unknown (0). Any other outcome of a token request is returned as it is.
func (t *Transport) awaitToken(ctx context.Context, raw string, expiresIn int64, err error) (string, int64, error) {
	var pe *PendingError
	if !errors.As(err, &pe) || t.AwaitToken == nil {
		return raw, expiresIn, err
	}
	t.logf("token request deferred (require=%s); waiting for the auth token", pe.Require)
	raw, err = t.AwaitToken(ctx, pe)
	if err == nil && raw == "" {
		err = flowErr(StepAuthToken, "AwaitToken returned no token")
	}
	return raw, 0, err
}

// checkIssued is checkIssuedOnce, repeated while the auth server's metadata or JWKS
// cannot be fetched for an outage (discovery.ErrUnavailable), like a token request: the
// token was issued, and dropping it would cost a new token request (and maybe a new
// consent). Never longer than issuedCheckWindow.
func (t *Transport) checkIssued(ctx context.Context, raw string, expiresIn int64, resID, as, me string) (CachedToken, *token.Token, error) {
	var ct CachedToken
	var tok *token.Token
	r := t.tokenRetrier("checking the issued token", as)
	r.gate = nil // not a request to the token endpoint
	err := r.run(ctx, t.now().Add(issuedCheckWindow), func() error {
		var err error
		ct, tok, err = t.checkIssuedOnce(ctx, raw, expiresIn, resID, as, me)
		if err != nil && !errors.Is(err, discovery.ErrUnavailable) {
			return &permanent{err}
		}
		return err
	})
	var pe *permanent
	if errors.As(err, &pe) {
		err = pe.err
	}
	return ct, tok, err
}

// issuedCheckWindow bounds the retries of checkIssued.
const issuedCheckWindow = time.Minute

// permanent hides a failure from passingWait: it is not retried.
type permanent struct{ err error }

func (e *permanent) Error() string { return e.err.Error() }

// checkIssuedOnce is the agent's check of an auth token that the auth server as issued to us
// (draft-hardt-aauth §17.1): its signature with the key as publishes, iss, aud (resID: the
// resource, or our own identifier me for a self-access token, §4.5.5), exp, cnf.jwk =
// our signing key, and agent = me (a self-access token may omit agent). It returns the
// token ready for the cache, expiring at the earlier of exp and now + expiresIn.
func (t *Transport) checkIssuedOnce(ctx context.Context, raw string, expiresIn int64, resID, as, me string) (CachedToken, *token.Token, error) {
	self := resID == me
	verify := token.VerifyAuthToken
	if self {
		verify = token.VerifySelfAccessToken
	}
	now := t.now()
	opts := token.Options{Now: now, Audience: resID, Issuers: []string{as}}
	d := t.discoveryClient()
	var used *keys.PublicKey
	var usedKID string
	tok, err := verify(ctx, raw, opts, func(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
		k, err := d.Key(ctx, iss, discovery.DocIssuer, kid)
		used, usedKID = k, kid
		return k, err
	})
	if err != nil && used != nil {
		// The key was found and the token failed with it: the auth server may have
		// replaced its key under the same kid. One rate-limited refetch (RefreshKey).
		if nk, rerr := d.RefreshKey(ctx, as, discovery.DocIssuer, usedKID, used); rerr == nil {
			tok, err = verify(ctx, raw, opts, func(context.Context, string, string) (*keys.PublicKey, error) { return nk, nil })
		}
	}
	if err != nil {
		return CachedToken{}, nil, &FlowError{Step: StepAuthToken, Err: err}
	}
	jkt := t.Identity.Signer.Public.Thumbprint
	if cnf := tok.Claims.Confirmation; cnf == nil || cnf.Key == nil || cnf.Key.Thumbprint != jkt {
		return CachedToken{}, nil, flowErr(StepAuthToken, "the auth token is bound to another key, not ours (%s)", jkt)
	}
	if tok.Claims.Agent != me && (!self || tok.Claims.Agent != "") {
		return CachedToken{}, nil, flowErr(StepAuthToken, "the auth token is for agent %q, not %q", tok.Claims.Agent, me)
	}
	exp := time.Unix(tok.Claims.Expiry, 0)
	if expiresIn > 0 {
		if e := now.Add(time.Duration(expiresIn) * time.Second); e.Before(exp) {
			exp = e
		}
	}
	ct := CachedToken{Resource: resID, KeyJKT: jkt, Issuer: as, Scope: tok.Claims.Scope, Expiry: exp, Token: raw}
	return ct, tok, nil
}
