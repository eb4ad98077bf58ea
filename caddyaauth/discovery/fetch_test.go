package discovery

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// settle lets any connection that was (wrongly) made reach Accept before counting.
func settle() { time.Sleep(30 * time.Millisecond) }

func TestNonDevLoopbackRefusedWithoutConnecting(t *testing.T) {
	o := newOrigin(t, false)
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id})
	c := testClient(t, Config{}, nil) // production mode, real address check
	ctx := context.Background()

	// The identifier itself is refused up front (http, port, loopback literal).
	if _, err := c.Metadata(ctx, o.id, DocAgent); err == nil {
		t.Fatal("http://127.0.0.1:port accepted without dev")
	}
	if n := c.Stats().Fetches; n != 0 {
		t.Fatalf("fetches = %d, want 0", n)
	}
	// Even if a loopback URL reaches the fetcher, the dialer refuses it.
	port := o.srv.Listener.Addr().(*net.TCPAddr).Port
	for _, u := range []string{
		fmt.Sprintf("https://127.0.0.1:%d/x", port),
		fmt.Sprintf("https://[::ffff:127.0.0.1]:%d/x", port),
		fmt.Sprintf("https://localhost:%d/x", port), // real resolver → 127.0.0.1 / ::1
	} {
		_, err := c.get(ctx, docKey{kind: kindMetadata, base: u}, false, owner{})
		if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrFetch) {
			t.Errorf("%s: err = %v, want ErrBlocked and ErrFetch", u, err)
		}
	}
	settle()
	if n := o.ln.n.Load(); n != 0 {
		t.Fatalf("listener accepted %d connections, want 0", n)
	}
}

// TestIPLiteralSpellings covers the odd IPv4 spellings: they are refused before any fetch,
// and even when handed to the dialer directly, Go's resolver plus the dial-time check
// never produce a connection.
func TestIPLiteralSpellings(t *testing.T) {
	o := newOrigin(t, false)
	c := testClient(t, Config{Timeout: 500 * time.Millisecond}, nil)
	port := o.srv.Listener.Addr().(*net.TCPAddr).Port
	spellings := []string{"2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1", "127.0.1", "017700000001", "0x7f.0.0.1"}
	for _, h := range spellings {
		if _, err := c.Metadata(context.Background(), "https://"+h, DocAgent); !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: Metadata err = %v, want ErrBlocked", h, err)
		}
		if _, err := c.Key(context.Background(), "https://"+h, DocAgent, "k"); !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: Key err = %v, want ErrBlocked", h, err)
		}
	}
	if n := c.Stats().Fetches; n != 0 {
		t.Fatalf("fetches = %d, want 0", n)
	}
	// Dial level. Only the decimal/octal forms: Go's resolver refuses all-numeric names
	// locally, while hex forms would go out to DNS (no network in unit tests). A cgo
	// resolver may instead map them to 127.0.0.1, which the dial-time check refuses.
	tr := c.client().Transport.(*http.Transport)
	for _, h := range []string{"2130706433", "0177.0.0.1", "127.1", "127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		conn, err := tr.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", h, port))
		cancel()
		if err == nil {
			conn.Close()
			t.Errorf("dial %s succeeded", h)
		}
	}
	settle()
	if n := o.ln.n.Load(); n != 0 {
		t.Fatalf("listener accepted %d connections, want 0", n)
	}
}

func TestHostnameResolvingToLoopbackBlockedAtDial(t *testing.T) {
	o := newOrigin(t, true)
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id})
	c := tlsClient(t, Config{}, nil, o)
	c.allowAddr = nil // the real public-address check: example.com "resolves" to 127.0.0.1
	_, err := c.Metadata(context.Background(), "https://example.com", DocAgent)
	if !errors.Is(err, ErrBlocked) {
		t.Fatalf("err = %v, want ErrBlocked", err)
	}
	if c.Stats().Fetches != 1 {
		t.Fatalf("fetches = %d, want 1 attempt", c.Stats().Fetches)
	}
	settle()
	if n := o.ln.n.Load(); n != 0 {
		t.Fatalf("listener accepted %d connections, want 0", n)
	}
}

// TestDNSRebinding: the first resolution is "public" and works; the name then rebinds to
// a private address, and the next dial is refused although the URL is unchanged.
func TestDNSRebinding(t *testing.T) {
	o := newOrigin(t, true)
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id})
	clk := newClock()
	c := tlsClient(t, Config{}, clk, o)
	target := o.srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(target)
	var dials atomic.Int64
	c.dialAddr = func(string) string {
		if dials.Add(1) == 1 {
			return target
		}
		return "10.0.0.1:" + port // rebound to a private address
	}
	c.allowAddr = func(a netip.Addr) bool { return a.String() == "127.0.0.1" || IsPublicAddr(a) }
	c.client().Transport.(*http.Transport).DisableKeepAlives = true

	if _, err := c.Metadata(context.Background(), o.id, DocAgent); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Minute) // past DefaultTTL
	md, err := c.Metadata(context.Background(), o.id, DocAgent)
	if err != nil || md["agent"] != o.id {
		t.Fatalf("stale copy not served: %v", err)
	}
	st := c.Stats()
	if st.Fetches != 2 || st.FetchErrors != 1 || st.StaleServed != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if n := o.ln.n.Load(); n != 1 {
		t.Fatalf("accepted %d connections, want 1 (the pre-rebinding one)", n)
	}
	// A document never fetched before fails closed with ErrBlocked.
	if _, err := c.Metadata(context.Background(), o.id, "aauth-other.json"); !errors.Is(err, ErrBlocked) {
		t.Fatalf("err = %v, want ErrBlocked", err)
	}
}

