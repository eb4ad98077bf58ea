package authserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore/redistest"
)

// ownConsent gives h a consent store of its own over st, outside consentPool: the
// memory of another instance (another process) over the same shared state.
func ownConsent(t *testing.T, h *Handler, st certmagic.Storage) {
	t.Helper()
	s, err := newConsentStore(context.Background(), h.Issuer, st, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Destruct() })
	h.consent = s
}

// redisState is a state backend on the Redis at addr, with its own client (another
// process's connection).
func redisState(t *testing.T, addr string) *redisstore.Storage {
	rc := redisstore.Config{Address: addr, KeyPrefix: "as", DialTimeout: caddyDur(time.Second), ReadTimeout: caddyDur(time.Second)}
	client := redisstore.NewClient(rc)
	t.Cleanup(func() { _ = client.Destruct() })
	return redisstore.New(client, rc, 0)
}

// tokenRequestTo is tokenRequest sent to handler h instead of the served one.
func (c *consentEnv) tokenRequestTo(h *Handler, a *origin) result {
	c.t.Helper()
	claims := c.rtClaims()
	claims.Agent, claims.AgentJKT, claims.Scope = a.ID, a.Signer.Public.Thumbprint, consentScope
	claims.IssuedAt, claims.Expiry = c.now().Unix(), c.now().Add(5*time.Minute).Unix()
	req := newRequest(http.MethodPost, PathToken, body(c.mintRT(c.resource.Signer, claims)))
	signWith(c.t, req, a.Signer, jwksKey(a), c.now())
	return serve(c.t, h, req)
}

// admitAcross sends n consent requests of one agent in parallel, alternating between the
// instances, and returns the codes of the 202s and the number of 429s.
func (c *consentEnv) admitAcross(instances [2]*Handler, a *origin, n int) (codes []string, refused int) {
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = c.tokenRequestTo(instances[i%2], a)
		}()
	}
	close(start)
	wg.Wait()
	for _, r := range results {
		switch r.Status {
		case http.StatusAccepted:
			codes = append(codes, r.str("code"))
		case http.StatusTooManyRequests:
			refused++
		default:
			c.t.Errorf("unexpected %d %s", r.Status, r.Raw)
		}
	}
	return codes, refused
}

// TestAdmissionAcrossInstances: two instances with separate memory over one shared state
// (a file_system storage; a real redis-server) hold the per-agent bound together: of 100
// parallel requests of one agent split across them exactly 64 are admitted; a decision on
// one instance frees a place for the other; expiry frees them all.
func TestAdmissionAcrossInstances(t *testing.T) {
	cfg := Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Off: true}}
	for _, backend := range []string{"file_system", "redis"} {
		t.Run(backend, func(t *testing.T) {
			c := newConsentEnv(t, &cfg)
			var shared [2]certmagic.Storage
			switch backend {
			case "file_system":
				shared = [2]certmagic.Storage{c.store, c.store}
			case "redis":
				srv := redistest.Start(t)
				shared = [2]certmagic.Storage{redisState(t, srv.Addr), redisState(t, srv.Addr)}
			}
			var instances [2]*Handler
			for i := range instances {
				instances[i] = c.handler(cfg, shared[i])
				ownConsent(t, instances[i], shared[i])
			}
			if instances[0].consent == instances[1].consent {
				t.Fatal("the instances share memory")
			}
			c.serve(instances[0])
			checkSharedBound(t, c, instances)
		})
	}
}

func checkSharedBound(t *testing.T, c *consentEnv, instances [2]*Handler) {
	const n = 100
	codes, refused := c.admitAcross(instances, c.agent, n)
	if len(codes) != maxPendingPerAgent || refused != n-maxPendingPerAgent {
		t.Fatalf("%d admitted, %d refused across two instances; want %d and %d", len(codes), refused, maxPendingPerAgent, n-maxPendingPerAgent)
	}
	for i, h := range instances {
		if res := c.tokenRequestTo(h, c.agent); res.Status != http.StatusTooManyRequests {
			t.Fatalf("instance %d past the bound: %d %s", i, res.Status, res.Raw)
		}
	}
	if res := c.tokenRequestTo(instances[1], c.other); res.Status != http.StatusAccepted {
		t.Fatalf("another agent: %d %s", res.Status, res.Raw)
	}
	// A decision through instance 0 frees exactly one place, for instance 1 too.
	b := c.browser()
	b.decide(b.login(codes[0], "alice"), codes[0], "deny")
	if res := c.tokenRequestTo(instances[1], c.agent); res.Status != http.StatusAccepted {
		t.Fatalf("after a decision on the other instance: %d %s", res.Status, res.Raw)
	}
	for i, h := range instances {
		if res := c.tokenRequestTo(h, c.agent); res.Status != http.StatusTooManyRequests {
			t.Fatalf("instance %d: more than one place was freed: %d", i, res.Status)
		}
	}
	// Expiry frees them all, with no sweeper and no release (an instance that crashed
	// holding places cannot keep them).
	c.advance(DefaultPendingLifetime + time.Second)
	codes, refused = c.admitAcross(instances, c.agent, 70)
	if len(codes) != maxPendingPerAgent || refused != 70-maxPendingPerAgent {
		t.Fatalf("after expiry: %d admitted, %d refused", len(codes), refused)
	}
}

