package caddyaauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
)

// storedChain is a chained request as kept in the shared state (interaction chaining in
// a cluster, draft-hardt-aauth §4.5.8.2): everything another instance needs to redirect
// the person, answer the agent's poll, poll the downstream auth server and replay the
// request through its own routes. It holds the request's header fields (which may carry
// the agent's auth token): it is never logged, and it is deleted after the terminal
// answer or, by the sweeper, once it expired.
type storedChain struct {
	ID      string    `json:"id"`
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`

	// The route that verified the original request, by a stable identity: every
	// instance runs the same config, so the same server name, resource and handler
	// fingerprint name the same route on each.
	Server   string `json:"server"`
	Resource string `json:"resource"`
	Route    string `json:"route"`

	Request    storedRequest    `json:"request"`
	Identity   storedIdentity   `json:"identity"`
	Downstream storedDownstream `json:"downstream"`
	SignerJKT  string           `json:"signer_jkt"` // our agent key, which the downstream token is bound to

	// Lease: the instance polling downstream for the record right now, until when.
	Holder string    `json:"holder,omitempty"`
	Until  time.Time `json:"until,omitzero"`
}

type storedRequest struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Proto  string      `json:"proto"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body,omitempty"`
}

// storedIdentity is the part of reqverify.Result the replay needs (identity fields,
// upstream assertion, egress handle): the signature itself is not kept.
type storedIdentity struct {
	Scheme   string          `json:"scheme"`
	Level    string          `json:"level"`
	Agent    string          `json:"agent,omitempty"`
	Delegate string          `json:"delegate,omitempty"`
	Key      json.RawMessage `json:"key"`             // public JWK of the key that signed the request
	Token    string          `json:"token,omitempty"` // the verified auth token, raw
	TokenTyp string          `json:"token_typ,omitempty"`
}

// storedDownstream is the downstream pending request (agent.PendingError).
type storedDownstream struct {
	Location            string `json:"location"`
	Code                string `json:"code,omitempty"`
	Require             string `json:"require,omitempty"`
	AuthServer          string `json:"auth_server"`
	InteractionEndpoint string `json:"interaction_endpoint,omitempty"`
	Resource            string `json:"resource"`
}

var errChainIdentity = errors.New("aauth: the chained request's verified identity cannot be restored")

// storeChain turns rec (its handler and interaction set) into its stored form.
func storeChain(rec *chainRecord) (*storedChain, error) {
	if rec.res == nil || rec.res.Key == nil || rec.interaction == nil || rec.interaction.Pending == nil || rec.signer == nil {
		return nil, errChainIdentity
	}
	res, pe := rec.res, rec.interaction.Pending
	key, err := json.Marshal(res.Key)
	if err != nil {
		return nil, err
	}
	id := storedIdentity{Scheme: res.Scheme, Level: res.Level, Agent: res.Agent, Delegate: res.Delegate, Key: key, TokenTyp: res.TokenTyp}
	if res.Token != nil {
		id.Token = res.Token.Raw
	}
	return &storedChain{
		ID: rec.id, Code: rec.code, Expires: rec.expires,
		Server: rec.handler.serverName(), Resource: rec.handler.Resource, Route: rec.handler.fingerprint,
		Request: storedRequest{Method: rec.req.method, URI: rec.req.uri, Host: rec.req.host, Proto: rec.req.proto,
			Header: rec.req.header, Body: rec.req.body},
		Identity: id,
		Downstream: storedDownstream{Location: pe.Location, Code: pe.Code, Require: pe.Require, AuthServer: pe.AuthServer,
			InteractionEndpoint: pe.InteractionEndpoint, Resource: pe.Resource},
		SignerJKT: rec.signer.Public.Thumbprint,
	}, nil
}

// result restores the verified identity of the original request. The auth token was
// verified by the instance that took the request; it is parsed again, not re-verified.
func (s *storedChain) result() (*reqverify.Result, error) {
	key, err := keys.FromJSON(s.Identity.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errChainIdentity, err)
	}
	res := &reqverify.Result{Scheme: s.Identity.Scheme, Level: s.Identity.Level, Agent: s.Identity.Agent,
		Delegate: s.Identity.Delegate, Key: key, TokenTyp: s.Identity.TokenTyp}
	if s.Identity.Token != "" {
		typ := s.Identity.TokenTyp
		if typ == "" {
			typ = token.TypAuth
		}
		if res.Token, err = token.Parse(s.Identity.Token, typ); err != nil {
			return nil, fmt.Errorf("%w: %v", errChainIdentity, err)
		}
	}
	return res, nil
}

// snapshot restores the original request.
func (s *storedChain) snapshot() requestSnapshot {
	q := s.Request
	return requestSnapshot{method: q.Method, uri: q.URI, host: q.Host, proto: q.Proto, header: q.Header, body: q.Body}
}

// pending restores the downstream pending request.
func (s *storedChain) pending() *agent.PendingError {
	d := s.Downstream
	return &agent.PendingError{Location: d.Location, Code: d.Code, Require: d.Require, AuthServer: d.AuthServer,
		InteractionEndpoint: d.InteractionEndpoint, Resource: d.Resource}
}
