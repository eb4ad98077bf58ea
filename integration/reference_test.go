package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/testhome"
)

// Interop with the Python reference implementation of AAuth
// (github.com/christian-posta/aauth-python-library at commit 6ac7a05, which the tests look
// for beside the checkout, see referencePython): its agent
// against our gateway and auth server, and our CLI against its resource and auth server.
// The participants run under Debian's python3 through integration/testdata/reference/
// driver.py, which speaks JSON lines with the test.

// referencePackages are the Debian packages the driver needs.
const referencePackages = "python3-httpx python3-jwt python3-fastapi python3-uvicorn python3-cryptography python3-multipart"

// referencePython returns the python3 to run the driver with and the driver's path. A
// missing interpreter, module or reference folder fails the test: interop is part of the
// suite, not an optional extra.
func referencePython(t *testing.T) (python, driver string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the interop test with the Python reference implementation")
	}
	python = "/usr/bin/python3"
	if p := os.Getenv("AAUTH_REFERENCE_PYTHON"); p != "" {
		python = p
	}
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("interop tests need Debian's %s with the reference's modules (apt-get install -y %s): %v", python, referencePackages, err)
	}
	out, err := exec.Command(python, "-c", "import httpx, jwt, fastapi, uvicorn, cryptography, multipart").CombinedOutput()
	if err != nil {
		t.Fatalf("%s lacks modules the reference needs; install them with apt-get install -y %s\n%s", python, referencePackages, out)
	}
	root := moduleRoot(t)
	ref := os.Getenv("AAUTH_REFERENCE_DIR")
	if ref == "" {
		ref = filepath.Join(filepath.Dir(root), "shared", "reference", "aauth-python-library")
	}
	if _, err := os.Stat(filepath.Join(ref, "participants", "agent.py")); err != nil {
		t.Fatalf("the Python reference implementation is not at %s (expected ../shared/reference/aauth-python-library beside the checkout, or $AAUTH_REFERENCE_DIR): %v", ref, err)
	}
	t.Setenv("AAUTH_REFERENCE_DIR", ref)
	return python, filepath.Join(root, "integration", "testdata", "reference", "driver.py")
}

// pyDriver is a running driver.py: commands go to its stdin, events come from its
// stdout, its stderr (the reference's own output) is shown when the test fails.
type pyDriver struct {
	stdin  io.WriteCloser
	events chan map[string]any
	stderr *lockedBuffer
	mu     sync.Mutex
}

func startDriver(t *testing.T, mode string) (*pyDriver, map[string]any) {
	t.Helper()
	python, script := referencePython(t)
	d := &pyDriver{events: make(chan map[string]any, 16), stderr: &lockedBuffer{}}
	cmd := exec.Command(python, script, mode)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	cmd.Stderr = d.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s %s: %v", python, script, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(d.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = map[string]any{"event": "error", "error": "driver printed a line that is not JSON: " + sc.Text()}
			}
			d.events <- ev
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver.py %s stderr:\n%s", mode, d.stderr)
		}
	})
	t.Cleanup(func() {
		_ = d.stdin.Close() // the driver exits at the end of its input
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return d, d.next(t, "ready", 30*time.Second)
}

// send writes one command.
func (d *pyDriver) send(t *testing.T, cmd map[string]any) {
	t.Helper()
	b, _ := json.Marshal(cmd)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("writing to the driver: %v", err)
	}
}

// next waits for the next event, which must be of the kind want.
func (d *pyDriver) next(t *testing.T, want string, limit time.Duration) map[string]any {
	t.Helper()
	select {
	case ev, ok := <-d.events:
		if !ok {
			t.Fatalf("the driver exited while the test waited for %q", want)
		}
		if ev["event"] != want {
			t.Fatalf("driver event %v, want %q", ev, want)
		}
		return ev
	case <-time.After(limit):
		t.Fatalf("no %q event from the driver within %s", want, limit)
	}
	return nil
}

// refResult is the driver's account of one reference agent request.
type refResult struct {
	Status         int    `json:"status"`
	Body           string `json:"body"`
	AAuth          string `json:"aauth"`
	AuthToken      bool   `json:"auth_token"`
	Clarifications []struct {
		Question string `json:"question"`
		Answer   string `json:"answer"`
	} `json:"clarifications"`
	Exchanges []struct {
		Method string `json:"method"`
		URL    string `json:"url"`
		Status int    `json:"status"`
	} `json:"exchanges"`
}

