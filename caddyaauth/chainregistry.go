package caddyaauth

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/attempts"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/ids"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
)

// Bounds of interaction chaining.
const (
	chainLifetime = 10 * time.Minute // a chained request waits at most this long (and never past the inbound token)
	maxChains     = 10000            // chained requests waiting at once
	chainIDBytes  = 16               // 128 random bits in a pending URL
)

// chainRecord is a request of ours that waits for a downstream consent: what the agent
// polls (by id, signed by the key of the original request), what the person is sent on
// with (our code), and what is replayed once the downstream auth server issued the token.
type chainRecord struct {
	id, code    string
	expires     time.Time
	handler     *Handler            // the route that verified the original request
	srv         *caddyhttp.Server   // its server, whose routes replay the request
	res         *reqverify.Result   // the original request's verified identity
	interaction *egress.Interaction // the downstream pending request
	signer      *keys.Signer        // our agent key: polls downstream are signed with it
	req         requestSnapshot

	poll sync.Mutex // one poll (and replay) at a time
}

// requestSnapshot is the original request as it reached the aauth handler.
type requestSnapshot struct {
	method, uri, host, proto string
	header                   http.Header
	body                     []byte
}

// chainRegistry holds the chained requests of one config.
type chainRegistry struct {
	mu     sync.Mutex
	byID   map[string]*chainRecord
	byCode map[string]*chainRecord
	misses *attempts.Limiter // unknown codes per client at the interact endpoint
}

var errTooManyChains = errors.New("aauth: too many requests wait for a downstream consent")

// add registers rec under a fresh id and code.
func (c *chainRegistry) add(rec *chainRecord, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID, c.byCode = map[string]*chainRecord{}, map[string]*chainRecord{}
	}
	for id, r := range c.byID {
		if !now.Before(r.expires) {
			delete(c.byID, id)
			delete(c.byCode, r.code)
		}
	}
	if len(c.byID) >= maxChains {
		return errTooManyChains
	}
	rec.id = ids.NewRandomID(chainIDBytes)
	for rec.code = ids.NewCode(); c.byCode[rec.code] != nil; rec.code = ids.NewCode() {
	}
	c.byID[rec.id], c.byCode[rec.code] = rec, rec
	return nil
}

// get returns the live record with that id.
func (c *chainRegistry) get(id string) *chainRecord {
	if !ids.ValidRandomID(id, chainIDBytes) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

// byUserCode returns the live record whose code the person typed.
func (c *chainRegistry) byUserCode(typed string) *chainRecord {
	code, ok := ids.NormalizeCode(typed)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec := c.byCode[code]; rec != nil && time.Now().Before(rec.expires) {
		return rec
	}
	return nil
}

// remove ends rec: its pending URL answers 404 from now on.
func (c *chainRegistry) remove(rec *chainRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID[rec.id] == rec {
		delete(c.byID, rec.id)
		delete(c.byCode, rec.code)
	}
}

// downstreamInteractionURL is where the person approves the downstream request: the
// downstream auth server's interaction endpoint (from its metadata when the 202 did not
// come with one) with its code.
func downstreamInteractionURL(ctx context.Context, app *App, pe *agent.PendingError) (string, error) {
	endpoint := pe.InteractionEndpoint
	if endpoint == "" {
		md, err := app.Discovery().Metadata(ctx, pe.AuthServer, discovery.DocIssuer)
		if err != nil {
			return "", err
		}
		endpoint, _ = md["interaction_endpoint"].(string)
	}
	if _, err := discovery.ValidateEndpointURL(endpoint, app.Dev); err != nil {
		return "", err
	}
	return agent.InteractionURL(endpoint, pe.Code), nil
}
