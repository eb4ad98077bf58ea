package authserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// TestExchange: R1 trades the auth token it received (upstream) and R2's resource token
// for a token for R2, in both forms, directly and after consent. The token has agent =
// R1, cnf = R1's key, aud = R2, the resource token's scope, the upstream sub and txn, no
// act, and exchange_depth 1.
func TestExchange(t *testing.T) {
	cases := []struct {
		name    string
		upMod   func(*token.Claims)
		rtTxn   string
		scope   string
		consent bool
		wantSub string
		wantTxn string
	}{
		{"direct", nil, "", "data.read", false, "alice", "txn-up"},
		{"direct, txn from the resource token when the upstream has none", func(c *token.Claims) { c.Txn = "" }, "txn-rt", "data.read", false, "alice", "txn-rt"},
		{"direct, upstream txn wins", nil, "txn-rt", "data.read data.write", false, "alice", "txn-up"},
		{"direct, no upstream user", func(c *token.Claims) { c.Subject = "" }, "", "data.read", false, "", "txn-up"},
		{"consent: sub stays the upstream user", nil, "", consentScope, true, "alice", "txn-up"},
		{"consent: no upstream user, the approver becomes sub", func(c *token.Claims) { c.Subject = "" }, "", consentScope, true, "bob", "txn-up"},
	}
	for _, form := range forms {
		for _, tc := range cases {
			t.Run(form+"/"+tc.name, func(t *testing.T) {
				c := newChain(t, nil)
				up := c.upstream(c.as1.Signer, tc.upMod)
				rt := c.rtFor(c.resource, c.r1, tc.scope, func(cl *token.Claims) { cl.Txn = tc.rtTxn })
				res := serve(t, c.h, c.exchangeRequest(form, c.r1, c.r1.Signer, up, exchangeBody(rt, up)))
				if tc.consent {
					res = c.approveExchange(t, res, tc.wantSub)
				}
				if res.Status != http.StatusOK {
					t.Fatalf("want 200, got %d %s", res.Status, res.Raw)
				}
				tok := verifyAuthTokenAt(t, c.h, res.str("auth_token"), c.resource.ID, c.now())
				cl := tok.Claims
				switch {
				case cl.Agent != c.r1.ID:
					t.Errorf("agent %q", cl.Agent)
				case cl.Confirmation.Key.Thumbprint != c.r1.Signer.Public.Thumbprint:
					t.Errorf("cnf is not R1's key")
				case cl.Scope != tc.scope:
					t.Errorf("scope %q", cl.Scope)
				case cl.Subject != tc.wantSub:
					t.Errorf("sub %q, want %q", cl.Subject, tc.wantSub)
				case cl.Txn != tc.wantTxn:
					t.Errorf("txn %q, want %q", cl.Txn, tc.wantTxn)
				case depthOf(tok) != "1":
					t.Errorf("exchange_depth %q", depthOf(tok))
				case cl.Extra["act"] != nil:
					t.Errorf("act present")
				}
			})
		}
	}
}

// approveExchange takes a 202 from an exchange through the consent page (bob approves;
// the page must show the call chain) and R1's poll, signed with jwks_uri and R1's key.
func (c *chain) approveExchange(t *testing.T, res result, onBehalfOf string) result {
	t.Helper()
	if res.Status != http.StatusAccepted {
		t.Fatalf("want 202, got %d %s", res.Status, res.Raw)
	}
	b := c.browser()
	page := b.login(res.str("code"), "bob")
	for _, want := range []string{"The service <code>" + c.r1.ID, "Original agent", c.agent.ID, c.as1.ID, "1 hop"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("consent page lacks %q:\n%s", want, page.Body)
		}
	}
	if onBehalfOf == "alice" && !strings.Contains(page.Body, "on behalf of <code>alice</code>") {
		t.Errorf("consent page does not name the upstream user:\n%s", page.Body)
	}
	b.decide(page, res.str("code"), "approve")
	id := strings.TrimPrefix(res.str("location"), testIssuer+PathPending)
	if other := c.poll(c.agent, id); other.Status != http.StatusForbidden {
		t.Errorf("the original agent polled R1's pending URL: %d", other.Status)
	}
	return c.poll(c.r1, id)
}