func (d *pyDriver) result(t *testing.T, limit time.Duration) refResult {
	t.Helper()
	ev := d.next(t, "result", limit)
	b, _ := json.Marshal(ev)
	var r refResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// exchange returns the status of the first request the agent made with method to a URL
// with the path prefix, or 0.
func (r refResult) exchange(method, pathPrefix string) int {
	for _, e := range r.Exchanges {
		u, err := url.Parse(e.URL)
		if err == nil && e.Method == method && strings.HasPrefix(u.Path, pathPrefix) {
			return e.Status
		}
	}
	return 0
}

func (r refResult) String() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// echoOf decodes the echo backend's answer that reached the reference agent.
func (r refResult) echoOf(t *testing.T) echoed {
	t.Helper()
	var e echoed
	if r.Status != 200 || json.Unmarshal([]byte(r.Body), &e) != nil {
		t.Fatalf("want 200 from the backend, got\n%s", r)
	}
	return e
}

func (e echoed) header(name string) string {
	for k, v := range e.Header {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// builtBinaries caches the binaries built for this test run (package path → file).
var builtBinaries sync.Map

// builtBinary builds a command of this module once per test run.
func builtBinary(t *testing.T, pkg string) string {
	t.Helper()
	if p, ok := builtBinaries.Load(pkg); ok {
		return p.(string)
	}
	out := filepath.Join(testhome.Dir(), "bin-"+filepath.Base(pkg))
	goBuild(t, moduleRoot(t), out, pkg)
	builtBinaries.Store(pkg, out)
	return out
}

// startCaddy runs the built caddy binary with a Caddyfile and waits until probe answers.
// A separate process with its admin endpoint off, rather than caddytest's in-process
// instance on fixed ports, so these tests share no port with anything else.
func startCaddy(t *testing.T, caddyfile, probe string) {
	t.Helper()
	bin := builtBinary(t, "./cmd/caddy")
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "HOME=" + dir}
	p := startProcess(t, "caddy", dir, env, bin, "run", "--config", file, "--adapter", "caddyfile")
	waitCaddy(t, p, probe)
}

// TestReferenceAgentAgainstCaddy: the reference agent (which signs only @method
// @authority @path [@query] signature-key, never the body) completes every flow against
// our gateway and a default aauth_server: pseudonym (hwk), identity (jwks_uri), a
// direct grant, consent (the person, played by the test, signs in on our consent page and
// approves), the person denying, the policy denying, and a clarification question from
// the person that the agent answers through the pending URL.
func TestReferenceAgentAgainstCaddy(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("reference agent interop: %s", time.Since(start).Round(time.Millisecond)) }()
	drv, ready := startDriver(t, "agent")
	agentID, _ := ready["agent"].(string)
	if agentID == "" {
		t.Fatalf("ready event without an agent id: %v", ready)
	}

	backend := newEchoBackend(t)
	apiID := "http://localhost:" + freePort(t)
	authID := "http://127.0.0.1:" + freePort(t)
	hashes := bcryptHashes(t, map[string]string{"alice": alicePassword})
	route := func(path, scope string) string {
		return fmt.Sprintf(`aauth %s {
		require auth-token
		resource %s
		auth_server %s
		scope %s
	}`, path, apiID, authID, scope)
	}
	// The auth server has no body option: the default must accept the reference's
	// token requests and clarification answers, whose signatures do not cover the body.
	cfg := fmt.Sprintf(`{
	admin off
	auto_https off
	grace_period 1ns
	storage file_system %s
	aauth {
		dev
	}
}

%s {
	aauth /pseudonym/* {
		require pseudonym
	}
	aauth /identity/* {
		require identity
	}
	%s
	%s
	%s
	reverse_proxy %s
}

%s {
	aauth_server {
		issuer %s
		policy {
			allow scope data.read
			consent scope data.write
			default deny
		}
%s	}
}
`, storageDir(t), apiID,
		route("/data/*", "data.read"), route("/write/*", "data.write"), route("/forbidden/*", "data.delete"), backend.addr(),
		authID, authID, userLines(hashes, "\t\t"))
	startCaddy(t, cfg, apiID+"/")

	fetch := func(t *testing.T, path, scheme string) {
		t.Helper()
		drv.send(t, map[string]any{"op": "fetch", "url": apiID + path, "scheme": scheme})
	}
	// interaction waits for the agent to hand over the interaction URL and checks it
	// points at our consent pages.
	interaction := func(t *testing.T) string {
		t.Helper()
		link, _ := drv.next(t, "interaction", 20*time.Second)["url"].(string)
		if !strings.HasPrefix(link, authID+"/interact?code=") {
			t.Fatalf("interaction URL %q is not on %s/interact", link, authID)
		}
		return link
	}

	t.Run("pseudonym (hwk)", func(t *testing.T) {
		fetch(t, "/pseudonym/hello", "hwk")
		e := drv.result(t, 20*time.Second).echoOf(t)
		if e.Path != "/pseudonym/hello" || e.header("X-Aauth-Level") != "pseudonym" || e.header("X-Aauth-Scheme") != "hwk" {
			t.Fatalf("backend saw %+v", e)
		}
	})

	t.Run("identity (jwks_uri)", func(t *testing.T) {
		fetch(t, "/identity/hello", "jwks_uri")
		e := drv.result(t, 20*time.Second).echoOf(t)
		if e.header("X-Aauth-Level") != "identity" || e.header("X-Aauth-Scheme") != "jwks_uri" || e.header("X-Aauth-Agent") != agentID {
			t.Fatalf("backend saw %+v", e)
		}
	})

	t.Run("identity route refuses hwk", func(t *testing.T) {
		fetch(t, "/identity/hello", "hwk")
		r := drv.result(t, 20*time.Second)
		if r.Status != http.StatusUnauthorized || r.AAuth != "require=identity" {
			t.Fatalf("want 401 require=identity, got\n%s", r)
		}
	})

	t.Run("direct grant", func(t *testing.T) {
		fetch(t, "/data/hello", "jwks_uri")
		r := drv.result(t, 20*time.Second)
		e := r.echoOf(t)
		if e.header("X-Aauth-Level") != "authorized" || e.header("X-Aauth-Scheme") != "jwt" || e.header("X-Aauth-Scope") != "data.read" ||
			e.header("X-Aauth-Issuer") != authID || e.header("X-Aauth-Agent") != agentID || e.header("X-Aauth-Subject") != "" {
			t.Fatalf("backend saw %+v", e)
		}
		if !r.AuthToken || r.exchange("POST", "/token") != 200 {
			t.Fatalf("token request did not answer 200:\n%s", r)
		}
	})

	t.Run("consent approved", func(t *testing.T) {
		fetch(t, "/write/report", "jwks_uri")
		link := interaction(t)
		user := newDemoUser(t)
		consent := signIn(t, user, link, agentID)
		if status, _, page := user.submit(t, mustURL(t, link), consent, "approve", nil); status != 200 || !strings.Contains(page, "Access approved") {
			t.Fatalf("approve: %d\n%s", status, page)
		}
		drv.send(t, map[string]any{"op": "continue"})
		r := drv.result(t, 30*time.Second)
		e := r.echoOf(t)
		if e.header("X-Aauth-Subject") != "alice" || e.header("X-Aauth-Scope") != "data.write" || e.header("X-Aauth-Agent") != agentID {
			t.Fatalf("backend saw %+v", e)
		}
		if r.exchange("POST", "/token") != 202 || r.exchange("GET", "/pending/") != 200 {
			t.Fatalf("want a 202 token answer and a 200 poll:\n%s", r)
		}
	})

	t.Run("consent denied", func(t *testing.T) {
		fetch(t, "/write/report", "jwks_uri")
		link := interaction(t)
		user := newDemoUser(t)
		consent := signIn(t, user, link, agentID)
		if status, _, page := user.submit(t, mustURL(t, link), consent, "deny", nil); status != 200 || !strings.Contains(page, "denied") {
			t.Fatalf("deny: %d\n%s", status, page)
		}
		drv.send(t, map[string]any{"op": "continue"})
		r := drv.result(t, 30*time.Second)
		// The reference agent gives up and returns the resource's challenge.
		if r.AuthToken || r.Status != http.StatusUnauthorized || r.exchange("GET", "/pending/") != 403 {
			t.Fatalf("want the poll to answer 403 and no token:\n%s", r)
		}
	})

	t.Run("policy denies", func(t *testing.T) {
		fetch(t, "/forbidden/x", "jwks_uri")
		r := drv.result(t, 20*time.Second)
		if r.AuthToken || r.Status != http.StatusUnauthorized || r.exchange("POST", "/token") != 403 {
			t.Fatalf("want the token request to answer 403 and no token:\n%s", r)
		}
	})

	t.Run("clarification", func(t *testing.T) {
		fetch(t, "/write/report", "jwks_uri")
		link := interaction(t)
		user := newDemoUser(t)
		consent := signIn(t, user, link, agentID)
		const question = "Which report will you write?"
		status, _, _ := user.submit(t, mustURL(t, link), consent, "ask", url.Values{"question": {question}})
		if status != 200 {
			t.Fatalf("ask: status %d", status)
		}
		drv.send(t, map[string]any{"op": "continue"})
		// The agent polls, finds the question, answers with a signed POST to the pending
		// URL; the answer then shows on the consent page.
		var page string
		deadline := time.Now().Add(20 * time.Second)
		for {
			page = user.get(t, link)
			if strings.Contains(page, "minimum required scope") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the agent's answer did not reach the consent page:\n%s", page)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if status, _, done := user.submit(t, mustURL(t, link), page, "approve", nil); status != 200 || !strings.Contains(done, "Access approved") {
			t.Fatalf("approve: %d\n%s", status, done)
		}
		r := drv.result(t, 30*time.Second)
		if e := r.echoOf(t); e.header("X-Aauth-Subject") != "alice" {
			t.Fatalf("backend saw %+v", e)
		}
		if len(r.Clarifications) != 1 || r.Clarifications[0].Question != question || r.exchange("POST", "/pending/") != 202 {
			t.Fatalf("want one question answered with 202:\n%s", r)
		}
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// signIn opens an interaction URL of our auth server, signs in as alice and returns the
// consent page, checking it names the agent.
func signIn(t *testing.T, user *demoUser, link, agentID string) string {
	t.Helper()
	login := user.get(t, link)
	status, at, consent := user.submit(t, mustURL(t, link), login, "login", url.Values{"username": {"alice"}, "password": {alicePassword}})
	if status != 200 || at.String() != link || !strings.Contains(consent, "Allow access?") || !strings.Contains(consent, agentID) {
		t.Fatalf("after signing in: status %d at %s\n%s", status, at, consent)
	}
	return consent
}

// refInteractionRE finds an interaction URL of a reference auth server on loopback.
var refInteractionRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/interact\?code=[0-9A-Za-z_-]+`)

// refHidden matches the reference consent pages' hidden inputs.
var refHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// refDecide plays the person at a reference auth server's interaction URL: it signs in
// as the reference's demo user and grants or denies.
func refDecide(t *testing.T, link, consent string) {
	t.Helper()
	user := newDemoUser(t)
	base := mustURL(t, link)
	post := func(page string, extra url.Values) (int, string) {
		form := url.Values{}
		for _, m := range refHidden.FindAllStringSubmatch(page, -1) {
			form.Set(m[1], m[2])
		}
		for k, v := range extra {
			form[k] = v
		}
		req, _ := http.NewRequest(http.MethodPost, base.ResolveReference(&url.URL{Path: "/interact"}).String(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		status, _, body := user.fetch(t, req)
		return status, body
	}
	login := user.get(t, link)
	status, page := post(login, url.Values{"username": {"testuser"}, "password": {"testpass"}})
	if status != 200 || !strings.Contains(page, `name="consent" value="grant"`) {
		t.Fatalf("reference login: %d\n%s", status, page)
	}
	// The consent page has one form per decision; keep the one asked for.
	i := strings.Index(page, `name="consent" value="`+consent+`"`)
	j := strings.LastIndex(page[:max(i, 0)], "<form")
	if i < 0 || j < 0 {
		t.Fatalf("no %s form on the reference consent page:\n%s", consent, page)
	}
	form := page[j:]
	if k := strings.Index(form, "</form>"); k >= 0 {
		form = form[:k]
	}
	if status, done := post(form, nil); status != 200 {
		t.Fatalf("reference %s: %d\n%s", consent, status, done)
	}
}

// TestCLIAgainstReference: our CLI (the built cmd/aauth binary, with its own agent server
// from `aauth serve`) completes every flow against the reference's resources and auth
// servers: pseudonym (hwk), identity (jwks_uri), a direct grant, consent approved and
// denied at the reference's consent page, and a clarification question the reference
// auth server queues, which the CLI answers with -answer.
func TestCLIAgainstReference(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("CLI against the reference: %s", time.Since(start).Round(time.Millisecond)) }()
	drv, ready := startDriver(t, "servers")
	names := func(key string) map[string]string {
		m, _ := ready[key].(map[string]any)
		out := map[string]string{}
		for k, v := range m {
			out[k], _ = v.(string)
		}
		return out
	}
	resources, authServers := names("resources"), names("auth_servers")
	for _, n := range []string{"direct", "consent", "clarify"} {
		if resources[n] == "" || authServers[n] == "" {
			t.Fatalf("ready event lacks %s: %v", n, ready)
		}
	}

	bin := builtBinary(t, "./cmd/aauth")
	work := t.TempDir()
	runCLI(t, bin, work, nil, "keygen").wantExit(t, 0)
	agentID := "http://127.0.0.1:" + freePort(t)
	serve := startProcess(t, "aauth serve", work, nil, bin, "serve", "-key", "agent.jwk", "-id", agentID, "-clarification")
	waitHTTP(t, serve, agentID+"/.well-known/aauth-agent.json", 15*time.Second)
	// -no-cache: "consent denied" follows "consent approved" for the same resource and key,
	// and must reach the consent page instead of sending the token cached by the first.
	identity := []string{"-dev", "-no-qr", "-no-cache", "-key", "agent.jwk", "-id", agentID}

	// granted checks the reference resource's answer to an authorized request.
	granted := func(t *testing.T, out cliResult) {
		t.Helper()
		out.wantExit(t, 0)
		var body map[string]any
		if err := json.Unmarshal([]byte(out.stdout), &body); err != nil || body["message"] != "Access granted" {
			t.Fatalf("want the reference's JSON answer, got\n%s", out)
		}
	}

	t.Run("pseudonym (hwk)", func(t *testing.T) {
		granted(t, runCLI(t, bin, work, nil, "fetch", "-dev", resources["direct"]+"/data-hwk"))
	})

	t.Run("identity (jwks_uri)", func(t *testing.T) {
		granted(t, runCLI(t, bin, work, nil, append([]string{"fetch"}, append(identity, resources["direct"]+"/data-jwks")...)...))
	})

	t.Run("direct grant", func(t *testing.T) {
		out := runCLI(t, bin, work, nil, append([]string{"fetch", "-v"}, append(identity, resources["direct"]+"/data-auth")...)...)
		granted(t, out)
		for _, step := range []string{"challenge: require=auth-token, auth-server=" + authServers["direct"], "auth token received: typ auth+jwt, iss " + authServers["direct"]} {
			if !strings.Contains(out.stderr, step) {
				t.Errorf("-v output lacks %q\n%s", step, out)
			}
		}
	})

	consentFlow := func(t *testing.T, name, decision string, extra ...string) (*bgCLI, string) {
		args := append(append([]string{"fetch"}, identity...), extra...)
		cli := startCLIWatching(t, refInteractionRE, bin, work, append(args, resources[name]+"/data-auth")...)
		link := cli.interactionURL(t, 30*time.Second)
		if !strings.HasPrefix(link, authServers[name]+"/interact?code=") {
			t.Fatalf("interaction URL %q is not on %s", link, authServers[name])
		}
		return cli, link
	}

	t.Run("consent approved", func(t *testing.T) {
		cli, link := consentFlow(t, "consent", "grant")
		refDecide(t, link, "grant")
		granted(t, cli.wait(t, 30*time.Second))
	})

	t.Run("consent denied", func(t *testing.T) {
		cli, link := consentFlow(t, "consent", "deny")
		refDecide(t, link, "deny")
		out := cli.wait(t, 30*time.Second)
		if out.exit == 0 || !strings.Contains(out.stderr, "denied") {
			t.Fatalf("want a failure naming the denial, got\n%s", out)
		}
	})

	t.Run("clarification", func(t *testing.T) {
		const answer = "the quarterly sales report"
		cli, link := consentFlow(t, "clarify", "grant", "-answer", answer)
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(cli.stderr.String(), "aauth: answer sent") {
			if time.Now().After(deadline) {
				t.Fatalf("the CLI did not answer the reference's question\n%s", cli)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(cli.stderr.String(), "the user asks: Which report do you need?") {
			t.Errorf("the CLI did not show the question\n%s", cli)
		}
		drv.send(t, map[string]any{"op": "clarifications", "name": "clarify"})
		got := drv.next(t, "clarifications", 10*time.Second)["answers"]
		if b, _ := json.Marshal(got); string(b) != fmt.Sprintf("[%q]", answer) {
			t.Fatalf("the reference auth server holds the answers %s", b)
		}
		refDecide(t, link, "grant")
		granted(t, cli.wait(t, 30*time.Second))
	})
}
