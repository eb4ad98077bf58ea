package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

func TestTTL(t *testing.T) {
	c := New(Config{})
	defer c.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	tests := []struct {
		hdrs []string
		want time.Duration
	}{
		{nil, 10 * time.Minute},
		{[]string{"Cache-Control: max-age=300"}, 5 * time.Minute},
		{[]string{"Cache-Control: public, max-age=3600"}, time.Hour},
		{[]string{`Cache-Control: max-age="600"`}, 10 * time.Minute},
		{[]string{"Cache-Control: max-age=5"}, time.Minute},         // clamped up
		{[]string{"Cache-Control: max-age=0"}, time.Minute},         // clamped up
		{[]string{"Cache-Control: max-age=604800"}, 24 * time.Hour}, // clamped down
		{[]string{"Cache-Control: max-age=99999999999999999999"}, 24 * time.Hour},
		{[]string{"Cache-Control: max-age=-5"}, 10 * time.Minute}, // junk → absent
		{[]string{"Cache-Control: max-age=abc"}, 10 * time.Minute},
		{[]string{"Cache-Control: max-age=300, s-maxage=7200"}, 2 * time.Hour},
		{[]string{"Cache-Control: MAX-AGE=300"}, 5 * time.Minute},
		{[]string{"Cache-Control: no-store"}, time.Minute},
		{[]string{"Cache-Control: no-cache, max-age=3600"}, time.Minute},
		{[]string{"Cache-Control: max-age=3600", "Cache-Control: no-store"}, time.Minute},
		{[]string{"Expires: " + now.Add(2*time.Hour).Format(http.TimeFormat), "Date: " + date}, 2 * time.Hour},
		{[]string{"Expires: " + now.Add(-time.Hour).Format(http.TimeFormat)}, time.Minute},
		{[]string{"Expires: 0"}, time.Minute},
		{[]string{"Expires: " + now.Add(2*time.Hour).Format(http.TimeFormat), "Cache-Control: max-age=120"}, 2 * time.Minute},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, kv := range tt.hdrs {
			k, v, _ := strings.Cut(kv, ":")
			h.Add(k, strings.TrimSpace(v))
		}
		if got := c.ttl(h, now); got != tt.want {
			t.Errorf("%v: ttl = %v, want %v", tt.hdrs, got, tt.want)
		}
	}
}

func TestCacheControlHonoured(t *testing.T) {
	o := newOrigin(t, false)
	const path = "/.well-known/aauth-agent.json"
	o.json(path, map[string]any{"agent": o.id}, "Cache-Control: max-age=120")
	clk := newClock()
	c := devClient(t, Config{}, clk)
	get := func() {
		t.Helper()
		if _, err := c.Metadata(context.Background(), o.id, DocAgent); err != nil {
			t.Fatal(err)
		}
	}
	get()
	clk.Advance(119 * time.Second)
	get()
	if n := o.count(path); n != 1 {
		t.Fatalf("fetched %d times within max-age, want 1", n)
	}
	clk.Advance(time.Second)
	get()
	if n := o.count(path); n != 2 {
		t.Fatalf("fetched %d times after max-age, want 2", n)
	}
	// no-store still caches for MinTTL, so an origin cannot force a fetch per request.
	o.json(path, map[string]any{"agent": o.id}, "Cache-Control: no-store")
	clk.Advance(120 * time.Second)
	get()
	get()
	clk.Advance(59 * time.Second)
	get()
	if n := o.count(path); n != 3 {
		t.Fatalf("fetched %d times, want 3", n)
	}
	if st := c.Stats(); st.CacheHits != 3 {
		t.Fatalf("cache hits = %d, want 3", st.CacheHits)
	}
}

