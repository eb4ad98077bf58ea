package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/internal/ctxsleep"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Steps of the auth-token flow, as reported in FlowError.Step (sections: draft-hardt-aauth).
const (
	StepAgent         = "agent"          // working out our own agent id
	StepResourceToken = "resource-token" // checking the challenge's resource token (draft §17.2)
	StepAuthServer    = "auth-server"    // validating the AS and its metadata
	StepTokenRequest  = "token-request"  // the POST to the token endpoint
	StepAuthToken     = "auth-token"     // checking the issued auth token (draft §17.1)
)

// maxTokenResponse caps what is read from the token endpoint.
const maxTokenResponse = 64 << 10

// FlowError is a failure of the auth-token flow before the auth server gave a verdict:
// the challenge could not be trusted, the auth server could not be reached or described
// itself wrongly, or the token it issued failed the agent's checks. The resource token is
// never sent onward after a resource-token or auth-server failure.
type FlowError struct {
	Step string // one of the Step constants
	Err  error
}

func (e *FlowError) Error() string { return "agent: auth-token flow: " + e.Step + ": " + e.Err.Error() }
func (e *FlowError) Unwrap() error { return e.Err }

func flowErr(step, format string, a ...any) *FlowError {
	return &FlowError{Step: step, Err: fmt.Errorf(format, a...)}
}

// TokenError is the auth server's refusal (a 4xx or 5xx answer from its token endpoint),
// with the protocol error code (draft-hardt-aauth §18), e.g. denied, invalid_request,
// invalid_resource_token. Code and Description come from the server and are cleaned of
// control characters and bounded before they are stored.
//
// A 500, 502, 503 or 504 means the auth server could not decide (it may be restarting):
// the flow retries the token request itself (with the same resource token, never a new
// flow) a few times with backoff before it reports the TokenError; RetryAfter then
// carries the server's Retry-After (RFC 9110 §10.2.3), if any, for the caller's own
// backoff.
type TokenError struct {
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration // the answer's Retry-After; 0 when absent
}

// Temporary reports whether the refusal says the auth server could not decide now (a
// 5xx answer), so the same request may succeed later.
func (e *TokenError) Temporary() bool { return retryableStatus(e.Status) }

