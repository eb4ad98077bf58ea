package authserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
)

// TestSelfAccess: {"scope": …} without a resource token gives a token for the agent
// itself (aud = the agent, no agent claim, cnf = the signing key), directly when the
// policy allows it, after the user's consent when it asks, and at once while a
// remembered decision covers it.
func TestSelfAccess(t *testing.T) {
	cases := []struct {
		name    string
		scope   string
		consent bool // the policy asks the user (alice approves, remembering)
	}{
		{"direct", "data.read", false},
		{"direct, scope normalised", "  data.read   data.write ", false},
		{"consent", consentScope, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain(t, nil)
			res := serve(t, c.h, c.signedRequest(`{"scope":"`+tc.scope+`"}`))
			wantSub := ""
			if tc.consent {
				if res.Status != http.StatusAccepted || res.str("code") == "" {
					t.Fatalf("want 202, got %d %s", res.Status, res.Raw)
				}
				b := c.browser()
				page := b.login(res.str("code"), "alice")
				if !strings.Contains(page.Body, "asks for access to itself") || !strings.Contains(page.Body, "(the agent itself)") {
					t.Errorf("consent page does not say the agent asks for itself:\n%s", page.Body)
				}
				b.decide(page, res.str("code"), "approve", "remember", "1")
				res = c.poll(c.agent, strings.TrimPrefix(res.str("location"), testIssuer+PathPending))
				wantSub = "alice"
			}
			if res.Status != http.StatusOK {
				t.Fatalf("want 200, got %d %s", res.Status, res.Raw)
			}
			cl := ownToken(t, c.h, res.str("auth_token")).Claims
			switch {
			case len(cl.Audience) != 1 || cl.Audience[0] != c.agent.ID:
				t.Errorf("aud %v", cl.Audience)
			case cl.Agent != "":
				t.Errorf("self-access token has agent %q", cl.Agent)
			case cl.Scope != strings.Join(strings.Fields(tc.scope), " "):
				t.Errorf("scope %q", cl.Scope)
			case cl.Subject != wantSub:
				t.Errorf("sub %q", cl.Subject)
			case cl.Confirmation.Key.Thumbprint != c.agent.Signer.Public.Thumbprint:
				t.Errorf("cnf")
			case len(cl.Extra) != 0:
				t.Errorf("extra claims %v", cl.Extra)
			}
			if tc.consent { // the remembered decision now covers the same request
				again := serve(t, c.h, c.signedRequest(`{"scope":"`+tc.scope+`"}`))
				if again.Status != http.StatusOK || ownToken(t, c.h, again.str("auth_token")).Claims.Subject != "alice" {
					t.Fatalf("remembered: %d %s", again.Status, again.Raw)
				}
			}
		})
	}
}

// TestSelfAccessRefusals: every refusal of a self-access request.
func TestSelfAccessRefusals(t *testing.T) {
	c := newChain(t, nil)
	hwk := func(body string) *http.Request {
		req := newRequest(http.MethodPost, PathToken, body)
		m := c.agent.Signer.Public.Members()
		signWith(t, req, c.agent.Signer, httpsig.SigKey{Scheme: httpsig.SchemeHWK, Params: []httpsig.Param{
			{Name: "kty", Value: m["kty"].(string)}, {Name: "crv", Value: m["crv"].(string)}, {Name: "x", Value: m["x"].(string)}}}, c.now())
		return req
	}
	cases := []struct {
		name   string
		req    *http.Request
		status int
		code   string
		desc   string
	}{
		{"pseudonymous agent (hwk)", hwk(`{"scope":"data.read"}`), 401, "invalid_signature", "identified agent"},
		{"empty scope", c.signedRequest(`{"scope":""}`), 400, "invalid_request", "scope is empty"},
		{"scope with control characters", c.signedRequest(`{"scope":"data.read\u0001"}`), 400, "invalid_request", "printable ASCII"},
		{"scope too long", c.signedRequest(`{"scope":"` + strings.Repeat("a", 1025) + `"}`), 400, "invalid_request", "longer than 1024"},
		{"policy denies", c.signedRequest(`{"scope":"forbidden"}`), 403, "denied", "policy denies"},
		{"policy default deny", c.signedRequest(`{"scope":"admin"}`), 403, "denied", "policy denies"},
		{"signature outside window", func() *http.Request {
			req := newRequest(http.MethodPost, PathToken, `{"scope":"data.read"}`)
			signWith(t, req, c.agent.Signer, jwksKey(c.agent), c.now().Add(-5*time.Minute))
			return req
		}(), 401, "invalid_signature", "window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := serve(t, c.h, tc.req)
			if res.Status != tc.status || res.str("error") != tc.code || !strings.Contains(res.str("error_description"), tc.desc) {
				t.Fatalf("got %d %s, want %d %s %q", res.Status, res.Raw, tc.status, tc.code, tc.desc)
			}
		})
	}
}
