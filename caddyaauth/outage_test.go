package caddyaauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// TestWriteUnavailable: 503, Retry-After in whole seconds (1 to 60), the JSON error
// temporarily_unavailable, and one Warn line per issuer per minute (Debug otherwise).
func TestWriteUnavailable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ol := &OutageLog{now: func() time.Time { return now }}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	cases := []struct {
		issuer   string
		retry    time.Duration
		advance  time.Duration
		header   string
		warnings int
	}{
		{"https://as.example", 1500 * time.Millisecond, 0, "2", 1},
		{"https://as.example", 0, 30 * time.Second, "1", 1},               // within the minute: Debug
		{"https://other.example", time.Hour, 0, "60", 2},                  // another issuer: Warn
		{"https://as.example", 4 * time.Second, 31 * time.Second, "4", 3}, // a minute later: Warn again
	}
	for i, c := range cases {
		now = now.Add(c.advance)
		w := httptest.NewRecorder()
		ue := &reqverify.UnavailableError{Msg: "the auth server's JWKS could not be fetched", Issuer: c.issuer, RetryAfter: c.retry}
		WriteUnavailable(w, httptest.NewRequest("GET", "/x", nil), log, ol, ue)
		var e wire.Error
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != c.header || e.Code != wire.CodeTemporarilyUnavailable || e.Description != ue.Msg {
			t.Fatalf("case %d: %d %q %+v", i, w.Code, w.Header().Get("Retry-After"), e)
		}
		if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != c.warnings {
			t.Fatalf("case %d: %d Warn lines, want %d", i, n, c.warnings)
		}
	}
	if n := logs.FilterLevelExact(zapcore.DebugLevel).Len(); n != 1 {
		t.Fatalf("%d Debug lines, want 1", n)
	}
}