func TestProductionTLSFetch(t *testing.T) {
	o := newOrigin(t, true)
	k := genKey(t, "k1")
	o.serveAgent(k)
	c := tlsClient(t, Config{}, nil, o)
	got, err := c.Key(context.Background(), "https://example.com", DocAgent, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Fatal("wrong key")
	}
	// An untrusted certificate fails closed.
	c2 := tlsClient(t, Config{}, nil, o)
	c2.tlsConfig = nil
	if _, err := c2.Metadata(context.Background(), "https://example.com", DocAgent); !errors.Is(err, ErrFetch) {
		t.Fatalf("untrusted cert: err = %v", err)
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// padded returns agent metadata for id of exactly n bytes.
func padded(id string, n int) []byte {
	b := []byte(`{"agent":"` + id + `","p":""}`)
	return []byte(`{"agent":"` + id + `","p":"` + strings.Repeat("x", n-len(b)) + `"}`)
}

func TestFetchFailures(t *testing.T) {
	const name = "aauth-agent.json" // explicit, so there is no bare-name fallback
	const path = "/.well-known/" + name
	o := newOrigin(t, false)
	id := o.id
	good := []byte(`{"agent":"` + id + `"}`)
	tests := []struct {
		name  string
		setup func()
		want  string // substring of the error
	}{
		{"redirect 302", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/target", http.StatusFound) })
		}, "status 302"},
		{"redirect 301 to internal", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusMovedPermanently)
			})
		}, "status 301"},
		{"redirect 307", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/target", http.StatusTemporaryRedirect)
			})
		}, "status 307"},
		{"redirect 308", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/target", http.StatusPermanentRedirect)
			})
		}, "status 308"},
		{"404", func() { o.raw(path, 404, "application/json", good) }, "status 404"},
		{"500", func() { o.raw(path, 500, "application/json", good) }, "status 500"},
		{"204", func() { o.raw(path, 204, "application/json", nil) }, "status 204"},
		{"304", func() { o.raw(path, 304, "application/json", nil) }, "status 304"},
		{"201", func() { o.raw(path, 201, "application/json", good) }, "status 201"},
		{"over cap with length", func() { o.raw(path, 200, "application/json", padded(id, 1025)) }, "cap"},
		{"over cap chunked", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				b := padded(id, 4096)
				w.Write(b[:10])
				w.(http.Flusher).Flush()
				w.Write(b[10:])
			})
		}, "cap"},
		{"endless stream", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"agent":"`))
				chunk := bytes.Repeat([]byte("x"), 512)
				for r.Context().Err() == nil {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
		}, "cap"},
		{"gzip", func() { o.raw(path, 200, "application/json", gz(good), "Content-Encoding: gzip") }, "content encoding"},
		{"br", func() { o.raw(path, 200, "application/json", good, "Content-Encoding: br") }, "content encoding"},
		{"text/html", func() { o.raw(path, 200, "text/html", good) }, "content type"},
		{"no content type", func() {
			o.handle(path, func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil
				w.Write(good)
			})
		}, "content type"},
		{"invalid JSON", func() { o.raw(path, 200, "application/json", []byte(`{"agent":`)) }, "JSON"},
		{"not JSON", func() { o.raw(path, 200, "application/json", []byte(`hello`)) }, "JSON"},
		{"array", func() { o.raw(path, 200, "application/json", []byte(`["`+id+`"]`)) }, "not a JSON object"},
		{"string", func() { o.raw(path, 200, "application/json", []byte(`"x"`)) }, "not a JSON object"},
		{"null", func() { o.raw(path, 200, "application/json", []byte(`null`)) }, "not a JSON object"},
		{"trailing data", func() { o.raw(path, 200, "application/json", append(append([]byte{}, good...), "{}"...)) }, "trailing"},
		{"duplicate member", func() {
			o.raw(path, 200, "application/json", []byte(`{"agent":"https://evil.example","agent":"`+id+`"}`))
		}, "duplicate"},
		{"nested duplicate", func() {
			o.raw(path, 200, "application/json", []byte(`{"agent":"`+id+`","x":{"a":1,"a":2}}`))
		}, "duplicate"},
		{"deep nesting", func() {
			o.raw(path, 200, "application/json", []byte(`{"agent":"`+id+`","x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`))
		}, "deeply"},
		{"member differs", func() {
			o.raw(path, 200, "application/json", []byte(`{"agent":"https://other.example"}`))
		}, "does not equal"},
		{"member with trailing slash", func() {
			o.raw(path, 200, "application/json", []byte(`{"agent":"`+id+`/"}`))
		}, "does not equal"},
		{"member missing", func() { o.raw(path, 200, "application/json", []byte(`{"issuer":"`+id+`"}`)) }, "does not equal"},
		{"member not a string", func() { o.raw(path, 200, "application/json", []byte(`{"agent":["`+id+`"]}`)) }, "does not equal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			clk := newClock()
			c := devClient(t, Config{MaxMetadataBytes: 1024, Timeout: time.Second}, clk)
			_, err := c.Metadata(context.Background(), id, name)
			if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrFetch containing %q", err, tt.want)
			}
			// Not cached as valid: after the backoff the document is fetched again.
			clk.Advance(time.Second)
			if _, err := c.Metadata(context.Background(), id, name); err == nil {
				t.Fatal("second call succeeded")
			}
			if n := c.Stats().Fetches; n != 2 {
				t.Fatalf("fetches = %d, want 2", n)
			}
		})
	}
	if n := o.count("/target"); n != 0 {
		t.Fatalf("redirect target was fetched %d times", n)
	}
}

