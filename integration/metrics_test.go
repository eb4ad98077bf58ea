package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// decisionConfig is the gateway of gatewayConfig with Caddy's metrics on and the aauth
// handler's log lines written as JSON to logFile.
func decisionConfig(t *testing.T, backend *echoBackend, logFile string) string {
	opts := strings.Replace(globalOptions(t, true), "skip_install_trust", fmt.Sprintf(`skip_install_trust
	metrics
	log aauth {
		output file %s
		format json
		level DEBUG
		include http.handlers.aauth
	}`, logFile), 1)
	return opts + fmt.Sprintf(`
http://api.localhost:9080 {
	aauth /pseudo/* {
		require pseudonym
	}
	aauth /ident/* {
		require identity
	}
	reverse_proxy %s
}
`, backend.addr())
}

// TestDecisionLogAndMetrics drives a running Caddy: a pass, an unsigned request and an
// hwk request on an identity route move caddy_aauth_verdicts_total on the admin
// /metrics by code, and the refused requests each leave one JSON line in the log with
// their fields and without the signature or the Signature-Key value.
func TestDecisionLogAndMetrics(t *testing.T) {
	backend := newEchoBackend(t)
	logFile := filepath.Join(t.TempDir(), "aauth.log")
	caddytest.NewTester(t).InitServer(decisionConfig(t, backend, logFile), "caddyfile")
	cred, s := hwkCredential(t)
	hwk := agentClient(&agent.Transport{Pseudonym: cred})
	get(t, hwk, api+"/pseudo/data").mustStatus(t, http.StatusOK)
	get(t, plainClient(), api+"/pseudo/data").mustStatus(t, http.StatusUnauthorized)
	refused := signed(t, http.MethodGet, api+"/ident/data", s, httpsig.SignOptions{})
	sig, sigKey := refused.Header.Get("Signature"), refused.Header.Get("Signature-Key")
	do(t, plainClient(), refused).mustStatus(t, http.StatusUnauthorized)

	m := scrape(t)
	for _, want := range []string{
		`caddy_aauth_verdicts_total{code="ok",require="pseudonym",resource="",server="srv0"} 1`,
		`caddy_aauth_verdicts_total{code="invalid_request",require="pseudonym",resource="",server="srv0"} 1`,
		`caddy_aauth_verdicts_total{code="identity_required",require="identity",resource="",server="srv0"} 1`,
		`caddy_aauth_verify_duration_seconds_count{require="identity",server="srv0"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	lines := decisionLines(t, logFile)
	if len(lines) != 3 {
		t.Fatalf("%d decision lines, want 3: %v", len(lines), lines)
	}
	f := lines[2]
	if f["msg"] != "aauth refused" || f["level"] != "info" || f["error"] != "identity_required" || f["require"] != "identity" ||
		f["scheme"] != "hwk" || f["verified_level"] != "pseudonym" || f["agent"] != nil || f["jkt"] != s.Public.Thumbprint || f["remote_ip"] != "127.0.0.1" || f["resource"] != "https://api.localhost:9080" {
		t.Errorf("refusal line %v", f)
	}
	if _, ok := f["duration"].(float64); !ok {
		t.Errorf("duration %v", f["duration"])
	}
	raw, _ := os.ReadFile(logFile)
	if strings.Contains(string(raw), sig) || strings.Contains(string(raw), sigKey) {
		t.Fatal("the log carries a signature or Signature-Key value")
	}
	discoveryOutcomes(t)
	signatureRefusals(t, s)
	keyRefusals(t, s)
}

// keyRefusals: a request refused for its key or agent token moves the verdicts counter
// of the code it was answered with, one code per case.
func keyRefusals(t *testing.T, s *keys.Signer) {
	agentSrv := newAgentServer(t)
	stranger, _ := keys.Generate(keys.AlgEd25519, "not-in-the-jwks")
	cases := []struct {
		name, url, code string
		build           func(req *http.Request) error
	}{
		{"inline key that is not a key", api + "/pseudo/data", "invalid_key", func(req *http.Request) error {
			if err := httpsig.Sign(req, s, agent.HWK(s).SigKey(), httpsig.SignOptions{}); err != nil {
				return err
			}
			req.Header.Set("Signature-Key", `sig=hwk;kty="OKP";crv="Ed25519";x="AAAA"`)
			return nil
		}},
		{"alg parameter that does not match the key", api + "/pseudo/data", "unsupported_algorithm", func(req *http.Request) error {
			if err := httpsig.Sign(req, s, agent.HWK(s).SigKey(), httpsig.SignOptions{}); err != nil {
				return err
			}
			req.Header.Set("Signature-Input", req.Header.Get("Signature-Input")+`;alg="hmac-sha256"`)
			return nil
		}},
		{"jwks_uri kid the agent does not publish", api + "/ident/data", "unknown_key", func(req *http.Request) error {
			return httpsig.Sign(req, stranger, agent.JWKSURI(stranger, agentSrv.id).SigKey(), httpsig.SignOptions{})
		}},
		{"agent token that is not a JWT", api + "/ident/data", "invalid_agent_token", func(req *http.Request) error {
			return httpsig.Sign(req, s, agent.Delegate(s, "not.a.jwt").SigKey(), httpsig.SignOptions{})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			series := func() float64 { return verdictsOf(scrape(t), c.code) }
			before := series()
			req, _ := http.NewRequest(http.MethodGet, c.url, nil)
			if err := c.build(req); err != nil {
				t.Fatal(err)
			}
			res := do(t, plainClient(), req)
			if res.status != http.StatusUnauthorized || res.errorCode(t) != c.code {
				t.Fatalf("status %d body %s, want 401 %s", res.status, res.body, c.code)
			}
			if after := series(); after != before+1 {
				t.Fatalf("verdicts of %s went from %v to %v, want +1", c.code, before, after)
			}
		})
	}
}

// signatureRefusals: a signature that does not verify and one created outside the
// window are refused, each moving the verdicts counter of the code it was answered
// with.
func signatureRefusals(t *testing.T, s *keys.Signer) {
	tampered := signed(t, http.MethodGet, api+"/pseudo/data", s, httpsig.SignOptions{})
	sig := tampered.Header.Get("Signature")
	i := strings.Index(sig, ":") + 1
	flip := byte('A')
	if sig[i] == 'A' {
		flip = 'B'
	}
	tampered.Header.Set("Signature", sig[:i]+string(flip)+sig[i+1:])
	stale := signed(t, http.MethodGet, api+"/pseudo/data", s, httpsig.SignOptions{Created: time.Now().Add(-time.Hour)})
	for name, req := range map[string]*http.Request{"tampered": tampered, "stale": stale} {
		res := do(t, plainClient(), req).mustStatus(t, http.StatusUnauthorized)
		code := res.errorCode(t)
		t.Logf("%s signature: %s", name, code)
		series := fmt.Sprintf(`caddy_aauth_verdicts_total{code=%q,require="pseudonym",resource="",server="srv0"}`, code)
		if v := metricValue(scrape(t), series); v < 1 {
			t.Errorf("%s signature (%s): %s = %v", name, code, series, v)
		}
	}
}

// discoveryOutcomes: a jwks_uri agent whose documents are served counts a good fetch;
// one whose server is gone counts a failed fetch and a temporarily_unavailable verdict.
func discoveryOutcomes(t *testing.T) {
	agentSrv := newAgentServer(t)
	tr := &agent.Transport{Identity: agent.JWKSURI(agentSrv.signer, agentSrv.id)}
	get(t, agentClient(tr), api+"/ident/data").mustStatus(t, http.StatusOK)
	gone := newAgentServer(t)
	gone.Close()
	tr = &agent.Transport{Identity: agent.JWKSURI(gone.signer, gone.id)}
	get(t, agentClient(tr), api+"/ident/data").mustStatus(t, http.StatusServiceUnavailable)
	// The agent library retries a 503 after its Retry-After: the failure counts are
	// one per attempt.
	m := scrape(t)
	for series, least := range map[string]float64{
		`caddy_aauth_discovery_fetches_total{outcome="ok"}`:                                                       2, // metadata and JWKS
		`caddy_aauth_discovery_fetches_total{outcome="error"}`:                                                    1,
		`caddy_aauth_verdicts_total{code="temporarily_unavailable",require="identity",resource="",server="srv0"}`: 1,
		`caddy_aauth_verdicts_total{code="ok",require="identity",resource="",server="srv0"}`:                      1,
	} {
		if v := metricValue(m, series); v < least {
			t.Errorf("%s = %v, want at least %v", series, v, least)
		}
	}
}

// metricValue is the value of one series in a /metrics text exposition, -1 if absent.
func metricValue(exposition, series string) float64 {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

func scrape(t *testing.T) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// decisionLines are the aauth passed/refused lines of the JSON log file.
func decisionLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var f map[string]any
		if json.Unmarshal([]byte(l), &f) == nil && (f["msg"] == "aauth passed" || f["msg"] == "aauth refused") {
			out = append(out, f)
		}
	}
	return out
}
