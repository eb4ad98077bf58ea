package reqverify

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// CodeTemporarilyUnavailable is the error code of an UnavailableError.
const CodeTemporarilyUnavailable = wire.CodeTemporarilyUnavailable

// UnavailableError is a verification that could not be finished because a document it
// needs (an agent's or auth server's metadata or JWKS) could not be fetched and no usable
// copy was cached (discovery.ErrUnavailable). It is not a verdict on the request: callers
// answer 503 with Retry-After (RFC 9110 §15.6.4, §10.2.3), not 401. Msg names the
// document, never a token, and is safe to show and log.
type UnavailableError struct {
	Msg        string
	Issuer     string        // the identifier whose document could not be fetched
	RetryAfter time.Duration // at least a second
}

func (e *UnavailableError) Error() string { return e.Msg }

// Unavailable returns the UnavailableError in err's chain, if any.
func Unavailable(err error) (*UnavailableError, bool) {
	switch e := err.(type) {
	case *UnavailableError:
		return e, true
	case *Error:
		return nil, false // wraps nothing
	}
	var ue *UnavailableError
	ok := errors.As(err, &ue)
	return ue, ok
}

// RetryAfterSeconds is the Retry-After value for e: whole seconds, rounded up, 1 to 60.
func (e *UnavailableError) RetryAfterSeconds() int {
	s := int((e.RetryAfter + time.Second - 1) / time.Second)
	return min(max(s, 1), 60)
}

// unavailable turns a discovery outage into an *UnavailableError whose message says
// whose document (who: "the agent's", "the auth server's") could not be fetched; any
// other error gives nil.
func unavailable(err error, who, id string) *UnavailableError {
	de, ok := discovery.Unavailable(err)
	if !ok {
		return nil
	}
	doc := "metadata"
	if de.Kind == "jwks" {
		doc = "JWKS"
	}
	return &UnavailableError{
		Msg:        who + " " + doc + " could not be fetched (" + id + "); try again later",
		Issuer:     id,
		RetryAfter: de.RetryAfter,
	}
}

// unavailableRefusal maps an UnavailableError for Refusal.
func unavailableRefusal(ue *UnavailableError) (int, wire.Error) {
	return http.StatusServiceUnavailable, wire.Error{Code: CodeTemporarilyUnavailable, Description: ue.Msg}
}

// verifyWithKeyChange verifies a request signature with pub, the key discovery found
// for (id, doc, kid). When it fails, the JWKS is refetched once (discovery.RefreshKey,
// rate-limited per issuer) in case the key was replaced under the same kid, and the
// signature is checked again with the new key.
func (v *Verifier) verifyWithKeyChange(ctx context.Context, sig *httpsig.Signature, base []byte, id, doc, kid string, pub *keys.PublicKey) (*keys.PublicKey, error) {
	err := httpsig.Verify(sig, base, pub)
	if err == nil {
		return pub, nil
	}
	nk, rerr := v.Discovery.RefreshKey(ctx, id, doc, kid, pub)
	if rerr != nil {
		return nil, err
	}
	if err := httpsig.Verify(sig, base, nk); err != nil {
		return nil, err
	}
	return nk, nil
}

// verifyToken runs verify with a resolver for doc ("aauth-agent" or "aauth-issuer").
// When the token fails after its key was found (the key is checked last, so that is a
// signature or key-type failure), the issuer's JWKS is refetched once
// (discovery.RefreshKey) and, if it lists another key under the kid, verify runs again.
func (v *Verifier) verifyToken(ctx context.Context, doc string, verify func(token.KeyResolver) (*token.Token, error)) (*token.Token, error) {
	var iss, kid string
	var used *keys.PublicKey
	tok, err := verify(func(ctx context.Context, i, k string) (*keys.PublicKey, error) {
		if err := discovery.ValidateIdentifier(i, v.Dev); err != nil {
			return nil, err
		}
		pk, err := v.Discovery.Key(ctx, i, doc, k)
		iss, kid, used = i, k, pk
		return pk, err
	})
	if err == nil || used == nil {
		return tok, err
	}
	nk, rerr := v.Discovery.RefreshKey(ctx, iss, doc, kid, used)
	if rerr != nil {
		return tok, err
	}
	return verify(func(_ context.Context, i, k string) (*keys.PublicKey, error) {
		if i != iss || k != kid {
			return nil, discovery.ErrUnknownKey
		}
		return nk, nil
	})
}

// AsUnavailable is for callers that fetch through discovery themselves (the auth
// server's resource tokens and callers' keys): when err is a discovery outage it returns
// the UnavailableError saying that who's ("the resource's") document for id could not be
// fetched. id "" names the document's URL instead.
func AsUnavailable(err error, who, id string) (*UnavailableError, bool) {
	if id == "" {
		if de, ok := discovery.Unavailable(err); ok {
			id = de.URL
		}
	}
	ue := unavailable(err, who, id)
	return ue, ue != nil
}
