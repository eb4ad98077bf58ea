package caddyaauth

import (
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/testhome"
)

// TestMain gives the tests a HOME and XDG folders of their own, since TestReadyMessage
// runs Caddy in process (its tls app writes instance.uuid into Caddy's data folder).
// Caddy's logs are shown with -v only.
func TestMain(m *testing.M) { testhome.Main(m, "aauth-caddyaauth-test-") }
