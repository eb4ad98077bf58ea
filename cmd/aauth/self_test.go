package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func TestFetchSelf(t *testing.T) {
	tb := newTestbed(t)
	delKey := keygen(t, tb.dir, "delegate.jwk", "-alg", "p256", "-kid", "delegate-key-1")
	del, err := loadSigner(delKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := agent.RequestDelegateToken(t.Context(), nil, tb.agentID, tb.secret, "delegate-3", del, nil)
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
		setup     func(as *agenttest.AuthServer)
		code      int
		stderrHas []string
	}{
		{"direct", append([]string{"-dev", "-v"}, ident...), nil, 0,
			[]string{"asking for a self-access token (scope \"openid profile\")", "self-access token received"}},
		{"delegate", []string{"-dev", "-key", delKey, "-agent-token", tokFile}, nil, 0, nil},
		{"consent", append([]string{"-dev", "-wait", "0"}, ident...), func(as *agenttest.AuthServer) {
			as.EnableConsent(agenttest.ConsentOptions{})
			as.OnPoll(func(_ http.ResponseWriter, id string, _ int) bool { _ = as.Approve(id, "alice"); return false })
		}, 0, []string{"Approve this request in your browser:", "/interact?code=", "Code: ", "Resource: " + tb.agentID, "aauth: approved after"}},
		{"refused", append([]string{"-dev"}, ident...), func(as *agenttest.AuthServer) {
			as.SetAnswer(agenttest.Deny(http.StatusForbidden, wire.CodeDenied, "no SSO for you"))
		}, exitDenied, []string{"aauth: auth server refused: denied: no SSO for you (HTTP 403)"}},
		{"without -dev", ident, nil, exitFailure, []string{"need -dev"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agenttest.NewAuthServer(t)
			if tc.setup != nil {
				tc.setup(as)
			}
			args := append([]string{"fetch", "-self", "-scope", "openid profile", "-as", as.ID}, tc.args...)
			r := runCLI(t, args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, want := range tc.stderrHas {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(r.stderr) {
				t.Errorf("a token went to stderr:\n%s", r.stderr)
			}
			assertNoSecrets(t, r.stdout+r.stderr, tb.agentKey)
			if tc.code != 0 {
				if r.stdout != "" {
					t.Errorf("stdout %q", r.stdout)
				}
				return
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 2 {
				t.Fatalf("stdout %q: %v", r.stdout, err)
			}
			if e, _ := out["expires_in"].(float64); e < 3500 || e > 3600 {
				t.Errorf("expires_in %v", out["expires_in"])
			}
			at, _ := out["auth_token"].(string)
			parsed, err := token.Parse(at, token.TypAuth)
			if err != nil || parsed.Claims.Audience[0] != tb.agentID || parsed.Claims.Scope != "openid profile" || parsed.Claims.Agent != "" {
				t.Errorf("token %+v %v", parsed, err)
			}
			if k := as.Kinds(); !slices.Equal(k, []string{agenttest.KindSelfAccess}) {
				t.Errorf("token requests %v", k)
			}
		})
	}
}

func TestFetchSelfUsage(t *testing.T) {
	dir := t.TempDir()
	key := keygen(t, dir, "k.jwk")
	ident := []string{"-key", key, "-id", "https://agent.example"}
	as := []string{"-as", "https://auth.example"}
	scope := []string{"-scope", "openid"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"-self with a URL", concat(ident, as, scope, []string{"-self", "https://api.example/"}), "-self takes no URL"},
		{"-self without -scope", concat(ident, as, []string{"-self"}), "-self needs -scope"},
		{"-self with a blank -scope", concat(ident, as, []string{"-self", "-scope", " "}), "-self needs -scope"},
		{"-self without -as", concat(ident, scope, []string{"-self"}), "-self needs -as"},
		{"-self without an identity", concat([]string{"-key", key}, as, scope, []string{"-self"}), "-self needs an identity"},
		{"-scope without -self", concat(ident, scope, []string{"https://api.example/"}), "-scope and -as go with -self"},
		{"-as without -self", concat(ident, as, []string{"https://api.example/"}), "-scope and -as go with -self"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"fetch"}, tc.args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", r.code, r.stdout, r.stderr, exitUsage, tc.want)
			}
		})
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// A resource that answers the authorized request with its own 202: the CLI shows the
// resource's interaction URL, code and QR code, polls, and prints the final answer.
func TestFetchResourcePending(t *testing.T) {
	tb := newTestbed(t)
	for _, tc := range []struct {
		name      string
		final     int
		code      int
		stdoutHas string
		stderrHas []string
	}{
		{"approved", 200, 0, `"scope":"data.read"`, []string{"aauth: the resource answered 200 OK after"}},
		{"denied", 403, exitDenied, `"error":"denied"`, []string{"aauth: the resource answered 403 Forbidden after", "aauth fetch: HTTP 403 Forbidden (exit status 3)"}},
		{"expired", 408, exitExpired, "", []string{"aauth: the resource answered 408 Request Timeout after", "aauth fetch: HTTP 408 Request Timeout (exit status 4)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agenttest.NewAuthServer(t)
			gw := agenttest.NewGateway(t, as.ID, "data.read")
			gw.DeferAuthorized(1, func(poll int) int {
				if poll < 2 {
					return 0
				}
				return tc.final
			})
			start := time.Now()
			r := runCLI(t, "fetch", "-dev", "-key", tb.agentKey, "-id", tb.agentID, gw.ID+"/data")
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdoutHas) {
				t.Fatalf("exit %d (want %d), stdout %q\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			polls := gw.ResourcePolls()
			if len(polls) != 2 || polls[0].Prefer != "wait=20" || polls[0].Status != 202 || polls[1].Status != tc.final {
				t.Fatalf("polls %+v", polls)
			}
			want := append([]string{"Approve this request in your browser:",
				gw.ID + agenttest.PathResourceInteract + "?code=", "Code: ", "Resource: " + gw.ID}, tc.stderrHas...)
			for _, s := range want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if strings.ContainsAny(r.stderr, qrChars) {
				t.Errorf("a QR code on a stderr that is not a terminal:\n%s", r.stderr)
			}
			if regexp.MustCompile(`eyJ(hbGci|0eXAi|raWQi|pc3Mi)`).MatchString(r.stdout + r.stderr) {
				t.Errorf("a token was printed")
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
		})
	}
}
