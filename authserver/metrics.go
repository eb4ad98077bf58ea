package authserver

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/promreg"
)

// serverMetrics are the auth server's collectors in one Caddy metrics registry.
type serverMetrics struct {
	requests    *prometheus.CounterVec // kind, outcome, code
	consent     *prometheus.CounterVec // decision
	rateLimited *prometheus.CounterVec // limiter
}

// Consent outcomes in caddy_aauth_consent_decisions_total.
const (
	decisionApproved = "approved"
	decisionDenied   = "denied"
	decisionExpired  = "expired"
)

// newServerMetrics registers the collectors in reg (promreg.Register), and the gauge of
// undecided requests; a nil reg gives nil, on which every method does nothing. Every
// label is bounded by the code (kinds, outcomes, error codes, limiters) or by the
// configuration (issuers).
func newServerMetrics(reg *prometheus.Registry) (*serverMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &serverMetrics{}
	var err error
	if m.requests, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "token_requests_total",
		Help: "Token endpoint requests and terminal pending-URL answers, by kind (direct, consent, exchange, refresh, self; empty before it is known), outcome (issued, pending, refused) and error code (ok unless refused).",
	}, []string{"kind", "outcome", "code"})); err != nil {
		return nil, err
	}
	if m.consent, err = promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "aauth", Name: "consent_decisions_total",
		Help: "Consent requests decided: approved or denied by the user, or expired undecided (counted when the agent's poll finds it expired).",
	}, []string{"decision"})); err != nil {
		return nil, err
	}
	if m.rateLimited, err = promreg.RateLimited(reg); err != nil {
		return nil, err
	}
	if _, err := promreg.Register(reg, prometheus.Collector(newPendingCollector())); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *serverMetrics) tokenRequest(kind, outcome, code string) {
	if m != nil {
		m.requests.WithLabelValues(kind, outcome, code).Inc()
	}
}

func (m *serverMetrics) consentDecided(decision string) {
	if m != nil {
		m.consent.WithLabelValues(decision).Inc()
	}
}

func (m *serverMetrics) limited(limiter string) {
	if m != nil {
		promreg.Inc(m.rateLimited, limiter)
	}
}

// pendingCollector reports, at scrape time, the requests waiting for a user's decision
// per issuer: the places held in each issuer's admission record (admission.go), which
// every instance sharing the state counts in, so the value is the same on every
// instance. One read of a small record per issuer and scrape.
type pendingCollector struct{ desc *prometheus.Desc }

func newPendingCollector() *pendingCollector {
	return &pendingCollector{desc: prometheus.NewDesc(prometheus.BuildFQName("caddy", "aauth", "pending_requests"),
		"Token requests waiting for a user's decision, by issuer.", []string{"issuer"}, nil)}
}

// Describe implements prometheus.Collector.
func (p *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

// Collect implements prometheus.Collector.
func (p *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := time.Now().Unix()
	for _, s := range snapshotStores() {
		n, err := s.undecided(ctx, now)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(n), s.issuer)
	}
}
