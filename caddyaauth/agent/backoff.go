package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// passingWait says whether err is a failure that may pass on its own, and how long to
// wait before the attempt after the attempt-th: the server's Retry-After (RFC 9110
// §10.2.3) or, for a discovery outage, the time until the failed document is fetched
// again, else 1, 2, 4 s… with jitter (a random point in the upper half). Passing
// failures are: no answer (connection refused or reset, EOF, timeout), 500, 502, 503 or
// 504, and a metadata or JWKS fetch that failed that way (discovery.ErrUnavailable).
func passingWait(err error, attempt int) (time.Duration, bool) {
	var te *TokenError
	var tr *transientError
	wait := time.Duration(-1)
	switch {
	case errors.As(err, &te) && te.Temporary():
		if te.RetryAfter > 0 {
			wait = te.RetryAfter
		}
	case errors.As(err, &tr):
	case errors.Is(err, discovery.ErrUnavailable):
		if ue, ok := discovery.Unavailable(err); ok {
			wait = ue.RetryAfter
		}
	default:
		return 0, false
	}
	if wait < 0 {
		d := time.Second << min(attempt-1, 10)
		wait = d/2 + rand.N(d/2+1)
	}
	return wait, true
}

// retrier repeats one call to a server while it fails in a passing way (passingWait):
// at most attempts times in all, never waiting longer than maxWait at once, and never
// at or after deadline (a resource token's or a pending request's expiry). With gate
// set it also keeps every call to the same server (key) at least one backoff apart,
// across flows: after a passing failure nothing is sent there before the wait is over.
type retrier struct {
	what     string // for the log: "token request", "clarification answer", …
	attempts int
	maxWait  time.Duration
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
	logf     func(string, ...any)
	gate     *serverGate
	key      string
}

// run calls call until it succeeds, fails in a way that will not pass, or the budget
// (attempts, maxWait, deadline) is spent; then it returns call's last error. A wait the
// gate imposes that does not fit the budget fails with a 503 *TokenError whose
// RetryAfter is the time left, without calling.
func (r retrier) run(ctx context.Context, deadline time.Time, call func() error) error {
	for attempt := 1; ; attempt++ {
		// Later attempts have waited out their own backoff below.
		if w := r.gate.wait(r.key, r.now()); attempt == 1 && w > 0 {
			if w > r.maxWait || !r.now().Add(w).Before(deadline) {
				r.logf("%s: %s is in backoff for %s more; not asking", r.what, r.key, w.Round(time.Millisecond))
				return &TokenError{Status: 503, Code: wire.CodeTemporarilyUnavailable, Description: "backing off after an outage answer", RetryAfter: w}
			}
			r.logf("%s: %s is in backoff; waiting %s", r.what, r.key, w.Round(time.Millisecond))
			if err := r.sleep(ctx, w); err != nil {
				return err
			}
		}
		err := call()
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait, ok := passingWait(err, attempt)
		if !ok {
			return err
		}
		r.gate.hold(r.key, r.now().Add(min(wait, maxGateHold)))
		if attempt >= r.attempts || wait > r.maxWait || !r.now().Add(wait).Before(deadline) {
			r.logf("%s failed %d times (%v); giving up", r.what, attempt, err)
			return err
		}
		r.logf("%s failed (%v); retry %d of %d in %s", r.what, err, attempt, r.attempts-1, wait.Round(time.Millisecond))
		if err := r.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// serverGate remembers, per server, the time before which no request is sent there
// because its last answer asked for a backoff. A nil gate holds nothing.
type serverGate struct {
	mu        sync.Mutex
	notBefore map[string]time.Time
}

// maxGateHold bounds how long one answer can keep a server's requests back.
const maxGateHold = time.Minute

// maxGateEntries bounds the gate; when full, expired entries are dropped, and if none
// were it is cleared (which only forgets backoffs early).
const maxGateEntries = 1024

func (g *serverGate) wait(key string, now time.Time) time.Duration {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.notBefore[key].Sub(now), 0)
}

func (g *serverGate) hold(key string, until time.Time) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.notBefore == nil {
		g.notBefore = map[string]time.Time{}
	}
	if len(g.notBefore) >= maxGateEntries {
		for k, t := range g.notBefore {
			if !t.After(until.Add(-time.Hour)) {
				delete(g.notBefore, k)
			}
		}
		if len(g.notBefore) >= maxGateEntries {
			clear(g.notBefore)
		}
	}
	if until.After(g.notBefore[key]) {
		g.notBefore[key] = until
	}
}

// gate returns the Transport's per-auth-server backoff memory.
func (t *Transport) gate() *serverGate {
	lazyMu.Lock()
	defer lazyMu.Unlock()
	if t.backoffs == nil {
		t.backoffs = &serverGate{}
	}
	return t.backoffs
}

// tokenRetrier is the retrier of calls to the auth server as (token requests and its
// metadata): tokenAttempts, tokenRetryCap, and the per-server gate.
func (t *Transport) tokenRetrier(what, as string) retrier {
	return retrier{what: what, attempts: tokenAttempts, maxWait: tokenRetryCap,
		now: t.now, sleep: t.sleep, logf: t.logf, gate: t.gate(), key: as}
}

// Retries of a request the resource's gateway could not verify for an outage.
const (
	gatewayAttempts = 4                // the first request and three retries
	gatewayRetryCap = 30 * time.Second // the longest Retry-After waited for
	maxOutageBody   = 4 << 10          // how much of a 503 is read to recognise it
)

// gatewayOutage reports whether resp is the gateway's "cannot verify now" answer: 503
// with a JSON error temporarily_unavailable (its metadata or JWKS fetch for the agent or
// the auth server failed). Such a request never reached the upstream, so sending it
// again is safe whatever its method. wait is the Retry-After (1 s when absent). The
// body is put back for the caller.
func gatewayOutage(resp *http.Response) (wait time.Duration, ok bool) {
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return 0, false
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxOutageBody))
	rest := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), rest), rest}
	if err != nil || wire.DecodeError(b).Code != wire.CodeTemporarilyUnavailable {
		return 0, false
	}
	wait = retryAfter(resp.Header)
	if wait < 0 {
		wait = time.Second
	}
	return max(wait, time.Second), true
}

// sendRiding is send, repeated while the gateway answers that it cannot verify the
// request for an outage (gatewayOutage): after its Retry-After, at most gatewayAttempts
// times, never waiting longer than gatewayRetryCap at once nor past the request
// context's deadline. The credential (a cached auth token) is kept: the refusal is not
// a verdict on it, so no new token flow is run. The last 503 is returned as the
// response when the budget is spent.
func (t *Transport) sendRiding(req *http.Request, body []byte, cred *Credential) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		resp, err := t.send(req, body, cred)
		if err != nil {
			return nil, err
		}
		wait, ok := gatewayOutage(resp)
		if !ok {
			return resp, nil
		}
		dl, hasDL := ctx.Deadline()
		if attempt >= gatewayAttempts || wait > gatewayRetryCap || (hasDL && !t.now().Add(wait).Before(dl)) {
			t.logf("the resource could not verify the request %d times (temporarily_unavailable); giving up", attempt)
			return resp, nil
		}
		t.logf("the resource cannot verify the request now (temporarily_unavailable); retry %d of %d in %s", attempt, gatewayAttempts-1, wait)
		discard(resp)
		if err := t.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}