// retryableStatus: the server or a proxy before it could not answer now (RFC 9110 §15.6).
func retryableStatus(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func (e *TokenError) Error() string {
	s := fmt.Sprintf("agent: the auth server refused the token request: %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// PendingError reports that the auth server deferred the token request (202,
// draft-hardt-aauth §11.3): the user has to consent (Require interaction, with Code) or
// the server is getting approval itself (Require approval). Polling Location is the next
// step; until a Transport.AwaitToken hook does it, the flow stops here. The same type
// describes a request the resource itself deferred (AtResource), for
// Transport.AwaitResponse.
type PendingError struct {
	Location            string        // the pending URL (absolute, on the auth server's origin)
	Code                string        // the interaction code, when Require is interaction
	Require             string        // interaction or approval
	RetryAfter          time.Duration // how long to wait before polling
	AuthServer          string        // the auth server identifier
	InteractionEndpoint string        // from the AS metadata, where the user enters Code
	Resource            string        // the resource identifier the token is for
	// AtResource: the resource answered the request itself with 202 (draft-hardt-aauth
	// §4.5.7; a resource that must first get consent for its own call to another one,
	// §4.5.8.2). Location is then on the resource's origin (Origin), AuthServer is
	// empty, InteractionEndpoint comes from the 202's body, and the pending URL's final
	// answer is the response to the request (see resourcepending.go).
	AtResource bool
	Origin     string // AtResource: the origin of the resource that answered 202
}

func (e *PendingError) Error() string {
	s := "agent: the auth server deferred the token request"
	if e.AtResource {
		s = "agent: the resource deferred the request"
	}
	if e.Require != "" {
		s += " (require=" + e.Require + ")"
	}
	if e.Code != "" {
		s += "; interaction code " + e.Code
	}
	return s + "; pending at " + e.Location
}

// lazyMu guards the lazily created per-Transport discovery client and token cache. It is
// global rather than a Transport field so Transport values stay copyable (vet copylocks).
var lazyMu sync.Mutex

func (t *Transport) discoveryClient() *discovery.Client {
	if t.Discovery != nil {
		return t.Discovery
	}
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if t.disc == nil {
		t.disc = discovery.New(discovery.Config{Dev: t.Dev})
	}
	return t.disc
}

func (t *Transport) cache() *TokenCache {
	if t.TokenCache != nil {
		return t.TokenCache
	}
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if t.tokens == nil {
		t.tokens = &TokenCache{Now: t.Now}
	}
	return t.tokens
}

func (t *Transport) flights() *flightGroup {
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if t.inflight == nil {
		t.inflight = &flightGroup{}
	}
	return t.inflight
}

func (t *Transport) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Transport) sleep(ctx context.Context, d time.Duration) error {
	if t.Sleep != nil {
		return t.Sleep(ctx, d)
	}
	return ctxsleep.Sleep(ctx, d)
}

// Origin returns the origin of u as AAuth identifiers spell it: lowercase scheme and
// host, default port removed (https://api.example, http://127.0.0.1:8080).
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	return scheme + "://" + httpsig.Authority(scheme, u.Host)
}

// resourceID is the identifier the resource at u must use as iss: its origin, or what
// ResourceIDs maps that origin to.
func (t *Transport) resourceID(u *url.URL) string {
	o := Origin(u)
	if id, ok := t.ResourceIDs[o]; ok {
		return id
	}
	return o
}

// flowEnabled reports whether Transport runs the auth-token flow itself.
func (t *Transport) flowEnabled() bool {
	return t.Identity != nil && !t.ManualAuthToken
}

// wantsFlow reports whether c is an auth-token challenge the flow can act on.
func (t *Transport) wantsFlow(c Challenge) bool {
	return t.flowEnabled() && c.Require == RequireAuthToken && c.ResourceToken != "" && c.AuthServer != ""
}

// agentID is the identifier the resource and the auth server know us by: the jwks_uri
// id, or the iss of the agent token (read without verification: it is our own token,
// and the resource verified it before minting the resource token).
func agentID(c *Credential) (string, error) {
	switch c.Scheme {
	case httpsig.SchemeJWKSURI:
		return c.ID, nil
	case httpsig.SchemeJWT:
		tok, err := token.Parse(c.AgentToken, token.TypAgent)
		if err != nil {
			return "", fmt.Errorf("the identity's token is not an agent token: %w", err)
		}
		if tok.Claims.Issuer == "" {
			return "", errors.New("the agent token has no iss")
		}
		return tok.Claims.Issuer, nil
	}
	return "", fmt.Errorf("scheme %s carries no agent identity", c.Scheme)
}

// authTokenFlow answers challenge c (received for req, signed with Identity): it obtains
// an auth token and retries req once with it. A 401 to the retry is returned as it is.
func (t *Transport) authTokenFlow(req *http.Request, body []byte, c Challenge) (*http.Response, error) {
	ct, err := t.sharedAuthToken(req.Context(), req.URL, c)
	if err != nil {
		return nil, err
	}
	t.logf("retrying %s %s with the auth token", req.Method, req.URL.Redacted())
	resp, err := t.sendRiding(req, body, AuthToken(t.Identity.Signer, ct.Token))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		t.cache().Delete(ct.Resource, ct.Token)
		t.logf("the resource refused the new auth token; not retrying again")
	}
	return resp, nil
}

// challengeScope is the scope of c's resource token, read without verification, only to
// keep apart requests (and cached tokens) that need different grants; the flow checks
// the resource token before relying on it.
func challengeScope(c Challenge) string {
	if rt, err := token.Parse(c.ResourceToken, token.TypResource); err == nil {
		return rt.Claims.Scope
	}
	return ""
}

// sharedAuthToken obtains an auth token for challenge c received from the resource at u,
// running the flow once for all the requests that are challenged for the same resource,
// signing key and scope at the same time: a request challenged while a flow is in
// progress waits for it and gets its token or its error (one token request, one consent
// prompt). The flow runs under a context detached from any single request (it keeps the
// values of the request that started it, not its cancellation), so a request whose
// context ends returns that context's error without cancelling the flow for the others;
// only when every request waiting for it has gone is the flow cancelled. The flow first
// refreshes an expired cached token for the same grant, if there is one
// (refreshOrObtain).
func (t *Transport) sharedAuthToken(ctx context.Context, u *url.URL, c Challenge) (CachedToken, error) {
	resID := t.resourceID(u)
	scope := challengeScope(c)
	key := resID + "\x00" + t.Identity.Signer.Public.Thumbprint + "\x00" + scope
	if t.UpstreamToken != "" {
		key += "\x00" + t.UpstreamToken // exchanges for different callers never share a flow
	}
	return t.flights().do(ctx, key,
		func(ctx context.Context) (CachedToken, error) { return t.refreshOrObtain(ctx, u, c, scope) },
		func() { t.logf("an auth-token flow for %s is already in progress; waiting for it", resID) })
}

