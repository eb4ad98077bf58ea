package agenttest

import (
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/statusrec"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Paths of the requests a gateway deferred itself (DeferAuthorized).
const (
	PathResourcePending  = "/.well-known/aauth-resource/pending/"
	PathResourceInteract = "/.well-known/aauth-resource/interact"
)

// deferState is the gateway's own deferrals (draft-hardt-aauth §4.5.7).
type deferState struct {
	left   int                // authorized requests still to defer
	decide func(poll int) int // the answer to the n-th poll of a deferred request
	recs   map[string]*deferredRequest
	polls  []Poll
}

type deferredRequest struct {
	id, code, jkt string
	answer        map[string]string // what the request would have got
	polls         int
	done          bool // a terminal answer was given: 404 from now on
}

// DeferAuthorized makes the gateway answer the next n requests that pass (a valid auth
// token with the scopes) with its own 202, as a resource that must first get consent
// for a call of its own does (draft-hardt-aauth §4.5.7, §4.5.8.2): Location
// {ID}/.well-known/aauth-resource/pending/{id}, Retry-After 0, Cache-Control: no-store,
// AAuth: require=interaction; code="…", and a body with status, location, require, code
// and interaction_endpoint {ID}/.well-known/aauth-resource/interact. The pending URL
// takes GETs signed (any scheme) by the key that signed the deferred request, and
// answers the n-th of them with decide(n): 0 keeps it pending (202), 200 gives what the
// request would have got, 403 denied, 408 expired, any other status an error body; after
// a final answer it is 404. A poll by another key gets 403 key_binding_failed.
func (g *Gateway) DeferAuthorized(n int, decide func(poll int) int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deferred == nil {
		g.deferred = &deferState{recs: map[string]*deferredRequest{}}
	}
	g.deferred.left, g.deferred.decide = n, decide
}

// ResourcePolls returns the requests the gateway's pending URLs received so far.
func (g *Gateway) ResourcePolls() []Poll {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deferred == nil {
		return nil
	}
	return slices.Clone(g.deferred.polls)
}

// deferRequest answers 202 instead of answer when DeferAuthorized says so, and reports
// whether it did.
func (g *Gateway) deferRequest(w http.ResponseWriter, res *reqverify.Result, answer map[string]string) bool {
	g.mu.Lock()
	d := g.deferred
	if d == nil || d.left == 0 {
		g.mu.Unlock()
		return false
	}
	d.left--
	rec := &deferredRequest{id: randomID(), code: randomCode(), jkt: res.Key.Thumbprint, answer: answer}
	d.recs[rec.id] = rec
	g.mu.Unlock()

	loc := g.ID + PathResourcePending + rec.id
	h := w.Header()
	if err := wire.Seed.SetChallenge(h, wire.Challenge{Require: wire.RequireInteraction, Code: rec.code}); err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
		return true
	}
	h.Set("Location", loc)
	h.Set("Retry-After", "0")
	h.Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusAccepted, map[string]string{
		"status": wire.StatusPending, "location": loc, "require": wire.RequireInteraction, "code": rec.code,
		"interaction_endpoint": g.ID + PathResourceInteract,
	})
	return true
}

// servePendingPoll is the pending URL of a deferred request.
func (g *Gateway) servePendingPoll(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, PathResourcePending)
	entry := Poll{ID: id, Method: r.Method, Prefer: r.Header.Get("Prefer")}
	rw := &statusrec.Writer{ResponseWriter: w}
	defer func() {
		entry.Status = rw.Status
		g.mu.Lock()
		if g.deferred != nil {
			g.deferred.polls = append(g.deferred.polls, entry)
		}
		g.mu.Unlock()
	}()
	if r.Method != http.MethodGet {
		writeError(rw, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "use GET")
		return
	}
	res, err := g.verifier.Verify(r.Context(), target(r))
	if err != nil {
		writeError(rw, http.StatusUnauthorized, wire.CodeInvalidSignature, err.Error())
		return
	}
	entry.KeyThumbprint = res.Key.Thumbprint
	g.mu.Lock()
	var rec *deferredRequest
	if g.deferred != nil {
		rec = g.deferred.recs[id]
	}
	if rec == nil || rec.done {
		g.mu.Unlock()
		writeError(rw, http.StatusNotFound, wire.CodeNotFound, "no such pending request")
		return
	}
	if rec.jkt != res.Key.Thumbprint {
		g.mu.Unlock()
		writeError(rw, http.StatusForbidden, wire.CodeKeyBindingFailed, "the pending request belongs to another key")
		return
	}
	rec.polls++
	status := 0
	if d := g.deferred.decide; d != nil {
		status = d(rec.polls)
	}
	rec.done = status != 0
	g.mu.Unlock()
	g.answerDeferred(rw, rec, status)
}

// answerDeferred writes the answer decide chose for a poll.
func (g *Gateway) answerDeferred(w http.ResponseWriter, rec *deferredRequest, status int) {
	switch status {
	case 0:
		loc := g.ID + PathResourcePending + rec.id
		w.Header().Set("Location", loc)
		w.Header().Set("Retry-After", "0")
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusAccepted, wire.PendingResponse{Status: wire.StatusPending, Location: loc})
	case http.StatusOK:
		writeJSON(w, http.StatusOK, rec.answer)
	case http.StatusForbidden:
		writeError(w, status, wire.CodeDenied, "the user denied the request")
	case http.StatusRequestTimeout:
		writeError(w, status, wire.CodeExpired, "the user did not decide in time")
	default:
		writeError(w, status, wire.CodeServerError, "the deferred request failed")
	}
}
