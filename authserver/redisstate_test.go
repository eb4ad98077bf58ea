package authserver

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore/redistest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// redisHandler provisions cfg with its records on the Redis at addr (as with
// `aauth { state redis }`), keys on the env's file storage.
func (e *env) redisHandler(cfg Handler, addr string) *Handler {
	e.t.Helper()
	rc := redisstore.Config{Address: addr, KeyPrefix: "as", DialTimeout: caddyDur(time.Second), ReadTimeout: caddyDur(time.Second)}
	client := redisstore.NewClient(rc)
	e.t.Cleanup(func() { _ = client.Destruct() })
	h := cfg
	err := h.provision(context.Background(), deps{
		storage: e.store, state: redisstore.New(client, rc, 0),
		discovery: e.client, dev: true, logger: zaptest.NewLogger(e.t), now: e.now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = h.Cleanup() })
	if h.sharedLimit == nil {
		e.t.Fatal("a Redis state did not give the token endpoint a shared rate limit")
	}
	return &h
}

// TestTokenEndpointOnRedisState: with a Redis state the token rate limit is one budget
// for every instance, and when Redis is down the endpoint fails closed with 503.
func TestTokenEndpointOnRedisState(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t)
	cfg := Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Requests: 2, Window: caddyDur(time.Minute)}}
	instances := [2]*Handler{e.redisHandler(cfg, srv.Addr), e.redisHandler(cfg, srv.Addr)}
	send := func(h *Handler) result {
		c := e.rtClaims()
		c.Scope = "data.read"
		return serve(t, h, e.signedRequest(body(e.mintRT(e.resource.Signer, c))))
	}
	for i := range 2 {
		if res := send(instances[i]); res.Status != http.StatusOK {
			t.Fatalf("request %d within the budget: %d %s", i, res.Status, res.Raw)
		}
	}
	for i, h := range instances {
		res := send(h)
		if res.Status != http.StatusTooManyRequests || res.str("error") != wire.CodeRateLimited || res.Header.Get("Retry-After") == "" {
			t.Fatalf("instance %d past the shared budget: %d %s %v", i, res.Status, res.Raw, res.Header)
		}
	}

	srv.Kill()
	res := send(instances[0])
	if res.Status != http.StatusServiceUnavailable || res.str("error") != wire.CodeTemporarilyUnavailable || res.Header.Get("Retry-After") != stateRetryAfter {
		t.Fatalf("redis down: %d %s %v; want 503 temporarily_unavailable with Retry-After", res.Status, res.Raw, res.Header)
	}
	srv.Restart()
	if res := send(instances[1]); res.Status != http.StatusTooManyRequests {
		t.Fatalf("after the restart the budget is still spent: %d %s", res.Status, res.Raw)
	}
}