func TestSingleFlightColdKey(t *testing.T) {
	o := newOrigin(t, false)
	k := genKey(t, "k1")
	o.handle("/.well-known/aauth-agent.json", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // keep the fetch in flight while callers pile up
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"agent":%q,"jwks_uri":%q}`, o.id, o.id+"/jwks.json")
	})
	o.handle("/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		b, _ := k.MarshalJSON()
		fmt.Fprintf(w, `{"keys":[%s]}`, b)
	})
	c := devClient(t, Config{}, nil)
	const n = 100
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := c.Key(context.Background(), o.id, DocAgent, "k1")
			if err == nil && !got.Equal(k) {
				err = errors.New("wrong key")
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m, j := o.count("/.well-known/aauth-agent.json"), o.count("/jwks.json"); m != 1 || j != 1 {
		t.Fatalf("metadata fetched %d times, JWKS %d times; want 1 and 1", m, j)
	}
	if f := c.Stats().Fetches; f != 2 {
		t.Fatalf("fetches = %d, want 2", f)
	}
}

func TestUnknownKidStorm(t *testing.T) {
	o := newOrigin(t, false)
	k1 := genKey(t, "k1")
	o.serveAgent(k1)
	clk := newClock()
	c := devClient(t, Config{RefreshInterval: time.Minute}, clk)
	ctx := context.Background()
	storm := func() {
		var wg sync.WaitGroup
		for w := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for range 50 {
					kid := fmt.Sprintf("random-%d", r.Uint64())
					if _, err := c.Key(ctx, o.id, DocAgent, kid); !errors.Is(err, ErrUnknownKey) {
						t.Errorf("kid %s: err = %v, want ErrUnknownKey", kid, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	storm() // 1000 calls
	if n := o.count("/jwks.json"); n != 1 {
		t.Fatalf("JWKS fetched %d times right after its fetch, want 1", n)
	}
	clk.Advance(30 * time.Second)
	storm() // one refresh: the JWKS is 30s old
	if n := o.count("/jwks.json"); n != 2 {
		t.Fatalf("JWKS fetched %d times once it was 30s old, want 2", n)
	}
	clk.Advance(30 * time.Second)
	storm()
	if n := o.count("/jwks.json"); n != 2 {
		t.Fatalf("JWKS fetched %d times within the refresh interval, want 2", n)
	}
	clk.Advance(30 * time.Second)
	storm()
	if n := o.count("/jwks.json"); n != 3 {
		t.Fatalf("JWKS fetched %d times after one interval, want 3", n)
	}
	if n := o.count("/.well-known/aauth-agent.json"); n != 1 {
		t.Fatalf("metadata fetched %d times, want 1", n)
	}
}

func TestKeyRotation(t *testing.T) {
	o := newOrigin(t, false)
	k1, k2 := genKey(t, "k1"), genKey(t, "k2")
	o.serveAgent(k1)
	clk := newClock()
	c := devClient(t, Config{}, clk)
	ctx := context.Background()
	if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
		t.Fatal(err)
	}
	o.serveJWKS(k1, k2)
	// Right after a fetch, an unknown kid does not refetch.
	if _, err := c.Key(ctx, o.id, DocAgent, "k2"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	// Seconds later it does: the next key of a rotation verifies at once.
	clk.Advance(2 * time.Second)
	got, err := c.Key(ctx, o.id, DocAgent, "k2")
	if err != nil || !got.Equal(k2) {
		t.Fatalf("rotated key not picked up: %v", err)
	}
	if n := o.count("/jwks.json"); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	// Lookup by thumbprint uses the same cache.
	got, err = c.KeyByThumbprint(ctx, o.id, DocAgent, k1.Thumbprint)
	if err != nil || !got.Equal(k1) {
		t.Fatalf("by thumbprint: %v", err)
	}
	if _, err := c.KeyByThumbprint(ctx, o.id, DocAgent, genKey(t, "").Thumbprint); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown thumbprint: %v", err)
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 44)} {
		if _, err := c.KeyByThumbprint(ctx, o.id, DocAgent, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("jkt %q: err = %v", bad, err)
		}
	}
	if _, err := c.Key(ctx, o.id, DocAgent, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty kid: err = %v", err)
	}
}

func TestStaleServedOnFailure(t *testing.T) {
	o := newOrigin(t, false)
	k1 := genKey(t, "k1")
	o.serveAgent(k1)
	clk := newClock()
	core, logs := observer.New(zapcore.DebugLevel)
	c := devClient(t, Config{Logger: zap.New(core), MaxTTL: time.Hour}, clk)
	ctx := context.Background()
	if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
		t.Fatal(err)
	}
	o.raw("/jwks.json", 500, "text/plain", []byte("down"))
	o.raw("/.well-known/aauth-agent.json", 503, "text/plain", []byte("down"))
	clk.Advance(11 * time.Minute) // both documents are stale
	got, err := c.Key(ctx, o.id, DocAgent, "k1")
	if err != nil || !got.Equal(k1) {
		t.Fatalf("stale key not served: %v", err)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n == 0 {
		t.Fatal("no Warn logged for serving stale")
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, `"x":`) {
				t.Fatalf("key material logged: %v", e)
			}
		}
	}
	before := c.Stats().Fetches
	// Within the backoff the failing URLs are not hit again; the stale copy is served.
	for range 10 {
		if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
			t.Fatal(err)
		}
	}
	if after := c.Stats().Fetches; after != before {
		t.Fatalf("fetches went from %d to %d during the backoff", before, after)
	}
	// Beyond MaxTTL since the last good fetch: fail closed.
	clk.Advance(time.Hour)
	if _, err := c.Key(ctx, o.id, DocAgent, "k1"); !errors.Is(err, ErrFetch) {
		t.Fatalf("err = %v, want ErrFetch after MaxTTL", err)
	}
	// Recovery.
	o.serveAgent(k1)
	clk.Advance(time.Minute)
	if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
		t.Fatalf("no recovery: %v", err)
	}
}

func TestFailureBackoff(t *testing.T) {
	o := newOrigin(t, false)
	const path = "/.well-known/aauth-agent.json"
	o.raw(path, 500, "application/json", []byte("{}"))
	clk := newClock()
	c := devClient(t, Config{}, clk)
	call := func() {
		t.Helper()
		if _, err := c.Metadata(context.Background(), o.id, "aauth-agent.json"); !errors.Is(err, ErrFetch) {
			t.Fatalf("err = %v, want ErrFetch (fail closed)", err)
		}
	}
	steps := []struct {
		advance time.Duration
		fetches int
	}{
		{0, 1},
		{0, 1},           // backoff 1s
		{time.Second, 2}, // backoff now 2s
		{time.Second, 2}, // 1s into 2s
		{time.Second, 3}, // backoff now 4s
		{3 * time.Second, 3},
		{time.Second, 4}, // backoff 8s
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		for range 5 {
			call()
		}
		if n := o.count(path); n != s.fetches {
			t.Fatalf("step %d: %d fetches, want %d", i, n, s.fetches)
		}
	}
	// The backoff tops out at one minute.
	for range 10 {
		clk.Advance(2 * time.Minute)
		call()
	}
	c.mu.Lock()
	b := c.entries[metadataKey(o.id, "/.well-known/aauth-agent.json")].backoff
	c.mu.Unlock()
	if b != maxBackoff {
		t.Fatalf("backoff = %v, want %v", b, maxBackoff)
	}
}

func TestCancelledWaiterDoesNotBreakOthers(t *testing.T) {
	o := newOrigin(t, false)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	o.handle("/.well-known/aauth-agent.json", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"agent":%q}`, o.id)
	})
	c := devClient(t, Config{}, nil)

	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { _, err := c.Metadata(ctxA, o.id, DocAgent); errA <- err }()
	<-started
	errB := make(chan error, 1)
	go func() { _, err := c.Metadata(context.Background(), o.id, DocAgent); errB <- err }()
	time.Sleep(20 * time.Millisecond) // let B join the flight

	cancelA()
	select {
	case err := <-errA:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrFetch) {
			t.Fatalf("cancelled waiter: err = %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("cancelled waiter did not return early")
	}
	close(release)
	if err := <-errB; err != nil {
		t.Fatalf("other waiter broken by the cancellation: %v", err)
	}
	if n := c.Stats().Fetches; n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	// The result was cached for later callers.
	if _, err := c.Metadata(context.Background(), o.id, DocAgent); err != nil || c.Stats().Fetches != 1 {
		t.Fatalf("not cached: %v", err)
	}
}

