package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// TestSameVerdictOverHTTP1AndHTTP2: HTTP/2 has no Host header and carries the request
// line in pseudo-headers; the gateway must reach the same verdict as over HTTP/1.1
// (SECURITY-CASES H5).
func TestSameVerdictOverHTTP1AndHTTP2(t *testing.T) {
	backend := newEchoBackend(t)
	cfg := fmt.Sprintf(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	local_certs
	storage file_system %s
}

https://api.localhost:9443 {
	handle /data* {
		aauth {
			require pseudonym
		}
		reverse_proxy %[2]s
	}
	handle {
		reverse_proxy %[2]s
	}
}
`, storageDir(t), backend.addr())
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")

	h2 := caddytest.CreateTestingTransport()
	h1 := caddytest.CreateTestingTransport()
	h1.ForceAttemptHTTP2 = false
	h1.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	s, _ := keys.Generate(keys.AlgEd25519, "")
	const url = "https://api.localhost:9443/data?q=1"
	// The site's certificate comes from Caddy's local CA a moment after the config loads.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := (&http.Client{Transport: h2, Timeout: 2 * time.Second}).Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTPS site never came up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, c := range []struct {
		name  string
		tr    *http.Transport
		proto string
	}{{"HTTP/1.1", h1, "HTTP/1.1"}, {"HTTP/2", h2, "HTTP/2.0"}} {
		t.Run(c.name, func(t *testing.T) {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &agent.Transport{Base: c.tr, Pseudonym: agent.HWK(s)}}
			req, _ := http.NewRequest("GET", url, nil)
			r := do(t, client, req).mustStatus(t, 200)
			if r.backendHeader("X-Aauth-Level") != "pseudonym" || r.backendHeader("X-Aauth-Key-Thumbprint") != s.Public.Thumbprint {
				t.Fatalf("backend saw %v", r.echo.Header)
			}
			// The protocol really was the one under test.
			resp, err := (&http.Client{Transport: c.tr}).Get(url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Proto != c.proto {
				t.Fatalf("negotiated %s, want %s", resp.Proto, c.proto)
			}
			// A signed request whose path changed is refused the same way.
			bad, _ := http.NewRequest("GET", url, nil)
			if err := httpsig.Sign(bad, s, agent.HWK(s).SigKey(), httpsig.SignOptions{}); err != nil {
				t.Fatal(err)
			}
			bad.URL.Path = "/data/other"
			if r := do(t, &http.Client{Transport: c.tr, Timeout: 10 * time.Second}, bad); r.status != 401 {
				t.Fatalf("tampered request over %s: %d", c.proto, r.status)
			}
			// Forged identity fields and trailers never reach the unprotected catch-all.
			forged, _ := http.NewRequest(http.MethodPost, "https://api.localhost:9443/other", io.NopCloser(strings.NewReader("body")))
			forged.ContentLength = -1
			forged.Header.Set("X-Aauth-Level", "authorized")
			forged.Header.Set("X_Aauth_Agent", "https://admin.example")
			forged.Trailer = http.Header{"X-Aauth-Subject": {"admin"}}
			r = do(t, &http.Client{Transport: c.tr, Timeout: 10 * time.Second}, forged).mustStatus(t, 200)
			assertNoForged(t, c.proto, r.echo)
		})
	}
}
