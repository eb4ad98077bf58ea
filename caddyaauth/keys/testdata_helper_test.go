package keys

import (
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/internal/shareddata"
)

func sharedTestdata(t testing.TB, sub string) string { return shareddata.Dir(t, sub) }