// TestAdmissionRecord: the stored form of the places, and the steps on it.
func TestAdmissionRecord(t *testing.T) {
	now := testNow.Unix()
	a := newAdmissions()
	for i := range 3 {
		if err := a.admit(fmt.Sprint("id", i), "https://a.example", fmt.Sprintf("https://r%d.example", i%2), now+int64(i), now); err != nil {
			t.Fatal(err)
		}
	}
	raw := a.encode()
	tests := []struct {
		name    string
		raw     []byte
		now     int64
		want    int
		wantErr bool
	}{
		{"absent", nil, now, 0, false},
		{"all kept at now 0", raw, 0, 3, false},
		{"expired ones fall out", raw, now + 1, 1, false},
		{"all expired", raw, now + 5, 0, false},
		{"not JSON", []byte("{"), now, 0, true},
		{"agent index out of range", []byte(`{"agents":[],"resources":["r"],"places":[{"id":"x","exp":9999999999,"a":0,"r":0}]}`), now, 0, true},
		{"negative resource index", []byte(`{"agents":["a"],"resources":["r"],"places":[{"id":"x","exp":9999999999,"a":0,"r":-1}]}`), now, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAdmissions(tt.raw, tt.now)
			if (err != nil) != tt.wantErr || len(got.byID) != tt.want {
				t.Fatalf("%d places, err %v; want %d, error %v", len(got.byID), err, tt.want, tt.wantErr)
			}
		})
	}
	back, _ := decodeAdmissions(raw, 0)
	if !bytes.Equal(back.encode(), raw) {
		t.Fatalf("round trip changed the record:\n%s\n%s", raw, back.encode())
	}
	if _, _, d, _ := back.counts("https://a.example", ""); d != 3 {
		t.Fatalf("domain count %d after decoding, want 3", d)
	}
}

// TestAdmissionStore: admit and release through the state store; a broken record is
// started over; releasing a place not held writes nothing; a state failure is not a 429.
func TestAdmissionStore(t *testing.T) {
	ctx := context.Background()
	st := newTestStorage(t)
	s, err := newConsentStore(ctx, "https://adm.example", st, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destruct()
	now := testNow.Unix()
	rec := &pendingRecord{ID: "one", Agent: "https://a.example", Resource: "https://r.example", Expires: now + 60}
	if err := s.admit(ctx, rec, now); err != nil {
		t.Fatal(err)
	}
	if err := s.admit(ctx, rec, now); err != nil {
		t.Fatalf("admitting the same id again: %v", err)
	}
	raw, _ := st.Load(ctx, s.admissionKey())
	s.release(ctx, "unknown")
	if after, _ := st.Load(ctx, s.admissionKey()); !bytes.Equal(after, raw) {
		t.Fatal("releasing a place not held changed the record")
	}
	s.release(ctx, "one")
	if a, _ := decodeAdmissions(mustLoad(t, st, s.admissionKey()), 0); len(a.byID) != 0 {
		t.Fatalf("%d places after release", len(a.byID))
	}
	if err := st.Store(ctx, s.admissionKey(), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := s.admit(ctx, rec, now); err != nil {
		t.Fatalf("over a broken record: %v", err)
	}
	st.failLoad = func(key string) bool { return key == s.admissionKey() }
	if err := s.admit(ctx, &pendingRecord{ID: "two", Agent: rec.Agent, Resource: rec.Resource, Expires: now + 60}, now); err == nil || err == errTooManyPending {
		t.Fatalf("storage failing: %v, want a storage error", err)
	}
}

func mustLoad(t *testing.T, st certmagic.Storage, key string) []byte {
	t.Helper()
	raw, err := st.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// BenchmarkAdmissionUpdate: the work of one admission's read-modify-write (decode, check,
// encode) with the record holding n places.
func BenchmarkAdmissionUpdate(b *testing.B) {
	now := testNow.Unix()
	for _, n := range []int{64, 10000} {
		a := newAdmissions()
		for i := range n {
			a.addLocked(newPendingID(), admission{agent: fmt.Sprintf("https://a%d.d%d.example", i%64, i/500), domain: fmt.Sprintf("d%d.example", i/500),
				resource: fmt.Sprintf("https://r%d.example", i%8), exp: now + 600})
		}
		raw := a.encode()
		b.Run(fmt.Sprintf("places=%d", n), func(b *testing.B) {
			for b.Loop() {
				a, _ := decodeAdmissions(raw, now)
				_ = a.admit(newPendingID(), "https://new.example", "https://r0.example", now+600, now)
				_ = a.encode()
			}
			b.ReportMetric(float64(len(raw)), "record-bytes")
		})
	}
}