func TestRequestShapeAndCapBoundary(t *testing.T) {
	o := newOrigin(t, false)
	const path = "/.well-known/aauth-agent.json"
	var hdr http.Header
	var mu sync.Mutex
	body := padded(o.id, 1024) // exactly the cap
	o.handle(path, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hdr = r.Header.Clone()
		mu.Unlock()
		if r.Method != http.MethodGet {
			t.Errorf("method %s", r.Method)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
	})
	c := devClient(t, Config{MaxMetadataBytes: 1024}, nil)
	if _, err := c.Metadata(context.Background(), o.id, DocAgent); err != nil {
		t.Fatalf("body at the cap refused: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hdr.Get("Accept") != "application/json" || hdr.Get("Accept-Encoding") != "identity" {
		t.Fatalf("request headers %v", hdr)
	}
}

func TestMetadataFallbackAndNames(t *testing.T) {
	o := newOrigin(t, false)
	o.json("/.well-known/aauth-issuer", map[string]any{"issuer": o.id, "token_endpoint": o.id + "/token"})
	o.json("/.well-known/aauth-resource.json", map[string]any{"resource": o.id})
	o.json("/.well-known/aauth-resource", map[string]any{"resource": "https://wrong.example"})
	o.json("/.well-known/custom-doc", map[string]any{"agent": o.id})
	o.json("/.well-known/nameless.json", map[string]any{"x": 1})
	c := devClient(t, Config{}, newClock())
	ctx := context.Background()

	md, err := c.Metadata(ctx, o.id, DocIssuer)
	if err != nil || md["token_endpoint"] != o.id+"/token" {
		t.Fatalf("bare-name fallback: %v %v", md, err)
	}
	if o.count("/.well-known/aauth-issuer.json") != 1 || o.count("/.well-known/aauth-issuer") != 1 {
		t.Fatal(".json must be tried first, then the bare name")
	}
	if _, err := c.Metadata(ctx, o.id, DocResource); err != nil {
		t.Fatal(err)
	}
	if o.count("/.well-known/aauth-resource") != 0 {
		t.Fatal("bare name fetched although .json worked")
	}
	// Explicit names are fetched exactly as given (no .json added).
	if _, err := c.Metadata(ctx, o.id, "custom-doc"); err != nil {
		t.Fatal(err)
	}
	if o.count("/.well-known/custom-doc.json") != 0 {
		t.Fatal("explicit name got a .json suffix")
	}
	if _, err := c.Metadata(ctx, o.id, "nameless.json"); !errors.Is(err, ErrFetch) {
		t.Fatalf("document naming nobody accepted: %v", err)
	}
	for _, bad := range []string{"../aauth-agent", "a/b", "", "..", "%2e%2e"} {
		if _, err := c.Metadata(ctx, o.id, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: err = %v, want ErrInvalid", bad, err)
		}
	}
	// A 200 that fails validation on .json is not masked by the bare name.
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": "https://wrong.example"})
	o.json("/.well-known/aauth-agent", map[string]any{"agent": o.id})
	if _, err := c.Metadata(ctx, o.id, DocAgent); err == nil {
		t.Fatal("bad .json document masked by the bare name")
	}
	// The returned map is a copy.
	md["issuer"] = "x"
	md2, _ := c.Metadata(ctx, o.id, DocIssuer)
	if md2["issuer"] != o.id {
		t.Fatal("cache modified through a returned map")
	}
}

func TestSlowServersHitTotalDeadline(t *testing.T) {
	o := newOrigin(t, false)
	o.handle("/.well-known/drip.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"agent":"` + o.id + `"`))
		for {
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
		}
	})
	o.handle("/.well-known/silent.json", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	for _, name := range []string{"drip.json", "silent.json"} {
		t.Run(name, func(t *testing.T) {
			c := devClient(t, Config{Timeout: 300 * time.Millisecond}, nil)
			start := time.Now()
			_, err := c.Metadata(context.Background(), o.id, name)
			if !errors.Is(err, ErrFetch) {
				t.Fatalf("err = %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v, want about the 300ms deadline", d)
			}
		})
	}
}
