package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// fakeClock is a clock that only moves when the poller sleeps. It starts 30 s in the
// past so that signatures stay within the servers' ±60 s window for a while.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now().Add(-30 * time.Second)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}

// progressLog records OnProgress calls.
type progressLog struct {
	mu       sync.Mutex
	statuses []string
}

func (p *progressLog) add(s string, _ time.Duration) {
	p.mu.Lock()
	p.statuses = append(p.statuses, s)
	p.mu.Unlock()
}
func (p *progressLog) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.statuses)
}

func (w *flowWorld) poller(logs *logSink) *Poller {
	p := &Poller{Credential: JWKSURI(w.agentKey, w.agentID), Dev: true, Discovery: w.disc, Wait: -1}
	if logs != nil {
		p.Logf = logs.logf
	}
	return p
}

// consentWorld is a flow world whose auth server asks for consent.
func consentWorld(t *testing.T, o agenttest.ConsentOptions) *flowWorld {
	t.Helper()
	w := newFlowWorld(t)
	w.as.EnableConsent(o)
	return w
}

// pendingFrom runs the flow without AwaitToken and returns the deferral.
func (w *flowWorld) pendingFrom(t *testing.T) *PendingError {
	t.Helper()
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	_, err := tr.RoundTrip(req)
	var pe *PendingError
	if !errors.As(err, &pe) {
		t.Fatalf("err %v, want a PendingError", err)
	}
	return pe
}

