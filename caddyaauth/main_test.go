package caddyaauth

import (
	"os"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/internal/testhome"
)

// TestMain gives the tests a HOME and XDG folders of their own, since TestReadyMessage
// runs Caddy in process (its tls app writes instance.uuid into Caddy's data folder).
// Caddy's logs are shown with -v only.
func TestMain(m *testing.M) {
	dir, err := testhome.Setup("aauth-caddyaauth-test-")
	if err == nil {
		err = testhome.Quiet()
	}
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