// TestExchangeRefusals: every refusal of a token exchange, in both forms; none issues a
// token.
func TestExchangeRefusals(t *testing.T) {
	type parts struct{ up, rt string }
	cases := []struct {
		name   string
		make   func(c *chain) parts
		status int
		code   string
		desc   string
		form   string // only in this form (empty: both)
	}{
		{"untrusted upstream issuer", func(c *chain) parts {
			return parts{c.upstream(c.rogue.Signer, func(cl *token.Claims) { cl.Issuer = c.rogue.ID }), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 400, "invalid_auth_token", "upstream issuer is not trusted", ""},
		{"upstream aud is not the resource token's agent", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, func(cl *token.Claims) { cl.Audience = token.Audience{"https://api9.example"} }), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 400, "invalid_auth_token", "aud is not the resource token's agent", ""},
		{"resource token not for this auth server", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, nil), c.rtFor(c.resource, c.r1, "data.read", func(cl *token.Claims) { cl.Audience = token.Audience{"https://as9.example"} })}
		}, 400, "invalid_resource_token", "not addressed to this auth server", ""},
		{"expired upstream", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, func(cl *token.Claims) {
				cl.IssuedAt, cl.Expiry = c.now().Add(-2*time.Hour).Unix(), c.now().Add(-time.Hour).Unix()
			}), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 400, "invalid_auth_token", "upstream token has expired", ""},
		{"upstream signed by another key", func(c *chain) parts {
			return parts{c.upstream(withKID(c.t, c.rogue.Signer, "as1-key"), nil), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 400, "invalid_auth_token", "signature", ""},
		{"upstream already at max depth", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, func(cl *token.Claims) {
				cl.Extra = map[string]json.RawMessage{ClaimExchangeDepth: json.RawMessage("3")}
			}), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 403, "denied", "token exchange chain is deeper than 3", ""},
		{"upstream exchange_depth not a number", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, func(cl *token.Claims) {
				cl.Extra = map[string]json.RawMessage{ClaimExchangeDepth: json.RawMessage(`"1"`)}
			}), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 400, "invalid_auth_token", "exchange_depth", ""},
		{"upstream is a self-access token", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, func(cl *token.Claims) { cl.Agent = "" }), c.rtFor(c.resource, c.r1, "data.read", nil)}
		}, 400, "invalid_auth_token", "no agent", ""},
		{"upstream is a resource token", func(c *chain) parts {
			rt := c.rtFor(c.resource, c.r1, "data.read", nil)
			return parts{rt, rt}
		}, 400, "invalid_auth_token", "not a valid auth token", formOwn},
		{"upstream is a resource token", func(c *chain) parts {
			rt := c.rtFor(c.resource, c.r1, "data.read", nil)
			return parts{rt, rt}
		}, 401, "invalid_agent_token", "needs an agent+jwt or auth+jwt token", formSeed},
		{"policy denies", func(c *chain) parts {
			return parts{c.upstream(c.as1.Signer, nil), c.rtFor(c.resource, c.r1, "data.read forbidden", nil)}
		}, 403, "denied", "policy denies", ""},
		{"resource token from a resource key it does not publish", func(c *chain) parts {
			cl := c.rtClaims()
			cl.Agent, cl.AgentJKT = c.r1.ID, c.r1.Signer.Public.Thumbprint
			return parts{c.upstream(c.as1.Signer, nil), c.mintRT(withKID(c.t, c.rogue.Signer, "res-key-1"), cl)}
		}, 400, "invalid_resource_token", "signature", ""},
	}
	for _, form := range forms {
		c := newChain(t, nil)
		for _, tc := range cases {
			if tc.form != "" && tc.form != form {
				continue
			}
			t.Run(form+"/"+tc.name, func(t *testing.T) {
				c.t = t
				p := tc.make(c)
				res := serve(t, c.h, c.exchangeRequest(form, c.r1, c.r1.Signer, p.up, exchangeBody(p.rt, p.up)))
				checkRefusal(t, res, tc.status, tc.code, tc.desc)
			})
		}
	}
}

