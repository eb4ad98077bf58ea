package caddyaauth

import (
	// The `caddy aauth` subcommand (grants, pending requests, keys over the admin API)
	// ships with the plugin, so an xcaddy build has it as well as `go build ./cmd/caddy`.
	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth/admincmd"
	// The Redis storage module (caddy.storage.redis) ships with the aauth plugin: a build
	// with this package can keep its keys, grants and certificates in Redis.
	_ "github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore"
)
