// Command caddy is Caddy v2 built with the caddy-aauth modules: the AAuth resource gateway
// (http.handlers.aauth) and the companion auth server (http.handlers.aauth_server).
// Build it with `go build ./cmd/caddy`; no xcaddy is needed.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-aauth/caddy-aauth/authserver"
	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth"
)

func main() {
	caddycmd.Main()
}
