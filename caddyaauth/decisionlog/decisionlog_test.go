package decisionlog

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestWrite: a refusal is one Info line with the shared fields and sets the error
// placeholders; a pass is Debug (Info with LogPasses) and sets none.
func TestWrite(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	repl := caddy.NewReplacer()
	r := caddyhttp.PrepareRequest(httptest.NewRequest("GET", "http://x.example/", nil), repl, httptest.NewRecorder(), nil)
	Write(logger, r, Decision{Msg: "m", Pass: true, Status: 200, Code: CodeOK, Elapsed: time.Millisecond})
	if v, ok := repl.GetString(PlaceholderError); ok && v != "" {
		t.Fatalf("a pass set {http.aauth.error} = %q", v)
	}
	Write(logger, r, Decision{Msg: "m", Pass: true, LogPasses: true, Status: 200, Code: CodeOK})
	Write(logger, r, Decision{Msg: "m", Status: 401, Code: "invalid_request", Description: "d",
		Fields: []zap.Field{zap.String("resource", "https://x.example")}})
	all := logs.All()
	if len(all) != 3 || all[0].Level != zapcore.DebugLevel || all[1].Level != zapcore.InfoLevel || all[2].Level != zapcore.InfoLevel {
		t.Fatalf("lines %v", all)
	}
	f := all[2].ContextMap()
	if f["status"] != int64(401) || f["error"] != "invalid_request" || f["error_description"] != "d" ||
		f["resource"] != "https://x.example" || f["remote_ip"] != "192.0.2.1" || f["duration"] == nil {
		t.Errorf("refusal fields %v", f)
	}
	if v, _ := repl.GetString(PlaceholderError); v != "invalid_request" {
		t.Errorf("{http.aauth.error} = %q", v)
	}
	Write(nil, r, Decision{Code: "x"}) // no logger: placeholders only, no panic
	if v, _ := repl.GetString(PlaceholderError); v != "x" {
		t.Errorf("{http.aauth.error} = %q", v)
	}
}
