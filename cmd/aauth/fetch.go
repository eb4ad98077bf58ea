package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

const fetchUsage = `usage: aauth fetch [-key agent.jwk] [-id AGENT_ID | -agent-token FILE] [-pseudonym]
                   [-X METHOD] [-d DATA | -d @file] [-H 'Name: value']... [-dict] [-std-b64]
                   [-sign-body] [-purpose TEXT] [-dev] [-profile NAME] [-no-cache] [-L] [-i] [-v]
                   [-timeout 30s] [-consent-timeout 10m] [-wait 20s] [-no-qr] [-open]
                   [-answer TEXT] URL
       aauth fetch -self -scope 'a b' -as AUTH_SERVER -key agent.jwk (-id AGENT_ID |
                   -agent-token FILE) [-purpose TEXT] [-dev] [-v] [consent flags]

Fetches URL like curl, signing the request with AAuth HTTP message signatures:
  -key and -id            identified as agent -id (scheme jwks_uri; the resource fetches
                          the key from the agent's published JWKS)
  -key and -agent-token   identified through an agent token (scheme jwt; -key is the
                          delegate key the token is bound to, see 'aauth delegate')
  -key alone              pseudonymous (scheme hwk: the public key travels inline)
  no -key                 pseudonymous with a fresh throw-away key
With -pseudonym the first request is signed with hwk even when an identity is configured;
the identity is revealed only if the resource answers 401 with AAuth: require=identity.

When the resource answers require=auth-token (an identity is needed), the resource token
is checked, the auth server named in the challenge is asked for an auth token (with
-purpose shown to the user), the token is checked, and the request is retried once with
it. -dev allows http:// and loopback resources and auth servers (local demos only).

When the auth server needs the user's consent (202), stderr shows where to approve: the
interaction URL ({interaction_endpoint}?code=CODE), the code (e.g. ABCD-2345) and a QR
code of the URL when stderr is a terminal (-no-qr hides it; -open also tries to open the URL in a browser). The
pending request is then polled, signed with the same key, with Prefer: wait (-wait,
0s for plain polling), until the user decides or -consent-timeout passes; on approval the
request is retried with the new auth token. Questions the user asks the agent are
answered with -answer TEXT, else typed at the terminal when stdin is one, else shown and
left unanswered. -timeout applies to the HTTP exchanges before and after the wait.

When the resource itself answers 202 with AAuth: require=interaction (a resource that
needs the user's consent for a call of its own), the interaction URL and code are shown
the same way, the resource's pending URL is polled with the key that signed the request,
and its final answer (200, or e.g. 403 denied) is the response.

-self asks the auth server -as for a token whose audience is the agent itself (no URL;
needs an identity) granting -scope, with the same consent handling, and prints the token
response JSON {"auth_token": …, "expires_in": …} on stdout.

Identified requests use the token cache ($XDG_CACHE_HOME/aauth, one 0600 file per key;
-no-cache or AAUTH_NO_CACHE=1 skip it): a token obtained once is sent by later commands
until it expires, then refreshed. -key, -id, -agent-token and -dev default to
$AAUTH_KEY, $AAUTH_ID, $AAUTH_AGENT_TOKEN and $AAUTH_DEV, else to the profile (-profile,
$AAUTH_PROFILE, in $XDG_CONFIG_HOME/aauth/config.json).

The response body goes to stdout (with -i, the status line and headers first); a
failure is one line on stderr, with the HTTP status when there was one. Exit status: 0
success, 1 local error, 2 usage error, 3 denied (by the user, or HTTP 403), 4 expired
(or HTTP 408, or -consent-timeout passed), 22 other HTTP 4xx (like curl -f), 23 HTTP
5xx, 130 interrupted (Ctrl-C). -v describes each step on stderr; it never prints keys
or tokens.
`

// fetchOptions are the flags and the URL of one fetch command.
type fetchOptions struct {
	keyFile, id, tokenFile   string
	pseudonym                bool
	method, data             string
	hasBody                  bool // -d was given, even as -d ""
	headers                  stringList
	dict, stdB64, signBody   bool
	follow, include, verbose bool
	dev                      bool
	purpose                  string
	timeout, consentTimeout  time.Duration
	wait                     waitFlag
	noCache                  bool
	noQR, openURL            bool
	answer                   string
	target                   *url.URL
	self                     bool   // -self: a self-access token, no URL
	scope, authServer        string // -scope and -as, with -self
}

