package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// readProduction returns cmd/caddy/Caddyfile.production.
func readProduction(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "cmd", "caddy", "Caddyfile.production"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProductionCaddyfileValidates adapts Caddyfile.production and loads it as
// `caddy validate` does, with no Redis and no REDIS_PASSWORD (CI has neither): loading a
// config must not connect. It also checks what the example promises: no dev switch, only
// https sites, Redis for both storage and state, and the access-log filter on both sites.
func TestProductionCaddyfileValidates(t *testing.T) {
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(readProduction(t)), map[string]any{"filename": "Caddyfile.production"})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w.String())
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("caddy validate: %v", err)
	}

	var got struct {
		Storage struct{ Module string }
		Apps    struct {
			Aauth struct {
				Dev   bool
				State struct{ Backend string }
			}
			HTTP struct {
				Servers map[string]struct {
					Listen []string
					Logs   *struct {
						LoggerNames map[string]any `json:"logger_names"`
					} `json:"logs"`
				}
			}
		}
		Logging struct {
			Logs map[string]struct {
				Encoder struct {
					Format string
					Fields map[string]json.RawMessage
				}
			}
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Apps.Aauth.Dev || got.Storage.Module != "redis" || got.Apps.Aauth.State.Backend != "redis" {
		t.Errorf("dev %v, storage %q, state %q: want no dev, redis and redis", got.Apps.Aauth.Dev, got.Storage.Module, got.Apps.Aauth.State.Backend)
	}
	for name, srv := range got.Apps.HTTP.Servers {
		if len(srv.Listen) != 1 || srv.Listen[0] != ":443" {
			t.Errorf("server %s listens on %v, want only :443", name, srv.Listen)
		}
		if srv.Logs == nil || len(srv.Logs.LoggerNames) != 2 {
			t.Errorf("server %s: want the access logs of both names, got %+v", name, srv.Logs)
		}
	}
	filtered := 0
	for name, l := range got.Logging.Logs {
		if name == "default" {
			continue
		}
		if l.Encoder.Format != "filter" {
			t.Errorf("log %s is not filtered: %+v", name, l.Encoder)
			continue
		}
		for _, f := range []string{"request>headers>Signature", "request>headers>Signature-Key", "request>headers>Authorization", "resp_headers>Aauth"} {
			if !strings.Contains(string(l.Encoder.Fields[f]), `"delete"`) {
				t.Errorf("log %s does not delete %s", name, f)
			}
		}
		filtered++
	}
	if filtered != 2 {
		t.Errorf("want 2 filtered access logs (api, auth), got %d", filtered)
	}
}

// snippetRE finds the access-log snippet of Caddyfile.production (up to its closing brace
// at the start of a line).
var snippetRE = regexp.MustCompile(`(?ms)^\(aauth_access_log\) \{\n.*?^\}\n`)

// TestProductionAccessLogFilter runs Caddyfile.production's access-log snippet, as it is
// in the file, in front of a site, and sends it a request carrying every secret the
// snippet must keep out of the log. The log line must be there, with the harmless fields,
// and without any of the secrets.
func TestProductionAccessLogFilter(t *testing.T) {
	snippet := snippetRE.FindString(readProduction(t))
	if snippet == "" {
		t.Fatal("no (aauth_access_log) snippet in Caddyfile.production")
	}
	dir := t.TempDir()
	snippet = strings.Replace(snippet, "/var/log/caddy/", filepath.ToSlash(dir)+"/", 1)
	caddytest.NewTester(t).InitServer(globalOptions(t, false)+snippet+`
http://localhost:9080 {
	import aauth_access_log test
	header AAuth "require=auth-token; resource-token=\"secret-resource-token\""
	header Set-Cookie "session=secret-session-cookie"
	respond "ok" 401
}
`, "caddyfile")

	req, _ := http.NewRequest(http.MethodGet, "http://localhost:9080/interact?code=SECRETCODE&lang=en", nil)
	req.Header.Set("Signature-Input", `sig=("@method" "@authority" "@path" "signature-key");created=1`)
	req.Header.Set("Signature", "sig=:c2VjcmV0LXNpZ25hdHVyZQ==:")
	req.Header.Set("Signature-Key", `sig=jwt;jwt="secret-auth-token"`)
	req.Header.Set("Authorization", "Bearer secret-bearer")
	req.Header.Set("Cookie", "session=secret-request-cookie")
	req.Header.Set("User-Agent", "aauth-log-filter-test")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	logFile := filepath.Join(dir, "test.access.log")
	var line string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(logFile)
		if line = string(b); strings.Contains(line, "aauth-log-filter-test") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"aauth-log-filter-test", `"status":401`, "lang=en", "Signature-Input"} {
		if !strings.Contains(line, want) {
			t.Fatalf("the access log lacks %q: %q", want, line)
		}
	}
	for _, secret := range []string{"c2VjcmV0LXNpZ25hdHVyZQ", "secret-auth-token", "secret-bearer", "secret-request-cookie", "secret-resource-token", "secret-session-cookie", "SECRETCODE"} {
		if strings.Contains(line, secret) {
			t.Errorf("the access log has %q: %s", secret, line)
		}
	}
}
