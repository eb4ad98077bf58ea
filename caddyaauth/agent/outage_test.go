package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
)

// rtFunc is an http.RoundTripper made of a function.
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func cannedAnswer(r *http.Request, status int, ctype, body string, hdr ...string) *http.Response {
	h := http.Header{}
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: h,
		Body: io.NopCloser(strings.NewReader(body)), Request: r}
}

const unavailableBody = `{"error":"temporarily_unavailable","error_description":"the auth server's JWKS could not be fetched"}`

// A gateway that cannot verify the auth token for an outage (503
// temporarily_unavailable, Retry-After) gets the same request again with the same token
// after the Retry-After; the token flow is not run again, and a plain 503 of the
// upstream is not retried.
func TestGatewayOutageRetriedWithSameToken(t *testing.T) {
	for _, tc := range []struct {
		name     string
		outages  int    // answers 503 to this many auth-token requests
		ctype    string // of the 503
		body     string
		status   int // final status
		sleeps   int
		jwtSends int
	}{
		{"two outages then through", 2, "application/json", unavailableBody, 200, 2, 3},
		{"persistent outage", 100, "application/json", unavailableBody, 503, gatewayAttempts - 1, gatewayAttempts},
		{"upstream 503 is not retried", 100, "text/plain", "busy", 503, 0, 1},
		{"another JSON 503 is not retried", 100, "application/json", `{"error":"server_error"}`, 503, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFlowWorld(t)
			logs := &logSink{}
			tr := w.transport(httpsig.SchemeJWKSURI, logs)
			clock := newFakeClock()
			tr.Sleep = clock.Sleep
			var jwtSends atomic.Int64
			tr.Base = rtFunc(func(r *http.Request) (*http.Response, error) {
				if strings.HasPrefix(r.URL.String(), w.gw.ID) && strings.Contains(r.Header.Get("Signature-Key"), "jwt") {
					if n := jwtSends.Add(1); int(n) <= tc.outages {
						return cannedAnswer(r, 503, tc.ctype, tc.body, "Retry-After", "3"), nil
					}
				}
				return http.DefaultTransport.RoundTrip(r)
			})
			req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("%v\n%s", err, logs)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || (tc.status == 503 && string(b) != tc.body) {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
			if s := clock.Sleeps(); len(s) != tc.sleeps || (len(s) > 0 && s[0] != 3*time.Second) {
				t.Errorf("sleeps %v", s)
			}
			if n := jwtSends.Load(); int(n) != tc.jwtSends {
				t.Errorf("%d sends with the auth token, want %d", n, tc.jwtSends)
			}
			if h := w.as.Hits(); h != 1 {
				t.Errorf("token endpoint hit %d times: the flow ran again", h)
			}
			// The token stays cached: the next request asks the auth server nothing.
			req, _ = http.NewRequest("GET", w.gw.ID+"/data", nil)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
			if h := w.as.Hits(); h != 1 {
				t.Errorf("token endpoint hit %d times after a second request", h)
			}
			noJWT(t, "log", logs.String())
		})
	}
}

