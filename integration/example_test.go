package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestExampleCaddyfileWithCLI does what a new user following the README does, with the
// built binaries: it builds ./cmd/caddy and ./cmd/aauth, runs Caddyfile.example from the
// repository root (state isolated in temporary XDG folders), and drives the walkthrough
// with the aauth CLI: a pseudonymous fetch, an identity route refusing a pseudonym, an
// agent server with a jwks_uri identity, a delegate holding an agent token, and the
// auth-token route (/data/*), where the CLI gets an auth token from the demo auth server
// (with -dev only, since every identifier in the demo is http:// on loopback), for the
// agent and for the delegate. Paths outside the demo API answer 404.
//
// Unlike the caddytest scenarios of this package (admin 2999, http 9080, https 9443, Caddy
// in process), this test runs separate processes on the ports Caddyfile.example and the
// README use: 8080 (gateway), 8081 (auth server), 9000 (demo backend), 2019 (Caddy's
// default admin endpoint) and 8001 (agent server). It skips when one of them is taken.
func TestExampleCaddyfileWithCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end test that builds the caddy and aauth binaries and runs Caddyfile.example")
	}
	for _, p := range []struct{ port, what string }{
		{"8080", "the Caddyfile.example gateway (http://localhost:8080)"},
		{"8081", "the Caddyfile.example auth server (http://localhost:8081)"},
		{"9000", "the Caddyfile.example demo backend (http://127.0.0.1:9000)"},
		{"2019", "Caddy's default admin endpoint (localhost:2019), which Caddyfile.example keeps"},
		{"8001", "the README's agent server (http://127.0.0.1:8001)"},
	} {
		if err := portFree(p.port); err != nil {
			t.Skipf("port %s is already in use (%v); it is needed for %s", p.port, err, p.what)
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
	waitHTTP(t, caddyProc, "http://localhost:8080/", 30*time.Second)

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
		// The -v steps the README shows.
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
