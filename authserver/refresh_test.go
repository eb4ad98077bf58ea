package authserver

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// TestRefresh: an expired token presented by its cnf key within the refresh window
// gives a fresh token for the same grant: same agent, delegate, aud, scope, sub, txn,
// exchange_depth and cnf; new jti, iat and exp.
func TestRefresh(t *testing.T) {
	cases := []struct {
		name string
		get  func(c *chain) (raw string, by *origin) // a token and who holds it
	}{
		{"direct grant", func(c *chain) (string, *origin) {
			return c.directToken(), c.agent
		}},
		{"remembered consent", func(c *chain) (string, *origin) {
			return c.consentToken(true), c.agent
		}},
		{"self-access", func(c *chain) (string, *origin) {
			res := serve(c.t, c.h, c.signedRequest(`{"scope":"data.read"}`))
			return c.ok(res), c.agent
		}},
		{"token exchange", func(c *chain) (string, *origin) {
			return c.ok(c.exchange(formSeed, c.upstream(c.as1.Signer, nil), "data.read")), c.r1
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain(t, nil)
			raw, by := tc.get(c)
			old := ownToken(t, c.h, raw)
			c.advance(time.Hour + 10*time.Minute) // expired
			res := serve(t, c.h, c.refreshRequest(by, raw))
			if res.Status != http.StatusOK {
				t.Fatalf("refresh: %d %s", res.Status, res.Raw)
			}
			nt := ownToken(t, c.h, res.str("auth_token"))
			o, n := old.Claims, nt.Claims
			switch {
			case n.Agent != o.Agent || n.AgentDelegate != o.AgentDelegate || n.Subject != o.Subject || n.Scope != o.Scope || n.Txn != o.Txn:
				t.Errorf("grant changed: %+v -> %+v", o, n)
			case len(n.Audience) != 1 || n.Audience[0] != o.Audience[0]:
				t.Errorf("aud %v -> %v", o.Audience, n.Audience)
			case n.Confirmation.Key.Thumbprint != o.Confirmation.Key.Thumbprint:
				t.Errorf("cnf changed")
			case depthOf(nt) != depthOf(old):
				t.Errorf("exchange_depth %q -> %q", depthOf(old), depthOf(nt))
			case n.ID == o.ID || n.IssuedAt != c.now().Unix() || n.Expiry != c.now().Add(time.Hour).Unix():
				t.Errorf("jti/iat/exp not fresh: %+v", n)
			}
		})
	}
}

// TestRefreshRefusals: every refusal of a refresh; none issues a token.
func TestRefreshRefusals(t *testing.T) {
	for _, tc := range refreshRefusals {
		t.Run(tc.name, func(t *testing.T) {
			c := newChain(t, tc.cfg)
			checkRefusal(t, tc.run(c), tc.status, tc.code, tc.desc)
		})
	}
}

