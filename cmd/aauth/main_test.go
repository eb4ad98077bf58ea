package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func keygen(t *testing.T, dir, name string, extra ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	r := runCLI(t, append([]string{"keygen", "-o", path}, extra...)...)
	if r.code != 0 {
		t.Fatalf("keygen: %d %s", r.code, r.stderr)
	}
	return path
}

func TestKeygen(t *testing.T) {
	for _, tc := range []struct {
		alg, kty string
	}{{"ed25519", "OKP"}, {"p256", "EC"}} {
		t.Run(tc.alg, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "agent.jwk")
			r := runCLI(t, "keygen", "-alg", tc.alg, "-kid", "key-9", "-o", path)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			b, _ := os.ReadFile(path)
			s, err := keys.ParsePrivateJWK(b)
			if err != nil {
				t.Fatal(err)
			}
			if s.Public.KID != "key-9" {
				t.Errorf("kid %q", s.Public.KID)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 2 {
				t.Fatalf("stdout %q", r.stdout)
			}
			var pub map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &pub); err != nil {
				t.Fatal(err)
			}
			if _, hasD := pub["d"]; hasD || pub["kty"] != tc.kty {
				t.Errorf("public JWK %v", pub)
			}
			if lines[1] != "thumbprint: "+s.Public.Thumbprint {
				t.Errorf("thumbprint line %q", lines[1])
			}
			if strings.Contains(r.stdout+r.stderr, s.Public.Members()["x"].(string)+`","d"`) ||
				strings.Contains(r.stdout+r.stderr, `"d":`) {
				t.Error("private key printed")
			}

			// A second run must not overwrite the key.
			r = runCLI(t, "keygen", "-o", path)
			if r.code == 0 || !strings.Contains(r.stderr, "refusing to overwrite") {
				t.Fatalf("overwrite: %d %q", r.code, r.stderr)
			}
			if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
				t.Fatal("key file changed")
			}
			// -force replaces it, and the result is 0600 even if the old file was not.
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			r = runCLI(t, "keygen", "-o", path, "-force")
			if r.code != 0 {
				t.Fatalf("-force: %d %s", r.code, r.stderr)
			}
			b3, _ := os.ReadFile(path)
			fi, _ = os.Stat(path)
			if bytes.Equal(b, b3) || fi.Mode().Perm() != 0o600 {
				t.Errorf("-force: same key or mode %v", fi.Mode().Perm())
			}
			if _, err := keys.ParsePrivateJWK(b3); err != nil {
				t.Fatal(err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".aauth-*")); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	key := keygen(t, dir, "k.jwk")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage: aauth"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"help", []string{"help"}, 0, ""},
		{"keygen -h", []string{"keygen", "-h"}, 0, "usage: aauth keygen"},
		{"keygen bad alg", []string{"keygen", "-alg", "rsa", "-o", filepath.Join(dir, "x")}, 2, "unknown -alg"},
		{"keygen bad flag", []string{"keygen", "-nope"}, 2, "flag provided but not defined"},
		{"keygen extra arg", []string{"keygen", "-o", filepath.Join(dir, "y"), "extra"}, 2, "unexpected argument"},
		{"serve no key", []string{"serve", "-id", "http://127.0.0.1:1"}, 2, "-key and -id are required"},
		{"serve bad id", []string{"serve", "-key", key, "-id", "http://127.0.0.1:1/path"}, 2, "must be an origin"},
		{"serve missing key file", []string{"serve", "-key", filepath.Join(dir, "none"), "-id", "http://127.0.0.1:1"}, 1, "no such file"},
		{"serve half tls", []string{"serve", "-key", key, "-id", "http://127.0.0.1:1", "-tls-cert", "c"}, 2, "go together"},
		{"delegate no server", []string{"delegate", "-key", key, "-secret", "s"}, 2, "-server and -key"},
		{"delegate no secret", []string{"delegate", "-key", key, "-server", "http://127.0.0.1:1"}, 2, "no delegate secret"},
		{"fetch no url", []string{"fetch"}, 2, "exactly one URL"},
		{"fetch two urls", []string{"fetch", "http://a.example", "http://b.example"}, 2, "exactly one URL"},
		{"fetch bad url", []string{"fetch", "ftp://a.example"}, 2, "not an http or https URL"},
		{"fetch id without key", []string{"fetch", "-id", "https://agent.example", "http://a.example"}, 2, "need -key"},
		{"fetch id and token", []string{"fetch", "-key", key, "-id", "https://a.example", "-agent-token", "t", "http://a.example"}, 2, "alternatives"},
		{"fetch bad header", []string{"fetch", "-H", "NoColon", "http://a.example"}, 2, "bad header"},
		{"fetch -h", []string{"fetch", "-h"}, 0, "usage: aauth fetch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envDelegateSecret, "")
			r := runCLI(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("exit %d (want %d), output %q (want %q)", r.code, tc.code, r.stdout+r.stderr, tc.want)
			}
		})
	}
}

