package caddyaauth

// The Redis storage module (caddy.storage.redis) ships with the aauth plugin: a build
// with this package can keep its keys, grants and certificates in Redis.
import _ "github.com/caddy-aauth/caddy-aauth/caddyaauth/redisstore"
