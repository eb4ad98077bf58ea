// Package egress lets an unmodified backend behind the gateway call other AAuth
// resources on behalf of the request it is serving (draft-hardt-aauth §4.5.8, call
// chaining): the gateway hands the backend an opaque handle bound to the inbound request
// and its auth token; the backend sends its outbound calls, with the handle, to a
// loopback-only egress; the egress signs them as the resource acting as an agent,
// exchanges the inbound auth token at the downstream auth server, and relays the
// answer. The package has no Caddy imports; the aauth and aauth_egress handlers wire it.
package egress

import (
	"errors"
	"sync"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/ids"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// HandleBytes is the entropy of a handle: 128 random bits.
const HandleBytes = 16

// DefaultMaxHandles bounds the handles alive at once (one per request in flight on an
// egress route).
const DefaultMaxHandles = 100000

// Errors of Registry.Lookup and Registry.Mint.
var (
	ErrUnknownHandle = errors.New("egress: unknown handle (never issued, or its request has finished)")
	ErrExpiredHandle = errors.New("egress: the handle's inbound auth token has expired")
	ErrTooMany       = errors.New("egress: too many requests in flight hold handles")
)

// Handle is one inbound request's permission to call out: it names the inbound auth
// token (exchanged downstream), the resource that received it (R1, which signs as an
// agent) and the key of the agent that sent it.
type Handle struct {
	ID       string       // ≥128 random bits, base64url; set by Mint
	Inbound  string       // the inbound auth token, raw; never logged
	Expiry   time.Time    // the inbound auth token's exp: the handle dies then at the latest
	Resource string       // R1: the resource identifier, which is its agent identifier
	Signer   *keys.Signer // R1's agent signing key
	AgentJKT string       // RFC 7638 thumbprint of the key that signed the inbound request

	mu          sync.Mutex
	interaction *Interaction
}

// Interaction is a downstream consent the egress ran into while serving the handle's
// request: the downstream auth server deferred the token exchange (202).
type Interaction struct {
	Pending *agent.PendingError // the downstream pending request (AS2's Location, code, interaction endpoint)
	Tokens  *agent.TokenCache   // where the token goes once the user approved
}

// Record keeps the first downstream interaction of the request; later ones are ignored
// (the agent is sent through one consent at a time; the replay meets the next).
func (h *Handle) Record(i *Interaction) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.interaction == nil {
		h.interaction = i
	}
}

// Interaction returns the recorded downstream interaction, nil when there is none.
func (h *Handle) Interaction() *Interaction {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.interaction
}

// Registry holds the handles of the requests in flight. It is safe for concurrent use.
type Registry struct {
	// Max bounds the handles alive at once; 0 means DefaultMaxHandles.
	Max int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	m  map[string]*Handle
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Mint gives h a fresh id and registers it. Call Finish when the request is served.
func (r *Registry) Mint(h *Handle) error {
	max := r.Max
	if max <= 0 {
		max = DefaultMaxHandles
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*Handle{}
	}
	if len(r.m) >= max {
		return ErrTooMany
	}
	h.ID = ids.NewRandomID(HandleBytes)
	r.m[h.ID] = h
	return nil
}

// Finish removes the handle: its request has been served, and the handle is useless from
// now on.
func (r *Registry) Finish(h *Handle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[h.ID] == h {
		delete(r.m, h.ID)
	}
}

// Lookup returns the live handle with that id: ErrUnknownHandle when there is none
// (never issued, malformed, or its request finished), ErrExpiredHandle once the inbound
// auth token expired.
func (r *Registry) Lookup(id string) (*Handle, error) {
	if !ids.ValidRandomID(id, HandleBytes) {
		return nil, ErrUnknownHandle
	}
	r.mu.Lock()
	h := r.m[id]
	r.mu.Unlock()
	if h == nil {
		return nil, ErrUnknownHandle
	}
	if !r.now().Before(h.Expiry) {
		return nil, ErrExpiredHandle
	}
	return h, nil
}

// Len is the number of live handles.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