// testbed is an in-process agent server (agent.Server on its own address, so its id is
// known before it serves) and a resource that demands an agent identity on /identity and
// any valid signature elsewhere.
type testbed struct {
	dir      string
	agentKey string // path of the agent's private JWK
	agentID  string
	agentSrv *httptest.Server
	resSrv   *httptest.Server
	secret   string
	mu       sync.Mutex
	schemes  []string
}

func newTestbed(t *testing.T) *testbed {
	t.Helper()
	tb := &testbed{dir: t.TempDir(), secret: "demo-secret"}
	tb.agentKey = keygen(t, tb.dir, "agent.jwk")
	s, err := loadSigner(tb.agentKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb.agentID = "http://" + ln.Addr().String()
	tb.agentSrv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: &agent.Server{
		Signer: s, ID: tb.agentID, ClientName: "Test agent", DelegateSecret: tb.secret,
	}}}
	tb.agentSrv.Start()
	t.Cleanup(tb.agentSrv.Close)
	tb.resSrv = httptest.NewServer(http.HandlerFunc(tb.serveResource))
	t.Cleanup(tb.resSrv.Close)
	return tb
}

// agentJWK fetches the agent's key from its /jwks.json by kid: the resource side of the
// jwks_uri scheme, kept simple (no metadata document, no cache).
func (tb *testbed) agentJWK(kid string) (*keys.PublicKey, error) {
	resp, err := http.Get(tb.agentID + "/jwks.json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, err
	}
	for _, m := range set.Keys {
		if m["kid"] == kid {
			return keys.FromAny(m)
		}
	}
	return nil, errors.New("unknown kid")
}

func (tb *testbed) serveResource(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	level := "pseudonym"
	if r.URL.Path == "/identity" {
		level = "identity"
	}
	deny := func(require, why string) {
		w.Header()["AAuth"] = []string{"require=" + require}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"invalid_signature","error_description":%q}`+"\n", why)
	}
	if !httpsig.Present(r.Header) {
		deny(level, "missing signature")
		return
	}
	sig, err := httpsig.Parse(r.Header, httpsig.DefaultLimits)
	if err != nil {
		deny(level, err.Error())
		return
	}
	tgt := httpsig.Target{Method: r.Method, Authority: httpsig.Authority("http", r.Host), Path: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, HasQuery: r.URL.RawQuery != "", Header: r.Header}
	if err := (httpsig.Policy{}).Check(sig, tgt, time.Now()); err != nil {
		deny(level, err.Error())
		return
	}
	var pub *keys.PublicKey
	agentName := ""
	switch sig.Key.Scheme {
	case httpsig.SchemeHWK:
		pub, err = keys.FromMembers(sig.Key.Map())
	case httpsig.SchemeJWKSURI:
		if sig.Key.Get("id") != tb.agentID {
			err = errors.New("unknown agent")
		} else {
			pub, err = tb.agentJWK(sig.Key.Get("kid"))
			agentName = tb.agentID
		}
	case httpsig.SchemeJWT:
		var tok *token.Token
		tok, err = token.VerifyAgentToken(r.Context(), sig.Key.Get("jwt"), token.Options{Now: time.Now(), Issuers: []string{tb.agentID}},
			func(_ context.Context, _, kid string) (*keys.PublicKey, error) { return tb.agentJWK(kid) })
		if err == nil {
			pub = tok.Claims.Confirmation.Key
			agentName = tok.Claims.Issuer + " delegate " + tok.Claims.Subject
		}
	default:
		err = errors.New("unknown scheme")
	}
	if err == nil {
		var base []byte
		if base, err = httpsig.Base(sig, tgt); err == nil {
			err = httpsig.Verify(sig, base, pub)
		}
	}
	if err == nil && sig.Covers("content-digest") {
		err = httpsig.CheckContentDigest(r.Header.Get("Content-Digest"), body)
	}
	tb.mu.Lock()
	tb.schemes = append(tb.schemes, sig.Key.Scheme)
	tb.mu.Unlock()
	if err != nil {
		deny(level, err.Error())
		return
	}
	if level == "identity" && agentName == "" {
		deny("identity", "an agent identity is required")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"ok":true,"scheme":%q,"agent":%q,"body":%q,"digest":%v}`+"\n",
		sig.Key.Scheme, agentName, body, sig.Covers("content-digest"))
}

