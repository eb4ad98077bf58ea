package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExitCodes: one case per exit status of the table in README.md that a plain
// resource can produce (the auth server's and the consent wait's are in
// TestFetchAuthTokenFlow, TestFetchConsent and TestFetchResourcePending), each with the
// HTTP status on stderr when there was one.
func TestExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("body\n"))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"success", []string{srv.URL + "/200"}, exitOK, ""},
		{"local error: missing key file", []string{"-key", filepath.Join(dir, "none.jwk"), srv.URL + "/200"}, exitFailure, "no such file"},
		{"local error: nothing listens", []string{"http://127.0.0.1:1/"}, exitFailure, "connection refused"},
		{"usage error", []string{"-frobnicate", srv.URL}, exitUsage, "flag provided but not defined: -frobnicate"},
		{"denied: 403", []string{srv.URL + "/403"}, exitDenied, "aauth fetch: HTTP 403 Forbidden (exit status 3)"},
		{"expired: 408", []string{srv.URL + "/408"}, exitExpired, "aauth fetch: HTTP 408 Request Timeout (exit status 4)"},
		{"4xx", []string{srv.URL + "/404"}, exitHTTP, "aauth fetch: HTTP 404 Not Found (exit status 22)"},
		{"another 4xx", []string{srv.URL + "/429"}, exitHTTP, "HTTP 429 Too Many Requests"},
		{"5xx", []string{srv.URL + "/502"}, exitServer, "aauth fetch: HTTP 502 Bad Gateway (exit status 23)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append([]string{"fetch"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", r.code, tc.code, r.stderr, tc.want)
			}
			if tc.code >= exitHTTP && r.stdout != "body\n" {
				t.Errorf("stdout %q: the error body belongs on stdout", r.stdout)
			}
		})
	}
}

// TestExitInterrupted: cancelling the command (what Ctrl-C does) ends it with 130.
func TestExitInterrupted(t *testing.T) {
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hold); srv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	var out, errb bytes.Buffer
	code := runContext(ctx, []string{"fetch", srv.URL}, &out, &errb)
	if code != exitInterrupted || !strings.Contains(errb.String(), "aauth: interrupted") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// TestUnknownFlag: a bad flag gets one line and a pointer to -h, not the whole usage.
func TestUnknownFlag(t *testing.T) {
	for _, cmd := range []string{"fetch", "keygen", "serve", "delegate", "version"} {
		r := runCLI(t, cmd, "-nope")
		want := "aauth " + cmd + ": flag provided but not defined: -nope\nsee 'aauth " + cmd + " -h'\n"
		if r.code != exitUsage || r.stderr != want || r.stdout != "" {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", cmd, r.code, r.stderr, exitUsage, want)
		}
	}
	r := runCLI(t, "fetch", "-timeout", "soon", "http://a.example")
	if r.code != exitUsage || strings.Count(r.stderr, "\n") != 2 || !strings.Contains(r.stderr, "-timeout") {
		t.Errorf("bad duration: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, "fetch", "-h"); r.code != exitOK || !strings.Contains(r.stderr, "usage: aauth fetch") || !strings.Contains(r.stderr, "-consent-timeout") {
		t.Errorf("-h: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestWaitFlag: -wait takes a duration, and a bare number of seconds as before.
func TestWaitFlag(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want time.Duration
		ok   bool
	}{{"20s", 20 * time.Second, true}, {"1m", time.Minute, true}, {"7", 7 * time.Second, true}, {"0", 0, true},
		{"1.5s", 0, false}, {"-1s", 0, false}, {"soon", 0, false}} {
		var errb bytes.Buffer
		o, _, ok := parseFetchFlags([]string{"-wait", tc.arg, "http://a.example"}, &errb)
		if ok != tc.ok || ok && time.Duration(o.wait) != tc.want {
			t.Errorf("-wait %s: ok %v %v, want %v %v (%s)", tc.arg, ok, o, tc.ok, tc.want, errb.String())
		}
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, "version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "aauth ") || !strings.Contains(r.stdout, "go1") {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	old := readBuildInfo
	t.Cleanup(func() { readBuildInfo = old })
	readBuildInfo = func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	if r := runCLI(t, "--version"); r.stdout != "aauth v1.2.3 (0123456789ab, modified) go1.99.1\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	readBuildInfo = func() (*debug.BuildInfo, bool) { return nil, false }
	if r := runCLI(t, "version"); r.stdout != "aauth (unknown) "+runtime.Version()+"\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}
