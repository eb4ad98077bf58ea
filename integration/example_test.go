package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestExampleCaddyfileWithCLI does what a new user following the walkthrough
// (README.md, cmd/aauth/README.md) does, with the
// built binaries: it builds ./cmd/caddy and ./cmd/aauth, runs Caddyfile.example from the
// repository root (state isolated in temporary XDG folders), and drives the walkthrough
// with the aauth CLI: a pseudonymous fetch, an identity route refusing a pseudonym, an
// agent server with a jwks_uri identity, a delegate holding an agent token, and the
// auth-token route (/data/*), where the CLI gets an auth token from the demo auth server
// (with -dev only, since every identifier in the demo is http:// on loopback), for the
// agent and for the delegate. Then the consent route (/write/*): the CLI prints the
// interaction URL and waits while the user (an HTTP client with a cookie jar) signs in as
// alice and approves; a remembered decision skips the question, is listed on the grants
// page and by the admin API (GET /aauth/grants on localhost:2019) and is revoked there
// (DELETE /aauth/grants/{id}). Paths outside the demo API answer 404.
//
// Unlike the caddytest scenarios of this package (admin 2999, http 9080, https 9443, Caddy
// in process), this test runs separate processes on the ports Caddyfile.example and the
// README use: 8080 (gateway), 8081 (auth server), 8082 and 8083 (the partner API and its
// auth server), 8090 (the egress), 9000 (demo backend), 2019 (Caddy's default admin
// endpoint) and 8001 (agent server). It skips when one of them is taken.
func TestExampleCaddyfileWithCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end test that builds the caddy and aauth binaries and runs Caddyfile.example")
	}
	for _, p := range []struct{ port, what string }{
		{"8080", "the Caddyfile.example gateway (http://localhost:8080)"},
		{"8081", "the Caddyfile.example auth server (http://localhost:8081)"},
		{"9000", "the Caddyfile.example demo backend (http://127.0.0.1:9000)"},
		{"8082", "the Caddyfile.example partner API (http://localhost:8082)"},
		{"8083", "the Caddyfile.example partner auth server (http://localhost:8083)"},
		{"8090", "the Caddyfile.example egress (http://127.0.0.1:8090)"},
		{"2019", "Caddy's default admin endpoint (localhost:2019), which Caddyfile.example keeps"},
		{"8001", "the README's agent server (http://127.0.0.1:8001)"},
	} {
		if err := portFree(p.port); err != nil {
			t.Skipf("port %s is already in use (%v); this test runs Caddyfile.example itself and needs the port for %s: if the demo is still running, stop it to run this test", p.port, err, p.what)
		}
	}

	root := moduleRoot(t)
	bin := t.TempDir()
	caddyBin := filepath.Join(bin, "caddy")
	aauthBin := filepath.Join(bin, "aauth")
	goBuild(t, root, caddyBin, "./cmd/caddy")
	goBuild(t, root, aauthBin, "./cmd/aauth")

	// Caddy, exactly as the README starts it, from the repository root.
	state := t.TempDir()
	caddyEnv := []string{
		"XDG_DATA_HOME=" + filepath.Join(state, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(state, "config"),
		"HOME=" + filepath.Join(state, "home"),
	}
	for _, kv := range caddyEnv {
		if err := os.MkdirAll(strings.SplitN(kv, "=", 2)[1], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	caddyProc := startProcess(t, "caddy", root, caddyEnv, caddyBin, "run", "--config", "Caddyfile.example", "--adapter", "caddyfile")
	// The demo's ready_message: one line, printed once every site accepts connections,
	// naming the command the first subtest runs.
	ready := waitLine(t, caddyProc, readyLineRE, 30*time.Second)
	if res, err := http.Get("http://localhost:8080/pseudonym/hello"); err != nil {
		t.Fatalf("Caddy printed %q but the gateway does not answer: %v", ready, err)
	} else {
		res.Body.Close()
	}
	if !strings.Contains(ready, "aauth fetch http://localhost:8080/pseudonym/hello") {
		t.Errorf("the ready line names another command: %q", ready)
	}

	// The user's working folder: keys and tokens are written here.
	work := t.TempDir()
	const secret = "demo-secret"
	delegateEnv := []string{"AAUTH_DELEGATE_SECRET=" + secret}

	t.Run("pseudonym route with a throw-away key", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "http://localhost:8080/pseudonym/hello")
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["path"] != "/pseudonym/hello" || e["level"] != "pseudonym" || e["scheme"] != "hwk" || e["agent"] != "" || e["key_thumbprint"] == "" {
			t.Fatalf("backend saw %v", e)
		}
	})

	t.Run("identity route refuses a pseudonym", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "http://localhost:8080/identity/hello")
		out.wantExit(t, 22)
		var body map[string]string
		if err := json.Unmarshal([]byte(out.stdout), &body); err != nil || body["error"] != "identity_required" {
			t.Fatalf("want a JSON error identity_required, got %q (%v)", out.stdout, err)
		}
		if !strings.Contains(out.stderr, "requires an agent identity") {
			t.Errorf("stderr has no hint: %q", out.stderr)
		}
	})

	var agentThumbprint string
	if !t.Run("keygen", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "keygen")
		out.wantExit(t, 0)
		_, tp, ok := strings.Cut(out.stdout, "thumbprint: ")
		if !ok {
			t.Fatalf("keygen printed no thumbprint: %q", out.stdout)
		}
		agentThumbprint = strings.TrimSpace(tp)
		fi, err := os.Stat(filepath.Join(work, "agent.jwk"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("agent.jwk has mode %v, want 0600", fi.Mode().Perm())
		}
	}) {
		t.FailNow()
	}

	serveProc := startProcess(t, "aauth serve", work, delegateEnv, aauthBin, "serve", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001")
	waitHTTP(t, serveProc, "http://127.0.0.1:8001/.well-known/aauth-agent.json", 15*time.Second)

	t.Run("identity route with a jwks_uri agent", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/identity/hello")
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["level"] != "identity" || e["scheme"] != "jwks_uri" || e["agent"] != "http://127.0.0.1:8001" || e["delegate"] != "" {
			t.Fatalf("backend saw %v", e)
		}
		if e["key_thumbprint"] != agentThumbprint {
			t.Errorf("key_thumbprint %q, want the keygen thumbprint %q", e["key_thumbprint"], agentThumbprint)
		}
	})

	t.Run("delegate with an agent token", func(t *testing.T) {
		runCLI(t, aauthBin, work, nil, "keygen", "-o", "delegate.jwk", "-kid", "delegate-key-1").wantExit(t, 0)
		runCLI(t, aauthBin, work, delegateEnv, "delegate", "-server", "http://127.0.0.1:8001", "-key", "delegate.jwk", "-sub", "delegate-1", "-o", "token.jwt").wantExit(t, 0)
		out := runCLI(t, aauthBin, work, nil, "fetch", "-key", "delegate.jwk", "-agent-token", "token.jwt", "http://localhost:8080/identity/hello")
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["level"] != "identity" || e["scheme"] != "jwt" || e["agent"] != "http://127.0.0.1:8001" || e["delegate"] != "delegate-1" {
			t.Fatalf("backend saw %v", e)
		}
		if e["key_thumbprint"] == "" || e["key_thumbprint"] == agentThumbprint {
			t.Errorf("key_thumbprint %q should be the delegate key's, not the agent key's", e["key_thumbprint"])
		}
	})

	// The auth-token route: the gateway challenges with a resource token, the CLI gets an
	// auth token for scope data.read from the auth server on 8081 and retries with it.
	t.Run("auth-token route with -dev", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-dev", "-v", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/data/hello")
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["path"] != "/data/hello" || e["level"] != "authorized" || e["scheme"] != "jwt" || e["scope"] != "data.read" ||
			e["issuer"] != "http://localhost:8081" || e["agent"] != "http://127.0.0.1:8001" || e["delegate"] != "" {
			t.Fatalf("backend saw %v", e)
		}
		if e["key_thumbprint"] != agentThumbprint {
			t.Errorf("key_thumbprint %q, want the keygen thumbprint %q (the auth token is bound to the agent key)", e["key_thumbprint"], agentThumbprint)
		}
		// The -v steps the walkthrough shows (cmd/aauth/README.md, step 5).
		for _, step := range []string{
			"challenge: require=auth-token, auth-server=http://localhost:8081, resource-token of typ resource+jwt",
			"resource token checked: typ resource+jwt, iss http://localhost:8080, scope \"data.read\"",
			"auth server http://localhost:8081: token endpoint http://localhost:8081/token",
			"POST http://localhost:8081/token signed with jwks_uri (id http://127.0.0.1:8001, kid key-1) -> 200 OK",
			"auth token received: typ auth+jwt, iss http://localhost:8081, scope \"data.read\"",
			"retrying GET http://localhost:8080/data/hello with the auth token",
			"response: HTTP/1.1 200 OK",
		} {
			if !strings.Contains(out.stderr, step) {
				t.Errorf("-v output lacks %q\n%s", step, out)
			}
		}
	})

	// Call chaining: /partner/* lets the request through with a handle; the route's
	// reverse_proxy (the stand-in backend) calls the egress, which exchanges the agent's
	// auth token at the partner's auth server (8083, trusting 8081) and calls the partner
	// API (8082) as http://localhost:8080. The partner's backend sees the first API.
	t.Run("partner API through the egress", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-dev", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/partner/hello")
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["path"] != "/data/hello" || e["level"] != "authorized" || e["scope"] != "partner.read" ||
			e["issuer"] != "http://localhost:8083" || e["agent"] != "http://localhost:8080" {
			t.Fatalf("the partner's backend saw %v", e)
		}
	})

	t.Run("auth-token route refuses loopback identifiers without -dev", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/data/hello")
		if out.exit == 0 {
			t.Fatalf("want a non-zero exit without -dev, got\n%s", out)
		}
		if out.stdout != "" {
			t.Errorf("nothing should reach stdout when the flow stops before the auth server: %q", out.stdout)
		}
		if !strings.Contains(out.stderr, "need -dev") {
			t.Errorf("stderr has no -dev hint: %q", out.stderr)
		}
	})

	t.Run("auth-token route refuses a pseudonym", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-dev", "http://localhost:8080/data/hello")
		out.wantExit(t, 22)
		var body map[string]string
		if err := json.Unmarshal([]byte(out.stdout), &body); err != nil || body["error"] != "identity_required" {
			t.Fatalf("want a JSON error identity_required, got %q (%v)", out.stdout, err)
		}
	})

	t.Run("delegate on the auth-token route", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-dev", "-key", "delegate.jwk", "-agent-token", "token.jwt", "http://localhost:8080/data/hello")
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["level"] != "authorized" || e["scheme"] != "jwt" || e["agent"] != "http://127.0.0.1:8001" || e["delegate"] != "delegate-1" ||
			e["scope"] != "data.read" || e["issuer"] != "http://localhost:8081" {
			t.Fatalf("backend saw %v", e)
		}
		if e["key_thumbprint"] == "" || e["key_thumbprint"] == agentThumbprint {
			t.Errorf("key_thumbprint %q should be the delegate key's, not the agent key's", e["key_thumbprint"])
		}
	})

	// The consent route: /write/* needs data.write, which the demo auth server grants only
	// with a person's consent. The CLI prints the interaction URL and waits; the user
	// opens it, signs in as alice and approves, over plain HTTP with a cookie jar.
	t.Run("consent route: the user approves", func(t *testing.T) {
		cli := startCLI(t, aauthBin, work, "fetch", "-dev", "-no-qr", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/write/report")
		link := cli.interactionURL(t, 30*time.Second)

		user := newDemoUser(t)
		user.approve(t, link, false)

		out := cli.wait(t, 30*time.Second)
		out.wantExit(t, 0)
		e := out.echo(t)
		if e["path"] != "/write/report" || e["subject"] != "alice" || e["level"] != "authorized" || e["scope"] != "data.write" ||
			e["scheme"] != "jwt" || e["agent"] != "http://127.0.0.1:8001" || e["issuer"] != "http://localhost:8081" {
			t.Fatalf("backend saw %v", e)
		}
		code := strings.TrimPrefix(link, "http://localhost:8081/interact?code=")
		// The stderr the walkthrough shows (cmd/aauth/README.md, step 6; the QR code is off with -no-qr).
		for _, want := range []string{
			"Approve this request in your browser:",
			link,
			"Code: " + code[:4] + "-" + code[4:],
			"Resource: http://localhost:8080",
			"aauth: waiting for approval… 0s, 10m left (Ctrl-C to cancel)",
			"aauth: approved after ",
		} {
			if !strings.Contains(out.stderr, want) {
				t.Errorf("stderr lacks %q\n%s", want, out)
			}
		}
		if strings.ContainsAny(out.stderr, "█▀▄") {
			t.Errorf("-no-qr printed a QR code:\n%s", out.stderr)
		}
	})

	// The token cache: the next command sends the consented token at once (no token
	// request, no second consent), from a 0600 file named by the key thumbprint.
	t.Run("the consented token is reused by the next command", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-dev", "-v", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/write/report")
		out.wantExit(t, 0)
		if e := out.echo(t); e["subject"] != "alice" || e["scope"] != "data.write" {
			t.Fatalf("backend saw %v", e)
		}
		if !strings.Contains(out.stderr, "using the cached auth token for http://localhost:8080") ||
			strings.Contains(out.stderr, "POST http://localhost:8081/token") || strings.Contains(out.stderr, "interact?code=") {
			t.Errorf("want the cached token and no token request:\n%s", out)
		}
		dir := strings.TrimSpace(runCLI(t, aauthBin, work, nil, "cache", "dir").stdout)
		fi, err := os.Stat(filepath.Join(dir, agentThumbprint+".json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("cache file: %v %v", fi, err)
		}
	})

	// "Remember this decision": the next request gets its token without asking; the
	// decision shows on the user's grants page and in Caddy's admin API, where it is
	// revoked, after which the agent is asked again. -no-cache, so that each command
	// asks the auth server instead of sending the token cached above.
	t.Run("remembered decision, listed and revoked", func(t *testing.T) {
		args := []string{"fetch", "-dev", "-no-qr", "-no-cache", "-key", "agent.jwk", "-id", "http://127.0.0.1:8001", "http://localhost:8080/write/report"}
		cli := startCLI(t, aauthBin, work, args...)
		user := newDemoUser(t)
		user.approve(t, cli.interactionURL(t, 30*time.Second), true)
		cli.wait(t, 30*time.Second).wantExit(t, 0)

		out := runCLI(t, aauthBin, work, nil, args...)
		out.wantExit(t, 0)
		if e := out.echo(t); e["subject"] != "alice" || e["scope"] != "data.write" {
			t.Fatalf("backend saw %v", e)
		}
		if strings.Contains(out.stderr, "interact?code=") {
			t.Errorf("a remembered decision should not ask again:\n%s", out)
		}

		if page := user.get(t, "http://localhost:8081/interact/grants"); !strings.Contains(page, "http://127.0.0.1:8001") || !strings.Contains(page, "data.write") {
			t.Errorf("the grants page does not list the decision:\n%s", page)
		}

		grants := adminGrants(t)
		if len(grants) != 1 {
			t.Fatalf("GET /aauth/grants: want 1 grant, got %+v", grants)
		}
		g := grants[0]
		if g.Issuer != "http://localhost:8081" || g.User != "alice" || g.Agent != "http://127.0.0.1:8001" ||
			g.Resource != "http://localhost:8080" || strings.Join(g.Scopes, " ") != "data.write" || g.ID == "" {
			t.Fatalf("GET /aauth/grants: %+v", g)
		}
		req, _ := http.NewRequest(http.MethodDelete, "http://localhost:2019/aauth/grants/"+g.ID, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE /aauth/grants/%s: status %d, want 204", g.ID, resp.StatusCode)
		}
		if grants := adminGrants(t); len(grants) != 0 {
			t.Fatalf("after DELETE: %+v", grants)
		}

		again := startCLI(t, aauthBin, work, args...)
		again.interactionURL(t, 30*time.Second) // asked again; the cleanup stops it
	})

	t.Run("other paths are not found", func(t *testing.T) {
		out := runCLI(t, aauthBin, work, nil, "fetch", "-i", "http://localhost:8080/nothing")
		out.wantExit(t, 22)
		if !strings.HasPrefix(out.stdout, "HTTP/1.1 404 ") || !strings.HasSuffix(out.stdout, "not found") {
			t.Fatalf("want a 404 with body \"not found\", got\n%s", out)
		}
	})
}

