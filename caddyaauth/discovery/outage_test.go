package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestUnavailableVersusBad: an outage (refused connection, 5xx, 429, 408) with no cached
// copy is ErrUnavailable with the document's kind and a retry time; a document that was
// fetched and is wrong, or a key that is not there, is not.
func TestUnavailableVersusBad(t *testing.T) {
	k1 := genKey(t, "k1")
	cases := []struct {
		name      string
		setup     func(o *origin)
		kind      string
		available bool // the error must not be ErrUnavailable
		unknown   bool // the error must be ErrUnknownKey
	}{
		{"jwks 503", func(o *origin) {
			o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id, "jwks_uri": o.id + "/jwks.json"})
			o.raw("/jwks.json", 503, "text/plain", []byte("down"))
		}, "jwks", false, false},
		{"jwks 429", func(o *origin) {
			o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id, "jwks_uri": o.id + "/jwks.json"})
			o.raw("/jwks.json", 429, "text/plain", nil)
		}, "jwks", false, false},
		{"metadata 502", func(o *origin) {
			o.raw("/.well-known/aauth-agent.json", 502, "text/plain", nil)
			o.raw("/.well-known/aauth-agent", 502, "text/plain", nil)
		}, "metadata", false, false},
		{"metadata 404 then 503", func(o *origin) {
			o.raw("/.well-known/aauth-agent", 503, "text/plain", nil)
		}, "metadata", false, false},
		{"metadata 404", func(o *origin) {}, "", true, false},
		{"jwks not JSON", func(o *origin) {
			o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id, "jwks_uri": o.id + "/jwks.json"})
			o.raw("/jwks.json", 200, "text/html", []byte("<html>"))
		}, "", true, false},
		{"jwks 403", func(o *origin) {
			o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id, "jwks_uri": o.id + "/jwks.json"})
			o.raw("/jwks.json", 403, "application/json", []byte("{}"))
		}, "", true, false},
		{"key not there", func(o *origin) { o.serveAgent(k1) }, "", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			tc.setup(o)
			c := devClient(t, Config{}, newClock())
			_, err := c.Key(context.Background(), o.id, DocAgent, "k2")
			if err == nil || !errors.Is(err, ErrFetch) && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("err = %v", err)
			}
			ue, ok := Unavailable(err)
			if ok == tc.available || errors.Is(err, ErrUnavailable) == tc.available {
				t.Fatalf("unavailable = %v, want %v (err %v)", ok, !tc.available, err)
			}
			if errors.Is(err, ErrUnknownKey) != tc.unknown {
				t.Fatalf("ErrUnknownKey = %v, want %v", !tc.unknown, tc.unknown)
			}
			if ok && (ue.Kind != tc.kind || ue.RetryAfter < time.Second || !errors.Is(err, ErrFetch)) {
				t.Fatalf("UnavailableError = %+v", ue)
			}
		})
	}
}

// TestUnavailableRefusedConnection: nothing listening is an outage, and during the
// failure backoff the answer stays ErrUnavailable with the remaining retry time.
func TestUnavailableRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	id := "http://" + ln.Addr().String()
	ln.Close()
	clk := newClock()
	c := devClient(t, Config{}, clk)
	for i, want := range []time.Duration{time.Second, time.Second} {
		_, err := c.Key(context.Background(), id, DocIssuer, "k1")
		ue, ok := Unavailable(err)
		if !ok || ue.Kind != "metadata" || ue.RetryAfter != want {
			t.Fatalf("call %d: err = %v (%+v)", i, err, ue)
		}
	}
	clk.Advance(1500 * time.Millisecond)
	_, err = c.Key(context.Background(), id, DocIssuer, "k1")
	if ue, ok := Unavailable(err); !ok || ue.RetryAfter != 2*time.Second {
		t.Fatalf("after backoff: %v", err)
	}
}

// TestRefreshKeyAfterBadSignature: a key replaced under the same kid is picked up by one
// refresh; a second bad signature within KeyChangeInterval does not fetch; an unchanged
// JWKS leaves the verdict as it was.
func TestRefreshKeyAfterBadSignature(t *testing.T) {
	o := newOrigin(t, false)
	old, repl := genKey(t, "k1"), genKey(t, "k1")
	o.serveAgent(old)
	clk := newClock()
	c := devClient(t, Config{}, clk)
	ctx := context.Background()
	got, err := c.Key(ctx, o.id, DocAgent, "k1")
	if err != nil || !got.Equal(old) {
		t.Fatal(err)
	}
	// A JWKS under a second old is not refetched.
	if _, err := c.RefreshKey(ctx, o.id, DocAgent, "k1", old); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("fresh copy: err = %v", err)
	}
	clk.Advance(2 * time.Second)
	// Unchanged JWKS: one fetch, verdict stands.
	if _, err := c.RefreshKey(ctx, o.id, DocAgent, "k1", old); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unchanged: err = %v", err)
	}
	if n := o.count("/jwks.json"); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	o.serveJWKS(repl)
	clk.Advance(2 * time.Second)
	// Within KeyChangeInterval (5s) of the last refresh: throttled, no fetch.
	if _, err := c.RefreshKey(ctx, o.id, DocAgent, "k1", old); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("throttled: err = %v", err)
	}
	if n := o.count("/jwks.json"); n != 2 {
		t.Fatalf("throttled refresh fetched: %d", n)
	}
	clk.Advance(4 * time.Second)
	got, err = c.RefreshKey(ctx, o.id, DocAgent, "k1", old)
	if err != nil || !got.Equal(repl) {
		t.Fatalf("replaced key not picked up: %v", err)
	}
	if got, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil || !got.Equal(repl) {
		t.Fatalf("cache not updated: %v", err)
	}
	if _, err := c.RefreshKey(ctx, o.id, DocAgent, "", old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty kid: %v", err)
	}
}

// TestStaleWhileRefresh: past its freshness, a slow refresh does not hold the lookup up:
// the stale copy is served after StaleWait and the refresh lands in the background. Past
// MaxTTL there is no stale copy to serve.
func TestStaleWhileRefresh(t *testing.T) {
	o := newOrigin(t, false)
	k1, k2 := genKey(t, "k1"), genKey(t, "k2")
	o.serveAgent(k1)
	clk := newClock()
	c := devClient(t, Config{StaleWait: 50 * time.Millisecond, MaxTTL: time.Hour}, clk)
	ctx := context.Background()
	if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	body := jwksOf(k1, k2)
	o.handle("/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		<-release
		writeJSON(w, body)
	})
	clk.Advance(11 * time.Minute) // metadata and JWKS both past DefaultTTL
	start := time.Now()
	got, err := c.Key(ctx, o.id, DocAgent, "k1")
	if err != nil || !got.Equal(k1) {
		t.Fatalf("stale not served: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("lookup waited %v for the slow refresh", d)
	}
	if c.Stats().StaleServed == 0 {
		t.Fatal("StaleServed not counted")
	}
	close(release)
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.mu.Lock()
		e := c.entries[jwksKey(o.id+"/jwks.json")]
		done := e.val.(*keySet).byKID["k2"] != nil
		c.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background refresh did not land")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := c.Key(ctx, o.id, DocAgent, "k2"); err != nil || !got.Equal(k2) {
		t.Fatalf("refreshed key: %v", err)
	}
	// Beyond MaxTTL of the last good fetch, a hanging refresh is waited for (no stale).
	o.handle("/jwks.json", func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) })
	clk.Advance(2 * time.Hour)
	if _, err := c.Key(ctx, o.id, DocAgent, "k2"); err == nil {
		t.Fatal("served a copy past MaxTTL")
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(v)
	w.Write(b)
}