func cmdFetch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseFetchFlags(args, stderr)
	if !ok {
		return code
	}
	vlog := func(format string, a ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "* "+format+"\n", a...)
		}
	}

	disc := discovery.New(discovery.Config{Dev: o.dev})
	defer disc.Close()
	tr := &agent.Transport{
		PreferPseudonym: o.pseudonym,
		Dictionary:      o.dict,
		StdBase64:       o.stdB64,
		SignBody:        o.signBody,
		Discovery:       disc,
		Dev:             o.dev,
		Purpose:         o.purpose,
	}
	if o.verbose {
		tr.Logf = vlog
	}
	if code, ok := setFetchCredentials(tr, o, stderr, vlog); !ok {
		return code
	}
	dc := useDiskCache(tr, o, stderr, vlog)

	// Ctrl-C and SIGTERM end the command (exit 130) rather than kill it, so the waiting
	// line is ended and the token cache written. -timeout bounds the HTTP exchanges; the
	// clock stops while the user decides.
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithCancelCause(sigCtx)
	defer cancel(nil)
	errTimeout := fmt.Errorf("no answer within %s (-timeout): %w", o.timeout, context.DeadlineExceeded)
	timer := time.AfterFunc(o.timeout, func() { cancel(errTimeout) })
	defer timer.Stop()
	setConsentHooks(tr, o, stderr, vlog, timer)
	failed := func(err error) int {
		if sigCtx.Err() != nil && ctx.Err() != nil && context.Cause(ctx) != errTimeout {
			fmt.Fprintln(stderr, "\naauth: interrupted")
			return exitInterrupted
		}
		if context.Cause(ctx) == errTimeout {
			err = errTimeout
		}
		vlog("error: %v", err)
		return flowFailure(stderr, err, o.dev)
	}
	var extra []agent.CachedToken
	if o.self {
		var ct *agent.CachedToken
		code, ct = fetchSelf(ctx, tr, o, stdout, failed)
		if ct != nil {
			extra = append(extra, *ct)
		}
	} else {
		code = fetchURL(ctx, tr, o, stdout, stderr, vlog, failed)
	}
	if dc != nil {
		if err := dc.save(tr.TokenCache, extra...); err != nil {
			fmt.Fprintf(stderr, "aauth: could not write the token cache: %v\n", err)
		}
	}
	return code
}

