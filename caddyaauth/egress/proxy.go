package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// Proxy sends a backend's outbound request as the resource acting as an agent, on the
// strength of a handle, with agent.Transport: signed with the resource's agent key
// (scheme jwks_uri), the downstream resource's auth-token challenge answered by a token
// exchange of the inbound auth token, the token cached per inbound token, and the request
// retried with it (scheme jwt).
type Proxy struct {
	// Base sends the requests (to the downstream resource and its auth server); use
	// NewTransport. nil means NewTransport(Dev, 0).
	Base http.RoundTripper
	// Discovery fetches the downstream resource's and auth server's metadata and keys.
	Discovery *discovery.Client
	// Dev allows http and loopback identifiers (tests, local demos).
	Dev bool
	// ExchangeForm is agent.ExchangeSignatureKey (default) or agent.ExchangeBody.
	ExchangeForm string
	// Tokens holds the downstream tokens per inbound token; nil means none are kept
	// between requests (each call exchanges anew).
	Tokens *TokenStore
	// Logf receives one line per step; never tokens or keys.
	Logf func(format string, a ...any)
}

// NewTransport is the egress's outbound transport: no proxy from the environment (the
// backend's HTTP_PROXY points at us), no redirects followed (a RoundTripper never does),
// and outside dev only public addresses dialled (discovery.DialControl, checked at
// connect time so DNS rebinding cannot get around it). timeout bounds the connection and
// the wait for response headers (0: 30 s).
func NewTransport(dev bool, timeout time.Duration) *http.Transport {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: discovery.DialControl(dev)}
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
}

// transport is the agent.Transport for one call on h's behalf.
func (p *Proxy) transport(h *Handle) *agent.Transport {
	base := p.Base
	if base == nil {
		base = NewTransport(p.Dev, 0)
	}
	var cache *agent.TokenCache
	if p.Tokens != nil {
		cache = p.Tokens.For(h.Inbound, h.Expiry)
	} else {
		cache = &agent.TokenCache{Max: 16}
	}
	return &agent.Transport{
		Base:          base,
		Identity:      agent.JWKSURI(h.Signer, h.Resource),
		Discovery:     p.Discovery,
		Dev:           p.Dev,
		TokenCache:    cache,
		UpstreamToken: h.Inbound,
		ExchangeForm:  p.ExchangeForm,
		Logf:          p.Logf,
	}
}

// Do sends out on h's behalf. When the downstream auth server defers the exchange (202),
// the interaction is recorded on h and the *agent.PendingError returned.
func (p *Proxy) Do(h *Handle, out *http.Request) (*http.Response, error) {
	tr := p.transport(h)
	resp, err := tr.RoundTrip(out)
	var pe *agent.PendingError
	if errors.As(err, &pe) {
		h.Record(&Interaction{Pending: pe, Tokens: tr.TokenCache})
	}
	return resp, err
}

// AcceptToken checks the auth token the downstream auth server issued after the user
// approved the interaction (draft-hardt-aauth §17.1, as agent.Transport checks a token
// it obtained directly): issued by that auth server for the downstream resource, bound
// to the resource's agent key, for that agent. Then it is cached for the handle's
// inbound token, where the next call through the egress finds it.
func (p *Proxy) AcceptToken(ctx context.Context, i *Interaction, resource string, signer *keys.Signer, raw string) error {
	pe := i.Pending
	tok, err := token.VerifyAuthToken(ctx, raw, token.Options{Now: time.Now(), Audience: pe.Resource, Issuers: []string{pe.AuthServer}},
		func(ctx context.Context, iss, kid string) (*keys.PublicKey, error) {
			return p.Discovery.Key(ctx, iss, discovery.DocIssuer, kid)
		})
	if err != nil {
		return fmt.Errorf("egress: the downstream auth token: %w", err)
	}
	if cnf := tok.Claims.Confirmation; cnf == nil || cnf.Key == nil || cnf.Key.Thumbprint != signer.Public.Thumbprint {
		return errors.New("egress: the downstream auth token is bound to another key")
	}
	if tok.Claims.Agent != resource {
		return fmt.Errorf("egress: the downstream auth token is for agent %q, not %q", tok.Claims.Agent, resource)
	}
	i.Tokens.Put(agent.CachedToken{Resource: pe.Resource, KeyJKT: signer.Public.Thumbprint, Issuer: pe.AuthServer,
		Scope: tok.Claims.Scope, Expiry: time.Unix(tok.Claims.Expiry, 0), Token: raw})
	return nil
}
