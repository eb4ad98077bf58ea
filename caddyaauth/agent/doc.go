// Package agent makes any Go program an AAuth agent (see the AAuth draft,
// https://dickhardt.github.io/draft-hardt-aauth/draft-hardt-aauth.html): an
// [http.RoundTripper] that signs outgoing requests with RFC 9421 HTTP Message Signatures
// and a Signature-Key header and answers the resource's 401 challenges, stepping up from
// a pseudonymous hwk signature to an identified one and, on require=auth-token, obtaining
// an auth token from the named auth server and caching it; a [Poller] that waits for the
// user's consent when the auth server defers (plugged in as [Transport].AwaitToken) or
// the resource itself does ([Transport].AwaitResponse); self-access tokens
// ([Transport].SelfAccessToken) and refresh of expired tokens; and
// a small agent [Server] that publishes the agent's metadata and JWKS and issues demo
// agent tokens to delegates. Package agenttest has fake resources and auth servers for
// testing agents. The package has no Caddy imports, so it can be linked into plain
// command-line tools; the aauth CLI (cmd/aauth) is built on it.
//
// # Transport
//
// [Transport] is an [http.RoundTripper] that signs each request and answers the
// resource's challenges: after a 401 with require=identity it retries once with the
// identity, and after require=auth-token it runs the auth-token flow (below) and retries
// once with the auth token. Credentials are made with [HWK] (a bare key sent inline,
// pseudonymous), [JWKSURI] (an agent identified by its published JWKS), [Delegate] (a
// delegate's own key plus an agent token) and [AuthToken] (an auth token, for callers
// that run the flow themselves):
//
//	b, err := os.ReadFile("agent.jwk") // written by `aauth keygen`
//	if err != nil {
//		log.Fatal(err)
//	}
//	signer, err := keys.ParsePrivateJWK(b)
//	if err != nil {
//		log.Fatal(err)
//	}
//
//	// An agent identified by its published JWKS; it signs with hwk first and reveals
//	// the identity only when a route asks for it.
//	client := &http.Client{Transport: &agent.Transport{
//		Pseudonym:       agent.HWK(signer),
//		Identity:        agent.JWKSURI(signer, "https://agent.example"),
//		PreferPseudonym: true,
//	}}
//	resp, err := client.Get("https://api.example.com/identity/hello")
//
//	// A delegate: its own key plus an agent token from the agent server.
//	delegateKey, err := keys.Generate(keys.AlgEd25519, "delegate-key-1")
//	tok, _, err := agent.RequestDelegateToken(context.Background(), nil, "https://agent.example",
//		os.Getenv("AAUTH_DELEGATE_SECRET"), "worker-7", delegateKey, nil)
//	delegated := &http.Client{Transport: &agent.Transport{Identity: agent.Delegate(delegateKey, tok)}}
//
//	// An auth-token route: the transport gets, checks and caches the auth token itself.
//	// Share one Transport (or one TokenCache) so later requests with this key reuse the token.
//	authorized := &http.Client{Transport: &agent.Transport{
//		Identity: agent.JWKSURI(signer, "https://agent.example"),
//		Purpose:  "Summarise this week's orders",
//	}}
//	resp, err = authorized.Get("https://api.example.com/data/orders")
//	var refused *agent.TokenError
//	var flow *agent.FlowError
//	switch {
//	case errors.As(err, &refused):
//		log.Fatalf("the auth server refused: %d %s: %s", refused.Status, refused.Code, refused.Description)
//	case errors.As(err, &flow):
//		log.Fatalf("auth-token flow failed at step %s: %v", flow.Step, flow.Err)
//	case err != nil:
//		log.Fatal(err)
//	}
//
// Other Transport fields: Base (the underlying transport), Lazy (send unsigned first),
// Dictionary and StdBase64 (wire variants: Signature-Key as an RFC 8941 dictionary, the
// signature in standard base64), SignBody (Content-Digest and covered
// content-type/content-digest), MaxBody, Now, Logf (one line per step, never keys or
// tokens; aauth fetch -v prints it). [ParseChallenge] reads an AAuth response header.
// The runnable examples (ExampleTransport and others) show each use against local test
// servers.
//
// # The agent server
//
// The agent side of jwks_uri is [Server], an [http.Handler] that serves
// /.well-known/aauth-agent.json (and /.well-known/aauth-agent), /jwks.json, and, when
// DelegateSecret is set, POST /delegate/token for delegates ([RequestDelegateToken]
// calls it):
//
//	srv := &agent.Server{
//		Signer:         signer, // needs a kid
//		ID:             "https://agent.example",
//		ClientName:     "Example agent",
//		DelegateSecret: os.Getenv("AAUTH_DELEGATE_SECRET"), // empty: no delegate endpoint
//	}
//	if err := srv.Validate(); err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(http.ListenAndServeTLS(":443", "cert.pem", "key.pem", srv))
//
// # The auth-token flow
//
// When a response is 401 with AAuth: require=auth-token; resource-token="…";
// auth-server="…" and Identity is set (a jwks_uri or agent-token credential), the
// transport, in this order:
//
//  1. Shows its identity first if the challenged request was pseudonymous or unsigned (a
//     resource mints resource tokens only for identified agents).
//  2. Checks the resource token before anything is fetched: typ resource+jwt; iss is the
//     identifier of the resource that was called (the request's origin, such as
//     https://api.example.com or http://localhost:8080, unless ResourceIDs maps it);
//     that identifier is valid (https://, or with Dev also http:// and loopback); aud is
//     exactly the challenge's auth-server; agent is this agent (the jwks_uri id, or the
//     agent token's iss); agent_jkt is the thumbprint of its signing key; not expired;
//     the auth-server is a valid identifier. Then the token's signature, with the key the
//     resource publishes at <resource>/.well-known/aauth-resource.json.
//  3. Reads the metadata of the auth server named in the challenge
//     (<auth-server>/.well-known/aauth-issuer.json). The auth server is taken only from
//     the challenge (and the resource token's aud must name it); its token_endpoint must
//     be on the auth server's own origin.
//  4. POSTs {"resource_token": "…", "purpose": Purpose} to the token endpoint, as JSON,
//     signed with Identity and covering content-type and content-digest.
//  5. On 200, checks the auth token: typ auth+jwt, iss = the auth server, aud = the
//     resource identifier, signed by a key in the auth server's JWKS, not expired (iat at
//     most 60 s in the future), cnf.jwk = its own signing key, agent = itself.
//  6. Caches it and retries the request once, signed with it (scheme jwt, [AuthToken]).
//     A 401 to that retry is returned as it is.
//
// The cache ([TokenCache]) holds tokens per resource identifier, signing-key thumbprint
// and scope (a cache shared by transports with different keys gives each only its own
// tokens), until the token's exp or the answer's expires_in (the earlier), minus a 30 s
// margin ([TokenExpiryMargin]); at most 256 tokens by default ([DefaultTokenCacheSize],
// [NewTokenCache](max)). A later request to the same resource is signed with the newest
// cached token straight away (one round trip). If the resource answers it with a new
// require=auth-token challenge (expired token, missing scope), the token is dropped and
// the flow runs once more; any other 401 drops it and starts over without it. Each kind
// of retry happens at most once per request: the transport never loops. Concurrent
// requests challenged for the same resource, key and scope share one token flow (one
// token request, one consent prompt); a request whose own context ends stops waiting
// without cancelling the flow for the others.
//
// A failed flow is an error from RoundTrip (wrapped by [http.Client] in a *url.Error;
// use [errors.As]):
//
//   - [*FlowError]: the flow stopped before the auth server gave a verdict. Step is
//     agent, resource-token, auth-server, token-request or auth-token; Err the cause
//     (errors.Is(err, discovery.ErrInvalid) or discovery.ErrBlocked for an http:// or
//     loopback identifier without Dev). After a resource-token or auth-server failure the
//     resource token is never sent on.
//   - [*TokenError]: the auth server refused (a 4xx or 5xx from its token endpoint), with
//     Status, Code (for example denied, invalid_resource_token) and Description, cleaned
//     of control characters and shortened. A 500, 502, 503 or 504, or a token endpoint
//     that cannot be reached, means the server could not decide (it may be restarting):
//     the token request alone is sent again, with the same resource token, at most four
//     times in all, after its Retry-After (RFC 9110 §10.2.3, up to 10 s) or 1, 2, 4 s with
//     jitter; the flow is never started over. The last refusal is then reported, with
//     Temporary() true and RetryAfter set when the server sent one. Transport.Sleep
//     replaces the timer (tests). The backoff is remembered per auth server: a later
//     flow does not send a token request there before it is over (at most one token
//     request per backoff interval), and one that cannot wait that long (more than 10 s,
//     or past its resource token's expiry) fails at once with a 503 TokenError,
//     temporarily_unavailable. The auth server's metadata fetch at flow start, and the
//     check of the issued token against its JWKS, are retried the same way while the
//     document cannot be fetched (discovery.ErrUnavailable); the clarification answer
//     POST of a consent wait too, never past the end of the wait. A token whose
//     signature fails with the cached JWKS triggers one refetch of it (a key replaced
//     under the same kid).
//
// A resource gateway that cannot verify a request because it cannot fetch the agent's
// or the auth server's keys answers 503 with Retry-After and the JSON error
// temporarily_unavailable. That is not a verdict on the credential: Transport keeps the
// auth token and sends the same request again after the Retry-After (RFC 9110 §10.2.3,
// at most 30 s), up to three times and within the request context's deadline, then
// returns the last 503 as the response. It never runs the token flow again for it. Any
// other 503 (the upstream's own) is returned as it is.
//   - [*PendingError]: the auth server deferred the request (202): Location (the pending
//     URL, on the auth server's origin), Require (interaction or approval), Code,
//     RetryAfter, AuthServer, InteractionEndpoint, Resource. Set AwaitToken (for example
//     to a [Poller]'s Await) to wait for the user instead.
//
// Transport fields for the flow:
//
//   - Dev: accept http:// and loopback resource and auth server identifiers (local demos
//     and tests only); also the setting of the discovery client created when Discovery
//     is nil.
//   - Purpose: a human-readable reason sent with token requests, for the user at consent.
//   - TokenCache: the *TokenCache to use; nil means one private to this Transport. Share
//     one between transports to share tokens.
//   - ResourceIDs: maps a request origin (scheme://host[:port], lowercase, no default
//     port) to the identifier the resource there uses as iss, for a resource reached
//     through another name (a gateway behind a proxy).
//   - ManualAuthToken: turns the flow off: require=auth-token challenges are returned to
//     the caller unchanged (build the signing credential yourself with
//     AuthToken(signer, authToken)).
//   - AwaitToken: func(ctx, *PendingError) (authToken string, err error), called on a
//     202: waits for the user and returns the auth token, which is then checked like a
//     direct one; nil means the flow stops with the *PendingError.
//   - AwaitResponse: func(ctx, *PendingError, *Credential) (*http.Response, error),
//     called when the resource itself answers 202 (see "Requests the resource defers");
//     [Poller].AwaitResponse does it; nil returns the 202.
//   - Discovery: the *discovery.Client that fetches resource and auth server metadata
//     and keys; nil means one created on first use.
//
// # Refresh
//
// The cache keeps a token that is no longer usable for [RefreshWindow] (24 h) past its
// expiry, for a refresh only; it is never sent to a resource. When a resource
// challenges for an auth token and the cache holds such an expired token for the same
// resource, signing key, auth server and scope (the challenge's resource token's scope),
// the flow first refreshes it (draft-hardt-aauth §11.6): a token request
// {"auth_token": "<expired token>"}, signed with Identity (the key in the token's cnf),
// to the token endpoint of the token's issuer. The new token is checked like a new one
// (step 5), cached in the old one's place and used for the retry; no resource token is
// sent and no consent is asked. A refusal (a 4xx, a 202, or a token that fails the
// checks) drops the expired token and runs the challenge flow as usual. An auth server
// that cannot decide (5xx, unreachable) is retried like any token request; then its
// *TokenError is returned and the expired token stays for a later attempt. A token past
// its refresh window is dropped and never refreshed. Logf says which of these happened.
//
// # Self-access
//
// [Transport].SelfAccessToken(ctx, authServer, scope) gets a token whose audience is
// the agent itself (draft-hardt-aauth §4.5.5: single sign-on, or the agent's own
// delegates): a token request {"scope": "…", "purpose": Purpose} signed with Identity,
// to the token endpoint in authServer's metadata. A 202 goes to AwaitToken as in the
// flow; the token is checked (iss = authServer, aud = the agent's identifier, cnf = its
// key, no agent claim other than itself; [token.VerifySelfAccessToken]) and cached under
// the agent's identifier, reused for the same auth server and scope while usable and
// refreshed once expired:
//
//	tr := &agent.Transport{Identity: agent.JWKSURI(signer, "https://agent.example")}
//	ct, err := tr.SelfAccessToken(ctx, "https://auth.example", "openid profile")
//	// ct.Token is the auth token, ct.Expiry its expiry, ct.Scope the granted scope.
//
// # Requests the resource defers
//
// A resource may answer a request itself with 202 (draft-hardt-aauth §4.5.7), for
// example a gateway whose backend calls another AAuth resource that needs the user's
// consent first (§4.5.8.2, interaction chaining): Location (its pending URL),
// Retry-After, AAuth: require=interaction; code="…", and a JSON body whose
// interaction_endpoint is where the user enters the code. When the 202 carries
// require=interaction (or approval) and a Location on the resource's own origin, and the
// request was signed, the transport logs the interaction URL
// ({interaction_endpoint}?code=…) and calls AwaitResponse with a [*PendingError]
// (AtResource true, Origin, Location, Code, InteractionEndpoint, Resource) and the
// credential that signed the request; [Poller].AwaitResponse polls the pending URL with
// GETs signed by that credential (any scheme), through the same wait as Await (OnPending,
// Prefer: wait, Retry-After, MaxDuration, retries after transport errors), and returns
// the first answer that is not 202, which RoundTrip returns as the response to the
// request: the resource's 200 after approval, or its 403 (denied), 408 (expired), 404 or
// 5xx as they are. Without AwaitResponse, or for an ordinary 202 (no AAuth header), the
// 202 is returned unchanged.
//
// # Consent
//
// A [Poller] waits for the user's decision on a deferred token request: it polls the
// pending URL with signed GETs (Prefer: wait, [DefaultPollWait] by default), answers the
// user's clarification questions through Clarify, and returns the auth token once the
// user approved; its Await method is meant for Transport.AwaitToken. Its Credential must
// be the Transport's Identity, which signed the token request. It keeps at least a second
// between polls, since the auth server accepts each signature on the pending URL once.
// Await's errors wrap [ErrConsentDenied] (the user denied), [ErrConsentExpired] (nobody
// decided before the pending request expired), [ErrPendingGone] (the pending URL no
// longer exists) and [ErrConsentTimeout] (no decision within MaxDuration,
// [DefaultConsentDuration] by default); test them with [errors.Is]. An outage does not end
// the wait (draft-hardt-aauth §10.3–10.6 keeps the pending request on the server): polls
// that fail in transport (connection refused or reset, EOF, timeout) or are answered
// 500, 502, 503 or 504 are retried after the answer's Retry-After (RFC 9110 §10.2.3, at
// most a minute) or an exponential backoff from 1 s to 30 s with jitter, until
// MaxDuration; each retry is logged through Logf and reported to OnProgress
// ([ProgressUnreachable] or [ProgressBackoff]). Only a decision (denied, expired), a gone
// pending URL (404, 410), another 4xx, MaxDuration or the context end it.
// [InteractionURL] and [FormatCode] build what to show the user from OnPending's
// *PendingError.
package agent