// portFree reports an error when something listens on the port (any interface).
func portFree(port string) error {
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 500*time.Millisecond); err == nil {
		c.Close()
		return errors.New("a server answers on 127.0.0.1")
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	return ln.Close()
}

// moduleRoot walks up from the test's directory to the folder holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func goBuild(t *testing.T, root, out, pkg string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH (%v); it is needed to build %s", err, pkg)
	}
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -o %s %s: %v\n%s", out, pkg, err, b)
	}
	t.Logf("go build %s: %s", pkg, time.Since(start).Round(time.Millisecond))
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type process struct {
	cmd  *exec.Cmd
	name string
	out  *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // valid after done
}

// startProcess runs a long-lived command; t.Cleanup stops it (SIGTERM, then a kill after
// 5 s) and prints its output when the test failed.
func startProcess(t *testing.T, name, dir string, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	p.cmd = cmd
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	// Registered first, so it runs after the stop below and sees all the output.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", name, strings.Join(append([]string{bin}, args...), " "), p.out.String())
		}
	})
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Logf("%s did not stop within 5 s of SIGTERM; killing it", name)
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// readyLineRE matches the line Caddyfile.example's ready_message prints.
var readyLineRE = regexp.MustCompile(`(?m)^ready: try .*$`)

// waitLine waits until the process's output has a line re matches, and returns it.
func waitLine(t *testing.T, p *process, re *regexp.Regexp, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if m := re.FindAllString(p.out.String(), -1); len(m) > 0 {
			if len(m) > 1 {
				t.Errorf("%s printed %d lines matching %s, want one: %q", p.name, len(m), re, m)
			}
			return m[0]
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing a line matching %s: %v", p.name, re, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no line matching %s within %s", p.name, re, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHTTP polls url until it answers with any HTTP status, failing early when the
// process exits.
func waitHTTP(t *testing.T, p *process, url string, limit time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before %s answered: %v", p.name, url, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %s: %v", url, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitCaddy waits until a `caddy run` process answers url and has started every app.
// The http app can listen before the others have started (Caddy starts apps in no set
// order), and the aauth app makes keys and starts sweepers in its Start: the config
// has started when Caddy says it serves it.
func waitCaddy(t *testing.T, p *process, url string) {
	t.Helper()
	waitHTTP(t, p, url, 30*time.Second)
	waitLine(t, p, servingConfig, 30*time.Second)
}

// servingConfig is what caddy run logs once every app of its config has started.
var servingConfig = regexp.MustCompile(`serving initial configuration`)

type cliResult struct {
	args           []string
	stdout, stderr string
	exit           int
}

// runCLI runs one aauth command in dir and returns its output and exit status.
func runCLI(t *testing.T, bin, dir string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.exit = ee.ExitCode()
	default:
		t.Fatalf("aauth %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (r cliResult) String() string {
	return fmt.Sprintf("aauth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.exit, r.stdout, r.stderr)
}

func (r cliResult) wantExit(t *testing.T, code int) {
	t.Helper()
	if r.exit != code {
		t.Fatalf("want exit %d, got\n%s", code, r)
	}
}

// echo decodes the demo backend's JSON answer (the verified X-Aauth-* headers it saw).
func (r cliResult) echo(t *testing.T) map[string]string {
	t.Helper()
	var e map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		t.Fatalf("the demo backend's answer is not JSON (%v); an empty body means the request never reached the backend's site block\n%s", err, r)
	}
	return e
}

// stop ends the process with SIGTERM (a kill after 10 s) and waits for it.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// interactionRE finds the interaction URL the CLI prints for the demo's auth server.
var interactionRE = regexp.MustCompile(`http://localhost:8081/interact\?code=[0-9A-Z]+`)

// bgCLI is an aauth command running in the background, its stderr watched for the
// interaction URL.
type bgCLI struct {
	args           []string
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	found          chan string // the interaction URL, once
	done           chan struct{}
	err            error // valid after done
}

// watchWriter collects stderr and reports the first interaction URL in it.
type watchWriter struct {
	buf   *lockedBuffer
	re    *regexp.Regexp
	found chan string
	sent  bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	n, err := w.buf.Write(p)
	if !w.sent {
		if m := w.re.FindString(w.buf.String()); m != "" {
			w.sent = true
			w.found <- m
		}
	}
	return n, err
}

// startCLI starts an aauth command in dir; t.Cleanup kills it if it is still running.
func startCLI(t *testing.T, bin, dir string, args ...string) *bgCLI {
	t.Helper()
	return startCLIWatching(t, interactionRE, bin, dir, args...)
}

// startCLIWatching is startCLI watching stderr for the interaction URL re matches.
func startCLIWatching(t *testing.T, re *regexp.Regexp, bin, dir string, args ...string) *bgCLI {
	t.Helper()
	c := &bgCLI{args: args, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, found: make(chan string, 1), done: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Dir = dir
	c.cmd.Stdout = c.stdout
	c.cmd.Stderr = &watchWriter{buf: c.stderr, re: re, found: c.found}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting aauth %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *bgCLI) String() string {
	return fmt.Sprintf("aauth %s\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), c.stdout, c.stderr)
}

// interactionURL waits for the interaction URL on stderr.
func (c *bgCLI) interactionURL(t *testing.T, limit time.Duration) string {
	t.Helper()
	select {
	case u := <-c.found:
		return u
	case <-c.done:
		t.Fatalf("the CLI exited (%v) without printing an interaction URL\n%s", c.err, c)
	case <-time.After(limit):
		t.Fatalf("no interaction URL on stderr within %s\n%s", limit, c)
	}
	return ""
}

// wait waits for the command to exit and returns its output and exit status.
func (c *bgCLI) wait(t *testing.T, limit time.Duration) cliResult {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		t.Fatalf("the CLI did not exit within %s\n%s", limit, c)
	}
	r := cliResult{args: c.args, stdout: c.stdout.String(), stderr: c.stderr.String()}
	var ee *exec.ExitError
	switch {
	case c.err == nil:
	case errors.As(c.err, &ee):
		r.exit = ee.ExitCode()
	default:
		t.Fatalf("aauth %s: %v", strings.Join(c.args, " "), c.err)
	}
	return r
}

// demoUser is the person at the demo's consent pages: a plain HTTP client with a cookie
// jar, following redirects as a browser does.
type demoUser struct {
	c *http.Client
}

func newDemoUser(t *testing.T) *demoUser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &demoUser{c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// fetch does one request and returns the final status, URL and body.
func (u *demoUser) fetch(t *testing.T, req *http.Request) (int, *url.URL, string) {
	t.Helper()
	resp, err := u.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Request.URL, string(b)
}

func (u *demoUser) get(t *testing.T, link string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, link, nil)
	status, _, body := u.fetch(t, req)
	if status != 200 {
		t.Fatalf("GET %s: status %d\n%s", link, status, body)
	}
	return body
}

var (
	formRE   = regexp.MustCompile(`(?s)<form method="post" action="([^"]*)"[^>]*>(.*?)</form>`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// submit finds the POST form of page (at base) whose button has the value action, fills
// its hidden fields (the CSRF token, the code) plus extra, presses the button and returns
// the page it leads to.
func (u *demoUser) submit(t *testing.T, base *url.URL, page, action string, extra url.Values) (int, *url.URL, string) {
	t.Helper()
	for _, f := range formRE.FindAllStringSubmatch(page, -1) {
		if !strings.Contains(f[2], `name="action" value="`+action+`"`) {
			continue
		}
		form := url.Values{"action": {action}}
		for _, h := range hiddenRE.FindAllStringSubmatch(f[2], -1) {
			form.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
		}
		if form.Get("csrf") == "" {
			t.Fatalf("the %s form has no CSRF token:\n%s", action, f[0])
		}
		for k, v := range extra {
			form[k] = v
		}
		target, err := base.Parse(html.UnescapeString(f[1]))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return u.fetch(t, req)
	}
	t.Fatalf("no form with a %q button on the page:\n%s", action, page)
	return 0, nil, ""
}

// approve opens the interaction URL, signs in as the demo user alice and approves (with
// "Remember this decision" ticked when remember is set).
func (u *demoUser) approve(t *testing.T, link string, remember bool) {
	t.Helper()
	base, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	login := u.get(t, link)
	if !strings.Contains(login, "Sign in to continue") || !strings.Contains(login, "http://127.0.0.1:8001") {
		t.Fatalf("the interaction URL did not open the sign-in page:\n%s", login)
	}
	status, at, consent := u.submit(t, base, login, "login", url.Values{"username": {"alice"}, "password": {"demo-password"}})
	if status != 200 || at.String() != link {
		t.Fatalf("after signing in: status %d at %s\n%s", status, at, consent)
	}
	// No scope description: in Caddyfile.example the /data/* route answers the resource's
	// well-known paths, and it publishes only data.read's description.
	for _, want := range []string{"Allow access?", "Signed in as <strong>alice</strong>", "http://127.0.0.1:8001", "data.write", "Remember this decision for 30 days"} {
		if !strings.Contains(consent, want) {
			t.Errorf("the consent page lacks %q:\n%s", want, consent)
		}
	}
	extra := url.Values{}
	if remember {
		extra.Set("remember", "1")
	}
	status, _, done := u.submit(t, at, consent, "approve", extra)
	if status != 200 || !strings.Contains(done, "Access approved") {
		t.Fatalf("after approving: status %d\n%s", status, done)
	}
}

// adminGrant is one entry of GET /aauth/grants on Caddy's admin endpoint.
type adminGrant struct {
	ID       string   `json:"id"`
	Issuer   string   `json:"issuer"`
	User     string   `json:"user"`
	Agent    string   `json:"agent"`
	Resource string   `json:"resource"`
	Scopes   []string `json:"scopes"`
}

func adminGrants(t *testing.T) []adminGrant {
	t.Helper()
	resp, err := http.Get("http://localhost:2019/aauth/grants")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var gs []adminGrant
	if resp.StatusCode != 200 || json.Unmarshal(b, &gs) != nil {
		t.Fatalf("GET http://localhost:2019/aauth/grants: status %d: %s", resp.StatusCode, b)
	}
	return gs
}