// At most one token request per backoff interval, across flows: after the auth server
// asked for a 5 s backoff, a second flow does not ask before the 5 s are over, and one
// that cannot wait that long fails without asking.
func TestTokenRequestsOneBackoffApart(t *testing.T) {
	w := newFlowWorld(t)
	clock := newFakeClock()
	var mu sync.Mutex
	var at []time.Time
	w.as.SetAnswer(func(rw http.ResponseWriter) bool {
		mu.Lock()
		at = append(at, clock.Now())
		mu.Unlock()
		rw.Header().Set("Retry-After", "5")
		rw.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	tr := w.transport(httpsig.SchemeJWKSURI, nil)
	tr.Now, tr.Sleep = clock.Now, clock.Sleep
	for range 2 {
		req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
		var te *TokenError
		if _, err := tr.RoundTrip(req); !errors.As(err, &te) || !te.Temporary() || te.RetryAfter != 5*time.Second {
			t.Fatalf("err %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 2*tokenAttempts {
		t.Fatalf("%d token requests, want %d", len(at), 2*tokenAttempts)
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < 5*time.Second {
			t.Fatalf("token requests %d and %d only %s apart", i-1, i, d)
		}
	}
	// A flow whose caller cannot wait the backoff out is told so without a request.
	tr.Now = func() time.Time { return clock.Now().Add(-time.Second) }
	w.as.SetAnswer(func(rw http.ResponseWriter) bool {
		rw.Header().Set("Retry-After", "60")
		rw.WriteHeader(503)
		return true
	})
	req, _ := http.NewRequest("GET", w.gw.ID+"/data", nil)
	_, _ = tr.RoundTrip(req)
	hits := w.as.Hits()
	req, _ = http.NewRequest("GET", w.gw.ID+"/data", nil)
	var te *TokenError
	if _, err := tr.RoundTrip(req); !errors.As(err, &te) || te.Code != "temporarily_unavailable" || te.RetryAfter <= 10*time.Second {
		t.Fatalf("err %v", err)
	}
	if w.as.Hits() != hits {
		t.Fatal("asked the auth server during its backoff")
	}
}

// The auth server's metadata at flow start is fetched again while the auth server is
// down (5xx), after discovery's backoff, but never at or after the deadline.
func TestAuthServerMetadataRetried(t *testing.T) {
	var hits, failFirst atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/aauth-issuer.json" {
			http.NotFound(rw, r)
			return
		}
		if hits.Add(1) <= failFirst.Load() {
			http.Error(rw, "restarting", http.StatusBadGateway)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(rw, `{"issuer":"`+"http://"+r.Host+`","token_endpoint":"http://`+r.Host+`/token"}`)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name    string
		fails   int64
		window  time.Duration
		ok      bool
		fetches int64
	}{
		{"two failures", 2, time.Minute, true, 3},
		{"deadline first", 5, 1500 * time.Millisecond, false, 2},
		{"too many", 10, time.Hour, false, tokenAttempts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			failFirst.Store(tc.fails)
			clock := newFakeClock()
			d := discovery.New(discovery.Config{Dev: true, Now: clock.Now})
			t.Cleanup(d.Close)
			tr := &Transport{Dev: true, Discovery: d, Now: clock.Now, Sleep: clock.Sleep}
			u, _, err := tr.tokenEndpoint(context.Background(), srv.URL, clock.Now().Add(tc.window))
			if (err == nil) != tc.ok || hits.Load() != tc.fetches {
				t.Fatalf("err %v, %d fetches", err, hits.Load())
			}
			if tc.ok && u.Path != "/token" {
				t.Fatalf("endpoint %v", u)
			}
			if !tc.ok && !errors.Is(err, discovery.ErrUnavailable) {
				t.Fatalf("err %v is not ErrUnavailable", err)
			}
		})
	}
}

// A clarification answer the auth server cannot take now (a dropped connection, a 503
// with Retry-After) is posted again; a 400 is not.
func TestClarificationAnswerRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   []int // how the first POSTs fail: 0 = dropped connection, else a status
		ok     bool
		posts  int
		sleep1 time.Duration
	}{
		{"dropped then 503", []int{0, 503}, true, 3, 0},
		{"503 with retry-after", []int{503}, true, 2, 2 * time.Second},
		{"400 is final", []int{400}, false, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := consentWorld(t, agenttest.ConsentOptions{})
			w.as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool {
				if n == 1 {
					_ = w.as.Ask(id, "Why?")
				}
				if n == 2 && len(w.as.Clarifications(id)) == 1 {
					_ = w.as.Approve(id, "bob")
				}
				return false
			})
			clock := newFakeClock()
			p := w.poller(nil)
			p.Now, p.Sleep = clock.Now, clock.Sleep
			p.Clarify = func(context.Context, string) (string, error) { return "reports", nil }
			var posts atomic.Int64
			p.Base = rtFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method != http.MethodPost {
					return http.DefaultTransport.RoundTrip(r)
				}
				n := int(posts.Add(1))
				switch {
				case n > len(tc.fail):
					return http.DefaultTransport.RoundTrip(r)
				case tc.fail[n-1] == 0:
					return nil, errors.New("connection reset by peer")
				}
				return cannedAnswer(r, tc.fail[n-1], "application/json", `{"error":"x"}`, "Retry-After", "2"), nil
			})
			pe := w.pendingFrom(t)
			raw, err := p.Await(context.Background(), pe)
			if (err == nil && raw != "") != tc.ok || int(posts.Load()) != tc.posts {
				t.Fatalf("Await: %v, %d POSTs", err, posts.Load())
			}
			if tc.sleep1 > 0 && !containsDur(clock.Sleeps(), tc.sleep1) {
				t.Errorf("sleeps %v, want one of %s", clock.Sleeps(), tc.sleep1)
			}
			if tc.ok && len(w.as.Clarifications(pe.Code)) != 1 {
				t.Errorf("answers %+v", w.as.Clarifications(pe.Code))
			}
		})
	}
}

func containsDur(ds []time.Duration, d time.Duration) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}
