package discovery

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// clock is an injectable, manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingListener counts accepted TCP connections, to prove a refused target was never
// connected to.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// origin is a test web server with per-path canned answers and hit counters.
type origin struct {
	srv    *httptest.Server
	ln     *countingListener
	mu     sync.Mutex
	routes map[string]http.HandlerFunc
	hits   map[string]int
	id     string // identifier this origin answers for
}

func newOrigin(t testing.TB, useTLS bool) *origin {
	t.Helper()
	o := &origin{routes: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		h := o.routes[r.URL.Path]
		o.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	o.ln = &countingListener{Listener: o.srv.Listener}
	o.srv.Listener = o.ln
	if useTLS {
		o.srv.StartTLS()
		o.id = "https://example.com"
	} else {
		o.srv.Start()
		o.id = o.srv.URL // http://127.0.0.1:port, valid in Dev mode
	}
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) handle(path string, h http.HandlerFunc) {
	o.mu.Lock()
	o.routes[path] = h
	o.mu.Unlock()
}

// json serves v as application/json with the given extra headers ("Name: value").
func (o *origin) json(path string, v any, hdrs ...string) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	o.raw(path, http.StatusOK, "application/json", b, hdrs...)
}

func (o *origin) raw(path string, status int, ctype string, body []byte, hdrs ...string) {
	o.handle(path, func(w http.ResponseWriter, r *http.Request) {
		for _, h := range hdrs {
			k, v, _ := strings.Cut(h, ":")
			w.Header().Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		w.Write(body)
	})
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// serveAgent publishes agent metadata and a JWKS made of the given public keys.
func (o *origin) serveAgent(pubs ...*keys.PublicKey) {
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id, "jwks_uri": o.id + "/jwks.json"})
	o.serveJWKS(pubs...)
}

func (o *origin) serveJWKS(pubs ...*keys.PublicKey) {
	o.json("/jwks.json", jwksOf(pubs...))
}

func jwksOf(pubs ...*keys.PublicKey) map[string]any {
	ks := []any{}
	for _, p := range pubs {
		ks = append(ks, p.Members())
	}
	return map[string]any{"keys": ks}
}

func genKey(t testing.TB, kid string) *keys.PublicKey {
	t.Helper()
	s, err := keys.Generate("", kid)
	if err != nil {
		t.Fatal(err)
	}
	return s.Public
}

// devClient is a Dev-mode client (plain http to loopback allowed) with short timeouts.
func devClient(t testing.TB, cfg Config, clk *clock) *Client {
	cfg.Dev = true
	return testClient(t, cfg, clk)
}

func testClient(t testing.TB, cfg Config, clk *clock) *Client {
	if clk != nil {
		cfg.Now = clk.Now
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	c := New(cfg)
	t.Cleanup(c.Close)
	return c
}

// tlsClient is a production-mode client (Dev off) that trusts o's certificate, treats
// 127.0.0.1 as if it were a public address, and "resolves" example.com and
// *.example.com to o. Everything else about the non-Dev path stays real.
func tlsClient(t testing.TB, cfg Config, clk *clock, o *origin) *Client {
	cfg.Dev = false
	c := testClient(t, cfg, clk)
	pool := x509.NewCertPool()
	pool.AddCert(o.srv.Certificate())
	c.tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.allowAddr = func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }
	target := o.srv.Listener.Addr().String()
	c.dialAddr = func(addr string) string {
		host, _, _ := net.SplitHostPort(addr)
		if host == "example.com" || strings.HasSuffix(host, ".example.com") {
			return target
		}
		return addr
	}
	return c
}