// flightGroup runs at most one auth-token flow per key at a time (a keyed single-flight).
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

// flight is one flow in progress. tok and err are set before done is closed.
type flight struct {
	done   chan struct{}
	tok    CachedToken
	err    error
	refs   int                // callers waiting for it; guarded by flightGroup.mu
	cancel context.CancelFunc // cancels the flow's context
}

// do returns the result of fn for key, starting fn (in its own goroutine, under a
// context detached from ctx) unless a call for key is already in progress, in which
// case joined is called and that call's result is awaited. When ctx ends first, do
// returns ctx.Err(); the last caller to leave that way cancels the flow.
func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (CachedToken, error), joined func()) (CachedToken, error) {
	g.mu.Lock()
	f, inProgress := g.m[key]
	if !inProgress {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		if g.m == nil {
			g.m = map[string]*flight{}
		}
		g.m[key] = f
		go func() {
			defer cancel()
			f.tok, f.err = fn(fctx)
			g.mu.Lock()
			if g.m[key] == f {
				delete(g.m, key)
			}
			g.mu.Unlock()
			close(f.done)
		}()
	}
	f.refs++
	g.mu.Unlock()
	if inProgress && joined != nil {
		joined()
	}
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-f.done: // finished meanwhile: its result is as good as the error
		return f.tok, f.err
	default:
	}
	if f.refs--; f.refs == 0 {
		// Nobody is waiting any more: stop the flow, and let the next caller start a
		// fresh one rather than join this cancelled one.
		f.cancel()
		if g.m[key] == f {
			delete(g.m, key)
		}
	}
	return CachedToken{}, ctx.Err()
}

// obtainAuthToken runs steps a–d of the flow for challenge c received from the resource
// at u, and caches the token it gets.
func (t *Transport) obtainAuthToken(ctx context.Context, u *url.URL, c Challenge) (CachedToken, error) {
	id := t.Identity
	me, err := agentID(id)
	if err != nil {
		return CachedToken{}, &FlowError{Step: StepAgent, Err: err}
	}
	resID := t.resourceID(u)
	as := c.AuthServer
	rt, err := t.checkResourceToken(ctx, c, resID, me, id.Signer.Public.Thumbprint, t.now())
	if err != nil {
		return CachedToken{}, err
	}
	t.logf("resource token checked: typ %s, iss %s, scope %q, expires %s",
		rt.Header.Typ, rt.Claims.Issuer, rt.Claims.Scope, unixTime(rt.Claims.Expiry))

	endpoint, interact, err := t.tokenEndpoint(ctx, as, time.Unix(rt.Claims.Expiry, 0))
	if err != nil {
		return CachedToken{}, err
	}
	t.logf("auth server %s: token endpoint %s", as, endpoint.Redacted())

	raw, expiresIn, err := t.requestTokenRetrying(ctx, endpoint, c.ResourceToken, resID, as, interact, time.Unix(rt.Claims.Expiry, 0))
	if raw, expiresIn, err = t.awaitToken(ctx, raw, expiresIn, err); err != nil {
		return CachedToken{}, err
	}
	ct, tok, err := t.checkIssued(ctx, raw, expiresIn, resID, as, me)
	if err != nil {
		return CachedToken{}, err
	}
	t.cache().Put(ct)
	t.logf("auth token received: typ %s, iss %s, scope %q, expires %s",
		tok.Header.Typ, tok.Claims.Issuer, tok.Claims.Scope, unixTime(tok.Claims.Expiry))
	return ct, nil
}

