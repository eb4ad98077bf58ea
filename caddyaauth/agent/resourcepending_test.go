package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// The gateway answers an authorized request with its own 202; the Transport shows the
// interaction URL, polls with the request's credential and relays the final answer.
func TestResourcePending(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scheme   string
		decide   func(poll int) int
		hook     bool
		status   int
		bodyHas  string
		polls    int
		progress int // ProgressPending reports
	}{
		{"approved on the second poll", httpsig.SchemeJWKSURI, finalAt(2, 200), true, 200, `"scope":"data.read"`, 2, 1},
		{"delegate", httpsig.SchemeJWT, finalAt(1, 200), true, 200, `"delegate":"delegate-1"`, 1, 0},
		{"denied", httpsig.SchemeJWKSURI, finalAt(2, 403), true, 403, `"error":"denied"`, 2, 1},
		{"expired", httpsig.SchemeJWKSURI, finalAt(1, 408), true, 408, `"error":"expired"`, 1, 0},
		{"gone", httpsig.SchemeJWKSURI, finalAt(1, 404), true, 404, `"error"`, 1, 0},
		{"a 5xx is an answer too", httpsig.SchemeJWKSURI, finalAt(1, 502), true, 502, `"error"`, 1, 0},
		{"no AwaitResponse hook: the 202 is returned", httpsig.SchemeJWKSURI, finalAt(1, 200), false, 202, `"interaction_endpoint"`, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFlowWorld(t)
			w.gw.DeferAuthorized(1, tc.decide)
			logs := &logSink{}
			tr := w.transport(tc.scheme, logs)
			clock := newFakeClock()
			prog := &progressLog{}
			p := w.poller(logs)
			p.Sleep, p.OnProgress = clock.Sleep, prog.add
			var shown *PendingError
			p.OnPending = func(pe *PendingError) { shown = pe }
			if tc.hook {
				tr.AwaitResponse = p.AwaitResponse
			}
			resp, body := doRequest(t, tr, "GET", w.gw.ID+"/data", "", nil)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.bodyHas) {
				t.Fatalf("status %d body %s, want %d with %s\n%s", resp.StatusCode, body, tc.status, tc.bodyHas, logs)
			}
			polls := w.gw.ResourcePolls()
			if len(polls) != tc.polls {
				t.Fatalf("polls %+v, want %d", polls, tc.polls)
			}
			for _, pl := range polls {
				if pl.KeyThumbprint != tr.Identity.Signer.Public.Thumbprint || pl.Method != "GET" {
					t.Errorf("poll %+v: not signed by the request's key", pl)
				}
			}
			interact := w.gw.ID + agenttest.PathResourceInteract + "?code="
			if l := logs.String(); !strings.Contains(l, "the resource deferred the request (require=interaction): the user approves at "+interact) {
				t.Errorf("log:\n%s", l)
			}
			noJWT(t, "logs", logs.String())
			if got := len(prog.list()); got != tc.progress {
				t.Errorf("progress %v", prog.list())
			}
			if !tc.hook {
				return
			}
			if shown == nil || !shown.AtResource || shown.Resource != w.gw.ID || shown.Origin != w.gw.ID ||
				!strings.HasPrefix(InteractionURL(shown.InteractionEndpoint, shown.Code), interact) || len(shown.Code) != 8 ||
				!strings.HasPrefix(shown.Location, w.gw.ID+agenttest.PathResourcePending) {
				t.Errorf("OnPending got %+v", shown)
			}
		})
	}
}

func finalAt(n, status int) func(int) int {
	return func(poll int) int {
		if poll >= n {
			return status
		}
		return 0
	}
}

// pendingServer is a resource whose API path answers 202 as answer202 says, and whose
// pending URL answers final (after one 202).
type pendingServer struct {
	mu        sync.Mutex
	srv       *httptest.Server
	answer202 func(w http.ResponseWriter, base string)
	final     func(w http.ResponseWriter)
	polls     []string // the signature scheme of each poll
}

func newPendingServer(t *testing.T, answer202 func(http.ResponseWriter, string), final func(http.ResponseWriter)) *pendingServer {
	ps := &pendingServer{answer202: answer202, final: final}
	ps.srv = httptest.NewServer(ps)
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *pendingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/pending/") {
		ps.answer202(w, ps.srv.URL)
		return
	}
	scheme := "unsigned"
	if sig, err := httpsig.Parse(r.Header, httpsig.DefaultLimits); err == nil {
		scheme = sig.Key.Scheme
	}
	ps.mu.Lock()
	ps.polls = append(ps.polls, scheme)
	n := len(ps.polls)
	ps.mu.Unlock()
	if n == 1 {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ps.final(w)
}

func (ps *pendingServer) pollSchemes() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.polls...)
}

