package caddyaauth

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the aauth handler's collectors in one Caddy metrics registry (the
// one the admin endpoint's /metrics serves).
type gatewayMetrics struct {
	verdicts *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// metricsFor returns the collectors registered in reg, registering them the first
// time. Caddy gives every config load a registry of its own; within one, every aauth
// handler after the first finds the collectors registered (AlreadyRegisteredError) and
// reuses them, so nothing is kept per registry here and an old config's registry is
// freed with it. A nil reg gives nil, on which observe does nothing.
func metricsFor(reg *prometheus.Registry) (*gatewayMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	verdicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "verdicts_total",
		Help: "Requests decided by the aauth handler, by server, route level and error code (ok for passes).",
	}, []string{"server", "require", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "verify_duration_seconds",
		Help:    "Time the aauth handler spent on a request before its verdict.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"server", "require"})
	m := &gatewayMetrics{}
	var err error
	if m.verdicts, err = register(reg, verdicts); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c in reg, or returns the collector of the same description that
// is registered already.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// observe counts a verdict and its duration.
func (m *gatewayMetrics) observe(server, require, code string, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.verdicts.WithLabelValues(server, require, code).Inc()
	m.duration.WithLabelValues(server, require).Observe(elapsed.Seconds())
}

// provisionMetrics registers the handler's collectors in the config's metrics registry
// and, once the config starts, learns the name of the server the handler is in (the
// server label; Caddy's own metrics use the same name).
func (h *Handler) provisionMetrics(ctx caddy.Context) error {
	m, err := metricsFor(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}
	h.metrics = m
	h.server = "UNKNOWN"
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || h.app == nil {
		return nil
	}
	h.app.OnStart(func(context.Context) error {
		if a, err := ctx.AppIfConfigured("http"); err == nil {
			if app, ok := a.(*caddyhttp.App); ok {
				for name, s := range app.Servers {
					if s == srv {
						h.server = name
					}
				}
			}
		}
		return nil
	})
	return nil
}

// serverName is the server label of this handler's verdicts.
func (h *Handler) serverName() string { return h.server }
