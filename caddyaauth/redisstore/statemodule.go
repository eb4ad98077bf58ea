package redisstore

import (
	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(State{})
}

// State is the aauth app's state backend aauth.state.redis: the auth server's
// single-use marks, pending requests and token rate limit in Redis, with the atomic
// steps of state.Store done by Redis itself (see Storage.Once, Storage.Update and
// Storage.Allow). It has the settings of the storage module and the same key layout;
// it shares a client with a storage module of the same settings.
//
//	aauth {
//	    state redis {
//	        address    127.0.0.1:6379
//	        ...        (the settings of caddy.storage.redis)
//	    }
//	}
type State struct {
	Storage
}

// CaddyModule returns the Caddy module information.
func (State) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "aauth.state.redis", New: func() caddy.Module { return new(State) }}
}

// Interface guards
var (
	_ caddy.Provisioner  = (*State)(nil)
	_ caddy.Validator    = (*State)(nil)
	_ caddy.CleanerUpper = (*State)(nil)
	_ RateLimiter        = (*State)(nil)
)
