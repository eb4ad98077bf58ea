package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Forms of a token exchange request (Transport.ExchangeForm).
const (
	ExchangeSignatureKey = "signature_key"
	ExchangeBody         = "body"
)

// HeaderAAuth is the response header carrying the resource's challenge (package wire).
const HeaderAAuth = wire.HeaderAAuth

// Values of the require member of the AAuth header (package wire).
const (
	RequirePseudonym   = wire.RequirePseudonym
	RequireIdentity    = wire.RequireIdentity
	RequireAuthToken   = wire.RequireAuthToken
	RequireInteraction = wire.RequireInteraction
	RequireApproval    = wire.RequireApproval
)

// DefaultMaxBody bounds how much of a request body Transport buffers. The body has to be
// held in memory so it can be sent again after a challenge; a larger body is refused
// rather than streamed, because a streamed body could not be retried.
const DefaultMaxBody = 10 << 20

// maxDrain bounds how much of a challenged response is read before it is discarded, so
// the connection can be reused without letting a server make us read forever.
const maxDrain = 64 << 10

// Challenge is a parsed AAuth response header.
type Challenge = wire.Challenge

// ParseChallenge reads the AAuth header of a response (wire.Wire.ParseChallenge): ok is
// false when the header is absent or malformed, so callers treat such a response as a
// plain 401 instead of acting on half-understood input.
func ParseChallenge(h http.Header) (Challenge, bool) {
	return wire.Seed.ParseChallenge(h)
}

// Transport is an http.RoundTripper that signs every request with an AAuth credential and
// answers the resource's challenges:
//
//   - a 401 with require=identity after a pseudonymous (or unsigned) request is retried
//     once with Identity, and a 401 with require=pseudonym after an unsigned request is
//     retried once signed;
//
//   - a 401 with require=auth-token (to a request signed with Identity; an hwk or
//     unsigned request is first stepped up to Identity) runs the token flow: the resource
//     token is checked (draft-hardt-aauth §17.2), the auth server named in the challenge (and
//     no other) is asked for an auth token, the token is checked (§17.1) and cached, and the
//     request is retried once signed with it (scheme jwt). Later requests to that
//     resource are signed with the cached token straight away; if the resource refuses it
//     with a new auth-token challenge, the token is dropped and the flow runs once more.
//     Requests challenged for the same resource, key and scope while a flow is in
//     progress wait for that flow and use its token (one token request, one consent).
//     Before the flow asks for a new token, an expired cached token for the same
//     resource, key, auth server and scope (kept for RefreshWindow) is refreshed
//     (draft-hardt-aauth §11.6); only if the auth server refuses does the flow run.
//
//   - a 202 with AAuth: require=interaction and a Location, the resource's own deferral
//     of the request (draft-hardt-aauth §4.5.7), goes to AwaitResponse, which waits for
//     the user and polls; its answer is the response to the request.
//
// It never loops: each kind of retry happens at most once per request, and a 401 to the
// last retry is returned to the caller. A failed flow is an error from RoundTrip
// (*FlowError, *TokenError or *PendingError); other answers are returned unchanged.
type Transport struct {
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Pseudonym is the optional hwk credential.
	Pseudonym *Credential
	// Identity is the optional identified credential (jwks_uri or jwt).
	Identity *Credential
	// PreferPseudonym signs the first request with Pseudonym even when Identity is set,
	// revealing the identity only when a resource asks for it.
	PreferPseudonym bool
	// Lazy sends the first request unsigned and signs only when challenged, for callers
	// that mostly talk to public endpoints.
	Lazy bool
	// Dictionary emits Signature-Key in the RFC 8941 dictionary form
	// (sig=hwk;kty="OKP";…) instead of the parenthesised form sig=(scheme=hwk …) that the
	// draft's 2026-03 reference implementation sends. Verifiers here accept both.
	Dictionary bool
	// StdBase64 emits the signature in standard base64 (an RFC 8941 §3.3.5 Byte Sequence)
	// instead of the base64url the draft's 2026-03 reference implementation sends.
	StdBase64 bool
	// SignBody adds Content-Digest and covers content-type (when set) and content-digest
	// for requests with a body (RFC 9530, RFC 9421 §7.2.8), for resources that demand body
	// integrity.
	SignBody bool
	// MaxBody bounds the buffered request body; 0 means DefaultMaxBody.
	MaxBody int64
	// Now is the clock for the signature's created parameter; nil means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx ends, between retries of a token request the auth
	// server could not answer; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logf, when set, receives one line per step (which credential signed, challenge,
	// retry, each step of the token flow). It never receives keys or tokens.
	Logf func(format string, a ...any)

	// Discovery fetches resource and auth server metadata and keys for the token flow.
	// nil means a client created on first use with discovery.Config{Dev: Dev}.
	Discovery *discovery.Client
	// Dev allows http:// and loopback resource and auth server identifiers (tests and
	// local demos only; production identifiers are https origins, draft-hardt-aauth §5.1).
	Dev bool
	// Purpose is the optional human-readable reason sent with token requests and shown
	// to the user at consent.
	Purpose string
	// TokenCache holds the auth tokens obtained; nil means one private to this Transport.
	// It may be shared with Transports using other keys: tokens are looked up by the
	// thumbprint of Identity's key as well as by resource.
	TokenCache *TokenCache
	// ResourceIDs maps a request origin (scheme://host[:port], lowercase, no default
	// port) to the resource identifier the resource there uses as iss, for resources
	// reached through another name (a gateway behind a proxy). Without an entry the
	// identifier must equal the origin.
	ResourceIDs map[string]string
	// ManualAuthToken turns the token flow off: require=auth-token challenges are
	// returned to the caller unchanged.
	ManualAuthToken bool
	// AwaitToken, when set, is called when the auth server defers the token request
	// (202): it waits for the user's consent (polling p.Location, signed with Identity)
	// and returns the auth token, which is then checked like a directly issued one.
	// (*Poller).Await does this. nil means the flow stops with the *PendingError.
	AwaitToken func(ctx context.Context, p *PendingError) (authToken string, err error)
	// AwaitResponse, when set, is called when the resource itself answers a request with
	// 202, AAuth: require=interaction (or approval) and a Location on its own origin
	// (draft-hardt-aauth §4.5.7, §4.5.8.2): it shows the user where to approve (p's
	// InteractionEndpoint and Code), polls p.Location signed with cred, the credential
	// that signed the request, and returns the first answer that is not 202, which
	// RoundTrip returns as the response to the request. (*Poller).AwaitResponse does
	// this. nil means the 202 is returned to the caller (after a log line with the
	// interaction URL).
	AwaitResponse func(ctx context.Context, p *PendingError, cred *Credential) (*http.Response, error)

	// UpstreamToken, when set, turns every token request into a token exchange
	// (draft-hardt-aauth §4.5.8, call chaining): the body carries it as upstream_token
	// next to the resource token. It is the auth token a resource acting as an agent
	// received from its own caller; it is never logged.
	UpstreamToken string
	// ExchangeForm is how an exchange is signed: ExchangeSignatureKey (the default)
	// presents UpstreamToken in Signature-Key (scheme jwt) and signs with Identity's key;
	// ExchangeBody signs with Identity as usual and sends the upstream token in the body
	// only.
	ExchangeForm string

	disc     *discovery.Client // lazily created when Discovery is nil; guarded by lazyMu
	tokens   *TokenCache       // lazily created when TokenCache is nil; guarded by lazyMu
	inflight *flightGroup      // auth-token flows in progress; lazily created, guarded by lazyMu
	backoffs *serverGate       // per-auth-server backoff after outage answers; lazily created, guarded by lazyMu
}

