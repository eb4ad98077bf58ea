package caddyaauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestClientIP(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "[2001:db8:1:2:3::4]:555"
	if got := ClientIP(req); got != "2001:db8:1:2::/64" {
		t.Errorf("v6: %q", got)
	}
	req.RemoteAddr = "198.51.100.7:80"
	if got := ClientIP(req); got != "198.51.100.7" {
		t.Errorf("v4: %q", got)
	}
	vars := map[string]any{caddyhttp.ClientIPVarKey: "203.0.113.9"}
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, vars))
	if got := ClientIP(req); got != "203.0.113.9" {
		t.Errorf("caddy var: %q", got)
	}
}

func TestCodeMisses(t *testing.T) {
	var c codeMisses
	now := time.Unix(1_800_000_000, 0)
	for i := range chainWrongCodes {
		if c.blocked("198.51.100.7", now) {
			t.Fatalf("blocked after %d misses", i)
		}
		c.miss("198.51.100.7", now)
	}
	if !c.blocked("198.51.100.7", now) {
		t.Fatal("not blocked after the limit")
	}
	if c.blocked("198.51.100.8", now) {
		t.Fatal("another client is blocked")
	}
	if c.blocked("198.51.100.7", now.Add(chainWrongWindow)) {
		t.Fatal("still blocked after the window")
	}
	// Full: a new client is refused until old windows end.
	c.m = map[string]codeWindow{}
	for i := range chainWrongClients {
		c.m[string(rune(i))] = codeWindow{start: now, n: 1}
	}
	if !c.blocked("203.0.113.1", now) {
		t.Fatal("a new client passed a full table")
	}
	if c.blocked("203.0.113.1", now.Add(chainWrongWindow)) {
		t.Fatal("a new client refused after the old windows ended")
	}
}