func deferWith(aauth, location string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, base string) {
		if aauth != "" {
			w.Header()["AAuth"] = []string{aauth}
		}
		if location != "" {
			w.Header().Set("Location", strings.ReplaceAll(location, "BASE", base))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"pending","code":"WXYZ2345","interaction_endpoint":"/interact"}`)
	}
}

// Which 202s the Transport follows, with which credential, and what it relays.
func TestResourcePendingFollowed(t *testing.T) {
	big := strings.Repeat("x", 3*maxTokenResponse)
	okBig := func(w http.ResponseWriter) { _, _ = io.WriteString(w, big) }
	interaction := `require=interaction; code="WXYZ2345"`
	for _, tc := range []struct {
		name      string
		answer202 func(http.ResponseWriter, string)
		lazy      bool
		wantPolls []string
		wantLog   string
	}{
		{"hwk request, relative Location, large final body", deferWith(interaction, "/pending/1"), false,
			[]string{"hwk", "hwk"}, "the user approves at BASE/interact?code=WXYZ2345"},
		{"approval without a code", deferWith("require=approval", "BASE/pending/1"), false,
			[]string{"hwk", "hwk"}, "the resource deferred the request (require=approval"},
		{"a plain 202 (no AAuth header)", deferWith("", "BASE/pending/1"), false, nil, ""},
		{"a 202 asking for something else", deferWith("require=auth-token", "BASE/pending/1"), false, nil, ""},
		{"Location on another origin", deferWith(interaction, "http://127.0.0.1:9/pending/1"), false, nil,
			"without a Location on its own origin"},
		{"no Location", deferWith(interaction, ""), false, nil, "without a Location on its own origin"},
		{"unsigned request", deferWith(interaction, "/pending/1"), true, nil, "deferred an unsigned request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := newPendingServer(t, tc.answer202, okBig)
			logs := &logSink{}
			key := genKey(t, keys.AlgEd25519, "")
			tr := &Transport{Pseudonym: HWK(key), Lazy: tc.lazy, Logf: logs.logf, Dev: true}
			p := &Poller{Dev: true, Wait: -1, Sleep: newFakeClock().Sleep, Logf: logs.logf}
			tr.AwaitResponse = p.AwaitResponse
			resp, body := doRequest(t, tr, "GET", ps.srv.URL+"/api", "", nil)
			want, wantBody := http.StatusAccepted, `"code":"WXYZ2345"`
			if tc.wantPolls != nil {
				want, wantBody = http.StatusOK, big
			}
			if resp.StatusCode != want || !strings.Contains(body, wantBody) {
				t.Fatalf("status %d, body %.80s…, want %d\n%s", resp.StatusCode, body, want, logs)
			}
			if got := ps.pollSchemes(); strings.Join(got, ",") != strings.Join(tc.wantPolls, ",") {
				t.Errorf("polls %v, want %v", got, tc.wantPolls)
			}
			if l := logs.String(); !strings.Contains(l, strings.ReplaceAll(tc.wantLog, "BASE", ps.srv.URL)) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, l)
			}
		})
	}
}

func TestAwaitResponseRefuses(t *testing.T) {
	key := genKey(t, keys.AlgEd25519, "")
	p := &Poller{Dev: true, Credential: JWKSURI(genKey(t, keys.AlgEd25519, "k"), "http://127.0.0.1:1")}
	atRes := &PendingError{AtResource: true, Origin: "http://127.0.0.1:1", Location: "http://127.0.0.1:1/pending/x"}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"nil pending", func() error { _, err := p.AwaitResponse(context.Background(), nil, HWK(key)); return err }, "no request deferred by a resource"},
		{"auth server pending", func() error {
			_, err := p.AwaitResponse(context.Background(), &PendingError{AuthServer: "http://127.0.0.1:1"}, HWK(key))
			return err
		}, "no request deferred by a resource"},
		{"no credential", func() error { _, err := p.AwaitResponse(context.Background(), atRes, nil); return err }, "nil credential"},
		{"Location off the resource's origin", func() error {
			pe := *atRes
			pe.Location = "http://127.0.0.1:2/pending/x"
			_, err := p.AwaitResponse(context.Background(), &pe, HWK(key))
			return err
		}, "is not on the resource's origin"},
		{"https needed without Dev", func() error {
			q := *p
			q.Dev = false
			_, err := q.AwaitResponse(context.Background(), atRes, HWK(key))
			return err
		}, "resource"},
		{"Await of a resource's pending request", func() error { _, err := p.Await(context.Background(), atRes); return err }, "use AwaitResponse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	var fe *FlowError
	pe := *atRes
	pe.Location = "http://127.0.0.1:2/pending/x"
	if _, err := p.AwaitResponse(context.Background(), &pe, HWK(key)); !errors.As(err, &fe) {
		t.Errorf("err %v, want a FlowError", err)
	}
	if s := (&PendingError{AtResource: true, Location: "L"}).Error(); !strings.HasPrefix(s, "agent: the resource deferred the request") {
		t.Errorf("Error() = %q", s)
	}
}
