// Package integration runs real Caddy (in process through caddytest, or the built binary
// where a restart or the CLI is under test) with unmodified backends and the agent
// library, plus golden Caddyfile→JSON adapt tests. Run it with -p 1: caddytest uses fixed
// ports (admin 2999, http 9080, https 9443).
package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-aauth/caddy-aauth/authserver"
	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth"
)

// stateDir holds every test's Caddy storage. Caddy keeps running between tests (one
// in-process instance per test binary) and may still write into a test's storage after
// the test ends, so the folders are removed once, after all tests.
var stateDir string

func TestMain(m *testing.M) {
	var err error
	stateDir, err = os.MkdirTemp("", "aauth-integration-")
	if err != nil {
		panic(err)
	}
	// Caddy's autosave.json, its default storage and its config folder follow the XDG
	// variables: point them into stateDir so no test (nor a binary a test starts) touches
	// the user's own Caddy config or data. The in-process Caddy computed its paths when
	// its package was initialised, so those are set directly. The Go build cache also
	// follows XDG_CACHE_HOME: keep the user's (GOCACHE) so the tests that build the caddy
	// and aauth binaries reuse it instead of compiling everything from scratch.
	if os.Getenv("GOCACHE") == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			if err := os.Setenv("GOCACHE", strings.TrimSpace(string(out))); err != nil {
				panic(err)
			}
		}
	}
	for _, v := range []string{"XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"} {
		dir, err := os.MkdirTemp(stateDir, "xdg-")
		if err != nil {
			panic(err)
		}
		if err := os.Setenv(v, dir); err != nil {
			panic(err)
		}
	}
	caddy.ConfigAutosavePath = filepath.Join(caddy.AppConfigDir(), "autosave.json")
	caddy.DefaultStorage = &certmagic.FileStorage{Path: caddy.AppDataDir()}
	code := m.Run()
	_ = os.RemoveAll(stateDir)
	os.Exit(code)
}

// storageDir returns a fresh storage folder for one Caddy configuration.
func storageDir(t *testing.T) string {
	d, err := os.MkdirTemp(stateDir, "storage-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
