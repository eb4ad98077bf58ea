package authserver

import (
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/testhome"
)

// TestMain gives the tests a HOME and XDG folders of their own: TestInCaddy runs Caddy in
// process, whose tls app writes instance.uuid into Caddy's data folder
// (~/.local/share/caddy) and whose config would be autosaved to ~/.config/caddy. Caddy's
// logs are shown with -v only.
func TestMain(m *testing.M) { testhome.Main(m, "aauth-authserver-test-") }