func (t *Transport) logf(format string, a ...any) {
	if t.Logf != nil {
		t.Logf(format, a...)
	}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

func (t *Transport) check() error {
	if t.Pseudonym != nil {
		if err := t.Pseudonym.Validate(); err != nil {
			return err
		}
		if t.Pseudonym.Scheme != httpsig.SchemeHWK {
			return fmt.Errorf("agent: Pseudonym must be an hwk credential, not %s", t.Pseudonym.Scheme)
		}
	}
	if t.Identity != nil {
		if err := t.Identity.Validate(); err != nil {
			return err
		}
		if !t.Identity.Identified() {
			return fmt.Errorf("agent: Identity must be a jwks_uri or jwt credential, not %s", t.Identity.Scheme)
		}
	}
	return nil
}

// initial picks the credential for the first attempt (nil means unsigned).
func (t *Transport) initial() *Credential {
	switch {
	case t.Lazy:
		return nil
	case t.Identity != nil && !t.PreferPseudonym:
		return t.Identity
	case t.Pseudonym != nil:
		return t.Pseudonym
	}
	return t.Identity
}

// stepUp picks the credential for the single retry after challenge c, or nil when a retry
// could not satisfy it (signing again the same way would only repeat the refusal).
func (t *Transport) stepUp(used *Credential, c Challenge) *Credential {
	switch c.Require {
	case RequireIdentity:
		if t.Identity != nil && !used.Identified() {
			return t.Identity
		}
	case RequirePseudonym:
		if used == nil {
			if t.Pseudonym != nil {
				return t.Pseudonym
			}
			return t.Identity
		}
	}
	return nil
}

// RoundTrip implements http.RoundTripper. The caller's request is never modified: each
// attempt is a clone carrying its own copy of the buffered body and its own signature.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := t.readBody(req)
	if err != nil {
		return nil, err
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	if t.flowEnabled() {
		resp, done, err := t.tryCachedToken(req, body)
		if done || err != nil {
			return resp, err
		}
	}
	cred := t.initial()
	resp, err := t.sendRiding(req, body, cred)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	c, ok := ParseChallenge(resp.Header)
	if !ok {
		t.logf("401 without a usable AAuth challenge; not retrying")
		return resp, nil
	}
	t.logf("challenge: %s", c.Summary(false))
	var next *Credential
	if t.wantsFlow(c) {
		if cred == t.Identity {
			discard(resp)
			return t.authTokenFlow(req, body, c)
		}
		// The resource wants an auth token, but a resource token can only be minted for
		// an identified agent: show the identity first (draft-hardt-aauth §6).
		next = t.Identity
	} else {
		next = t.stepUp(cred, c)
	}
	if next == nil {
		if c.Require == RequireIdentity && t.Identity == nil {
			t.logf("the resource requires an identity and none is configured")
		}
		return resp, nil
	}
	t.logf("retrying with %s", next.Scheme)
	discard(resp)
	resp, err = t.sendRiding(req, body, next)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || next != t.Identity {
		return resp, err
	}
	if c, ok := ParseChallenge(resp.Header); ok && t.wantsFlow(c) {
		t.logf("challenge: %s", c.Summary(false))
		discard(resp)
		return t.authTokenFlow(req, body, c)
	}
	return resp, nil
}

// tryCachedToken signs the request with a cached auth token for its resource, if there is
// one. done is false when there was none, or when the resource refused it with something
// other than an auth-token challenge: the caller then starts over without the token.
func (t *Transport) tryCachedToken(req *http.Request, body []byte) (*http.Response, bool, error) {
	resID := t.resourceID(req.URL)
	ct, ok := t.cache().Get(resID, t.Identity.Signer.Public.Thumbprint)
	if !ok {
		return nil, false, nil
	}
	t.logf("using the cached auth token for %s (scope %q, expires %s)", resID, ct.Scope, ct.Expiry.UTC().Format(time.RFC3339))
	resp, err := t.sendRiding(req, body, AuthToken(t.Identity.Signer, ct.Token))
	if err != nil {
		return nil, true, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, true, nil
	}
	c, ok := ParseChallenge(resp.Header)
	discard(resp)
	if !ok || !t.wantsFlow(c) || challengeScope(c) == ct.Scope {
		// Refused for its own grant: the token is of no further use. A challenge for
		// another scope (a route of the same resource that needs a different grant)
		// leaves it cached for the routes it serves.
		t.cache().Delete(resID, ct.Token)
	}
	if ok && t.wantsFlow(c) {
		t.logf("the cached auth token was refused; challenge: %s", c.Summary(false))
		resp, err := t.authTokenFlow(req, body, c)
		return resp, true, err
	}
	t.logf("the cached auth token was refused; starting over without it")
	return nil, false, nil
}

// discard drains (boundedly) and closes a response that is being replaced by a retry.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
}