func TestJWKSContent(t *testing.T) {
	ed, ec := genKey(t, "ed"), mustGen(t, keys.AlgECDSAP256, "ec")
	dupA, dupB := genKey(t, "dup"), genKey(t, "dup")
	same := genKey(t, "same")
	nokid := genKey(t, "")
	with := func(pk *keys.PublicKey, kv ...any) map[string]any {
		m := pk.Members()
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	o := newOrigin(t, false)
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id, "jwks_uri": o.id + "/jwks.json"})
	o.json("/jwks.json", map[string]any{"keys": []any{
		ed.Members(), ec.Members(),
		dupA.Members(), dupB.Members(),
		same.Members(), same.Members(),
		nokid.Members(),
		with(genKey(t, "enc"), "use", "enc"),
		with(genKey(t, "ops"), "key_ops", []any{"sign"}),
		with(genKey(t, "priv"), "d", "AAAA"),
		map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
		map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
		map[string]any{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
		map[string]any{"kty": "XYZ", "kid": "xyz"},
		"not an object",
	}})
	c := devClient(t, Config{}, newClock())
	ctx := context.Background()
	for _, kid := range []string{"ed", "ec", "same"} {
		if _, err := c.Key(ctx, o.id, DocAgent, kid); err != nil {
			t.Errorf("kid %s: %v", kid, err)
		}
	}
	for _, kid := range []string{"dup", "enc", "ops", "priv", "oct", "rsa", "p384", "xyz"} {
		if _, err := c.Key(ctx, o.id, DocAgent, kid); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("kid %s: err = %v, want ErrUnknownKey", kid, err)
		}
	}
	// Keys with an ambiguous or missing kid are still reachable by thumbprint.
	for _, pk := range []*keys.PublicKey{dupA, dupB, nokid, ed} {
		if got, err := c.KeyByThumbprint(ctx, o.id, DocAgent, pk.Thumbprint); err != nil || !got.Equal(pk) {
			t.Errorf("thumbprint of %q: %v", pk.KID, err)
		}
	}

	// Too many keys and a missing "keys" array make the JWKS invalid.
	for name, body := range map[string]any{
		"too many": func() map[string]any {
			ks := make([]any, MaxJWKSKeys+1)
			for i := range ks {
				ks[i] = ed.Members()
			}
			return map[string]any{"keys": ks}
		}(),
		"no keys":     map[string]any{"kids": []any{}},
		"keys object": map[string]any{"keys": ed.Members()},
	} {
		o2 := newOrigin(t, false)
		o2.json("/.well-known/aauth-agent.json", map[string]any{"agent": o2.id, "jwks_uri": o2.id + "/jwks.json"})
		o2.json("/jwks.json", body)
		c2 := devClient(t, Config{}, newClock())
		if _, err := c2.Key(ctx, o2.id, DocAgent, "ed"); !errors.Is(err, ErrFetch) {
			t.Errorf("%s: err = %v, want ErrFetch", name, err)
		}
	}
}

