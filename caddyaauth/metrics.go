package caddyaauth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/promreg"
)

// gatewayMetrics are the aauth handler's collectors in one Caddy metrics registry (the
// one the admin endpoint's /metrics serves).
type gatewayMetrics struct {
	verdicts    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	tokenCache  *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	// series caches the children of verdicts and duration by their labels, so a verdict
	// does not look its labels up in the vectors: a handler's labels are its server,
	// its resource, its level and a protocol error code, a small fixed set.
	series sync.Map // seriesKey → *series
	// tokenHit and tokenMiss are the two children of tokenCache.
	tokenHit, tokenMiss prometheus.Counter
}

type seriesKey struct{ server, resource, require, code string }

type series struct {
	verdicts prometheus.Counter
	duration prometheus.Observer
}

// metricsFor returns the collectors registered in reg, registering them the first
// time (promreg.Register). A nil reg gives nil, on which observe does nothing.
//
// The verdicts' route label is the route's configured resource identifier (empty when
// the route has none): bounded by the configuration, never taken from the request
// (Host, path), so a client cannot create series.
func metricsFor(reg *prometheus.Registry) (*gatewayMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &gatewayMetrics{}
	var err error
	if m.verdicts, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "verdicts_total",
		Help: "Requests decided by the aauth handler, by server, route (configured resource), route level and error code (ok for passes).",
	}, []string{"server", "resource", "require", "code"})); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "verify_duration_seconds",
		Help:    "Time the aauth handler spent on a request before its verdict.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"server", "require"})); err != nil {
		return nil, err
	}
	if m.tokenCache, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "token_cache_lookups_total",
		Help: "Agent and auth token lookups in the gateway's verified-token cache, by result: hit or miss.",
	}, []string{"result"})); err != nil {
		return nil, err
	}
	m.tokenHit, m.tokenMiss = m.tokenCache.WithLabelValues("hit"), m.tokenCache.WithLabelValues("miss")
	if m.rateLimited, err = promreg.RateLimited(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// observe counts a verdict and its duration.
func (m *gatewayMetrics) observe(server, resource, require, code string, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.seriesFor(server, resource, require, code).observe(elapsed)
}

// seriesFor returns the children of verdicts and duration for these labels.
func (m *gatewayMetrics) seriesFor(server, resource, require, code string) *series {
	k := seriesKey{server, resource, require, code}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &series{
			verdicts: m.verdicts.WithLabelValues(server, resource, require, code),
			duration: m.duration.WithLabelValues(server, require),
		})
	}
	return v.(*series)
}

func (s *series) observe(elapsed time.Duration) {
	s.verdicts.Inc()
	s.duration.Observe(elapsed.Seconds())
}

// handlerSeries is one handler's cache of its series by error code: its resource and
// level are fixed, so a verdict finds its series by comparing two short strings rather
// than by hashing four labels into the shared map.
type handlerSeries struct {
	mu   sync.Mutex
	list atomic.Pointer[[]codeSeries] // copy on write
}

type codeSeries struct {
	server, code string
	s            *series
}

// maxHandlerSeries bounds the cache; codes beyond it use the shared map.
const maxHandlerSeries = 32

func (c *handlerSeries) get(m *gatewayMetrics, server, resource, require, code string) *series {
	if l := c.list.Load(); l != nil {
		for i := range *l {
			if e := &(*l)[i]; e.code == code && e.server == server {
				return e.s
			}
		}
	}
	s := m.seriesFor(server, resource, require, code)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.list.Load()
	if old == nil || len(*old) < maxHandlerSeries {
		var l []codeSeries
		if old != nil {
			l = append(l, *old...)
		}
		l = append(l, codeSeries{server, code, s})
		c.list.Store(&l)
	}
	return s
}

// tokenLookup counts a lookup in the verified-token cache (token.Cache.OnLookup).
func (m *gatewayMetrics) tokenLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.tokenHit.Inc()
	} else {
		m.tokenMiss.Inc()
	}
}

// limited counts a request refused by the named rate limiter (promreg.Limiter*).
func (m *gatewayMetrics) limited(limiter string) {
	if m != nil {
		promreg.Inc(m.rateLimited, limiter)
	}
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
	if err := registerDiscovery(ctx.GetMetricsRegistry(), h.app.Discovery()); err != nil {
		return err
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

// observe counts a verdict of this handler and its duration.
func (h *Handler) observe(code string, elapsed time.Duration) {
	if h.metrics == nil {
		return
	}
	if h.series == nil { // a handler built by hand
		h.metrics.observe(h.serverName(), h.Resource, h.Require, code, elapsed)
		return
	}
	h.series.get(h.metrics, h.serverName(), h.Resource, h.Require, code).observe(elapsed)
}

// serverName is the server label of this handler's verdicts.
func (h *Handler) serverName() string { return h.server }

// discoveryCollector reports the counters of a discovery client (agent metadata, JWKS
// and auth-server documents) at scrape time. The client is kept across config reloads,
// so its counters only grow.
type discoveryCollector struct {
	client                          *discovery.Client
	fetches, hits, stale, documents *prometheus.Desc
}

func newDiscoveryCollector(c *discovery.Client) *discoveryCollector {
	name := func(n string) string { return prometheus.BuildFQName("caddy", "aauth", n) }
	return &discoveryCollector{
		client:    c,
		fetches:   prometheus.NewDesc(name("discovery_fetches_total"), "Discovery fetches (metadata and JWKS documents) by outcome: ok or error.", []string{"outcome"}, nil),
		hits:      prometheus.NewDesc(name("discovery_cache_hits_total"), "Discovery lookups answered from a fresh cached document.", nil, nil),
		stale:     prometheus.NewDesc(name("discovery_stale_served_total"), "Discovery lookups answered with a stale copy because a refresh failed or was slow.", nil, nil),
		documents: prometheus.NewDesc(name("discovery_cached_documents"), "Documents (and negative entries) in the discovery cache.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (d *discoveryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.fetches
	ch <- d.hits
	ch <- d.stale
	ch <- d.documents
}

// Collect implements prometheus.Collector.
func (d *discoveryCollector) Collect(ch chan<- prometheus.Metric) {
	s := d.client.Stats()
	ch <- prometheus.MustNewConstMetric(d.fetches, prometheus.CounterValue, float64(s.Fetches-s.FetchErrors), "ok")
	ch <- prometheus.MustNewConstMetric(d.fetches, prometheus.CounterValue, float64(s.FetchErrors), "error")
	ch <- prometheus.MustNewConstMetric(d.hits, prometheus.CounterValue, float64(s.CacheHits))
	ch <- prometheus.MustNewConstMetric(d.stale, prometheus.CounterValue, float64(s.StaleServed))
	ch <- prometheus.MustNewConstMetric(d.documents, prometheus.GaugeValue, float64(s.Entries))
}

// registerDiscovery adds the discovery client's counters to reg, once per registry (a
// config has one aauth app, hence one client).
func registerDiscovery(reg *prometheus.Registry, c *discovery.Client) error {
	if reg == nil || c == nil {
		return nil
	}
	_, err := promreg.Register(reg, prometheus.Collector(newDiscoveryCollector(c)))
	return err
}
