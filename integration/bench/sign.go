package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// signedGET is a GET of path on host signed with cred (RFC 9421 with Signature-Key, as
// the agent library signs), serialised as it goes on the wire.
func signedGET(host, path string, cred *agent.Credential, created time.Time) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
	if err != nil {
		return nil, err
	}
	if err := httpsig.Sign(req, cred.Signer, cred.SigKey(), httpsig.SignOptions{Created: created}); err != nil {
		return nil, err
	}
	return wireBytes(req)
}

// tokenRequest is a direct-grant token request (draft-hardt-aauth §9.1): the resource
// token in a JSON body POSTed to the auth server, signed by the agent over the body too,
// as the agent library does.
func tokenRequest(endpoint, resourceToken string, cred *agent.Credential, created time.Time) ([]byte, error) {
	body, err := json.Marshal(wire.TokenRequest{ResourceToken: resourceToken})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	httpsig.SetContentDigest(req, body)
	opts := httpsig.SignOptions{Created: created, Extra: []string{"content-type", "content-digest"}, Nonce: httpsig.NewNonce()}
	if err := httpsig.Sign(req, cred.Signer, cred.SigKey(), opts); err != nil {
		return nil, err
	}
	return wireBytes(req)
}

func wireBytes(req *http.Request) ([]byte, error) {
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parallel runs f(i) for i in [0, n) on every core and returns the results in order.
func parallel[T any](n int, f func(i int) (T, error)) ([]T, error) {
	out := make([]T, n)
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				v, err := f(i)
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
				out[i] = v
			}
		})
	}
	wg.Wait()
	return out, first
}

// authToken is an auth token (typ auth+jwt) from iss for resource, bound to the key of
// s (cnf.jwk), the claims an aauth_server puts in a direct grant.
func authToken(iss *localIssuer, resource, agentID, scope string, s *keys.Signer, now time.Time) (string, error) {
	return token.Mint(iss.signer, token.TypAuth, token.Claims{
		Issuer:       iss.id,
		Audience:     token.Audience{resource},
		ID:           token.NewID(),
		IssuedAt:     now.Unix(),
		Expiry:       now.Add(time.Hour).Unix(),
		Agent:        agentID,
		Scope:        scope,
		Confirmation: &token.Confirmation{Key: s.Public},
	})
}

// mintHolders mints n auth tokens, each bound to its own new key (distinct agents), as
// credentials (scheme jwt) ready to sign with.
func mintHolders(n int, iss *localIssuer, resource, agentID, scope string) ([]*agent.Credential, error) {
	now := time.Now()
	return parallel(n, func(int) (*agent.Credential, error) {
		s, err := keys.Generate(keys.AlgEd25519, "")
		if err != nil {
			return nil, err
		}
		tok, err := authToken(iss, resource, agentID, scope, s, now)
		if err != nil {
			return nil, err
		}
		return agent.AuthToken(s, tok), nil
	})
}