// The whole flow: deferred, approved on the second poll, the token is checked and the
// request retried with it; Retry-After paces the polls.
func TestPollerApproveThroughTransport(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{RetryAfter: 2})
	w.as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool {
		if n == 2 {
			if err := w.as.Approve(id, "alice"); err != nil {
				t.Error(err)
			}
		}
		return false
	})
	clock := newFakeClock()
	logs := &logSink{}
	prog := &progressLog{}
	p := w.poller(logs)
	p.Now, p.Sleep, p.OnProgress = clock.Now, clock.Sleep, prog.add
	var shown *PendingError
	p.OnPending = func(pe *PendingError) { shown = pe }
	var raw string
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	tr.AwaitToken = func(ctx context.Context, pe *PendingError) (string, error) {
		tok, err := p.Await(ctx, pe)
		raw = tok
		return tok, err
	}
	w.gw.Seen()
	resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"agent":"`+w.agentID+`"`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	if seen := w.gw.Seen(); !slices.Equal(seen, []string{"jwks_uri", "jwt:auth+jwt"}) {
		t.Errorf("gateway saw %v", seen)
	}
	tok, err := token.Parse(raw, token.TypAuth)
	if err != nil || tok.Claims.Subject != "alice" {
		t.Errorf("token sub %v %v", tok, err)
	}
	if polls := w.as.Polls(); len(polls) != 2 || polls[0].Status != 202 || polls[1].Status != 200 ||
		polls[0].KeyThumbprint != w.agentKey.Public.Thumbprint || polls[0].Prefer != "" {
		t.Errorf("polls %+v", polls)
	}
	// Retry-After 2 before the first poll (from the 202 of the token request) and after
	// the first poll.
	if s := clock.Sleeps(); !slices.Equal(s, []time.Duration{2 * time.Second, 2 * time.Second}) {
		t.Errorf("sleeps %v", s)
	}
	if shown == nil || shown.InteractionEndpoint != w.as.ID+"/interact" || len(shown.Code) != 8 {
		t.Errorf("OnPending got %+v", shown)
	}
	if got := prog.list(); !slices.Equal(got, []string{ProgressPending}) {
		t.Errorf("progress %v", got)
	}
	noJWT(t, "logs", logs.String())
	if !strings.Contains(logs.String(), "consent needed: the user approves at "+w.as.ID+"/interact?code=") {
		t.Errorf("logs:\n%s", logs)
	}
	// Cached: the next request goes straight to the resource.
	resp, _ = doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
	if resp.StatusCode != 200 || len(w.as.PendingIDs()) != 1 {
		t.Errorf("status %d, %d pending requests", resp.StatusCode, len(w.as.PendingIDs()))
	}
}

func TestPollerOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hook   func(w *flowWorld, rw http.ResponseWriter, id string, n int) bool
		want   error
		status int // for a *TokenError
	}{
		{"denied", func(w *flowWorld, _ http.ResponseWriter, id string, n int) bool {
			_ = w.as.Deny(id)
			return false
		}, ErrConsentDenied, 0},
		{"expired", func(w *flowWorld, _ http.ResponseWriter, id string, n int) bool {
			if n == 2 {
				_ = w.as.Expire(id)
			}
			return false
		}, ErrConsentExpired, 0},
		{"invalid code", func(w *flowWorld, rw http.ResponseWriter, id string, n int) bool {
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusGone)
			_, _ = rw.Write([]byte(`{"error":"invalid_code"}`))
			return true
		}, ErrPendingGone, 0},
		{"bad request", func(w *flowWorld, rw http.ResponseWriter, id string, n int) bool {
			rw.WriteHeader(http.StatusBadRequest)
			return true
		}, nil, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := consentWorld(t, agenttest.ConsentOptions{})
			w.as.OnPoll(func(rw http.ResponseWriter, id string, n int) bool { return tc.hook(w, rw, id, n) })
			clock := newFakeClock()
			p := w.poller(nil)
			p.Now, p.Sleep = clock.Now, clock.Sleep
			tr := w.transport(httpsig.SchemeJWKSURI, nil)
			tr.AwaitToken = p.Await
			req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
			_, err := tr.RoundTrip(req)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			var te *TokenError
			if tc.status != 0 && (!errors.As(err, &te) || te.Status != tc.status) {
				t.Fatalf("err %v, want a TokenError %d", err, tc.status)
			}
			// A terminal answer is given once: the pending URL is gone afterwards.
			if tc.name == "denied" {
				_, err := p.Await(context.Background(), w.pendingFromID(t, w.as.PendingIDs()[0]))
				if !errors.Is(err, ErrPendingGone) {
					t.Errorf("second Await: %v", err)
				}
			}
		})
	}
}

// pendingFromID builds the PendingError of an existing pending request.
func (w *flowWorld) pendingFromID(t *testing.T, id string) *PendingError {
	return &PendingError{Location: w.as.ID + agenttest.PathPending + id, Require: RequireInteraction,
		AuthServer: w.as.ID, InteractionEndpoint: w.as.ID + "/interact", Resource: w.gw.ID}
}

// A pending URL the auth server does not know (404).
func TestPollerUnknownPending(t *testing.T) {
	w := newFlowWorld(t)
	w.as.SetAnswer(agenttest.Pending(w.as.ID+"/pending/nosuch", "ABCD2345", 0))
	p := w.poller(nil)
	p.Sleep = newFakeClock().Sleep
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	tr.AwaitToken = p.Await
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrPendingGone) {
		t.Fatalf("err %v", err)
	}
}

func TestPollerClarification(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	w.as.OnPoll(func(rw http.ResponseWriter, id string, n int) bool {
		switch {
		case n == 1:
			_ = w.as.Ask(id, "Why do you need\x1b[31m my data?")
		case n == 2 || n == 3:
			// A server that repeats an answered question: it is not answered again.
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("Retry-After", "0")
			rw.WriteHeader(http.StatusAccepted)
			_, _ = rw.Write([]byte(`{"status":"pending","clarification":"Why do you need\u001b[31m my data?"}`))
			return true
		case n == 4:
			if len(w.as.Clarifications(id)) == 1 {
				_ = w.as.Approve(id, "bob")
			}
		}
		return false
	})
	clock := newFakeClock()
	prog := &progressLog{}
	p := w.poller(nil)
	p.Now, p.Sleep, p.OnProgress = clock.Now, clock.Sleep, prog.add
	var asked []string
	p.Clarify = func(_ context.Context, q string) (string, error) {
		asked = append(asked, q)
		return "  to build your weekly report  ", nil
	}
	pe := w.pendingFrom(t)
	raw, err := p.Await(context.Background(), pe)
	if err != nil || raw == "" {
		t.Fatalf("Await: %v", err)
	}
	if !slices.Equal(asked, []string{"Why do you need [31m my data?"}) {
		t.Errorf("asked %q", asked)
	}
	ans := w.as.Clarifications(pe.Code)
	if len(ans) != 1 || ans[0].Answer != "to build your weekly report" || ans[0].KeyThumbprint != w.agentKey.Public.Thumbprint {
		t.Errorf("answers %+v", ans)
	}
	var posts int
	for _, pl := range w.as.Polls() {
		if pl.Method == http.MethodPost {
			posts++
			if pl.Status != http.StatusAccepted {
				t.Errorf("POST answered %d", pl.Status)
			}
		}
	}
	if posts != 1 {
		t.Errorf("%d POSTs", posts)
	}
	if got := prog.list(); !slices.Contains(got, ProgressAnswered) {
		t.Errorf("progress %v", got)
	}
}

// Without Clarify the question is reported once and not answered; at most
// MaxClarifications questions are answered.
func TestPollerClarificationLimits(t *testing.T) {
	t.Run("no Clarify", func(t *testing.T) {
		w := consentWorld(t, agenttest.ConsentOptions{})
		w.as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool {
			switch n {
			case 1:
				_ = w.as.Ask(id, "Which project?")
			case 4:
				_ = w.as.Approve(id, "bob")
			}
			return false
		})
		clock := newFakeClock()
		prog := &progressLog{}
		p := w.poller(nil)
		p.Now, p.Sleep, p.OnProgress = clock.Now, clock.Sleep, prog.add
		pe := w.pendingFrom(t)
		if _, err := p.Await(context.Background(), pe); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range prog.list() {
			if s == ProgressClarification+"Which project?" {
				n++
			}
		}
		if n != 1 || len(w.as.Clarifications(pe.Code)) != 0 {
			t.Errorf("reported %d times, %d answers; progress %v", n, len(w.as.Clarifications(pe.Code)), prog.list())
		}
	})
	t.Run("round limit", func(t *testing.T) {
		w := consentWorld(t, agenttest.ConsentOptions{})
		w.as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool {
			if n <= 7 {
				_ = w.as.Ask(id, "question "+string(rune('0'+n)))
			} else {
				_ = w.as.Approve(id, "bob")
			}
			return false
		})
		clock := newFakeClock()
		prog := &progressLog{}
		p := w.poller(nil)
		p.Now, p.Sleep, p.OnProgress = clock.Now, clock.Sleep, prog.add
		calls := 0
		p.Clarify = func(context.Context, string) (string, error) { calls++; return "because", nil }
		pe := w.pendingFrom(t)
		if _, err := p.Await(context.Background(), pe); err != nil {
			t.Fatal(err)
		}
		if calls != MaxClarifications || len(w.as.Clarifications(pe.Code)) != MaxClarifications {
			t.Errorf("%d Clarify calls, %d answers", calls, len(w.as.Clarifications(pe.Code)))
		}
		if !slices.Contains(prog.list(), ProgressClarification+"question 6") {
			t.Errorf("progress %v", prog.list())
		}
	})
}

// With Prefer: wait the poll is held and answered as soon as the user approves.
func TestPollerLongPoll(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{RetryAfter: 2})
	p := w.poller(nil)
	p.Wait = 10 * time.Second
	approved := make(chan time.Time, 1)
	go func() {
		id, _, err := w.as.WaitPending(1, 10*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		time.Sleep(300 * time.Millisecond) // let the first poll get held
		approved <- time.Now()
		if err := w.as.Approve(id, "carol"); err != nil {
			t.Error(err)
		}
	}()
	pe := w.pendingFrom(t)
	pe.RetryAfter = 0
	raw, err := p.Await(context.Background(), pe)
	done := time.Now()
	if err != nil || raw == "" {
		t.Fatal(err)
	}
	if d := done.Sub(<-approved); d > time.Second {
		t.Errorf("Await returned %s after the approval", d)
	}
	polls := w.as.Polls()
	if len(polls) != 1 || polls[0].Prefer != "wait=10" || polls[0].Applied != "wait=10" || polls[0].Status != 200 ||
		polls[0].Held < 200*time.Millisecond {
		t.Errorf("polls %+v", polls)
	}
}

// Retry-After on 503 and 202 is honoured, with at least a second between polls and at
// most a minute.
func TestPollerPacing(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	w.as.OnPoll(func(rw http.ResponseWriter, id string, n int) bool {
		switch n {
		case 1:
			rw.Header().Set("Retry-After", "7")
			rw.WriteHeader(http.StatusServiceUnavailable)
			return true
		case 2:
			rw.Header().Set("Retry-After", "3600")
			rw.WriteHeader(http.StatusAccepted)
			_, _ = rw.Write([]byte(`{"status":"pending"}`))
			return true
		case 3:
			return false // Retry-After 0 from the fake: the 1 s minimum applies
		}
		_ = w.as.Approve(id, "dave")
		return false
	})
	clock := newFakeClock()
	prog := &progressLog{}
	p := w.poller(nil)
	p.Now, p.Sleep, p.OnProgress = clock.Now, clock.Sleep, prog.add
	pe := w.pendingFrom(t)
	if _, err := p.Await(context.Background(), pe); err != nil {
		t.Fatal(err)
	}
	// The clock only moves in Sleep, so every poll "took" no time.
	want := []time.Duration{7 * time.Second, time.Minute, time.Second}
	if s := clock.Sleeps(); !slices.Equal(s, want) {
		t.Errorf("sleeps %v, want %v", s, want)
	}
	if got := prog.list(); !slices.Equal(got, []string{ProgressBackoff, ProgressPending, ProgressPending}) {
		t.Errorf("progress %v", got)
	}
}

// Polls must be signed by the key of the token request; the fake refuses others.
func TestPollerSigningKey(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	pe := w.pendingFrom(t)
	other := genKey(t, keys.AlgEd25519, "agent-key-1")
	p := w.poller(nil)
	p.Credential = JWKSURI(other, w.agentID) // not in the agent's JWKS
	p.Sleep = newFakeClock().Sleep
	var te *TokenError
	if _, err := p.Await(context.Background(), pe); !errors.As(err, &te) || te.Status != 401 {
		t.Fatalf("err %v", err)
	}
	// The delegate is the same agent, but not the key that made the token request.
	p.Credential = Delegate(w.delegateKey, w.agentToken)
	if _, err := p.Await(context.Background(), pe); !errors.As(err, &te) || te.Status != 403 || te.Code != "key_binding_failed" {
		t.Fatalf("err %v", err)
	}
	// Pseudonymous credentials are refused before anything is sent.
	p.Credential = HWK(w.agentKey)
	if _, err := p.Await(context.Background(), pe); err == nil || !strings.Contains(err.Error(), "identified") {
		t.Fatalf("err %v", err)
	}
	n := len(w.as.Polls())
	if n != 2 {
		t.Errorf("%d polls", n)
	}
	// The right key gets through.
	_ = w.as.Approve(pe.Code, "erin")
	p = w.poller(nil)
	if raw, err := p.Await(context.Background(), pe); err != nil || raw == "" {
		t.Fatalf("err %v", err)
	}
	if polls := w.as.Polls(); polls[len(polls)-1].KeyThumbprint != w.agentKey.Public.Thumbprint {
		t.Errorf("polls %+v", polls)
	}
}

func TestPollerRefusesForeignLocation(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	pe := w.pendingFrom(t)
	p := w.poller(nil)
	for _, loc := range []string{
		"http://127.0.0.1:4/pending/x",
		strings.Replace(pe.Location, "http://", "http://user:pw@", 1),
		"/pending/relative",
		"ftp://" + strings.TrimPrefix(pe.Location, "http://"),
	} {
		bad := *pe
		bad.Location = loc
		var fe *FlowError
		if _, err := p.Await(context.Background(), &bad); !errors.As(err, &fe) {
			t.Errorf("%s: err %v", loc, err)
		}
	}
	// Without Dev, http:// is not allowed at all.
	p.Dev = false
	var fe *FlowError
	if _, err := p.Await(context.Background(), pe); !errors.As(err, &fe) {
		t.Errorf("no dev: err %v", err)
	}
	if n := len(w.as.Polls()); n != 0 {
		t.Errorf("%d polls were sent", n)
	}
}

func TestPollerMaxDuration(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{RetryAfter: 2})
	clock := newFakeClock()
	p := w.poller(nil)
	p.Now, p.Sleep, p.MaxDuration = clock.Now, clock.Sleep, 9*time.Second
	pe := w.pendingFrom(t)
	_, err := p.Await(context.Background(), pe)
	if !errors.Is(err, ErrConsentTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	// Polls at 2, 4, 6, 8 s; then 1 s is left: sleep it and give up.
	if n := len(w.as.Polls()); n != 4 {
		t.Errorf("%d polls", n)
	}
	var total time.Duration
	for _, s := range clock.Sleeps() {
		total += s
	}
	if total != 9*time.Second {
		t.Errorf("slept %v in all (%v)", total, clock.Sleeps())
	}

	// The caller's context ends the wait too.
	ctx, cancel := context.WithCancel(context.Background())
	p = w.poller(nil)
	p.Sleep = func(context.Context, time.Duration) error { cancel(); return ctx.Err() }
	if _, err := p.Await(ctx, w.pendingFrom(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// The interaction endpoint is fetched from the auth server's metadata when missing.
func TestPollerFetchesInteractionEndpoint(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	pe := w.pendingFrom(t)
	pe.InteractionEndpoint = ""
	_ = w.as.Deny(pe.Code)
	p := w.poller(nil)
	p.Discovery = nil
	var shown PendingError
	p.OnPending = func(x *PendingError) { shown = *x }
	if _, err := p.Await(context.Background(), pe); !errors.Is(err, ErrConsentDenied) {
		t.Fatalf("err %v", err)
	}
	if shown.InteractionEndpoint != w.as.ID+"/interact" || pe.InteractionEndpoint != "" {
		t.Errorf("shown %+v; the caller's PendingError must not change", shown)
	}
	// An endpoint that could fool the user on a terminal is not shown.
	for _, ie := range []string{w.as.ID + "/inter\u202eact", "javascript:alert(1)", "http://x/\x1b[2J"} {
		pe2 := *pe
		pe2.InteractionEndpoint = ie
		shown = PendingError{InteractionEndpoint: "unset"}
		if _, err := p.Await(context.Background(), &pe2); !errors.Is(err, ErrPendingGone) {
			t.Fatalf("err %v", err)
		}
		if shown.InteractionEndpoint != "" {
			t.Errorf("%q was shown", ie)
		}
	}
}

func TestInteractionURLAndFormatCode(t *testing.T) {
	for _, tc := range []struct{ ep, code, want string }{
		{"https://as.example/interact", "ABCD2345", "https://as.example/interact?code=ABCD2345"},
		{"https://as.example/interact?lang=en", "ABCD2345", "https://as.example/interact?lang=en&code=ABCD2345"},
		{"https://as.example/interact#x", "A B&C", "https://as.example/interact?code=A+B%26C"},
		{"", "ABCD2345", ""},
	} {
		if got := InteractionURL(tc.ep, tc.code); got != tc.want {
			t.Errorf("InteractionURL(%q, %q) = %q, want %q", tc.ep, tc.code, got, tc.want)
		}
	}
	for in, want := range map[string]string{"ABCD2345": "ABCD-2345", "ABC": "ABC", "ABCD": "ABCD", "ABCDE": "ABCD-E", "ABCDEFGHIJKL": "ABCD-EFGH-IJKL"} {
		if got := FormatCode(in); got != want {
			t.Errorf("FormatCode(%q) = %q, want %q", in, got, want)
		}
	}
}
