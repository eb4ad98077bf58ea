package caddyaauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/decisionlog"
)

// TestRefusalSampling: 250 unsigned requests within one second. Sampled (the default),
// the first 100 refusals and the 200th are logged, the 200th carrying suppressed=99
// (the 101st to 199th); with log_refusals all, every one is. Either way the metrics
// count 250 and every request sets the error placeholders.
func TestRefusalSampling(t *testing.T) {
	const n = 250
	for _, c := range []struct {
		mode  string
		lines int
	}{{"", 101}, {LogRefusalsSampled, 101}, {LogRefusalsAll, n}} {
		t.Run("log_refusals="+c.mode, func(t *testing.T) {
			h, logs, reg, _, _ := observedHandler(t)
			h.LogRefusals = c.mode
			h.sampler = new(decisionlog.Sampler) // as Provision does
			second := time.Unix(1_800_000_000, 0)
			h.now = func() time.Time { return second.Add(999 * time.Millisecond) }
			for i := range n {
				repl := caddy.NewReplacer()
				req := caddyhttp.PrepareRequest(httptest.NewRequest("GET", "http://api.example/data", nil),
					repl, httptest.NewRecorder(), nil)
				if st, _ := serve(h, req); st != http.StatusUnauthorized {
					t.Fatalf("request %d: %d", i, st)
				}
				if v, _ := repl.GetString(decisionlog.PlaceholderError); v == "" {
					t.Fatalf("request %d: {http.aauth.error} not set", i)
				}
				if v, _ := repl.GetString(decisionlog.PlaceholderDescription); v == "" {
					t.Fatalf("request %d: {http.aauth.error_description} not set", i)
				}
			}
			lines := logs.FilterMessage("aauth refused").FilterLevelExact(zapcore.InfoLevel).All()
			if len(lines) != c.lines {
				t.Fatalf("%d refusal lines, want %d", len(lines), c.lines)
			}
			code, _ := lines[0].ContextMap()["error"].(string)
			for i, l := range lines {
				f := l.ContextMap()
				want := any(nil)
				if c.mode != LogRefusalsAll && i == 100 {
					want = int64(99)
				}
				if f["suppressed"] != want || f["error"] != code {
					t.Errorf("line %d: suppressed %v (want %v), error %v", i, f["suppressed"], want, f["error"])
				}
			}
			counts, observed := gatherVerdicts(t, reg)
			if counts["srv0/"+benchResource+"/auth-token/"+code] != n || observed != n {
				t.Fatalf("counts %v, %d observations", counts, observed)
			}
		})
	}
}

// TestLogRefusalsOption: log_refusals takes one argument, sampled or all, once; in JSON
// any other value fails Validate.
func TestLogRefusalsOption(t *testing.T) {
	cases := []struct {
		in   string
		want string // "" when the block is refused
	}{
		{"aauth {\n\tlog_refusals all\n}", LogRefusalsAll},
		{"aauth {\n\tlog_refusals sampled\n}", LogRefusalsSampled},
		{"aauth {\n\tlog_refusals bogus\n}", ""},
		{"aauth {\n\tlog_refusals\n}", ""},
		{"aauth {\n\tlog_refusals all sampled\n}", ""},
		{"aauth {\n\tlog_refusals all\n\tlog_refusals all\n}", ""},
	}
	for _, c := range cases {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		if (err == nil) != (c.want != "") || (err == nil && h.LogRefusals != c.want) {
			t.Errorf("%q: err %v, log_refusals %q", c.in, err, h.LogRefusals)
		}
	}
	for _, v := range []string{"", LogRefusalsSampled, LogRefusalsAll} {
		if err := (&Handler{LogRefusals: v}).Validate(); err != nil {
			t.Errorf("log_refusals %q: %v", v, err)
		}
	}
	err := (&Handler{LogRefusals: "bogus"}).Validate()
	if err == nil || !strings.Contains(err.Error(), `log_refusals: unknown value "bogus"`) {
		t.Errorf("log_refusals bogus: %v", err)
	}
}
