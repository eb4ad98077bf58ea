package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
)

func TestFetchAuthTokenFlow(t *testing.T) {
	tb := newTestbed(t)
	as := agenttest.NewAuthServer(t)
	gw := agenttest.NewGateway(t, as.ID, "data.read")
	url := gw.ID + "/data"

	delKey := keygen(t, tb.dir, "delegate.jwk", "-alg", "p256", "-kid", "delegate-key-1")
	del, err := loadSigner(delKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := agent.RequestDelegateToken(context.Background(), nil, tb.agentID, tb.secret, "delegate-3", del, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(tb.dir, "agent-token.jwt")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}

	ident := []string{"-key", tb.agentKey, "-id", tb.agentID}
	for _, tc := range []struct {
		name      string
		args      []string
		answer    func(http.ResponseWriter) bool
		code      int
		hits      int
		seen      []string
		stdoutHas string
		stderrHas []string
	}{
		{"flow completes", append([]string{"-dev", "-v", "-purpose", "CLI test"}, ident...), nil, 0, 1,
			[]string{"jwks_uri", "jwt:auth+jwt"}, `"agent":"` + tb.agentID + `"`,
			[]string{"challenge: require=auth-token, auth-server=" + as.ID, "resource token checked: typ resource+jwt, iss " + gw.ID,
				`scope "data.read"`, "auth server " + as.ID, "-> 200 OK", "auth token received", "retrying GET", "response: HTTP/1.1 200 OK"}},
		{"delegate with an agent token", []string{"-dev", "-key", delKey, "-agent-token", tokFile}, nil, 0, 1,
			[]string{"jwt:agent+jwt", "jwt:auth+jwt"}, `"delegate":"delegate-3"`, nil},
		{"pseudonym first", append([]string{"-dev", "-pseudonym"}, ident...), nil, 0, 1,
			[]string{"hwk", "jwks_uri", "jwt:auth+jwt"}, `"scope":"data.read"`, nil},
		{"without -dev", ident, nil, 1, 0,
			[]string{"jwks_uri"}, "", []string{"resource-token", "need -dev"}},
		{"auth server refuses", append([]string{"-dev"}, ident...), agenttest.Deny(403, "denied", "the user said no"), exitDenied, 1,
			[]string{"jwks_uri"}, "", []string{"aauth: auth server refused: denied: the user said no (HTTP 403)\n"}},
		{"auth server defers", append([]string{"-dev"}, ident...), agenttest.Pending(as.ID+"/pending/p1", "ABCD2345", 1), exitHTTP, 1,
			[]string{"jwks_uri"}, "", []string{"Approve this request in your browser:", as.ID + "/interact?code=ABCD2345",
				"Code: ABCD-2345", "aauth: the pending request is gone", "(HTTP 404 or 410 from the pending URL)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as.SetAnswer(tc.answer)
			before := as.Hits()
			gw.Seen()
			r := runCLI(t, append([]string{"fetch"}, append(tc.args, url)...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", r.code, tc.code, r.stdout, r.stderr)
			}
			if h := as.Hits() - before; h != tc.hits {
				t.Errorf("token endpoint hit %d times, want %d", h, tc.hits)
			}
			if seen := gw.Seen(); strings.Join(seen, ",") != strings.Join(tc.seen, ",") {
				t.Errorf("gateway saw %v, want %v", seen, tc.seen)
			}
			if !strings.Contains(r.stdout, tc.stdoutHas) {
				t.Errorf("stdout %q, want %q", r.stdout, tc.stdoutHas)
			}
			for _, want := range tc.stderrHas {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(r.stdout + r.stderr) {
				t.Errorf("a token was printed:\n%s\n%s", r.stdout, r.stderr)
			}
			assertNoSecrets(t, r.stdout+r.stderr, tb.agentKey)
		})
	}
	if p := as.Purposes(); len(p) == 0 || p[0] != "CLI test" {
		t.Errorf("purposes %q", p)
	}
}

// TestFetchAuthServerStatus: the auth server's 4xx is exit status 22, its 5xx 23, each
// with the status on stderr.
func TestFetchAuthServerStatus(t *testing.T) {
	tb := newTestbed(t)
	as := agenttest.NewAuthServer(t)
	gw := agenttest.NewGateway(t, as.ID, "data.read")
	for _, tc := range []struct {
		answer func(http.ResponseWriter) bool
		code   int
		want   []string
	}{
		{agenttest.Deny(400, "invalid_request", "no"), exitHTTP, []string{"aauth: auth server refused: invalid_request: no (HTTP 400)\n"}},
		{busy(60), exitServer, []string{"(HTTP 503)\n", "aauth: the auth server could not decide the request now; try again in 1m0s"}},
	} {
		as.SetAnswer(tc.answer)
		r := runCLI(t, "fetch", "-dev", "-key", tb.agentKey, "-id", tb.agentID, gw.ID+"/data")
		if r.code != tc.code {
			t.Errorf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
			}
		}
	}
}

// busy answers a token request 503 with Retry-After: secs; past the library's retry cap
// (10 s), it gives up at once.
func busy(secs int) func(http.ResponseWriter) bool {
	return func(w http.ResponseWriter) bool {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"busy"}`))
		return true
	}
}