// checkRefusal fails unless res is the expected refusal and carries no token.
func checkRefusal(t *testing.T, res result, status int, code, desc string) {
	t.Helper()
	if res.Status != status || res.str("error") != code || !strings.Contains(res.str("error_description"), desc) {
		t.Fatalf("got %d %s, want %d %s %q", res.Status, res.Raw, status, code, desc)
	}
	if _, ok := res.Body["auth_token"]; ok {
		t.Fatal("a token was issued")
	}
}

// TestExchangeSeedFormRefusals: refusals only form (ii) has: the request must be signed
// by the key the resource token's agent_jkt names, found in the caller's published JWKS,
// and the body must name the same upstream token.
func TestExchangeSeedFormRefusals(t *testing.T) {
	c := newChain(t, nil)
	other := genSigner(t, "r1-key")
	cases := []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
		desc   string
	}{
		{"signed by a key other than agent_jkt's", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			return c.exchangeRequest(formSeed, c.r1, other, up, exchangeBody(c.rtFor(c.resource, c.r1, "data.read", nil), up))
		}, 401, "invalid_signature", "agent_jkt"},
		{"agent_jkt of a key the caller does not publish", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			rt := c.rtFor(c.resource, c.r1, "data.read", func(cl *token.Claims) { cl.AgentJKT = other.Public.Thumbprint + "x" })
			return c.exchangeRequest(formSeed, c.r1, c.r1.Signer, up, exchangeBody(rt, up))
		}, 400, "invalid_resource_token", "agent_jkt"},
		{"agent_jkt not in the caller's JWKS", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			rt := c.rtFor(c.resource, c.r1, "data.read", func(cl *token.Claims) { cl.AgentJKT = genSigner(t, "k").Public.Thumbprint })
			return c.exchangeRequest(formSeed, c.r1, c.r1.Signer, up, exchangeBody(rt, up))
		}, 401, "unknown_key", "agent_jkt"},
		{"body names another upstream token", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			body := exchangeBody(c.rtFor(c.resource, c.r1, "data.read", nil), c.upstream(c.as1.Signer, nil))
			return c.exchangeRequest(formSeed, c.r1, c.r1.Signer, up, body)
		}, 400, "invalid_request", "differs"},
		{"body without upstream_token", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			return c.exchangeRequest(formSeed, c.r1, c.r1.Signer, up, body(c.rtFor(c.resource, c.r1, "data.read", nil)))
		}, 400, "invalid_request", "only for token exchange"},
		{"refresh with an auth token in Signature-Key", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			return c.exchangeRequest(formSeed, c.r1, c.r1.Signer, up, `{"auth_token":"x"}`)
		}, 400, "invalid_request", "only for token exchange"},
		{"untrusted issuer: the body is never read", func() *http.Request {
			up := c.upstream(c.rogue.Signer, func(cl *token.Claims) { cl.Issuer = c.rogue.ID })
			req := c.exchangeRequest(formSeed, c.r1, c.r1.Signer, up, exchangeBody("x", up))
			req.Body = panicBody{}
			return req
		}, 400, "invalid_auth_token", "not trusted"},
		{"signature outside the window", func() *http.Request {
			up := c.upstream(c.as1.Signer, nil)
			req := newRequest(http.MethodPost, PathToken, exchangeBody(c.rtFor(c.resource, c.r1, "data.read", nil), up))
			signWith(t, req, c.r1.Signer, jwtKey(up), c.now().Add(-5*time.Minute))
			return req
		}, 401, "invalid_signature", "window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkRefusal(t, serve(t, c.h, tc.req()), tc.status, tc.code, tc.desc)
		})
	}
}

// panicBody fails the test run if the handler reads the body.
type panicBody struct{}

func (panicBody) Read([]byte) (int, error) { panic("the body was read") }
func (panicBody) Close() error             { return nil }