// fetchURL sends the request of a fetch command and writes the response.
func fetchURL(ctx context.Context, tr *agent.Transport, o *fetchOptions, stdout, stderr io.Writer, vlog func(string, ...any), failed func(error) int) int {
	var body []byte
	if o.hasBody {
		var err error
		if body, err = readData(o.data); err != nil {
			return failf(stderr, "fetch", "%v", err)
		}
	}
	req, err := newFetchRequest(ctx, o, body)
	if err != nil {
		return usageError(stderr, "fetch", "%v", err)
	}
	client := &http.Client{Transport: tr}
	if !o.follow {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	resp, err := client.Do(req)
	if err != nil {
		return failed(err)
	}
	defer resp.Body.Close()
	return writeFetchResponse(resp, o, tr, stdout, stderr, vlog)
}

// useDiskCache gives an identified transport the on-disk token cache of its key, unless
// -no-cache or AAUTH_NO_CACHE turns it off. A cache that cannot be opened is reported
// and skipped: the command still works, it only asks for a token again.
func useDiskCache(tr *agent.Transport, o *fetchOptions, stderr io.Writer, vlog func(string, ...any)) *diskCache {
	if tr.Identity == nil || o.noCache || cacheDisabledByEnv() {
		return nil
	}
	dir, err := cacheDir()
	if err != nil {
		fmt.Fprintf(stderr, "aauth: no token cache: %v\n", err)
		return nil
	}
	dc, tc, err := openDiskCache(dir, tr.Identity.Signer.Public.Thumbprint, o.dev)
	if err != nil {
		fmt.Fprintf(stderr, "aauth: no token cache: %v\n", err)
		return nil
	}
	tr.TokenCache = tc
	tr.Base = dc.wrap(tr.Base)
	vlog("token cache: %s (%d token(s))", dc.path, len(dc.loaded))
	return dc
}

// fetchSelf gets a self-access token (-self) and prints it as the auth server's token
// response would: {"auth_token": …, "expires_in": …}. It returns the token for the
// cache.
func fetchSelf(ctx context.Context, tr *agent.Transport, o *fetchOptions, stdout io.Writer, failed func(error) int) (int, *agent.CachedToken) {
	ct, err := tr.SelfAccessToken(ctx, o.authServer, o.scope)
	if err != nil {
		return failed(err), nil
	}
	out := wire.TokenResponse{AuthToken: ct.Token, ExpiresIn: max(0, int64(time.Until(ct.Expiry)/time.Second))}
	b, err := json.Marshal(out)
	if err != nil {
		return failed(err), nil
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return exitOK, &ct
}

// parseFetchFlags parses and checks the fetch command line; when ok is false, code is
// the exit status to return.
func parseFetchFlags(args []string, stderr io.Writer) (o *fetchOptions, code int, ok bool) {
	o = &fetchOptions{wait: waitFlag(agent.DefaultPollWait)}
	fs := newFlags("fetch", fetchUsage, stderr)
	var creds credFlags
	creds.add(fs, "private JWK file (agent key, or delegate key with -agent-token)",
		"agent identifier for the jwks_uri scheme, e.g. https://agent.example", true, true)
	fs.BoolVar(&o.noCache, "no-cache", false, "neither read nor write the on-disk token cache (default $"+envNoCache+")")
	fs.BoolVar(&o.pseudonym, "pseudonym", false, "sign with hwk first; step up to the identity only when asked")
	fs.StringVar(&o.method, "X", "", "request method (default GET, or POST with -d)")
	fs.StringVar(&o.data, "d", "", "request body; @file reads a file, @- reads stdin")
	fs.Var(&o.headers, "H", "request header 'Name: value' (repeatable)")
	fs.BoolVar(&o.dict, "dict", false, "emit Signature-Key in the RFC 8941 dictionary form")
	fs.BoolVar(&o.stdB64, "std-b64", false, "emit the signature in standard base64 instead of base64url")
	fs.BoolVar(&o.signBody, "sign-body", false, "cover content-type and content-digest of the body")
	fs.BoolVar(&o.follow, "L", false, "follow redirects (each hop is signed anew)")
	fs.BoolVar(&o.include, "i", false, "print the status line and response headers before the body")
	fs.BoolVar(&o.verbose, "v", false, "describe each step on stderr")
	fs.StringVar(&o.purpose, "purpose", "", "reason for the access, sent to the auth server and shown at consent")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "time limit of the HTTP exchanges (the wait for consent not counted)")
	fs.DurationVar(&o.consentTimeout, "consent-timeout", agent.DefaultConsentDuration, "how long to wait for the user's consent")
	fs.Var(&o.wait, "wait", "Prefer: wait for each consent poll, a duration such as 20s (0: plain polling)")
	fs.BoolVar(&o.noQR, "no-qr", false, "do not print a QR code of the interaction URL (never printed when stderr is not a terminal)")
	fs.BoolVar(&o.openURL, "open", false, "try to open the interaction URL in a browser")
	fs.StringVar(&o.answer, "answer", "", "answer to any clarification question the user asks")
	fs.BoolVar(&o.self, "self", false, "get a self-access token (audience: this agent) from -as instead of fetching a URL")
	fs.StringVar(&o.scope, "scope", "", "with -self: the scope to ask for, space-separated")
	fs.StringVar(&o.authServer, "as", "", "with -self: the auth server identifier, e.g. https://auth.example")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return nil, code, false
	}
	if err := creds.resolve(fs); err != nil {
		return nil, usageError(stderr, "fetch", "%v", err), false
	}
	o.keyFile, o.id, o.tokenFile, o.dev = creds.key, creds.id, creds.agentToken, creds.dev
	if code, ok := checkFetchTarget(o, pos, stderr); !ok {
		return nil, code, false
	}
	if o.id != "" && o.tokenFile != "" {
		return nil, usageError(stderr, "fetch", "-id and -agent-token are alternatives; pass one"), false
	}
	if (o.id != "" || o.tokenFile != "") && o.keyFile == "" {
		return nil, usageError(stderr, "fetch", "-id and -agent-token need -key"), false
	}
	if o.timeout <= 0 || o.consentTimeout <= 0 || o.wait < 0 || o.wait%waitFlag(time.Second) != 0 {
		return nil, usageError(stderr, "fetch", "-timeout and -consent-timeout must be positive, -wait whole seconds, at least 0"), false
	}
	if n := utf8.RuneCountInString(o.answer); n > agent.MaxClarificationLen {
		return nil, usageError(stderr, "fetch", "-answer has %d characters; at most %d are allowed", n, agent.MaxClarificationLen), false
	}
	o.hasBody = flagSet(fs, "d")
	return o, 0, true
}