func (tb *testbed) seen() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := append([]string(nil), tb.schemes...)
	tb.schemes = nil
	return out
}

func TestFetch(t *testing.T) {
	tb := newTestbed(t)
	dataFile := filepath.Join(tb.dir, "data.json")
	if err := os.WriteFile(dataFile, []byte(`{"from":"file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ident := tb.resSrv.URL + "/identity"
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		schemes    []string
		stdoutHas  string
		stderrHas  string
		stdoutPref string
	}{
		{"jwks_uri", []string{"-key", tb.agentKey, "-id", tb.agentID, ident}, 0,
			[]string{"jwks_uri"}, `"agent":"` + tb.agentID + `"`, "", ""},
		{"flags after the url", []string{ident, "-key", tb.agentKey, "-id", tb.agentID}, 0,
			[]string{"jwks_uri"}, `"ok":true`, "", ""},
		{"step up from pseudonym", []string{"-key", tb.agentKey, "-id", tb.agentID, "-pseudonym", "-v", ident}, 0,
			[]string{"hwk", "jwks_uri"}, `"scheme":"jwks_uri"`, "retrying with jwks_uri", ""},
		{"ephemeral hwk is refused", []string{ident}, 22,
			[]string{"hwk"}, `invalid_signature`, "requires an agent identity", ""},
		{"hwk with a key is refused", []string{"-key", tb.agentKey, ident}, 22,
			[]string{"hwk"}, "", "requires an agent identity", ""},
		{"hwk on a pseudonym route", []string{tb.resSrv.URL + "/open?x=1"}, 0,
			[]string{"hwk"}, `"scheme":"hwk"`, "", ""},
		{"include headers", []string{"-i", "-key", tb.agentKey, "-id", tb.agentID, ident}, 0,
			[]string{"jwks_uri"}, "Content-Type: application/json", "", "HTTP/1.1 200 OK\r\n"},
		{"include headers on 401", []string{"-i", ident}, 22,
			[]string{"hwk"}, "Aauth: require=identity", "", "HTTP/1.1 401 Unauthorized\r\n"},
		{"post from file, dict, std base64, signed body", []string{"-key", tb.agentKey, "-id", tb.agentID,
			"-d", "@" + dataFile, "-H", "Content-Type: application/json", "-dict", "-std-b64", "-sign-body", ident}, 0,
			[]string{"jwks_uri"}, `"body":"{\"from\":\"file\"}","digest":true`, "", ""},
		{"put with inline data and pseudonym step-up", []string{"-X", "PUT", "-d", "a=1", "-pseudonym",
			"-key", tb.agentKey, "-id", tb.agentID, ident}, 0,
			[]string{"hwk", "jwks_uri"}, `"body":"a=1"`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.seen()
			r := runCLI(t, append([]string{"fetch"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", r.code, tc.code, r.stdout, r.stderr)
			}
			if got := tb.seen(); strings.Join(got, ",") != strings.Join(tc.schemes, ",") {
				t.Errorf("resource saw schemes %v, want %v", got, tc.schemes)
			}
			if !strings.Contains(r.stdout, tc.stdoutHas) || !strings.HasPrefix(r.stdout, tc.stdoutPref) {
				t.Errorf("stdout %q, want %q (prefix %q)", r.stdout, tc.stdoutHas, tc.stdoutPref)
			}
			if !strings.Contains(r.stderr, tc.stderrHas) {
				t.Errorf("stderr %q, want %q", r.stderr, tc.stderrHas)
			}
			assertNoSecrets(t, r.stdout+r.stderr, tb.agentKey)
		})
	}
}

// assertNoSecrets fails when the private JWK's d appears in output.
func assertNoSecrets(t *testing.T, out, keyFile string) {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if d, _ := m["d"].(string); d == "" || strings.Contains(out, d) {
		t.Fatalf("private key material in the output (or no d in %s)", keyFile)
	}
}

func TestDelegateAndFetchWithAgentToken(t *testing.T) {
	tb := newTestbed(t)
	delKey := keygen(t, tb.dir, "delegate.jwk", "-alg", "p256", "-kid", "delegate-key-1")
	tokFile := filepath.Join(tb.dir, "token.jwt")

	// Wrong secret: no token.
	t.Setenv(envDelegateSecret, "wrong")
	r := runCLI(t, "delegate", "-server", tb.agentID, "-key", delKey, "-o", tokFile)
	if r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("wrong secret: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(tokFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("token file written despite the failure")
	}

	// The secret from the environment, the token to a 0600 file.
	t.Setenv(envDelegateSecret, tb.secret)
	r = runCLI(t, "delegate", "-server", tb.agentID, "-key", delKey, "-sub", "delegate-7", "-o", tokFile)
	if r.code != 0 {
		t.Fatalf("delegate: %d %s", r.code, r.stderr)
	}
	fi, err := os.Stat(tokFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", err, fi)
	}
	raw, _ := os.ReadFile(tokFile)
	tok := strings.TrimSpace(string(raw))
	if !strings.Contains(r.stderr, "typ agent+jwt") || strings.Contains(r.stdout+r.stderr, tok) {
		t.Errorf("delegate output %q / %q", r.stdout, r.stderr)
	}
	// Without -o the token goes to stdout (that is the command's output).
	r = runCLI(t, "delegate", "-server", tb.agentID+"/delegate/token", "-key", delKey, "-secret", tb.secret,
		"-aud", "https://as.example", "-aud", "https://api.example")
	if r.code != 0 || strings.Count(strings.TrimSpace(r.stdout), ".") != 2 {
		t.Fatalf("delegate to stdout: %d %q %q", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "fetch", "-v", "-key", delKey, "-agent-token", tokFile, tb.resSrv.URL+"/identity")
	if r.code != 0 {
		t.Fatalf("fetch: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got := tb.seen(); len(got) != 1 || got[0] != "jwt" {
		t.Errorf("schemes %v", got)
	}
	if !strings.Contains(r.stdout, "delegate delegate-7") {
		t.Errorf("stdout %q", r.stdout)
	}
	sigPart := strings.Split(tok, ".")[2]
	if strings.Contains(r.stderr, tok) || strings.Contains(r.stderr, sigPart) {
		t.Fatalf("-v output leaks the agent token: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, "agent+jwt") {
		t.Errorf("-v should name the token typ: %s", r.stderr)
	}
	assertNoSecrets(t, r.stdout+r.stderr, delKey)

	// The token is bound to the delegate key: using it with another key fails early.
	r = runCLI(t, "fetch", "-key", tb.agentKey, "-agent-token", tokFile, tb.resSrv.URL+"/identity")
	if r.code != 1 || !strings.Contains(r.stderr, "bound to key") {
		t.Errorf("mismatched key: %d %q", r.code, r.stderr)
	}
	if got := tb.seen(); len(got) != 0 {
		t.Errorf("a request was sent with a mismatched token: %v", got)
	}
}

func TestFetchTransportFailure(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	r := runCLI(t, "fetch", url+"/x")
	if r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "aauth fetch: ") {
		t.Errorf("want one error line, got %q", r.stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's logging goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	key := keygen(t, dir, "agent.jwk")
	t.Setenv(envDelegateSecret, "env-secret")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"serve", "-key", key, "-id", "http://127.0.0.1:8001",
			"-listen", "127.0.0.1:0", "-name", "Demo agent"}, &out, &errb)
	}()
	re := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	var base string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited early: %d %s", code, errb.String())
		default:
		}
	}
	if base == "" {
		t.Fatalf("no listening line: %s", errb.String())
	}
	resp, err := http.Get(base + "/.well-known/aauth-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["agent"] != "http://127.0.0.1:8001" || md["client_name"] != "Demo agent" ||
		md["jwks_uri"] != "http://127.0.0.1:8001/jwks.json" {
		t.Errorf("metadata %v", md)
	}
	// The delegate endpoint is enabled by the environment secret.
	s, _ := keys.Generate("", "d")
	if _, _, err := agent.RequestDelegateToken(ctx, nil, base, "env-secret", "d1", s, nil); err != nil {
		t.Errorf("delegate via served endpoint: %v", err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	logs := errb.String()
	if !strings.Contains(logs, "shutting down") || !strings.Contains(logs, `"/.well-known/aauth-agent.json" 200`) {
		t.Errorf("logs %s", logs)
	}
	if strings.Contains(logs, "env-secret") {
		t.Error("the delegate secret was logged")
	}
}

func TestDefaultListen(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"http://127.0.0.1:8001", "127.0.0.1:8001"},
		{"https://agent.example", "agent.example:443"},
		{"http://localhost", "localhost:80"},
		{"http://[::1]:9000", "[::1]:9000"},
	} {
		got, err := defaultListen(tc.id)
		if err != nil || got != tc.want {
			t.Errorf("defaultListen(%q) = %q, %v; want %q", tc.id, got, err, tc.want)
		}
	}
	if _, err := defaultListen("not a url"); err == nil {
		t.Error("want an error for a bad id")
	}
}