func mustGen(t *testing.T, alg, kid string) *keys.PublicKey {
	s, err := keys.Generate(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s.Public
}

func TestJWKSURIChecks(t *testing.T) {
	o := newOrigin(t, true)
	k := genKey(t, "k1")
	o.serveJWKS(k)
	ctx := context.Background()
	tests := []struct {
		uri      string
		sameOrig bool
		want     error
	}{
		{"https://example.com/jwks.json", false, nil},
		{"https://keys.example.com/jwks.json", false, nil},
		{"https://keys.example.com/jwks.json", true, ErrBlocked},
		{"https://example.com/jwks.json", true, nil},
		{"http://example.com/jwks.json", false, ErrInvalid},
		{"https://example.com/jwks.json#frag", false, ErrInvalid},
		{"https://user@example.com/jwks.json", false, ErrInvalid},
		{"https://example.com:8443/jwks.json", false, ErrInvalid},
		{"https://169.254.169.254/latest/meta-data/", false, ErrBlocked},
		{"https://[::ffff:169.254.169.254]/x", false, ErrInvalid},
		{"https://localhost/jwks.json", false, ErrBlocked},
		{"https://example.com/.well-known/aauth-agent.json", false, ErrFetch}, // metadata is not a JWKS
		{"", false, ErrFetch},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			o.json("/.well-known/aauth-agent.json", map[string]any{"agent": "https://example.com", "jwks_uri": tt.uri})
			c := tlsClient(t, Config{RequireSameOriginJWKS: tt.sameOrig}, newClock(), o)
			_, err := c.Key(ctx, "https://example.com", DocAgent, "k1")
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEvictionBound(t *testing.T) {
	o := newOrigin(t, false)
	for i := range 5 {
		o.json(fmt.Sprintf("/.well-known/doc%d.json", i), map[string]any{"agent": o.id})
	}
	c := devClient(t, Config{MaxEntries: 3}, newClock())
	ctx := context.Background()
	for i := range 5 {
		if _, err := c.Metadata(ctx, o.id, fmt.Sprintf("doc%d.json", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().Entries; n != 3 {
		t.Fatalf("entries = %d, want 3", n)
	}
	c.Metadata(ctx, o.id, "doc4.json") // most recent: a hit
	c.Metadata(ctx, o.id, "doc0.json") // evicted: fetched again
	if o.count("/.well-known/doc4.json") != 1 || o.count("/.well-known/doc0.json") != 2 {
		t.Fatal("LRU order not respected")
	}
	// Failures are bounded too (cardinality flood of unknown documents).
	for i := range 50 {
		c.Metadata(ctx, o.id, fmt.Sprintf("missing%d.json", i))
	}
	if n := c.Stats().Entries; n != 3 {
		t.Fatalf("entries = %d after a flood, want 3", n)
	}
}

func TestGlobalFetchBudget(t *testing.T) {
	o := newOrigin(t, false)
	var mu sync.Mutex
	cur, peak := 0, 0
	for i := range 6 {
		o.handle(fmt.Sprintf("/.well-known/d%d.json", i), func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			cur++
			peak = max(peak, cur)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			cur--
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"agent":%q}`, o.id)
		})
	}
	c := devClient(t, Config{MaxConcurrentFetches: 2}, nil)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Metadata(context.Background(), o.id, fmt.Sprintf("d%d.json", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if peak > 2 {
		t.Fatalf("%d fetches in flight at once, budget is 2", peak)
	}
}

func TestClose(t *testing.T) {
	o := newOrigin(t, false)
	o.json("/.well-known/aauth-agent.json", map[string]any{"agent": o.id})
	c := devClient(t, Config{}, newClock())
	if _, err := c.Metadata(context.Background(), o.id, DocAgent); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Metadata(context.Background(), o.id, DocAgent); err != nil {
		t.Fatalf("cache not readable after Close: %v", err)
	}
	if _, err := c.Metadata(context.Background(), o.id, DocIssuer); !errors.Is(err, ErrFetch) {
		t.Fatalf("fetch after Close: %v", err)
	}
	c.Close() // idempotent
}

func BenchmarkKeyCacheHit(b *testing.B) {
	s, err := keys.Generate("", "k1")
	if err != nil {
		b.Fatal(err)
	}
	o := newOrigin(b, false)
	o.serveAgent(s.Public)
	c := devClient(b, Config{}, nil)
	ctx := context.Background()
	if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Key(ctx, o.id, DocAgent, "k1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