// checkFetchTarget checks what is fetched: exactly one http(s) URL, or with -self none,
// but -scope and -as and an identity. When ok is false, code is the exit status.
func checkFetchTarget(o *fetchOptions, pos []string, stderr io.Writer) (code int, ok bool) {
	switch {
	case o.self && len(pos) > 0:
		return usageError(stderr, "fetch", "-self takes no URL (it asks -as for a token), got %q", pos[0]), false
	case o.self && strings.TrimSpace(o.scope) == "":
		return usageError(stderr, "fetch", "-self needs -scope (the scope to ask for)"), false
	case o.self && o.authServer == "":
		return usageError(stderr, "fetch", "-self needs -as (the auth server to ask)"), false
	case o.self && o.id == "" && o.tokenFile == "":
		return usageError(stderr, "fetch", "-self needs an identity: -key with -id or -agent-token"), false
	case o.self:
		return 0, true
	case o.scope != "" || o.authServer != "":
		return usageError(stderr, "fetch", "-scope and -as go with -self"), false
	case len(pos) != 1:
		return usageError(stderr, "fetch", "exactly one URL is required"), false
	}
	target, err := url.Parse(pos[0])
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return usageError(stderr, "fetch", "%q is not an http or https URL", pos[0]), false
	}
	o.target = target
	return 0, true
}

// setFetchCredentials loads (or makes up) the signing key and sets the transport's
// pseudonym and, with -id or -agent-token, its identity. When ok is false, code is the
// exit status to return.
func setFetchCredentials(tr *agent.Transport, o *fetchOptions, stderr io.Writer, vlog func(string, ...any)) (code int, ok bool) {
	var signer *keys.Signer
	var err error
	if o.keyFile != "" {
		if signer, err = loadSigner(o.keyFile); err != nil {
			return failf(stderr, "fetch", "%v", err), false
		}
	} else {
		if signer, err = keys.Generate(keys.AlgEd25519, ""); err != nil {
			return failf(stderr, "fetch", "%v", err), false
		}
		vlog("no -key: signing with a throw-away hwk key (thumbprint %s)", signer.Public.Thumbprint)
	}
	tr.Pseudonym = agent.HWK(signer)
	switch {
	case o.id != "":
		tr.Identity = agent.JWKSURI(signer, o.id)
		if err := tr.Identity.Validate(); err != nil {
			return usageError(stderr, "fetch", "%v", err), false
		}
	case o.tokenFile != "":
		raw, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return failf(stderr, "fetch", "%v", err), false
		}
		tok := strings.TrimSpace(string(raw))
		if err := checkAgentToken(tok, signer, vlog); err != nil {
			return failf(stderr, "fetch", "%s: %v", o.tokenFile, err), false
		}
		tr.Identity = agent.Delegate(signer, tok)
	}
	if tr.Identity != nil {
		vlog("identity: %s; pseudonym: %s", tr.Identity, tr.Pseudonym)
	}
	return 0, true
}

// setConsentHooks sets the transport's AwaitToken (with an identity) and AwaitResponse
// hooks: they show the interaction URL and poll for the user's decision, with the
// -timeout clock stopped while they wait.
func setConsentHooks(tr *agent.Transport, o *fetchOptions, stderr io.Writer, vlog func(string, ...any), timer *time.Timer) {
	ui := &consentUI{w: stderr, tty: isTerminal(stderr), noQR: o.noQR, open: o.openURL, limit: o.consentTimeout,
		answer: strings.TrimSpace(o.answer), vlog: vlog, verbose: o.verbose,
		onStart: func() { timer.Stop() }, onEnd: func() { timer.Reset(o.timeout) }}
	pollWait := time.Duration(o.wait)
	if pollWait == 0 {
		pollWait = -1 // no Prefer header
	}
	ui.in, ui.inTTY = promptInput()
	if o.data == "@-" {
		ui.inTTY = false // stdin held the body
	}
	// The resource's pending URL is polled with the request's own credential, which
	// AwaitResponse passes in; the Poller's credential is for the auth server.
	p := ui.poller(tr.Identity, tr, pollWait, o.consentTimeout)
	tr.AwaitResponse = ui.awaitResponse(p)
	if tr.Identity != nil {
		tr.AwaitToken = ui.await(p)
	}
}

