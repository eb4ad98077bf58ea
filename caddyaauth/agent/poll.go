package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/internal/ctxsleep"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Errors of the wait for consent (draft-hardt-aauth §10.3–10.6). Poller.Await wraps them
// with the auth server's description, so test them with errors.Is.
var (
	// ErrConsentDenied: the user (or the auth server on the user's behalf) refused the
	// request (403 denied or abandoned).
	ErrConsentDenied = errors.New("agent: the user denied the request")
	// ErrConsentExpired: nobody decided before the pending request expired (408).
	ErrConsentExpired = errors.New("agent: the request expired before the user approved it")
	// ErrPendingGone: the pending URL no longer exists (404 after a terminal answer or for
	// an unknown id, 410 invalid_code); polling again cannot help.
	ErrPendingGone = errors.New("agent: the pending request is gone")
	// ErrConsentTimeout: Poller.MaxDuration passed without a decision. It is returned
	// together with context.DeadlineExceeded.
	ErrConsentTimeout = errors.New("agent: gave up waiting for the user's decision")
)

// Progress statuses passed to Poller.OnProgress.
const (
	ProgressPending = "pending" // a poll answered 202: still waiting for the decision
	ProgressBackoff = "backoff" // the auth server answered 5xx: backing off (per Retry-After when given)
	// ProgressUnreachable: the poll failed in transport (connection refused or reset,
	// EOF, timeout), e.g. while the auth server restarts; the poll is retried with backoff.
	ProgressUnreachable = "unreachable"
	ProgressAnswered    = "answered" // a clarification question was answered
	// ProgressClarification prefixes an unanswered question ("clarification: <text>"),
	// reported once per question when Clarify is nil, declines, or the round limit is hit.
	ProgressClarification = "clarification: "
)

// Defaults and bounds of Poller.
const (
	DefaultPollWait        = 20 * time.Second // Prefer: wait on each poll
	DefaultConsentDuration = 10 * time.Minute // overall limit of Await
	MaxClarifications      = 5                // answered questions per pending request (draft-hardt-aauth §11.4)
	MaxClarificationLen    = 2000             // characters of an answer
	minPollGap             = time.Second      // between the starts of two polls
	maxPollDelay           = 60 * time.Second // cap on any Retry-After
	retryBase              = time.Second      // first backoff after an outage answer without Retry-After
	retryCap               = 30 * time.Second // cap of the exponential backoff
	defaultRetry           = 2 * time.Second  // 202 without Retry-After
	pollGrace              = 30 * time.Second // a poll may take this much longer than its wait
)

// Poller waits for the auth server's decision on a deferred token request: it polls the
// pending URL with signed GETs (draft-hardt-aauth §10.3–10.6), answers clarification
// questions (§11.4) and returns the auth token once the user approved. Its Await
// method is meant for Transport.AwaitToken; the token it returns is checked there like
// one issued directly.
type Poller struct {
	// Base sends the polls; nil means http.DefaultTransport. Redirects are not followed.
	Base http.RoundTripper
	// Credential signs every poll and clarification answer. It must be the credential
	// that signed the token request (Transport.Identity): the auth server binds the
	// pending request to that key.
	Credential *Credential
	// Dev allows http:// and loopback auth servers (tests and local demos only).
	Dev bool
	// Dictionary and StdBase64 shape the signature headers as in Transport.
	Dictionary bool
	StdBase64  bool
	// Discovery fetches the auth server's metadata when the PendingError has no
	// interaction endpoint; nil means a short-lived client with discovery.Config{Dev: Dev}.
	Discovery *discovery.Client
	// Wait is the Prefer: wait sent with each poll (the server holds the poll up to that
	// long and answers as soon as the decision is made). 0 means DefaultPollWait; a
	// negative value sends no Prefer header.
	Wait time.Duration
	// MaxDuration bounds the whole wait; 0 means DefaultConsentDuration.
	MaxDuration time.Duration
	// Now is the clock (signature created, elapsed time, MaxDuration); nil means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx ends; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnPending is called once, before the first poll, with the pending request and its
	// InteractionEndpoint filled in when it could be found: show the user
	// InteractionURL(p.InteractionEndpoint, p.Code) and the code.
	OnPending func(p *PendingError)
	// OnProgress is called after each poll and on notable events, with one of the
	// Progress statuses and the time since Await started.
	OnProgress func(status string, elapsed time.Duration)
	// Clarify answers a question the user asked about the request. Returning "" and no
	// error leaves the question unanswered; an error ends Await. nil means questions are
	// reported through OnProgress and not answered.
	Clarify func(ctx context.Context, question string) (answer string, err error)
	// Logf receives one line per step. It never receives tokens or keys.
	Logf func(format string, a ...any)

	// relay: the pending URL is a resource's (AwaitResponse), whose first answer other
	// than 202 is the response to the request that was deferred.
	relay bool
}

