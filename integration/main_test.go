// Package integration runs real Caddy (in process through caddytest, or the built binary
// where a restart or the CLI is under test) with unmodified backends and the agent
// library, plus golden Caddyfile→JSON adapt tests. Run it with -p 1: caddytest uses fixed
// ports (admin 2999, http 9080, https 9443).
package integration

import (
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth"
)
