package main

import (
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
)

// qrChars are the block characters ToSmallString draws with.
const qrChars = "█▀▄"

func TestFetchConsent(t *testing.T) {
	tb := newTestbed(t)
	ident := []string{"-dev", "-key", tb.agentKey, "-id", tb.agentID}
	agentJKT := func() string {
		s, err := loadSigner(tb.agentKey)
		if err != nil {
			t.Fatal(err)
		}
		return s.Public.Thumbprint
	}()

	old := progressEvery
	progressEvery = 500 * time.Millisecond
	t.Cleanup(func() { progressEvery = old })

	// later runs f after d without holding up the poll that scheduled it.
	later := func(d time.Duration, f func()) { go func() { time.Sleep(d); f() }() }

	for _, tc := range []struct {
		name      string
		args      []string
		hook      func(as *agenttest.AuthServer, id string, n int)
		prompt    string // a terminal's input, when set
		code      int
		stderrHas []string
		stderrNot []string
		check     func(t *testing.T, as *agenttest.AuthServer, id string)
	}{
		{
			// The poll is held (Prefer: wait) and answered when the user approves; the
			// HTTP -timeout does not run meanwhile.
			name: "approved while the poll is held",
			args: []string{"-timeout", "1s"},
			hook: func(as *agenttest.AuthServer, id string, n int) {
				if n == 1 {
					later(1500*time.Millisecond, func() { _ = as.Approve(id, "alice") })
				}
			},
			stderrHas: []string{"Approve this request in your browser:", "/interact?code=", "Code: ", "┌", "└",
				"aauth: waiting for approval… 0s, 10m left (Ctrl-C to cancel)\n", "aauth: waiting for approval… 1s, 9m59s left\n",
				"aauth: approved after "},
			check: func(t *testing.T, as *agenttest.AuthServer, id string) {
				polls := as.Polls()
				if len(polls) != 1 || polls[0].Prefer != "wait=20" || polls[0].Status != 200 {
					t.Errorf("polls %+v", polls)
				}
			},
		},
		{
			name: "no QR, plain polling",
			args: []string{"-no-qr", "-wait", "0"},
			hook: func(as *agenttest.AuthServer, id string, n int) {
				if n == 2 {
					_ = as.Approve(id, "alice")
				}
			},
			stderrHas: []string{"Approve this request in your browser:", "/interact?code="},
			stderrNot: []string{"█", "▀", "▄"},
			check: func(t *testing.T, as *agenttest.AuthServer, id string) {
				if polls := as.Polls(); len(polls) != 2 || polls[0].Prefer != "" {
					t.Errorf("polls %+v", polls)
				}
			},
		},
		{
			name: "clarification answered with -answer",
			args: []string{"-v", "-wait", "0", "-answer", "for the weekly report"},
			hook: func(as *agenttest.AuthServer, id string, n int) {
				if n == 1 {
					_ = as.Ask(id, "Which report is this for?")
				}
				if n > 1 && len(as.Clarifications(id)) == 1 {
					_ = as.Approve(id, "alice")
				}
			},
			stderrHas: []string{"aauth: the user asks: Which report is this for?", "aauth: answering: for the weekly report", "aauth: answer sent",
				"* POST " /* the answer, and the polls: */, "/pending/", "signed with jwks_uri", "-> 202 Accepted", "-> 200 OK"},
			check: func(t *testing.T, as *agenttest.AuthServer, id string) {
				ans := as.Clarifications(id)
				if len(ans) != 1 || ans[0].Answer != "for the weekly report" || ans[0].KeyThumbprint != agentJKT {
					t.Errorf("answers %+v", ans)
				}
			},
		},
		{
			name:   "clarification typed at the terminal",
			args:   []string{"-wait", "0"},
			prompt: "  typed by hand \n",
			hook: func(as *agenttest.AuthServer, id string, n int) {
				if n == 1 {
					_ = as.Ask(id, "Why?")
				}
				if n > 1 && len(as.Clarifications(id)) == 1 {
					_ = as.Approve(id, "alice")
				}
			},
			stderrHas: []string{"The user asks: Why?\nYour answer: "},
			check: func(t *testing.T, as *agenttest.AuthServer, id string) {
				if ans := as.Clarifications(id); len(ans) != 1 || ans[0].Answer != "typed by hand" {
					t.Errorf("answers %+v", ans)
				}
			},
		},
		{
			name: "clarification left unanswered without a terminal",
			args: []string{"-wait", "0"},
			hook: func(as *agenttest.AuthServer, id string, n int) {
				switch n {
				case 1:
					_ = as.Ask(id, "Why?")
				case 2:
					_ = as.Approve(id, "alice")
				}
			},
			stderrHas: []string{"aauth: the user asks: Why?\naauth: (not answered; pass -answer TEXT to answer)"},
			check: func(t *testing.T, as *agenttest.AuthServer, id string) {
				if ans := as.Clarifications(id); len(ans) != 0 {
					t.Errorf("answers %+v", ans)
				}
			},
		},
		{
			name: "denied",
			hook: func(as *agenttest.AuthServer, id string, n int) {
				later(200*time.Millisecond, func() { _ = as.Deny(id) })
			},
			code:      exitDenied,
			stderrHas: []string{"aauth: the user denied the request (HTTP 403 from the pending URL)\n"},
			stderrNot: []string{"approved after"},
		},
		{
			name:      "expired",
			hook:      func(as *agenttest.AuthServer, id string, n int) { _ = as.Expire(id) },
			code:      exitExpired,
			stderrHas: []string{"aauth: the request expired before the user approved it (HTTP 408 from the pending URL)\n"},
		},
		{
			name:      "no decision in time",
			args:      []string{"-wait", "1s", "-consent-timeout", "2s"},
			code:      exitExpired,
			stderrHas: []string{"aauth: gave up waiting for the user's approval (-consent-timeout)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agenttest.NewAuthServer(t)
			as.EnableConsent(agenttest.ConsentOptions{})
			gw := agenttest.NewGateway(t, as.ID, "data.read")
			if tc.hook != nil {
				as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool { tc.hook(as, id, n); return false })
			}
			if tc.prompt != "" {
				old := promptInput
				promptInput = func() (io.Reader, bool) { return strings.NewReader(tc.prompt), true }
				t.Cleanup(func() { promptInput = old })
			}
			r := runCLI(t, append(append([]string{"fetch"}, ident...), append(tc.args, gw.ID+"/data")...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			id, code, err := as.WaitPending(1, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// The box comes first, whatever happens next; no QR code, since stderr is
			// not a terminal here (TestConsentUITerminal draws one).
			want := append([]string{as.ID + "/interact?code=" + code, "Code: " + agent.FormatCode(code)}, tc.stderrHas...)
			for _, s := range want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if strings.ContainsAny(r.stderr, qrChars) {
				t.Errorf("a QR code on a stderr that is not a terminal:\n%s", r.stderr)
			}
			for _, s := range tc.stderrNot {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr has %q:\n%s", s, r.stderr)
				}
			}
			if tc.code == 0 {
				if seen := gw.Seen(); !slices.Equal(seen, []string{"jwks_uri", "jwt:auth+jwt"}) {
					t.Errorf("gateway saw %v", seen)
				}
				if !strings.Contains(r.stdout, `"scope":"data.read"`) {
					t.Errorf("stdout %q", r.stdout)
				}
			}
			if tc.check != nil {
				tc.check(t, as, id)
			}
			if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(r.stdout + r.stderr) {
				t.Errorf("a token was printed:\n%s\n%s", r.stdout, r.stderr)
			}
			assertNoSecrets(t, r.stdout+r.stderr, tb.agentKey)
		})
	}
}

func TestFetchConsentOpen(t *testing.T) {
	tb := newTestbed(t)
	as := agenttest.NewAuthServer(t)
	as.EnableConsent(agenttest.ConsentOptions{})
	gw := agenttest.NewGateway(t, as.ID, "data.read")
	as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool { _ = as.Approve(id, "alice"); return false })
	var mu sync.Mutex
	var opened []string
	old := openBrowser
	openBrowser = func(u string) error { mu.Lock(); opened = append(opened, u); mu.Unlock(); return nil }
	t.Cleanup(func() { openBrowser = old })
	r := runCLI(t, "fetch", "-dev", "-key", tb.agentKey, "-id", tb.agentID, "-open", "-no-qr", gw.ID+"/data")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	_, code, _ := as.WaitPending(1, time.Second)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(opened, []string{as.ID + "/interact?code=" + code}) {
		t.Errorf("opened %v", opened)
	}
}

func TestFetchConsentFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-consent-timeout", "0s"},
		{"-wait", "-1"},
		{"-answer", strings.Repeat("x", agent.MaxClarificationLen+1)},
	} {
		r := runCLI(t, append(append([]string{"fetch"}, args...), "http://127.0.0.1:1/")...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d %s", args, r.code, r.stderr)
		}
	}
}

func TestBox(t *testing.T) {
	got := box([]string{"ab", "", "abcd…"})
	want := "┌───────┐\n│ ab    │\n│       │\n│ abcd… │\n└───────┘\n"
	if got != want {
		t.Errorf("box:\n%s\nwant:\n%s", got, want)
	}
}

// On a terminal the progress is one line, rewritten in place.
func TestConsentUITerminal(t *testing.T) {
	var buf strings.Builder
	u := &consentUI{w: &buf, tty: true, limit: 10 * time.Minute, vlog: func(string, ...any) {}}
	u.pending(&agent.PendingError{Code: "ABCD2345", Require: agent.RequireInteraction,
		InteractionEndpoint: "https://as.example/interact", AuthServer: "https://as.example"})
	time.Sleep(1100 * time.Millisecond)
	u.progress(agent.ProgressClarification+"Why?", 0)
	u.finish(true)
	out := buf.String()
	if !strings.ContainsAny(out, qrChars) {
		t.Errorf("no QR code on a terminal:\n%s", out)
	}
	for _, want := range []string{
		"│   https://as.example/interact?code=ABCD2345 │", "│   Code: ABCD-2345",
		"\r\033[Kwaiting for approval… 0s, 10m left (Ctrl-C to cancel)",
		"\r\033[Kwaiting for approval… 1s, 9m59s left (Ctrl-C to cancel)\naauth: the user asks: Why?\n",
		"aauth: approved after ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%q", want, out)
		}
	}
}
