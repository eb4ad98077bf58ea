package caddyaauth

import (
	"net/http"
	"sync"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/attempts"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
)

// egressState is what the aauth handlers with egress and the aauth_egress handlers of one
// config share, in memory (per process): the handles of the requests in flight, the
// downstream tokens obtained by exchange per inbound token, and the requests waiting for
// a downstream consent (interaction chaining). A reload starts afresh. With a shared
// store (the app's chainShared) the chained requests live in the shared state instead,
// where every instance of the cluster finds them and they survive a reload.
type egressState struct {
	handles *egress.Registry
	tokens  *egress.TokenStore
	chains  *chainRegistry
	shared  *sharedChains // nil: chained requests stay in chains (this process)

	once      sync.Once
	transport http.RoundTripper
}

func newEgressState(shared *sharedChains) *egressState {
	return &egressState{handles: &egress.Registry{}, tokens: &egress.TokenStore{}, chains: &chainRegistry{misses: attempts.New(chainWrongCodes, chainWrongWindow, chainWrongClients)}, shared: shared}
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
		a.reg.egress = newEgressState(a.chainShared)
	}
	return a.reg.egress
}

// outbound is the egress transport polls of downstream auth servers use.
func (s *egressState) outbound(dev bool) http.RoundTripper {
	s.once.Do(func() { s.transport = egress.NewTransport(dev, 0) })
	return s.transport
}