// newFetchRequest builds the request: method (GET, or POST with a body), body, the -H
// headers (Host sets the request's host) and curl's default content type for -d.
func newFetchRequest(ctx context.Context, o *fetchOptions, body []byte) (*http.Request, error) {
	m := o.method
	if m == "" {
		m = http.MethodGet
		if o.hasBody {
			m = http.MethodPost
		}
	}
	var rd io.Reader
	if o.hasBody {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, m, o.target.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "aauth-cli")
	for _, h := range o.headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
			return nil, fmt.Errorf("bad header %q (want 'Name: value')", h)
		}
		value = strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Add(name, value)
	}
	if o.hasBody && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d does
	}
	return req, nil
}

// writeFetchResponse logs and hints about a final challenge, copies the response (with
// -i its status line and headers first) to stdout and returns the exit status.
func writeFetchResponse(resp *http.Response, o *fetchOptions, tr *agent.Transport, stdout, stderr io.Writer, vlog func(string, ...any)) int {
	vlog("response: %s %s", resp.Proto, resp.Status)
	if c, ok := wire.Seed.ParseChallenge(resp.Header); ok {
		vlog("challenge in the final response: %s", describeChallenge(c))
		if resp.StatusCode == http.StatusUnauthorized {
			hint(stderr, c, tr)
		}
	}
	if o.include {
		fmt.Fprintf(stdout, "%s %s\r\n", resp.Proto, resp.Status)
		_ = resp.Header.Write(stdout)
		fmt.Fprint(stdout, "\r\n")
	}
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return failf(stderr, "fetch", "reading the response: %v", err)
	}
	code := statusExit(resp.StatusCode)
	if code != exitOK {
		fmt.Fprintf(stderr, "aauth fetch: HTTP %s (exit status %d)\n", resp.Status, code)
	}
	return code
}

// statusExit maps an HTTP status to the exit status: 403 denied, 408 expired (what a
// resource that waited for the user's decision answers, draft-hardt-aauth §4.5.7), other
// 4xx 22 (as curl -f), 5xx 23.
func statusExit(status int) int {
	switch {
	case status < 400:
		return exitOK
	case status == http.StatusForbidden:
		return exitDenied
	case status == http.StatusRequestTimeout:
		return exitExpired
	case status >= 500:
		return exitServer
	}
	return exitHTTP
}

// flagSet reports whether the flag was given, so -d "" (an empty body) differs from no -d.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}

// readData resolves -d: literal text, @file, or @- for stdin.
func readData(d string) ([]byte, error) {
	switch {
	case d == "@-":
		return io.ReadAll(io.LimitReader(os.Stdin, agent.DefaultMaxBody+1))
	case strings.HasPrefix(d, "@"):
		return os.ReadFile(d[1:])
	}
	return []byte(d), nil
}