// refreshRefusals are the cases of TestRefreshRefusals: each runs in a fresh chain env
// whose config cfg adjusts.
var refreshRefusals = []struct {
	name   string
	cfg    func(c *chain, h *Handler)
	run    func(c *chain) result
	status int
	code   string
	desc   string
}{
	{"key other than cnf", nil, func(c *chain) result {
		raw := c.directToken()
		c.advance(2 * time.Hour)
		return serve(c.t, c.h, c.refreshRequest(c.other, raw))
	}, 400, "invalid_auth_token", "key other than"},
	{"after the window", nil, func(c *chain) result {
		raw := c.directToken()
		c.advance(time.Hour + DefaultRefreshWindow)
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 400, "invalid_auth_token", "refresh window"},
	{"after a configured window", func(_ *chain, h *Handler) { h.RefreshWindow = 600_000_000_000 }, func(c *chain) result {
		raw := c.directToken()
		c.advance(time.Hour + 10*time.Minute)
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 400, "invalid_auth_token", "refresh window"},
	{"refresh off", func(_ *chain, h *Handler) { h.RefreshOff = true }, func(c *chain) result {
		raw := c.directToken()
		c.advance(2 * time.Hour)
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 400, "invalid_auth_token", "does not refresh"},
	{"after revocation", nil, func(c *chain) result {
		raw := c.consentToken(true)
		c.advance(2 * time.Hour)
		c.revokeAll()
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 403, "denied", "the grant was revoked"},
	{"consent without a remembered decision", nil, func(c *chain) result {
		raw := c.consentToken(false)
		c.advance(2 * time.Hour)
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 403, "denied", "the grant was revoked"},
	{"second refresh of the same token", nil, func(c *chain) result {
		raw := c.directToken()
		c.advance(2 * time.Hour)
		c.ok(serve(c.t, c.h, c.refreshRequest(c.agent, raw)))
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 400, "invalid_auth_token", "already refreshed"},
	{"token from another issuer", nil, func(c *chain) result {
		raw := c.upstream(c.as1.Signer, func(cl *token.Claims) {
			cl.Audience, cl.Agent = token.Audience{c.resource.ID}, c.agent.ID
		})
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 400, "invalid_auth_token", "not issued by this auth server"},
	{"our iss, another key", nil, func(c *chain) result {
		raw := c.forged(withKID(c.t, c.rogue.Signer, asKey(c.t, c.h).KID))
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 400, "invalid_auth_token", "not signed by this auth server's key"},
	{"another agent with the same key", nil, func(c *chain) result {
		raw := c.directToken()
		twin := newOrigin(c.t, "aauth-agent", "agent", "agent-key-1")
		twin.Signer = c.agent.Signer
		return serve(c.t, c.h, c.refreshRequest(twin, raw))
	}, 400, "invalid_auth_token", "another agent"},
	{"policy now denies", nil, func(c *chain) result {
		raw := c.directToken()
		c.advance(2 * time.Hour)
		c.serve(c.handler(Handler{Issuer: testIssuer, Policy: &Policy{Default: EffectDeny}}, c.store))
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 403, "denied", "policy denies"},
	{"policy now asks the user about a token without sub", nil, func(c *chain) result {
		raw := c.directToken()
		c.advance(2 * time.Hour)
		c.serve(c.handler(Handler{Issuer: testIssuer, Policy: &Policy{Default: EffectConsent}}, c.store))
		return serve(c.t, c.h, c.refreshRequest(c.agent, raw))
	}, 403, "denied", "asks the user"},
	{"combined with a resource token", nil, func(c *chain) result {
		return serve(c.t, c.h, c.signedRequest(`{"auth_token":"x","resource_token":"y"}`))
	}, 400, "invalid_request", "cannot be combined"},
	{"empty", nil, func(c *chain) result {
		return serve(c.t, c.h, c.signedRequest(`{"auth_token":""}`))
	}, 400, "invalid_request", "auth_token is empty"},
}

// ok returns the token of a 200 answer.
func (c *chain) ok(res result) string {
	c.t.Helper()
	if res.Status != http.StatusOK {
		c.t.Fatalf("want 200, got %d %s", res.Status, res.Raw)
	}
	return res.str("auth_token")
}

// directToken is a token the policy grants directly to the env's agent.
func (c *chain) directToken() string {
	c.t.Helper()
	return c.ok(c.tokenRequest(c.agent, "data.read", ""))
}

// consentToken is a token alice approved for the env's agent (remembering the decision
// or not).
func (c *chain) consentToken(remember bool) string {
	c.t.Helper()
	id, code := c.pending(c.agent, "")
	if remember {
		c.browser().approve(code, "alice", "remember", "1")
	} else {
		c.browser().approve(code, "alice")
	}
	raw := c.ok(c.poll(c.agent, id))
	if sub := ownToken(c.t, c.h, raw).Claims.Subject; sub != "alice" || !strings.Contains(raw, ".") {
		c.t.Fatalf("sub %q", sub)
	}
	return raw
}

// forged is an auth token with this server's iss, signed by s.
func (c *chain) forged(s *keys.Signer) string {
	c.t.Helper()
	raw, err := token.Mint(s, token.TypAuth, token.Claims{
		Issuer: testIssuer, Audience: token.Audience{c.resource.ID}, ID: token.NewID(),
		IssuedAt: c.now().Unix(), Expiry: c.now().Add(time.Hour).Unix(), Agent: c.agent.ID, Scope: "data.read",
		Confirmation: &token.Confirmation{Key: c.agent.Signer.Public},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return raw
}

// TestRefreshAfterRotation: after a key rotation the new key signs, both keys are in
// the JWKS, and a token signed by the old key can still be refreshed; a token naming the
// old kid but signed by another key cannot.
func TestRefreshAfterRotation(t *testing.T) {
	c := newChain(t, func(_ *chain, h *Handler) { h.KeyPublishDelay = caddy.Duration(time.Millisecond) })
	raw := c.directToken()
	old := ownToken(t, c.h, raw)
	rot, err := c.h.key.Rotate(context.Background())
	if err != nil || rot.OldKID != old.Header.Kid {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	time.Sleep(10 * time.Millisecond) // the publish delay
	res := serve(t, c.h, newRequest(http.MethodGet, PathJWKS, ""))
	if !strings.Contains(string(res.Raw), `"kid":"`+rot.OldKID+`"`) || !strings.Contains(string(res.Raw), `"kid":"`+rot.NewKID+`"`) {
		t.Fatalf("JWKS after rotation: %s", res.Raw)
	}
	forged := old.Claims
	forged.ID = token.NewID()
	other := genSigner(t, rot.OldKID)
	fake, err := token.Mint(other, token.TypAuth, forged)
	if err != nil {
		t.Fatal(err)
	}
	c.advance(time.Hour + 10*time.Minute) // expired
	checkRefusal(t, serve(t, c.h, c.refreshRequest(c.agent, fake)), 400, "invalid_auth_token", "not signed by this auth server's key")
	res = serve(t, c.h, c.refreshRequest(c.agent, raw))
	if res.Status != http.StatusOK {
		t.Fatalf("refresh of a token of the retired key: %d %s", res.Status, res.Raw)
	}
	nt, err := token.Parse(res.str("auth_token"), token.TypAuth)
	if err != nil || nt.Header.Kid != rot.NewKID {
		t.Fatalf("the refreshed token is not signed by the new key: %v", err)
	}
	pub, _ := c.h.key.Lookup(context.Background(), rot.NewKID)
	if err := nt.VerifySignature(pub); err != nil {
		t.Fatal(err)
	}
}
