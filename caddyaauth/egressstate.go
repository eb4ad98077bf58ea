package caddyaauth

import (
	"net/http"
	"sync"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
)

// egressState is what the aauth handlers with egress and the aauth_egress handlers of one
// config share, in memory (per process): the handles of the requests in flight, the
// downstream tokens obtained by exchange per inbound token, and the requests waiting for
// a downstream consent (interaction chaining). A reload starts afresh.
type egressState struct {
	handles *egress.Registry
	tokens  *egress.TokenStore
	chains  *chainRegistry

	once      sync.Once
	transport http.RoundTripper
}

func newEgressState() *egressState {
	return &egressState{handles: &egress.Registry{}, tokens: &egress.TokenStore{}, chains: &chainRegistry{}}
}

// egressState returns the config's shared egress state, created on first use; nil for a
// handler built without an app (unit tests set one up themselves).
func (a *App) egressState() *egressState {
	if a == nil || a.reg == nil {
		return nil
	}
	a.reg.mu.Lock()
	defer a.reg.mu.Unlock()
	if a.reg.egress == nil {
		a.reg.egress = newEgressState()
	}
	return a.reg.egress
}

// outbound is the egress transport polls of downstream auth servers use.
func (s *egressState) outbound(dev bool) http.RoundTripper {
	s.once.Do(func() { s.transport = egress.NewTransport(dev, 0) })
	return s.transport
}