// TestExchangeOwnFormRefusals: in form (i) the caller must be the resource token's agent
// with the key its agent_jkt names.
func TestExchangeOwnFormRefusals(t *testing.T) {
	c := newChain(t, nil)
	r9 := newParty(t, "r9-key")
	up := c.upstream(c.as1.Signer, nil)
	rt := c.rtFor(c.resource, c.r1, "data.read", nil)
	res := serve(t, c.h, c.exchangeRequest(formOwn, r9, r9.Signer, up, exchangeBody(rt, up)))
	checkRefusal(t, res, 400, "invalid_resource_token", "another agent")

	res = serve(t, c.h, c.exchangeRequest(formOwn, c.r1, c.r1.Signer, up, `{"upstream_token":"`+up+`"}`))
	checkRefusal(t, res, 400, "invalid_request", "needs resource_token")
	res = serve(t, c.h, c.exchangeRequest(formOwn, c.r1, c.r1.Signer, up, exchangeBody(rt, "")))
	checkRefusal(t, res, 400, "invalid_request", "upstream_token is empty")
}

// TestExchangeSeedFormResourceMetadataFallback: a caller that publishes only resource
// metadata (no aauth-agent document) is found through aauth-resource.json.
func TestExchangeSeedFormResourceMetadataFallback(t *testing.T) {
	c := newChain(t, nil)
	c.r1 = newOrigin(t, "aauth-resource", "resource", "r1-res-key")
	up := c.upstream(c.as1.Signer, nil)
	res := c.exchange(formSeed, up, "data.read")
	if res.Status != http.StatusOK {
		t.Fatalf("want 200, got %d %s", res.Status, res.Raw)
	}
	tok := verifyAuthTokenAt(t, c.h, res.str("auth_token"), c.resource.ID, c.now())
	if tok.Claims.Agent != c.r1.ID || tok.Claims.Confirmation.Key.Thumbprint != c.r1.Signer.Public.Thumbprint {
		t.Fatalf("claims %+v", tok.Claims)
	}

	// With consent, R1 polls with jwks_uri naming its resource metadata.
	res = c.exchange(formSeed, c.upstream(c.as1.Signer, nil), consentScope)
	if res.Status != http.StatusAccepted {
		t.Fatalf("want 202, got %d %s", res.Status, res.Raw)
	}
	c.browser().approve(res.str("code"), "bob")
	poll := httptest.NewRequest(http.MethodGet, res.str("location"), nil)
	signWith(t, poll, c.r1.Signer, sigKeyOf(c.r1, "aauth-resource.json"), c.now())
	if tok := c.authToken(serve(t, c.h, poll)); tok.Claims.Subject != "alice" || tok.Claims.Agent != c.r1.ID {
		t.Fatalf("after consent: %+v", tok.Claims)
	}
}

// TestExchangeChain: a chain of exchanges through this server (which trusts itself):
// R1 → R2 → R3 gives depths 1 and 2; with max_exchange_depth 2 the next hop is refused,
// and a refresh keeps the depth.
func TestExchangeChain(t *testing.T) {
	for _, form := range forms {
		t.Run(form, func(t *testing.T) {
			c := newChain(t, func(c *chain, h *Handler) {
				h.TrustIssuers = append(h.TrustIssuers, testIssuer)
				h.MaxExchangeDepth = 2
			})
			parties := []*origin{c.r1, newParty(t, "p2-key"), newParty(t, "p3-key"), newParty(t, "p4-key")}
			up := c.upstream(c.as1.Signer, nil)
			for hop := 1; hop < len(parties); hop++ {
				caller, next := parties[hop-1], parties[hop]
				rt := c.rtFor(next, caller, "data.read", nil)
				res := serve(t, c.h, c.exchangeRequest(form, caller, caller.Signer, up, exchangeBody(rt, up)))
				if hop == 3 {
					checkRefusal(t, res, 403, "denied", "token exchange chain is deeper than 2")
					return
				}
				if res.Status != http.StatusOK {
					t.Fatalf("hop %d: %d %s", hop, res.Status, res.Raw)
				}
				tok := verifyAuthTokenAt(t, c.h, res.str("auth_token"), next.ID, c.now())
				if got := depthOf(tok); got != string(rune('0'+hop)) || tok.Claims.Subject != "alice" || tok.Claims.Txn != "txn-up" || tok.Claims.Agent != caller.ID {
					t.Fatalf("hop %d: depth %q claims %+v", hop, got, tok.Claims)
				}
				up = res.str("auth_token")
			}
		})
	}
}
