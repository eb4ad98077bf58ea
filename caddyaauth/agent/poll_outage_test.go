package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
)

// hangUp ends the exchange without an answer, as a server killed mid-request does:
// net/http closes the connection (or resets the stream) on ErrAbortHandler.
func hangUp() { panic(http.ErrAbortHandler) }

// outage answers poll n during an outage: closed connections (two in a row, as
// net/http retries a GET once on a kept-alive connection that was closed), 502, 503 with
// Retry-After, 504, 500, and closed connections again (polls 1–8).
func outage(rw http.ResponseWriter, n int) {
	switch n {
	case 1, 2, 7, 8:
		hangUp()
	case 3:
		rw.WriteHeader(http.StatusBadGateway)
	case 4:
		rw.Header().Set("Retry-After", "2")
		rw.WriteHeader(http.StatusServiceUnavailable)
	case 5:
		rw.WriteHeader(http.StatusGatewayTimeout)
	case 6:
		rw.WriteHeader(http.StatusInternalServerError)
	}
}

// An outage of the auth server during the wait (closed connections, 5xx) is ridden out:
// the wait goes on with backoff and ends with the token once the server is back.
func TestPollerRidesOutOutage(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	w.as.OnPoll(func(rw http.ResponseWriter, id string, n int) bool {
		if n <= 8 {
			outage(rw, n)
			return true
		}
		_ = w.as.Approve(id, "erin")
		return false
	})
	clock := newFakeClock()
	prog := &progressLog{}
	logs := &logSink{}
	p := w.poller(logs)
	p.Now, p.Sleep, p.OnProgress = clock.Now, clock.Sleep, prog.add
	tr := w.transport("jwks_uri", nil)
	tr.AwaitToken = p.Await
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Every failed poll was reported and followed by a backoff within bounds; the
	// Retry-After of the 503 was honoured.
	prg, sl := prog.list(), clock.Sleeps()
	if n := strings.Count(strings.Join(prg, " "), ProgressBackoff); n != 4 {
		t.Errorf("progress %v: %d backoffs, want 4", prg, n)
	}
	if n := strings.Count(strings.Join(prg, " "), ProgressUnreachable); n < 2 || n > 4 {
		t.Errorf("progress %v: %d unreachable, want 2–4", prg, n)
	}
	if len(sl) != len(prg) || !slices.Contains(sl, 2*time.Second) {
		t.Errorf("sleeps %v for progress %v", sl, prg)
	}
	for i, d := range sl {
		// fails-th retry without Retry-After: 2^(fails-1) s, jittered to its upper half.
		if d < time.Second || d > min(time.Second<<i, retryCap) {
			t.Errorf("sleep %d: %v (all: %v)", i+1, d, sl)
		}
	}
	logged := logs.String()
	for _, want := range []string{"cannot be reached", "answered 502", "answered 503", "answered 504", "answered 500", "retry 6 in"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %q:\n%s", want, logged)
		}
	}
	if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(logged) {
		t.Errorf("a token was logged:\n%s", logged)
	}
}

// A decision, an unknown pending request or another 4xx during or right after the outage
// ends the wait.
func TestPollerOutageThenRefusal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w *flowWorld, rw http.ResponseWriter, id string) bool
		want   error
		status int
	}{
		{"denied", func(w *flowWorld, _ http.ResponseWriter, id string) bool { _ = w.as.Deny(id); return false }, ErrConsentDenied, 0},
		{"404", func(_ *flowWorld, rw http.ResponseWriter, _ string) bool {
			rw.WriteHeader(http.StatusNotFound)
			return true
		}, ErrPendingGone, 0},
		{"400", func(_ *flowWorld, rw http.ResponseWriter, _ string) bool {
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusBadRequest)
			_, _ = rw.Write([]byte(`{"error":"invalid_request"}`))
			return true
		}, nil, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := consentWorld(t, agenttest.ConsentOptions{})
			w.as.OnPoll(func(rw http.ResponseWriter, id string, n int) bool {
				if n <= 3 {
					outage(rw, n)
					return true
				}
				return tc.answer(w, rw, id)
			})
			clock := newFakeClock()
			p := w.poller(nil)
			p.Now, p.Sleep = clock.Now, clock.Sleep
			_, err := p.Await(context.Background(), w.pendingFrom(t))
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			var te *TokenError
			if tc.status != 0 && (!errors.As(err, &te) || te.Status != tc.status) {
				t.Fatalf("err %v, want a TokenError %d", err, tc.status)
			}
			if n := len(w.as.Polls()); n != 4 {
				t.Errorf("%d polls, want 4", n)
			}
		})
	}
}

// refusing is a transport whose every connection is refused: the auth server is down.
type refusing struct{ n int }

func (r *refusing) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n++
	return nil, fmt.Errorf("dial tcp %s: %w", req.URL.Host, syscall.ECONNREFUSED)
}

// While the auth server stays down, MaxDuration still ends the wait, and so does the
// caller's context, at once.
func TestPollerOutageDeadline(t *testing.T) {
	w := consentWorld(t, agenttest.ConsentOptions{})
	pe := w.pendingFrom(t)
	clock := newFakeClock()
	down := &refusing{}
	p := w.poller(nil)
	p.Base, p.Now, p.Sleep, p.MaxDuration = down, clock.Now, clock.Sleep, 3*time.Minute
	_, err := p.Await(context.Background(), pe)
	if !errors.Is(err, ErrConsentTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	var total time.Duration
	for _, s := range clock.Sleeps() {
		total += s
		if s > retryCap {
			t.Errorf("slept %v, more than the %v cap", s, retryCap)
		}
	}
	if total != 3*time.Minute {
		t.Errorf("slept %v in all (%v)", total, clock.Sleeps())
	}
	// 1+2+4+8+16 s then 30 s (jittered to its upper half): between 6 and 15 polls.
	if down.n < 6 || down.n > 15 {
		t.Errorf("%d polls", down.n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	p = w.poller(nil)
	p.Base = &refusing{}
	p.Sleep = func(context.Context, time.Duration) error { cancel(); return ctx.Err() }
	if _, err := p.Await(ctx, pe); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}
