package caddyaauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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
