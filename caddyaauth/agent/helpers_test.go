package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

func genKey(t testing.TB, alg, kid string) *keys.Signer {
	t.Helper()
	s, err := keys.Generate(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seenRequest is what the fake resource recorded about one request.
type seenRequest struct {
	Scheme    string // "" when unsigned
	Legacy    bool   // Signature-Key arrived in the seed's parenthesised form
	SigValue  string // raw Signature header
	Covers    []string
	Body      string
	VerifyErr string
}

// fakeResource is an AAuth resource reduced to what the transport tests need: it verifies
// signatures with caddyaauth/httpsig exactly as the gateway does and answers with the
// challenge of its level.
type fakeResource struct {
	t        *testing.T
	level    string   // RequirePseudonym, RequireIdentity, or "never" (always challenges identity)
	extra    []string // extra components the route demands
	agentID  string   // jwks_uri agents: id → key lookup
	agentKey *keys.PublicKey
	issuer   string // agent-token issuer and its key
	issKey   *keys.PublicKey

	mu   sync.Mutex
	seen []seenRequest
}

func (f *fakeResource) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

func (f *fakeResource) challenge(w http.ResponseWriter, require string) {
	w.Header()["AAuth"] = []string{"require=" + require}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"error":"invalid_signature","error_description":"challenge"}`)
}

func (f *fakeResource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := seenRequest{Body: string(body)}
	defer func() {
		f.mu.Lock()
		f.seen = append(f.seen, rec)
		f.mu.Unlock()
	}()
	routeLevel := f.level
	if routeLevel == "never" {
		routeLevel = RequireIdentity
	}
	if !httpsig.Present(r.Header) {
		f.challenge(w, routeLevel)
		return
	}
	scheme, sig, err := f.verify(r, body)
	rec.Scheme = scheme
	if sig != nil {
		rec.Legacy = sig.Key.Legacy
		rec.Covers = sig.Components
	}
	rec.SigValue = r.Header.Get("Signature")
	if err != nil {
		rec.VerifyErr = err.Error()
		f.challenge(w, routeLevel)
		return
	}
	if f.level == "never" || (f.level == RequireIdentity && scheme == httpsig.SchemeHWK) {
		f.challenge(w, RequireIdentity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"scheme": scheme, "body": string(body)})
}

func (f *fakeResource) verify(r *http.Request, body []byte) (string, *httpsig.Signature, error) {
	sig, err := httpsig.Parse(r.Header, httpsig.DefaultLimits)
	if err != nil {
		return "", nil, err
	}
	target := httpsig.Target{
		Method:    r.Method,
		Authority: httpsig.Authority("http", r.Host),
		Path:      r.URL.EscapedPath(),
		Query:     r.URL.RawQuery,
		HasQuery:  r.URL.RawQuery != "",
		Header:    r.Header,
	}
	if err := (httpsig.Policy{Extra: f.extra}).Check(sig, target, time.Now()); err != nil {
		return sig.Key.Scheme, sig, err
	}
	var pub *keys.PublicKey
	switch sig.Key.Scheme {
	case httpsig.SchemeHWK:
		pub, err = keys.FromMembers(sig.Key.Map())
	case httpsig.SchemeJWKSURI:
		if f.agentKey == nil || sig.Key.Get("id") != f.agentID || sig.Key.Get("kid") != f.agentKey.KID {
			err = errors.New("unknown jwks_uri agent or kid")
		}
		pub = f.agentKey
	case httpsig.SchemeJWT:
		var tok *token.Token
		tok, err = token.VerifyAgentToken(r.Context(), sig.Key.Get("jwt"), token.Options{Now: time.Now()},
			func(_ context.Context, iss, kid string) (*keys.PublicKey, error) {
				if f.issKey == nil || iss != f.issuer || kid != f.issKey.KID {
					return nil, errors.New("unknown issuer key")
				}
				return f.issKey, nil
			})
		if err == nil {
			pub = tok.Claims.Confirmation.Key
		}
	default:
		err = errors.New("unknown scheme")
	}
	if err != nil {
		return sig.Key.Scheme, sig, err
	}
	base, err := httpsig.Base(sig, target)
	if err != nil {
		return sig.Key.Scheme, sig, err
	}
	if err := httpsig.Verify(sig, base, pub); err != nil {
		return sig.Key.Scheme, sig, err
	}
	if sig.Covers("content-digest") {
		if err := httpsig.CheckContentDigest(r.Header.Get("Content-Digest"), body); err != nil {
			return sig.Key.Scheme, sig, err
		}
	}
	return sig.Key.Scheme, sig, nil
}

// world is an agent (its key and id), a delegate holding an agent token from that agent,
// and a fake resource that trusts both.
type world struct {
	agentKey    *keys.Signer
	agentID     string
	delegateKey *keys.Signer
	agentToken  string
	res         *fakeResource
	srv         *httptest.Server
}

func newWorld(t *testing.T, level string, extra ...string) *world {
	t.Helper()
	w := &world{
		agentKey:    genKey(t, keys.AlgEd25519, "agent-key-1"),
		agentID:     "https://agent.example",
		delegateKey: genKey(t, keys.AlgECDSAP256, "delegate-key-1"),
	}
	now := time.Now().Unix()
	tok, err := token.Mint(w.agentKey, token.TypAgent, token.Claims{
		Issuer: w.agentID, Subject: "delegate-1", ID: token.NewID(), IssuedAt: now, Expiry: now + 600,
		Confirmation: &token.Confirmation{Key: w.delegateKey.Public},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.agentToken = tok
	w.res = &fakeResource{t: t, level: level, agentID: w.agentID, agentKey: w.agentKey.Public,
		issuer: w.agentID, issKey: w.agentKey.Public, extra: extra}
	w.srv = httptest.NewServer(w.res)
	t.Cleanup(w.srv.Close)
	return w
}

func (w *world) cred(scheme string) *Credential {
	switch scheme {
	case httpsig.SchemeHWK:
		return HWK(w.agentKey)
	case httpsig.SchemeJWKSURI:
		return JWKSURI(w.agentKey, w.agentID)
	case httpsig.SchemeJWT:
		return Delegate(w.delegateKey, w.agentToken)
	}
	return nil
}