// checkAgentToken catches a wrong or stale token file before it costs a request: it must
// be an agent+jwt, bound to the -key given, and not expired. The token's signature is the
// resource's business; this only reads the claims. Only non-secret facts are logged.
func checkAgentToken(raw string, delegate *keys.Signer, vlog func(string, ...any)) error {
	t, err := token.Parse(raw, token.TypAgent)
	if err != nil {
		return fmt.Errorf("not a usable agent token: %v", err)
	}
	c := t.Claims
	cnf := ""
	if c.Confirmation != nil && c.Confirmation.Key != nil {
		cnf = c.Confirmation.Key.Thumbprint
	}
	vlog("agent token: typ %s, iss %s, sub %s, expires %s, cnf thumbprint %s",
		t.Header.Typ, c.Issuer, c.Subject, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339), cnf)
	if cnf != delegate.Public.Thumbprint {
		return fmt.Errorf("the token is bound to key %s, but -key is %s", cnf, delegate.Public.Thumbprint)
	}
	if c.Expiry != 0 && !time.Now().Before(time.Unix(c.Expiry, 0)) {
		return fmt.Errorf("the token expired at %s; run 'aauth delegate' again",
			time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// describeChallenge summarises an AAuth challenge without printing the resource token.
func describeChallenge(c wire.Challenge) string { return c.Summary(true) }

// hint tells the user in one line what the resource still wants.
func hint(stderr io.Writer, c wire.Challenge, tr *agent.Transport) {
	switch c.Require {
	case wire.RequireIdentity:
		if tr.Identity == nil {
			fmt.Fprintln(stderr, "aauth fetch: the resource requires an agent identity; pass -key with -id or -agent-token")
		}
	case wire.RequireAuthToken:
		if tr.Identity == nil {
			fmt.Fprintf(stderr, "aauth fetch: the resource requires an auth token from %s; pass -key with -id or -agent-token\n", c.AuthServer)
		} else {
			fmt.Fprintf(stderr, "aauth fetch: the resource refused the auth token obtained from %s\n", c.AuthServer)
		}
	}
}

// flowFailure reports a request that ended without a response: the auth server's
// refusal (by its HTTP status: denied, expired, 4xx, 5xx), the user's decision, or
// anything else (exit 1), with the HTTP status when there was one.
func flowFailure(stderr io.Writer, err error, dev bool) int {
	var te *agent.TokenError
	var pe *agent.PendingError
	var fe *agent.FlowError
	switch {
	case errors.As(err, &te):
		return tokenFailure(stderr, te)
	case errors.Is(err, agent.ErrConsentDenied):
		fmt.Fprintln(stderr, "aauth: the user denied the request (HTTP 403 from the pending URL)")
		return exitDenied
	case errors.Is(err, agent.ErrConsentExpired):
		fmt.Fprintln(stderr, "aauth: the request expired before the user approved it (HTTP 408 from the pending URL)")
		return exitExpired
	case errors.Is(err, agent.ErrPendingGone):
		fmt.Fprintln(stderr, "aauth: the pending request is gone: already answered, or unknown to the auth server (HTTP 404 or 410 from the pending URL)")
		return exitHTTP
	case errors.Is(err, agent.ErrConsentTimeout):
		fmt.Fprintln(stderr, "aauth: gave up waiting for the user's approval (-consent-timeout)")
		return exitExpired
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "aauth: user consent required at %s (code %s; HTTP 202)\n", pe.Location, pe.Code)
		return exitHTTP
	case errors.As(err, &fe) && !dev && (errors.Is(err, discovery.ErrBlocked) || errors.Is(err, discovery.ErrInvalid)):
		failf(stderr, "fetch", "%v", err)
		fmt.Fprintln(stderr, "aauth fetch: http:// and loopback resources and auth servers need -dev (local demos only)")
		return exitFailure
	}
	return failf(stderr, "fetch", "%v", err)
}

// tokenFailure reports the auth server's refusal of a token request, with its status.
func tokenFailure(stderr io.Writer, te *agent.TokenError) int {
	code := te.Code
	if code == "" {
		code = strconv.Itoa(te.Status)
	}
	status := ""
	if te.Status != 0 {
		status = fmt.Sprintf(" (HTTP %d)", te.Status)
	}
	fmt.Fprintf(stderr, "aauth: auth server refused: %s: %s%s\n", code, te.Description, status)
	exit := statusExit(te.Status)
	switch {
	case te.Code == wire.CodeDenied:
		exit = exitDenied
	case te.Code == wire.CodeExpired:
		exit = exitExpired
	case exit == exitOK:
		exit = exitHTTP
	}
	if te.Temporary() {
		// A 5xx: the server could not decide now; the request was retried already.
		later := "later"
		if te.RetryAfter > 0 {
			later = "in " + te.RetryAfter.String()
		}
		fmt.Fprintf(stderr, "aauth: the auth server could not decide the request now; try again %s\n", later)
	}
	return exit
}

// waitFlag is -wait: a duration (20s), or for compatibility a bare number of seconds.
type waitFlag time.Duration

func (w *waitFlag) String() string { return time.Duration(*w).String() }

func (w *waitFlag) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		*w = waitFlag(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("want a duration such as 20s")
	}
	*w = waitFlag(d)
	return nil
}