// checkResourceToken is the agent's check of a resource token (draft-hardt-aauth §17.2): cheap
// claim checks first, then the signature with the key the resource publishes.
func (t *Transport) checkResourceToken(ctx context.Context, c Challenge, resID, me, jkt string, now time.Time) (*token.Token, error) {
	step := StepResourceToken
	rt, err := token.Parse(c.ResourceToken, token.TypResource)
	if err != nil {
		return nil, &FlowError{Step: step, Err: err}
	}
	cl := rt.Claims
	if cl.Issuer != resID {
		return nil, flowErr(step, "iss %q is not the resource that was called (%s)", cl.Issuer, resID)
	}
	if err := discovery.ValidateIdentifier(resID, t.Dev); err != nil {
		return nil, flowErr(step, "the resource %q is not a valid identifier (http and loopback need Dev): %w", resID, err)
	}
	if len(cl.Audience) != 1 || cl.Audience[0] != c.AuthServer {
		return nil, flowErr(step, "aud %v is not the challenge's auth-server %q", []string(cl.Audience), c.AuthServer)
	}
	if cl.Agent != me {
		return nil, flowErr(step, "agent %q is not us (%s)", cl.Agent, me)
	}
	if cl.AgentJKT != jkt {
		return nil, flowErr(step, "agent_jkt %q is not the thumbprint of our signing key (%s)", cl.AgentJKT, jkt)
	}
	if cl.Expiry == 0 || !now.Before(time.Unix(cl.Expiry, 0)) {
		return nil, flowErr(step, "the resource token expired at %s", unixTime(cl.Expiry))
	}
	// The auth server must be a valid identifier before anything is fetched on the
	// resource token's behalf.
	if err := discovery.ValidateIdentifier(c.AuthServer, t.Dev); err != nil {
		return nil, flowErr(StepAuthServer, "auth-server %q is not a valid identifier: %w", c.AuthServer, err)
	}
	vt, err := token.VerifyResourceToken(ctx, c.ResourceToken,
		token.Options{Now: now, Audience: c.AuthServer, Issuers: []string{resID}},
		func(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
			return t.discoveryClient().Key(ctx, iss, discovery.DocResource, kid)
		})
	if err != nil {
		return nil, &FlowError{Step: step, Err: err}
	}
	return vt, nil
}

// tokenEndpoint reads the auth server's metadata: the token endpoint must be on the auth
// server's own origin. It also returns the interaction endpoint (may be empty). A fetch
// that fails in a passing way (discovery.ErrUnavailable: the auth server is down or
// restarting) is retried like a token request, never at or after deadline.
func (t *Transport) tokenEndpoint(ctx context.Context, as string, deadline time.Time) (*url.URL, string, error) {
	step := StepAuthServer
	var md map[string]any
	err := t.tokenRetrier("auth server metadata", as).run(ctx, deadline, func() error {
		var err error
		md, err = t.discoveryClient().Metadata(ctx, as, discovery.DocIssuer)
		return err
	})
	if err != nil {
		return nil, "", flowErr(step, "auth server metadata: %w", err)
	}
	raw, _ := md["token_endpoint"].(string)
	if raw == "" {
		return nil, "", flowErr(step, "the auth server metadata has no token_endpoint")
	}
	u, err := discovery.ValidateEndpointURL(raw, t.Dev)
	if err != nil {
		return nil, "", flowErr(step, "token_endpoint %q: %w", raw, err)
	}
	if Origin(u) != as {
		return nil, "", flowErr(step, "token_endpoint %q is not on the auth server's origin %s", raw, as)
	}
	interact, _ := md["interaction_endpoint"].(string)
	return u, interact, nil
}

// Retries of the token request when the auth server cannot be reached or answers 5xx.
const (
	tokenAttempts = 4                // the first request and three retries
	tokenRetryCap = 10 * time.Second // the longest wait between two attempts
)

// requestTokenRetrying is requestToken, repeated (retryTokenCall) while the auth server
// cannot decide, never after the resource token expired (rtExpiry): the flow is not
// started over, so no new resource token is minted for each attempt.
func (t *Transport) requestTokenRetrying(ctx context.Context, endpoint *url.URL, resourceToken, resID, as, interact string, rtExpiry time.Time) (string, int64, error) {
	return t.retryTokenCall(ctx, as, rtExpiry, func() (string, int64, error) {
		return t.requestToken(ctx, endpoint, resourceToken, resID, as, interact)
	})
}

// retryTokenCall runs call, a token request to the auth server as, again while the auth
// server cannot be reached (connection refused or reset, EOF, timeout) or answers 500,
// 502, 503 or 504: after a backoff (the answer's Retry-After, RFC 9110 §10.2.3, else 1,
// 2, 4 s with jitter), at most tokenAttempts times in all, and never at or after
// deadline. A Retry-After beyond tokenRetryCap is not waited for here. Then the last
// error is returned (a *TokenError with RetryAfter for the caller's backoff). The
// backoff is remembered per auth server: a later flow does not ask as again before it
// is over (at most one token request per backoff interval), see retrier.
func (t *Transport) retryTokenCall(ctx context.Context, as string, deadline time.Time, call func() (string, int64, error)) (string, int64, error) {
	var raw string
	var exp int64
	err := t.tokenRetrier("token request", as).run(ctx, deadline, func() error {
		var err error
		raw, exp, err = call()
		return err
	})
	return raw, exp, err
}