// readBody buffers the request body (closing the caller's body, as the RoundTripper
// contract requires) so every attempt can send identical bytes. nil means no body.
func (t *Transport) readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	limit := t.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("agent: reading request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("agent: request body exceeds %d bytes and cannot be buffered for signing", limit)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

func (t *Transport) send(orig *http.Request, body []byte, cred *Credential) (*http.Response, error) {
	r := orig.Clone(orig.Context())
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	} else if orig.Body != nil {
		r.Body = http.NoBody
		r.GetBody = nil
		r.ContentLength = 0
	}
	if cred == nil {
		t.logf("sending %s %s unsigned", r.Method, r.URL.Redacted())
	} else {
		if err := t.sign(r, body, cred); err != nil {
			return nil, err
		}
		t.logf("signed %s %s with %s", r.Method, r.URL.Redacted(), cred)
	}
	resp, err := t.base().RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusAccepted {
		return t.resourcePending(orig, resp, cred)
	}
	return resp, err
}

func (t *Transport) sign(r *http.Request, body []byte, cred *Credential) error {
	opts := httpsig.SignOptions{Dictionary: t.Dictionary, StdBase64: t.StdBase64}
	if !wire.SafeMethod(r.Method) {
		// Resources may accept an unsafe request once (replay protection keyed on the
		// signature base); a nonce keeps two identical requests in one second apart.
		opts.Nonce = httpsig.NewNonce()
	}
	if t.Now != nil {
		opts.Created = t.Now()
	} else {
		opts.Created = time.Now()
	}
	if t.SignBody && body != nil {
		httpsig.SetContentDigest(r, body)
		if r.Header.Get("Content-Type") != "" {
			opts.Extra = append(opts.Extra, "content-type")
		}
		opts.Extra = append(opts.Extra, "content-digest")
	}
	// httpsig.Sign takes @authority from the URL, but an explicit Host is what goes on
	// the wire and what the resource sees, so sign a shallow copy whose URL carries it.
	// The copy shares r's header map, so the signature headers land on r.
	target := r
	if r.Host != "" && r.Host != r.URL.Host {
		u := *r.URL
		u.Host = r.Host
		cp := *r
		cp.URL = &u
		target = &cp
	}
	if err := httpsig.Sign(target, cred.Signer, cred.SigKey(), opts); err != nil {
		return fmt.Errorf("agent: signing with %s: %w", cred.Scheme, err)
	}
	return nil
}