// InteractionURL is where the user approves a deferred request: the interaction endpoint
// with the code as its code query parameter (draft-hardt-aauth §11.5; the code bare,
// without the quotes the draft's example shows). An existing query on endpoint is kept.
func InteractionURL(endpoint, code string) string {
	if endpoint == "" {
		return ""
	}
	q := "code=" + url.QueryEscape(code)
	u, err := url.Parse(endpoint)
	if err != nil {
		sep := "?"
		if strings.Contains(endpoint, "?") {
			sep = "&"
		}
		return endpoint + sep + q
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		u.RawQuery += "&" + q
	} else {
		u.RawQuery = q
	}
	return u.String()
}

// FormatCode spells an interaction code for reading aloud or typing: groups of four
// separated by hyphens (ABCD2345 → ABCD-2345). Auth servers ignore the hyphens
// (draft-hardt-aauth §11.5).
func FormatCode(code string) string {
	r := []rune(code)
	if len(r) <= 4 {
		return code
	}
	var b strings.Builder
	for i, c := range r {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (p *Poller) logf(format string, a ...any) {
	if p.Logf != nil {
		p.Logf(format, a...)
	}
}

func (p *Poller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Poller) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	return ctxsleep.Sleep(ctx, d)
}

func (p *Poller) base() http.RoundTripper {
	if p.Base != nil {
		return p.Base
	}
	return http.DefaultTransport
}

func (p *Poller) progress(status string, elapsed time.Duration) {
	if p.OnProgress != nil {
		p.OnProgress(status, elapsed)
	}
}

// pollAnswer is what one poll told us.
type pollAnswer struct {
	token         string         // 200
	resp          *http.Response // relay: the first answer other than 202
	clarification string         // 202 with a question
	retryAfter    time.Duration  // -1 when absent
	applied       bool           // Preference-Applied: wait
	backoff       int            // 500, 502, 503 or 504: the server could not answer now
}

// transientError is a poll that failed in transport (connection refused or reset, EOF,
// timeout): the auth server may be restarting, and its pending state may be intact, so
// the poll is retried.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Await polls pe.Location until the auth server decides, and returns the auth token on
// approval. Outages do not end the wait: transport errors (connection refused or reset,
// EOF, timeouts) and 500, 502, 503 and 504 answers are retried with exponential backoff
// and jitter, or after the server's Retry-After (RFC 9110 §10.2.3, at most a minute),
// until MaxDuration; each retry is logged and reported through OnProgress. It fails with ErrConsentDenied, ErrConsentExpired or ErrPendingGone
// (wrapped), ErrConsentTimeout with context.DeadlineExceeded after MaxDuration, the
// context's error, a *TokenError for other refusals, or a *FlowError when pe cannot be
// trusted (a pending URL off the auth server's origin).
func (p *Poller) Await(ctx context.Context, pe *PendingError) (string, error) {
	loc, err := p.checkPending(pe)
	if err != nil {
		return "", err
	}
	a, err := p.await(ctx, pe, loc)
	return a.token, err
}

// await is the wait of Await and AwaitResponse: it polls loc until an answer ends it
// (a token, or with relay any answer other than 202 and, for an auth server, 5xx).
func (p *Poller) await(ctx context.Context, pe *PendingError, loc *url.URL) (pollAnswer, error) {
	start := p.now()
	maxDur := p.MaxDuration
	if maxDur <= 0 {
		maxDur = DefaultConsentDuration
	}
	deadline := start.Add(maxDur)
	timeout := func() error {
		return fmt.Errorf("%w within %s: %w", ErrConsentTimeout, maxDur, context.DeadlineExceeded)
	}
	p.announce(ctx, pe)

	cl := &clarifications{answered: map[string]bool{}}
	delay := min(max(pe.RetryAfter, 0), maxPollDelay)
	polls, fails := 0, 0
	for {
		remaining, err := p.waitTurn(ctx, delay, deadline, timeout)
		if err != nil {
			return pollAnswer{}, err
		}
		pollStart := p.now()
		polls++
		a, err := p.poll(ctx, loc, p.waitFor(remaining))
		var te *transientError
		if errors.As(err, &te) {
			fails++
			delay = p.retryDelay(-1, fails, pollStart)
			p.progress(ProgressUnreachable, p.now().Sub(start))
			p.logf("poll %d: the auth server cannot be reached (%v); retry %d in %s", polls, te.err, fails, delay.Round(time.Millisecond))
			continue
		}
		if err != nil {
			return pollAnswer{}, err
		}
		elapsed := p.now().Sub(start)
		if a.token != "" {
			p.logf("poll %d: approved after %s", polls, elapsed.Round(time.Second))
			return a, nil
		}
		if a.resp != nil {
			p.logf("poll %d: answered %s after %s", polls, a.resp.Status, elapsed.Round(time.Second))
			return a, nil
		}
		if a.backoff != 0 {
			fails++
			p.progress(ProgressBackoff, elapsed)
			delay = p.retryDelay(a.retryAfter, fails, pollStart)
			p.logf("poll %d: the auth server answered %d; retry %d in %s", polls, a.backoff, fails, delay.Round(time.Millisecond))
			continue
		}
		fails = 0
		p.progress(ProgressPending, elapsed)
		delay = p.pendingDelay(a, pollStart)
		p.logf("poll %d: pending (prefer wait applied: %t); next poll in %s", polls, a.applied, delay)

		sent, err := p.clarify(ctx, loc, cl, a.clarification, start, deadline)
		if err != nil {
			return pollAnswer{}, err
		}
		if sent {
			delay = 0 // poll again now: the answer may have changed the state
			if took := p.now().Sub(pollStart); took < minPollGap {
				delay = minPollGap - took
			}
		}
	}
}

// checkPending checks that pe can be awaited with p's credential and returns its
// pending URL.
func (p *Poller) checkPending(pe *PendingError) (*url.URL, error) {
	if pe == nil {
		return nil, errors.New("agent: Await: no pending request")
	}
	if err := p.Credential.Validate(); err != nil {
		return nil, err
	}
	if !p.Credential.Identified() {
		return nil, fmt.Errorf("agent: polls must be signed with the identified credential of the token request, not %s", p.Credential.Scheme)
	}
	if pe.AtResource {
		return nil, errors.New("agent: Await: the resource deferred the request, not the auth server; use AwaitResponse")
	}
	return p.checkLocation(pe)
}

// announce tells the log and OnPending about the pending request, with the interaction
// endpoint from the auth server's metadata when the challenge named none. An endpoint
// that is not fit to show the user is dropped.
func (p *Poller) announce(ctx context.Context, pe *PendingError) {
	info := *pe
	if info.Require != RequireApproval && info.InteractionEndpoint == "" {
		if info.AtResource {
			info.InteractionEndpoint = p.interactionEndpoint(ctx, info.Resource, discovery.DocResource)
		} else {
			info.InteractionEndpoint = p.interactionEndpoint(ctx, info.AuthServer, discovery.DocIssuer)
		}
	}
	if ie := info.InteractionEndpoint; ie != "" {
		// It is shown to the user: printable ASCII only, https unless Dev.
		_, err := discovery.ValidateEndpointURL(ie, p.Dev)
		if err == nil && strings.IndexFunc(ie, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			err = errors.New("it has characters outside printable ASCII")
		}
		if err != nil {
			p.logf("ignoring the auth server's interaction_endpoint: %v", err)
			info.InteractionEndpoint = ""
		}
	}
	if info.InteractionEndpoint != "" && info.Code != "" {
		p.logf("consent needed: the user approves at %s", InteractionURL(info.InteractionEndpoint, info.Code))
	}
	if p.OnPending != nil {
		p.OnPending(&info)
	}
}

// waitTurn sleeps delay and returns the time left until deadline. When delay would run
// past the deadline it sleeps until the deadline and fails with timeout().
func (p *Poller) waitTurn(ctx context.Context, delay time.Duration, deadline time.Time, timeout func() error) (time.Duration, error) {
	if remaining := deadline.Sub(p.now()); delay > remaining {
		if remaining > 0 {
			if err := p.sleep(ctx, remaining); err != nil {
				return 0, err
			}
		}
		return 0, timeout()
	}
	if delay > 0 {
		if err := p.sleep(ctx, delay); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	remaining := deadline.Sub(p.now())
	if remaining <= 0 {
		return 0, timeout()
	}
	return remaining, nil
}

// retryDelay is the wait before the next poll after the fails-th outage answer in a row:
// the server's Retry-After when given (RFC 9110 §10.2.3), else an exponential backoff
// from retryBase, capped at retryCap, with jitter (a random point in its upper half) so
// that many agents do not all come back at the same instant after a restart. The next
// poll starts at least minPollGap after this one started, and at most maxPollDelay later.
func (p *Poller) retryDelay(retryAfter time.Duration, fails int, pollStart time.Time) time.Duration {
	delay := retryAfter
	if delay < 0 {
		d := retryBase << min(max(fails-1, 0), 10)
		d = min(d, retryCap)
		delay = d/2 + rand.N(d/2+1)
	}
	if took := p.now().Sub(pollStart); took < minPollGap {
		delay = max(delay, minPollGap-took)
	}
	return min(delay, maxPollDelay)
}

// pendingDelay is the wait after a pending answer: the next poll starts at least
// minPollGap after this one started, and after the server's Retry-After (defaultRetry
// when absent), at most maxPollDelay.
func (p *Poller) pendingDelay(a pollAnswer, pollStart time.Time) time.Duration {
	delay := defaultRetry
	if a.retryAfter >= 0 {
		delay = a.retryAfter
	}
	if took := p.now().Sub(pollStart); took < minPollGap {
		delay = max(delay, minPollGap-took)
	}
	return min(delay, maxPollDelay)
}

// clarifications are the clarification questions of one pending request.
type clarifications struct {
	answered map[string]bool // questions answered (or deliberately left unanswered)
	rounds   int             // answers sent
}

// clarify handles the question q of a pending answer. A question seen before is ignored;
// one that cannot be answered (no Clarify, or MaxClarifications reached) or that Clarify
// leaves unanswered is only reported through OnProgress; otherwise Clarify's answer is
// posted to loc (retried while the auth server cannot answer, never at or after
// deadline, the end of the wait) and sent is true.
func (p *Poller) clarify(ctx context.Context, loc *url.URL, cl *clarifications, q string, start, deadline time.Time) (sent bool, err error) {
	elapsed := p.now().Sub(start)
	if q == "" || cl.answered[q] {
		return false, nil
	}
	cl.answered[q] = true
	if p.Clarify == nil || cl.rounds >= MaxClarifications {
		if cl.rounds >= MaxClarifications {
			p.logf("not answering: %d questions answered already", cl.rounds)
		}
		p.progress(ProgressClarification+q, elapsed)
		return false, nil
	}
	ans, err := p.Clarify(ctx, q)
	if err != nil {
		return false, err
	}
	ans = strings.TrimSpace(ans)
	if ans == "" {
		p.logf("the question was left unanswered")
		p.progress(ProgressClarification+q, p.now().Sub(start))
		return false, nil
	}
	if n := utf8.RuneCountInString(ans); n > MaxClarificationLen {
		return false, fmt.Errorf("agent: the clarification answer has %d characters; at most %d are allowed", n, MaxClarificationLen)
	}
	r := retrier{what: "clarification answer", attempts: tokenAttempts, maxWait: tokenRetryCap,
		now: p.now, sleep: p.sleep, logf: p.logf}
	if err := r.run(ctx, deadline, func() error { return p.answer(ctx, loc, ans) }); err != nil {
		return false, err
	}
	cl.rounds++
	p.progress(ProgressAnswered, p.now().Sub(start))
	return true, nil
}

// waitFor is the Prefer: wait of the next poll, in whole seconds, within remaining.
func (p *Poller) waitFor(remaining time.Duration) time.Duration {
	w := p.Wait
	if w == 0 {
		w = DefaultPollWait
	}
	if w < 0 {
		return 0
	}
	w = min(w, remaining).Truncate(time.Second)
	return w
}

// checkLocation re-checks what the flow already checked: the pending URL is absolute,
// http(s) (https unless Dev), without credentials, and on the auth server's origin (the
// resource's, when pe.AtResource).
func (p *Poller) checkLocation(pe *PendingError) (*url.URL, error) {
	step := StepTokenRequest
	origin, what := pe.AuthServer, "auth server"
	if pe.AtResource {
		origin, what = pe.Origin, "resource"
	}
	if origin == "" {
		return nil, flowErr(step, "the pending request names no %s", what)
	}
	if err := discovery.ValidateIdentifier(origin, p.Dev); err != nil {
		return nil, flowErr(step, "%s %q: %w", what, origin, err)
	}
	u, err := discovery.ValidateEndpointURL(pe.Location, p.Dev)
	if err != nil {
		return nil, flowErr(step, "pending URL: %w", err)
	}
	if u.User != nil || Origin(u) != origin {
		return nil, flowErr(step, "the pending URL %s is not on the %s's origin %s", u.Redacted(), what, origin)
	}
	return u, nil
}

// interactionEndpoint reads interaction_endpoint from the metadata of id (an auth server,
// or a resource, as doc says); "" when it cannot be had (the user may still know where
// to go; polling goes on).
func (p *Poller) interactionEndpoint(ctx context.Context, id, doc string) string {
	d := p.Discovery
	if d == nil {
		d = discovery.New(discovery.Config{Dev: p.Dev})
		defer d.Close()
	}
	md, err := d.Metadata(ctx, id, doc)
	if err != nil {
		p.logf("metadata of %s: %v", id, err)
		return ""
	}
	ie, _ := md["interaction_endpoint"].(string)
	return ie
}

// poll sends one signed GET to the pending URL.
func (p *Poller) poll(ctx context.Context, loc *url.URL, wait time.Duration) (pollAnswer, error) {
	if p.relay {
		return p.pollRelay(ctx, loc, wait)
	}
	rctx, cancel := context.WithTimeout(ctx, wait+pollGrace)
	defer cancel()
	r, err := newPoll(rctx, loc, wait)
	if err != nil {
		return pollAnswer{}, err
	}
	status, hdr, body, err := p.do(r, nil)
	if err != nil {
		if ctx.Err() != nil {
			return pollAnswer{}, ctx.Err()
		}
		return pollAnswer{}, err
	}
	switch status {
	case http.StatusOK:
		var ok wire.TokenResponse
		if json.Unmarshal(body, &ok) != nil || ok.AuthToken == "" {
			return pollAnswer{}, flowErr(StepAuthToken, "the 200 answer to the poll carries no auth_token")
		}
		return pollAnswer{token: ok.AuthToken}, nil
	case http.StatusAccepted:
		return pendingAnswer(hdr, body), nil
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// The server (or a proxy in front of it) could not answer now; the pending
		// request may well be intact, so it is polled again.
		a := pendingAnswer(hdr, nil)
		a.backoff = status
		return a, nil
	}
	return pollAnswer{}, terminal(status, body)
}

// newPoll builds a poll of loc with Prefer: wait (draft-hardt-aauth §10.5) when wait > 0.
func newPoll(ctx context.Context, loc *url.URL, wait time.Duration) (*http.Request, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Accept", "application/json")
	if wait > 0 {
		r.Header.Set("Prefer", "wait="+strconv.Itoa(int(wait/time.Second)))
	}
	return r, nil
}

// pendingAnswer reads a 202 answer (or a 5xx's Retry-After): Retry-After,
// Preference-Applied and the clarification question, if any.
func pendingAnswer(hdr http.Header, body []byte) pollAnswer {
	a := pollAnswer{retryAfter: retryAfter(hdr)}
	a.applied = strings.Contains(strings.ToLower(hdr.Get("Preference-Applied")), "wait")
	if body != nil {
		var pend wire.PendingResponse
		_ = json.Unmarshal(body, &pend)
		a.clarification = clean(pend.Clarification, 1000)
	}
	return a
}

// pollRelay is poll for a resource's pending URL (AwaitResponse): a 202 is read like an
// auth server's, and any other answer is returned unread as the response, its body
// still open (closing it releases the poll). The poll's time limit (wait + pollGrace)
// covers the wait for the answer's headers, not the reading of its body.
func (p *Poller) pollRelay(ctx context.Context, loc *url.URL, wait time.Duration) (pollAnswer, error) {
	rctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(wait+pollGrace, cancel)
	r, err := newPoll(rctx, loc, wait)
	if err != nil {
		cancel()
		return pollAnswer{}, err
	}
	resp, err := p.send(r, nil)
	timer.Stop()
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return pollAnswer{}, ctx.Err()
		}
		return pollAnswer{}, err
	}
	if resp.StatusCode != http.StatusAccepted {
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return pollAnswer{resp: resp}, nil
	}
	defer cancel()
	body, err := readPollAnswer(resp)
	if err != nil {
		return pollAnswer{}, err
	}
	return pendingAnswer(resp.Header, body), nil
}

