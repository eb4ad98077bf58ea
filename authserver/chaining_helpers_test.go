package authserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// Token exchange forms (draft-hardt-aauth §4.5.8): (i) the caller signs with its own
// identity (jwks_uri); (ii) Signature-Key carries the upstream token.
const (
	formOwn  = "form (i)"
	formSeed = "form (ii)"
)

var forms = []string{formOwn, formSeed}

// chain is a consentEnv for call chaining: an upstream auth server the handler trusts
// (as1), one it does not (rogue), and a resource R1 that also acts as an agent (r1). The
// env's resource is R2.
type chain struct {
	*consentEnv
	as1, rogue *origin
	r1         *origin
}

// newChain builds a chain env; mod adjusts the handler config (whose TrustIssuers holds
// as1).
func newChain(t *testing.T, mod func(c *chain, h *Handler)) *chain {
	t.Helper()
	c := &chain{
		as1:   newOrigin(t, "aauth-issuer", "issuer", "as1-key"),
		rogue: newOrigin(t, "aauth-issuer", "issuer", "rogue-key"),
		r1:    newParty(t, "r1-key"),
	}
	cfg := Handler{Issuer: testIssuer, Policy: testPolicy(), TrustIssuers: []string{c.as1.ID}}
	if mod != nil {
		mod(c, &cfg)
	}
	c.consentEnv = newConsentEnv(t, &cfg)
	return c
}

// newParty is a loopback origin that is both an agent and a resource: it publishes
// aauth-agent and aauth-resource metadata with one JWKS (one key).
func newParty(t testing.TB, kid string) *origin {
	t.Helper()
	o := &origin{Signer: genSigner(t, kid)}
	mux := http.NewServeMux()
	for doc, member := range map[string]string{"aauth-agent": "agent", "aauth-resource": "resource"} {
		mux.HandleFunc("/.well-known/"+doc+".json", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{member: o.ID, "jwks_uri": o.ID + "/jwks.json"})
		})
	}
	mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(keystore.JWKS(o.Signer.Public))
	})
	o.srv = httptest.NewServer(mux)
	t.Cleanup(o.srv.Close)
	o.ID = o.srv.URL
	return o
}

// upstream is an auth token from as1 (signed by s) for R1, issued to the env's agent for
// alice, as R1 received it; mod changes the claims.
func (c *chain) upstream(s *keys.Signer, mod func(*token.Claims)) string {
	c.t.Helper()
	now := c.now()
	cl := token.Claims{
		Issuer: c.as1.ID, Audience: token.Audience{c.r1.ID}, ID: token.NewID(),
		IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(),
		Agent: c.agent.ID, Subject: "alice", Scope: "api1.read", Txn: "txn-up",
		Confirmation: &token.Confirmation{Key: c.agent.Signer.Public},
	}
	if mod != nil {
		mod(&cl)
	}
	raw, err := token.Mint(s, token.TypAuth, cl)
	if err != nil {
		c.t.Fatal(err)
	}
	return raw
}

// rtFor is a resource token of resource res (signed with its key) for caller, scope.
func (c *chain) rtFor(res, caller *origin, scope string, mod func(*token.Claims)) string {
	c.t.Helper()
	cl := c.rtClaims()
	cl.Issuer, cl.Agent, cl.AgentJKT, cl.Scope = res.ID, caller.ID, caller.Signer.Public.Thumbprint, scope
	cl.IssuedAt, cl.Expiry = c.now().Unix(), c.now().Add(5*time.Minute).Unix()
	if mod != nil {
		mod(&cl)
	}
	return c.mintRT(res.Signer, cl)
}

// exchangeBody is {"resource_token": rt, "upstream_token": up}.
func exchangeBody(rt, up string) string {
	return fmt.Sprintf(`{"resource_token":%q,"upstream_token":%q}`, rt, up)
}

// exchangeRequest is a token request with body, signed by by's key: in form (i) with its
// jwks_uri identity, in form (ii) with up in Signature-Key.
func (c *chain) exchangeRequest(form string, by *origin, signer *keys.Signer, up, body string) *http.Request {
	c.t.Helper()
	req := newRequest(http.MethodPost, PathToken, body)
	key := jwksKey(by)
	if form == formSeed {
		key = jwtKey(up)
	}
	signWith(c.t, req, signer, key, c.now())
	return req
}

// exchange runs an exchange by R1 of up for a resource token of R2 for scope.
func (c *chain) exchange(form, up, scope string) result {
	c.t.Helper()
	rt := c.rtFor(c.resource, c.r1, scope, nil)
	return serve(c.t, c.h, c.exchangeRequest(form, c.r1, c.r1.Signer, up, exchangeBody(rt, up)))
}

// ownToken parses a token this server issued and checks its signature (self-access
// tokens have no agent claim, which token.VerifyAuthToken requires).
func ownToken(t *testing.T, h *Handler, raw string) *token.Token {
	t.Helper()
	tok, err := token.Parse(raw, token.TypAuth)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if err := tok.VerifySignature(asKey(t, h)); err != nil {
		t.Fatalf("token signature: %v", err)
	}
	return tok
}

// depthOf is the exchange_depth claim of tok ("" when absent).
func depthOf(tok *token.Token) string { return string(tok.Claims.Extra[ClaimExchangeDepth]) }

// refreshRequest is {"auth_token": raw} signed by agent a (jwks_uri).
func (c *chain) refreshRequest(a *origin, raw string) *http.Request {
	c.t.Helper()
	req := newRequest(http.MethodPost, PathToken, fmt.Sprintf(`{"auth_token":%q}`, raw))
	signWith(c.t, req, a.Signer, jwksKey(a), c.now())
	return req
}

// revokeAll revokes every remembered grant of the test issuer through the admin API.
func (c *chain) revokeAll() {
	c.t.Helper()
	admin := &GrantsAdmin{now: c.now}
	rec := httptest.NewRecorder()
	if err := admin.handleList(rec, httptest.NewRequest(http.MethodGet, "/aauth/grants", nil)); err != nil {
		c.t.Fatal(err)
	}
	var list []GrantInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		c.t.Fatal(err)
	}
	n := 0
	for _, g := range list {
		if g.Issuer != testIssuer {
			continue
		}
		rec := httptest.NewRecorder()
		if err := admin.handleRevoke(rec, httptest.NewRequest(http.MethodDelete, "/aauth/grants/"+g.ID, nil)); err != nil || rec.Code != http.StatusNoContent {
			c.t.Fatalf("revoke: %v %d", err, rec.Code)
		}
		n++
	}
	if n == 0 {
		c.t.Fatal("no grant to revoke")
	}
}

// sigKeyOf names a party's key with jwks_uri and an explicit well-known document.
func sigKeyOf(o *origin, doc string) httpsig.SigKey {
	k := jwksKey(o)
	k.Params = append(k.Params, httpsig.Param{Name: "well-known", Value: doc})
	return k
}
