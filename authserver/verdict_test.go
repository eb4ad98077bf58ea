package authserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// observe gives h an observed logger and a registry of its own.
func observe(t *testing.T, h *Handler) (*observer.ObservedLogs, *serverMetrics) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	m, err := newServerMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h.metrics = m
	return logs, m
}

// TestTokenVerdictLines: an issued token and a refused request each leave one Info line
// with the outcome, kind, agent, resource, scope, code and duration, without the token,
// and move caddy_aauth_token_requests_total.
func TestTokenVerdictLines(t *testing.T) {
	e := newEnv(t)
	logs, m := observe(t, e.h)
	res := serve(t, e.h, e.signedRequest(body(e.mintRT(e.resource.Signer, e.rtClaims()))))
	if res.Status != http.StatusOK {
		t.Fatalf("token request: %d %s", res.Status, res.Raw)
	}
	if r := serve(t, e.h, newRequest(http.MethodPost, PathToken, `{}`)); r.Status != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", r.Status)
	}
	lines := logs.FilterMessageSnippet("aauth token").All()
	if len(lines) != 2 || lines[0].Message != "aauth token issued" || lines[1].Message != "aauth token refused" {
		t.Fatalf("lines %v", lines)
	}
	f := lines[0].ContextMap()
	if lines[0].Level != zapcore.InfoLevel || f["kind"] != kindDirect || f["agent"] != e.agent.ID || f["resource"] != e.resource.ID ||
		f["scope"] != "data.read data.write" || f["error"] != "ok" || f["endpoint"] != "token" || f["duration"] == nil {
		t.Errorf("issued line %v", f)
	}
	if f := lines[1].ContextMap(); f["error"] != "invalid_signature" || f["status"] != int64(401) || f["agent"] != nil {
		t.Errorf("refused line %v", f)
	}
	for _, l := range lines {
		for k, v := range l.ContextMap() {
			if s, _ := v.(string); strings.Contains(s, res.str("auth_token")) || strings.HasPrefix(s, "eyJ") {
				t.Errorf("field %s carries a token: %q", k, s)
			}
		}
	}
	if v := counterValue(m.requests.WithLabelValues(kindDirect, outcomeIssued, "ok")); v != 1 {
		t.Errorf("issued direct = %v", v)
	}
	if v := counterValue(m.requests.WithLabelValues("", outcomeRefused, "invalid_signature")); v != 1 {
		t.Errorf("refused invalid_signature = %v", v)
	}
}

// TestRateLimitedCounted: a poll over the pending URL's bound is a 429 counted under
// limiter pending_poll; the polls before it count nothing.
func TestRateLimitedCounted(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, m := observe(t, c.h)
	id, _ := c.pending(c.agent, "")
	for range maxUsedSigs {
		c.poll(c.agent, id)
	}
	counter := m.rateLimited.WithLabelValues("pending_poll")
	if v := counterValue(counter); v != 0 {
		t.Fatalf("before the bound: %v", v)
	}
	if res := c.poll(c.agent, id); res.Status != http.StatusTooManyRequests {
		t.Fatalf("poll over the bound: %d", res.Status)
	}
	if v := counterValue(counter); v != 1 {
		t.Fatalf("rate_limited_total{limiter=pending_poll} = %v", v)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return -1
	}
	return d.GetCounter().GetValue()
}

// TestConsentOutcomesCounted: a denial, an approval and an expiry each count once under
// their decision; the token endpoint's 202s count as pending and the poll's answers as
// issued or refused (denied, expired).
func TestConsentOutcomesCounted(t *testing.T) {
	c := newConsentEnv(t, nil)
	_, m := observe(t, c.h)
	denied, dcode := c.pending(c.agent, "")
	approved, acode := c.pending(c.agent, "")
	expiring, _ := c.pending(c.agent, "")
	b := c.browser()
	b.decide(b.login(dcode, "alice"), dcode, "deny")
	c.browser().approve(acode, "bob")
	if r := c.poll(c.agent, denied); r.Status != http.StatusForbidden {
		t.Fatalf("denied poll: %d", r.Status)
	}
	if r := c.poll(c.agent, approved); r.Status != http.StatusOK {
		t.Fatalf("approved poll: %d", r.Status)
	}
	c.advance(10*time.Minute + time.Second)
	if r := c.poll(c.agent, expiring); r.Status != http.StatusRequestTimeout {
		t.Fatalf("expired poll: %d", r.Status)
	}
	for _, d := range []string{decisionApproved, decisionDenied, decisionExpired} {
		if v := counterValue(m.consent.WithLabelValues(d)); v != 1 {
			t.Errorf("consent_decisions_total{decision=%s} = %v", d, v)
		}
	}
	for labels, want := range map[[3]string]float64{
		{kindConsent, outcomePending, "ok"}:      3,
		{kindConsent, outcomeIssued, "ok"}:       1,
		{kindConsent, outcomeRefused, "denied"}:  1,
		{kindConsent, outcomeRefused, "expired"}: 1,
	} {
		if v := counterValue(m.requests.WithLabelValues(labels[:]...)); v != want {
			t.Errorf("token_requests_total%v = %v, want %v", labels, v, want)
		}
	}
}

// TestTokenRateLimitCounted: the agent's second token request within the window is a
// 429 counted under limiter token.
func TestTokenRateLimitCounted(t *testing.T) {
	e := newEnv(t)
	h := e.handler(Handler{Issuer: testIssuer, Policy: testPolicy(), TokenRateLimit: &RateLimit{Requests: 1, Window: caddy.Duration(time.Minute)}}, e.store)
	_, m := observe(t, h)
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests} {
		if r := serve(t, h, e.signedRequest(body(e.mintRT(e.resource.Signer, e.rtClaims())))); r.Status != want {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if v := counterValue(m.rateLimited.WithLabelValues("token")); v != 1 {
		t.Fatalf("rate_limited_total{limiter=token} = %v", v)
	}
	if v := counterValue(m.requests.WithLabelValues(kindDirect, outcomeIssued, "ok")); v != 1 {
		t.Fatalf("issued = %v", v)
	}
}