// cancelOnClose is a response body whose Close also ends the request's context.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// answer POSTs a clarification answer to the pending URL, signed over its body.
func (p *Poller) answer(ctx context.Context, loc *url.URL, text string) error {
	body, err := json.Marshal(wire.ClarificationAnswer{Response: &text})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, pollGrace)
	defer cancel()
	r, err := http.NewRequestWithContext(rctx, http.MethodPost, loc.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	httpsig.SetContentDigest(r, body)
	status, hdr, rb, err := p.do(r, []string{"content-type", "content-digest"})
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent:
		p.logf("clarification answer accepted (%d)", status)
		return nil
	case http.StatusConflict:
		// The user decided before the answer arrived: the next poll has the outcome.
		p.logf("clarification answer not needed any more (409)")
		return nil
	}
	if retryableStatus(status) {
		e := wire.DecodeError(rb)
		return &TokenError{Status: status, Code: clean(e.Code, 64), Description: clean(e.Description, 300), RetryAfter: max(retryAfter(hdr), 0)}
	}
	return terminal(status, rb)
}

// do signs r with Credential (covering extra), sends it and reads the bounded answer.
func (p *Poller) do(r *http.Request, extra []string) (int, http.Header, []byte, error) {
	resp, err := p.send(r, extra)
	if err != nil {
		return 0, nil, nil, err
	}
	b, err := readPollAnswer(resp)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

// send signs r with Credential (covering extra) and sends it. A transport failure is a
// *transientError.
func (p *Poller) send(r *http.Request, extra []string) (*http.Response, error) {
	// Every signature is accepted once on the pending URL: the nonce keeps polls in the
	// same second distinct.
	opts := httpsig.SignOptions{Dictionary: p.Dictionary, StdBase64: p.StdBase64, Created: p.now(), Extra: extra, Nonce: httpsig.NewNonce()}
	if err := httpsig.Sign(r, p.Credential.Signer, p.Credential.SigKey(), opts); err != nil {
		return nil, fmt.Errorf("agent: signing the poll: %w", err)
	}
	resp, err := p.base().RoundTrip(r)
	if err != nil {
		return nil, &transientError{fmt.Errorf("agent: polling %s: %w", r.URL.Redacted(), err)}
	}
	p.logf("%s %s signed with %s -> %s", r.Method, r.URL.Redacted(), p.Credential, resp.Status)
	return resp, nil
}

// readPollAnswer reads (at most maxTokenResponse bytes of) an answer and closes it.
func readPollAnswer(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return nil, &transientError{fmt.Errorf("agent: reading the poll answer: %w", err)}
	}
	if len(b) > maxTokenResponse {
		return nil, fmt.Errorf("agent: the poll answer exceeds %d bytes", maxTokenResponse)
	}
	return b, nil
}

// terminal maps a final answer of the pending URL to an error.
func terminal(status int, body []byte) error {
	e := wire.DecodeError(body)
	code, desc := clean(e.Code, 64), clean(e.Description, 300)
	wrap := func(sentinel error) error {
		if desc == "" {
			return sentinel
		}
		return fmt.Errorf("%w: %s", sentinel, desc)
	}
	switch {
	case status == http.StatusForbidden && (code == wire.CodeDenied || code == wire.CodeAbandoned || code == ""):
		return wrap(ErrConsentDenied)
	case status == http.StatusRequestTimeout:
		return wrap(ErrConsentExpired)
	case status == http.StatusNotFound || status == http.StatusGone:
		return wrap(ErrPendingGone)
	case status >= 400:
		return &TokenError{Status: status, Code: code, Description: desc}
	}
	return flowErr(StepTokenRequest, "unexpected answer %d from the pending URL", status)
}

// retryAfter reads Retry-After in seconds (capped at an hour); -1 when absent or not a
// number of seconds.
func retryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || s < 0 {
		return -1
	}
	return time.Duration(min(s, 3600)) * time.Second
}
