package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// echoBackend is an unmodified backend: it knows nothing about AAuth and answers with the
// request line and every header it received, so tests can see what the gateway forwarded.
type echoBackend struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

type echoed struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Header  map[string][]string `json:"header"`
	Trailer map[string][]string `json:"trailer,omitempty"`
	Body    string              `json:"body"`
}

func newEchoBackend(t *testing.T) *echoBackend {
	b := &echoBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.last = r.Header.Clone()
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header, Trailer: r.Trailer, Body: string(body)})
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *echoBackend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// agentServer runs an AAuth agent server (metadata, JWKS, delegate tokens) on loopback.
type agentServer struct {
	*httptest.Server
	signer *keys.Signer
	id     string
	secret string
	hits   atomic.Int64
}

func newAgentServer(t *testing.T) *agentServer {
	t.Helper()
	s, err := keys.Generate(keys.AlgEd25519, "agent-key-1")
	if err != nil {
		t.Fatal(err)
	}
	a := &agentServer{signer: s, secret: "test-delegate-secret"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.id = "http://" + ln.Addr().String()
	h := &agent.Server{Signer: s, ID: a.id, ClientName: "Integration agent", DelegateSecret: a.secret}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	a.Server.Listener = ln
	a.Start()
	t.Cleanup(a.Close)
	return a
}

// delegate returns a credential for a fresh delegate key holding an agent token.
func (a *agentServer) delegate(t *testing.T, sub string) (*agent.Credential, *keys.Signer) {
	t.Helper()
	d, err := keys.Generate(keys.AlgEd25519, "delegate-key-1")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := agent.RequestDelegateToken(t.Context(), http.DefaultClient, a.URL, a.secret, sub, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	return agent.Delegate(d, tok), d
}

// client returns an HTTP client whose transport dials 127.0.0.1 for every host (as
// caddytest does) and signs with the agent library.
func agentClient(tr *agent.Transport) *http.Client {
	tr.Base = caddytest.CreateTestingTransport()
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func plainClient() *http.Client {
	return &http.Client{Transport: caddytest.CreateTestingTransport(), Timeout: 10 * time.Second}
}

func hwkCredential(t *testing.T) (*agent.Credential, *keys.Signer) {
	t.Helper()
	s, err := keys.Generate(keys.AlgEd25519, "")
	if err != nil {
		t.Fatal(err)
	}
	return agent.HWK(s), s
}

type result struct {
	status int
	header http.Header
	body   []byte
	echo   echoed
}

func do(t *testing.T, c *http.Client, req *http.Request) result {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &r.echo); err != nil {
			t.Fatalf("backend answer is not JSON: %s", body)
		}
	}
	return r
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return do(t, c, req)
}

func (r result) mustStatus(t *testing.T, want int) result {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; AAuth=%q body=%s", r.status, want, r.header.Get("AAuth"), r.body)
	}
	return r
}

func (r result) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("401 body is not JSON: %s", r.body)
	}
	return e.Error
}

func (r result) backendHeader(name string) string {
	for k, v := range r.echo.Header {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func globalOptions(t *testing.T, dev bool) string {
	devBlock := ""
	if dev {
		devBlock = "aauth {\n\t\tdev\n\t}"
	}
	return fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	storage file_system %s
	%s
}
`, storageDir(t), devBlock)
}
