package agent

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent/agenttest"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

func TestSelfAccessToken(t *testing.T) {
	other := genKey(t, keys.AlgEd25519, "other")
	for _, tc := range []struct {
		name    string
		scheme  string
		setup   func(w *flowWorld)
		wantErr func(error) bool
	}{
		{"jwks_uri agent", httpsig.SchemeJWKSURI, nil, nil},
		{"delegate", httpsig.SchemeJWT, nil, nil},
		{"with an agent claim naming us", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Agent = w.agentID })
		}, nil},
		{"refused", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.SetAnswer(agenttest.Deny(http.StatusForbidden, wire.CodeDenied, "no self-access here"))
		}, func(err error) bool { var te *TokenError; return errors.As(err, &te) && te.Code == wire.CodeDenied }},
		{"deferred without AwaitToken", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.SetAnswer(agenttest.Pending(w.as.ID+"/pending/p1", "ABCD2345", 0))
		}, func(err error) bool { var pe *PendingError; return errors.As(err, &pe) && pe.Code == "ABCD2345" }},
		{"aud is not us", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Audience = token.Audience{w.gw.ID} })
		}, isFlowStep(StepAuthToken)},
		{"agent claim names another agent", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Agent = "http://127.0.0.1:9" })
		}, isFlowStep(StepAuthToken)},
		{"bound to another key", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Confirmation = &token.Confirmation{Key: other.Public} })
		}, isFlowStep(StepAuthToken)},
		{"issued by another server", httpsig.SchemeJWKSURI, func(w *flowWorld) {
			w.as.MutateAuthTokens(func(c *token.Claims) { c.Issuer = "http://127.0.0.1:9" })
		}, isFlowStep(StepAuthToken)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFlowWorld(t)
			if tc.setup != nil {
				tc.setup(w)
			}
			logs := &logSink{}
			tr := w.transport(tc.scheme, logs)
			ct, err := tr.SelfAccessToken(context.Background(), w.as.ID, " openid  profile ")
			if k := w.as.Kinds(); !slices.Equal(k, []string{agenttest.KindSelfAccess}) {
				t.Errorf("token requests %v", k)
			}
			noJWT(t, "logs", logs.String())
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, logs)
			}
			tok, err := token.Parse(ct.Token, token.TypAuth)
			if err != nil {
				t.Fatal(err)
			}
			if ct.Resource != w.agentID || ct.Issuer != w.as.ID || ct.Scope != "openid profile" ||
				ct.KeyJKT != tr.Identity.Signer.Public.Thumbprint || time.Until(ct.Expiry) < 50*time.Minute ||
				tok.Claims.Audience[0] != w.agentID || tok.Claims.Scope != "openid profile" {
				t.Errorf("token %+v claims %+v", ct, tok.Claims)
			}
			// A second call for the same scope is served from the cache; another scope is not.
			again, err := tr.SelfAccessToken(context.Background(), w.as.ID, "openid profile")
			if err != nil || again.Token != ct.Token {
				t.Errorf("second call: %v, same token %v", err, again.Token == ct.Token)
			}
			if _, err := tr.SelfAccessToken(context.Background(), w.as.ID, "email"); err != nil || len(w.as.Kinds()) != 2 {
				t.Errorf("another scope: %v, %d requests", err, len(w.as.Kinds()))
			}
		})
	}
}

func isFlowStep(step string) func(error) bool {
	return func(err error) bool { var fe *FlowError; return errors.As(err, &fe) && fe.Step == step }
}

// A self-access request the auth server defers (202) is awaited through AwaitToken
// (the Poller), polled with the same key, and the approved token returned.
func TestSelfAccessTokenConsent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		decide  func(as *agenttest.AuthServer, id string) error
		wantErr error
	}{
		{"approved", func(as *agenttest.AuthServer, id string) error { return as.Approve(id, "alice") }, nil},
		{"denied", func(as *agenttest.AuthServer, id string) error { return as.Deny(id) }, ErrConsentDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := consentWorld(t, agenttest.ConsentOptions{})
			w.as.OnPoll(func(_ http.ResponseWriter, id string, n int) bool {
				if n == 2 {
					if err := tc.decide(w.as, id); err != nil {
						t.Error(err)
					}
				}
				return false
			})
			clock := newFakeClock()
			p := w.poller(nil)
			p.Sleep = clock.Sleep
			var shown *PendingError
			p.OnPending = func(pe *PendingError) { shown = pe }
			tr := w.transport(httpsig.SchemeJWKSURI, nil)
			tr.AwaitToken = p.Await
			ct, err := tr.SelfAccessToken(context.Background(), w.as.ID, "openid")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if shown == nil || shown.Resource != w.agentID || shown.InteractionEndpoint != w.as.ID+"/interact" || len(shown.Code) != 8 {
				t.Errorf("OnPending got %+v", shown)
			}
			polls := w.as.Polls()
			if len(polls) != 2 || polls[1].KeyThumbprint != w.agentKey.Public.Thumbprint {
				t.Errorf("polls %+v", polls)
			}
			if tc.wantErr != nil {
				return
			}
			tok, _ := token.Parse(ct.Token, token.TypAuth)
			if tok.Claims.Subject != "alice" || tok.Claims.Agent != "" || tok.Claims.Audience[0] != w.agentID {
				t.Errorf("claims %+v", tok.Claims)
			}
		})
	}
}

// An expired self-access token is refreshed rather than asked for again.
func TestSelfAccessTokenRefresh(t *testing.T) {
	w := newFlowWorld(t)
	logs := &logSink{}
	tr := w.transport(httpsig.SchemeJWKSURI, logs)
	cache, ahead := shiftedCache()
	tr.TokenCache = cache
	w.as.MutateAuthTokens(func(c *token.Claims) { c.Expiry = time.Now().Add(time.Minute).Unix() })
	first, err := tr.SelfAccessToken(context.Background(), w.as.ID, "openid")
	if err != nil {
		t.Fatal(err)
	}
	w.as.MutateAuthTokens(nil)
	ahead.Store(int64(2 * time.Minute))
	got, err := tr.SelfAccessToken(context.Background(), w.as.ID, "openid")
	if err != nil || got.Token == first.Token {
		t.Fatalf("%v, new token %v\n%s", err, got.Token != first.Token, logs)
	}
	if k := w.as.Kinds(); !slices.Equal(k, []string{agenttest.KindSelfAccess, agenttest.KindRefresh}) {
		t.Errorf("kinds %v", k)
	}
	if !strings.Contains(logs.String(), "auth token refreshed for "+w.agentID) {
		t.Errorf("log:\n%s", logs)
	}
}

func TestSelfAccessTokenUsage(t *testing.T) {
	w := newFlowWorld(t)
	noIdentity := &Transport{Pseudonym: HWK(w.agentKey), Dev: true}
	for _, tc := range []struct {
		name  string
		tr    *Transport
		as    string
		scope string
		want  string
	}{
		{"no identity", noIdentity, w.as.ID, "openid", "needs an Identity"},
		{"no scope", w.transport(httpsig.SchemeJWKSURI, nil), w.as.ID, "  ", "needs a scope"},
		{"http auth server without Dev", &Transport{Identity: JWKSURI(w.agentKey, w.agentID)}, w.as.ID, "openid", "need Dev"},
		{"auth server with a path", w.transport(httpsig.SchemeJWKSURI, nil), w.as.ID + "/x", "openid", "not a valid identifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tr.SelfAccessToken(context.Background(), tc.as, tc.scope)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	if n := w.as.Hits(); n != 0 {
		t.Errorf("the auth server was asked %d times", n)
	}
}