// requestToken POSTs the resource token to the token endpoint, signed with Identity and
// covering the body, and returns the auth token and expires_in of a 200 answer.
func (t *Transport) requestToken(ctx context.Context, endpoint *url.URL, resourceToken, resID, as, interact string) (string, int64, error) {
	body, err := json.Marshal(wire.TokenRequest{ResourceToken: resourceToken, Purpose: t.Purpose, UpstreamToken: t.UpstreamToken})
	if err != nil {
		return "", 0, &FlowError{Step: StepTokenRequest, Err: err}
	}
	cred := t.Identity
	if t.UpstreamToken != "" && t.ExchangeForm != ExchangeBody {
		cred = AuthToken(t.Identity.Signer, t.UpstreamToken) // exchange, Signature-Key form
	}
	return t.postToken(ctx, endpoint, body, cred, resID, as, interact)
}

// postToken POSTs body (JSON) to the token endpoint, signed with cred and covering the
// body, and returns the auth token and expires_in of a 200 answer, a *PendingError for a
// 202 (resID is what the token is for), a *TokenError for a refusal.
func (t *Transport) postToken(ctx context.Context, endpoint *url.URL, body []byte, cred *Credential, resID, as, interact string) (string, int64, error) {
	step := StepTokenRequest
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return "", 0, &FlowError{Step: step, Err: err}
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	httpsig.SetContentDigest(r, body)
	opts := httpsig.SignOptions{Dictionary: t.Dictionary, StdBase64: t.StdBase64, Created: t.now(),
		Extra: []string{"content-type", "content-digest"}, Nonce: httpsig.NewNonce()}
	if err := httpsig.Sign(r, cred.Signer, cred.SigKey(), opts); err != nil {
		return "", 0, flowErr(step, "signing: %w", err)
	}
	resp, err := t.base().RoundTrip(r)
	if err != nil {
		return "", 0, &FlowError{Step: step, Err: &transientError{err}}
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return "", 0, &FlowError{Step: step, Err: &transientError{fmt.Errorf("reading the answer: %w", err)}}
	}
	if len(rb) > maxTokenResponse {
		return "", 0, flowErr(step, "the answer exceeds %d bytes", maxTokenResponse)
	}
	t.logf("token request: POST %s signed with %s -> %s", endpoint.Redacted(), cred, resp.Status)

	switch {
	case resp.StatusCode == http.StatusOK:
		var ok struct {
			AuthToken string          `json:"auth_token"`
			ExpiresIn json.RawMessage `json:"expires_in"`
		}
		if err := json.Unmarshal(rb, &ok); err != nil || ok.AuthToken == "" {
			return "", 0, flowErr(StepAuthToken, "the 200 answer carries no auth_token")
		}
		var exp int64
		if len(ok.ExpiresIn) > 0 {
			exp, _ = strconv.ParseInt(string(ok.ExpiresIn), 10, 64)
		}
		return ok.AuthToken, exp, nil
	case resp.StatusCode == http.StatusAccepted:
		return "", 0, t.pending(resp, rb, endpoint, as, interact, resID)
	case resp.StatusCode >= 400:
		e := wire.DecodeError(rb)
		te := &TokenError{Status: resp.StatusCode, Code: clean(e.Code, 64), Description: clean(e.Description, 300)}
		if ra := retryAfter(resp.Header); ra > 0 {
			te.RetryAfter = ra
		}
		return "", 0, te
	}
	return "", 0, flowErr(step, "unexpected answer %s", resp.Status)
}

// pending builds the PendingError of a 202 answer. Location must be on the auth server's
// origin (relative locations are resolved against the token endpoint).
func (t *Transport) pending(resp *http.Response, body []byte, endpoint *url.URL, as, interact, resID string) error {
	var b wire.PendingResponse
	_ = json.Unmarshal(body, &b)
	loc := resp.Header.Get("Location")
	if loc == "" {
		loc = b.Location
	}
	lu, err := endpoint.Parse(loc)
	if loc == "" || err != nil || lu.User != nil || Origin(lu) != as {
		return flowErr(StepTokenRequest, "202 without a Location on the auth server's origin")
	}
	p := &PendingError{Location: lu.String(), Require: clean(b.Require, 32), Code: clean(b.Code, 64),
		AuthServer: as, InteractionEndpoint: interact, Resource: resID}
	if c, ok := ParseChallenge(resp.Header); ok {
		p.Require = c.Require
		if c.Code != "" {
			p.Code = clean(c.Code, 64)
		}
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		p.RetryAfter = time.Duration(min(s, 3600)) * time.Second
	}
	return p
}

// clean makes server-supplied text safe to print: control and format characters become
// spaces, and it is cut to at most n runes.
func clean(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			r = ' '
		}
		b.WriteRune(r)
		i++
	}
	return strings.TrimSpace(b.String())
}

func unixTime(s int64) string {
	if s == 0 {
		return "(none)"
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}
