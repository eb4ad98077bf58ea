// Package promreg registers the aauth modules' collectors in a Caddy metrics registry
// (caddy.Context.GetMetricsRegistry, served on the admin endpoint's /metrics).
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c in reg, or returns the collector of the same description that
// is registered already. Caddy gives every config load a registry of its own; within
// one, every module after the first finds its collectors registered and reuses them, so
// nothing needs to be kept per registry and an old config's registry is freed with it.
func Register[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// Rate limiters named in the limiter label of caddy_aauth_rate_limited_total.
const (
	LimiterToken         = "token"          // auth server: token requests per agent
	LimiterPendingPoll   = "pending_poll"   // auth server: signed polls per pending URL
	LimiterAdmission     = "admission"      // auth server: undecided requests per agent, domain, resource
	LimiterInteract      = "interact"       // auth server: wrong codes and sign-ins per client
	LimiterChainInteract = "chain_interact" // gateway: wrong codes at the chaining interact endpoint
)

// RateLimited is caddy_aauth_rate_limited_total{limiter}, registered in reg (nil for a
// nil reg). The gateway and the auth server count into the same counter.
func RateLimited(reg *prometheus.Registry) (*prometheus.CounterVec, error) {
	if reg == nil {
		return nil, nil
	}
	return Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "rate_limited_total",
		Help: "Requests refused by an aauth rate limit (429), by limiter.",
	}, []string{"limiter"}))
}

// Inc adds one to c's series for labels; a nil c counts nothing.
func Inc(c *prometheus.CounterVec, labels ...string) {
	if c != nil {
		c.WithLabelValues(labels...).Inc()
	}
}
