package agent

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
)

// answers returns a SetAnswer function that plays fs in turn (one per token request),
// then lets the token be issued.
func answers(fs ...func(http.ResponseWriter) bool) func(http.ResponseWriter) bool {
	var mu sync.Mutex
	n := 0
	return func(w http.ResponseWriter) bool {
		mu.Lock()
		i := n
		n++
		mu.Unlock()
		if i < len(fs) {
			return fs[i](w)
		}
		return false
	}
}

func withRetryAfter(status int, ra string) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		w.Header().Set("Retry-After", ra)
		w.WriteHeader(status)
		return true
	}
}

// A token endpoint that cannot decide for a moment (closed connection, 503 with
// Retry-After, 502) is asked again with the same resource token: the flow is not run
// again, the gateway is asked once, and the backoffs are logged without tokens.
func TestTokenRequestRidesOutOutage(t *testing.T) {
	w := newFlowWorld(t)
	w.as.SetAnswer(answers(
		func(http.ResponseWriter) bool { hangUp(); return true }, // a POST is not retried by net/http
		withRetryAfter(http.StatusServiceUnavailable, "2"),
		agenttest.Deny(http.StatusBadGateway, "", ""),
	))
	logs := &logSink{}
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	var sleeps []time.Duration
	tr.Sleep = func(ctx context.Context, d time.Duration) error { sleeps = append(sleeps, d); return ctx.Err() }
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, logs)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if h := w.as.Hits(); h != tokenAttempts {
		t.Errorf("token endpoint hit %d times, want %d", h, tokenAttempts)
	}
	if seen := w.gw.Seen(); len(seen) != 2 || seen[0] != "jwks_uri" {
		t.Errorf("gateway saw %v: the flow must run once", seen)
	}
	if len(sleeps) != 3 || sleeps[0] < 500*time.Millisecond || sleeps[0] > time.Second || sleeps[1] != 2*time.Second ||
		sleeps[2] < 2*time.Second || sleeps[2] > 4*time.Second {
		t.Errorf("sleeps %v", sleeps)
	}
	if l := logs.String(); !strings.Contains(l, "retry 1 of 3") || !strings.Contains(l, "retry 3 of 3") || regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(l) {
		t.Errorf("log:\n%s", l)
	}
}

// A 503 whose Retry-After is longer than the flow waits, and a 4xx, are reported at once;
// a 5xx that persists is reported after tokenAttempts, with its Retry-After.
func TestTokenRequestOutageReported(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter) bool
		hits   int
		status int
		ra     time.Duration
	}{
		{"retry-after beyond the cap", withRetryAfter(http.StatusServiceUnavailable, "3600"), 1, 503, time.Hour},
		{"persistent 503", withRetryAfter(http.StatusServiceUnavailable, "1"), tokenAttempts, 503, time.Second},
		{"400", agenttest.Deny(http.StatusBadRequest, "invalid_request", "no"), 1, 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFlowWorld(t)
			w.as.SetAnswer(tc.answer)
			tr := w.transport(httpsig.SchemeJWKSURI, nil)
			tr.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
			req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
			_, err := tr.RoundTrip(req)
			var te *TokenError
			if !errors.As(err, &te) || te.Status != tc.status || te.RetryAfter != tc.ra || te.Temporary() != (tc.status >= 500) {
				t.Fatalf("err %#v", err)
			}
			if h := w.as.Hits(); h != tc.hits {
				t.Errorf("token endpoint hit %d times, want %d", h, tc.hits)
			}
		})
	}

	// The caller's context ends the backoff at once.
	w := newFlowWorld(t)
	w.as.SetAnswer(withRetryAfter(http.StatusServiceUnavailable, "5"))
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	ctx, cancel := context.WithCancel(context.Background())
	tr.Sleep = func(context.Context, time.Duration) error { cancel(); return ctx.Err() }
	req, _ := http.NewRequestWithContext(ctx, "GET", w.gw.ID+"/data", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}
