// Package integration runs real Caddy (in process through caddytest, or the built binary
// where a restart or the CLI is under test) with unmodified backends and the agent
// library, plus golden Caddyfile→JSON adapt tests. Run it with -p 1: caddytest uses fixed
// ports (admin 2999, http 9080, https 9443).
package integration

import (
	"os"
	"testing"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-aauth/caddy-aauth/authserver"
	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/testhome"
)

// TestMain: HOME and the XDG folders point into a temporary folder, so no test (nor a
// binary a test starts) touches the user's own Caddy config (autosave.json) or data; the
// Go command's folders stay the user's, so the tests that build the caddy and aauth
// binaries reuse its caches. Caddy's own logs are shown with -v only. Caddy keeps running
// between tests (one in-process instance per test binary) and may still write into a
// test's storage after the test ends, so the folder is removed once, after all tests.
func TestMain(m *testing.M) { testhome.Main(m, "aauth-integration-") }

// storageDir returns a fresh storage folder for one Caddy configuration.
func storageDir(t *testing.T) string {
	d, err := os.MkdirTemp(testhome.Dir(), "storage-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
