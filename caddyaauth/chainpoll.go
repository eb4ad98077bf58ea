package caddyaauth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// maxChainWait caps the Prefer: wait honoured on a chained pending URL.
const maxChainWait = 20 * time.Second

// serveChainPoll answers a poll of a chained request (draft-hardt-aauth §4.5.8.2): signed
// by the key of the original request; one poll at a time (pollChain does the rest). A
// refused signature, a 502 and the replayed request are logged by the aauth handler's
// own decision; the rest by ln.
func (h *Handler) serveChainPoll(w http.ResponseWriter, r *http.Request, st *egressState, rec *chainRecord, ln *endpointLine) error {
	res, ok, err := h.verify(w, r, h.Resource, h.target(r))
	if !ok {
		return err
	}
	ln.add(zap.String("agent", res.Agent), zap.String("jkt", res.Key.Thumbprint))
	if res.Key.Thumbprint != rec.res.Key.Thumbprint {
		return ln.refuse(w, r, http.StatusForbidden, errOtherKey)
	}
	if !rec.poll.TryLock() {
		ln.log(r, http.StatusAccepted, outcomeWaiting, "")
		h.writeChainPending(w, rec, time.Second) // another poll is in progress
		return nil
	}
	defer rec.poll.Unlock()
	if st.chains.get(rec.id) != rec {
		return ln.refuse(w, r, http.StatusNotFound, errNoSuchPending)
	}
	return h.pollChain(w, r, rec, chainEnd{finish: func() bool { st.chains.remove(rec); return true }, wait: func() {}}, ln)
}

// Refusals of the chained pending URL.
var (
	errOtherKey      = wire.Error{Code: wire.CodeInvalidKey, Description: "the pending request belongs to another key"}
	errNoSuchPending = wire.Error{Code: wire.CodeNotFound, Description: "no such pending request"}
)

// chainEnd is how a poll ends with its chained record: finish removes the record (its
// pending URL is 404 from now on) and reports whether it was still this poll's to
// remove; wait hands it back for the next poll.
type chainEnd struct {
	finish func() bool
	wait   func()
}

// pollChain polls the downstream auth server (signed as the resource's agent); 202
// while it waits; on approval the downstream token is cached and the original request
// replayed, whose answer is the poll's answer; a downstream 403 or 408 is passed on;
// after any terminal answer the pending URL is 404.
func (h *Handler) pollChain(w http.ResponseWriter, r *http.Request, rec *chainRecord, end chainEnd, ln *endpointLine) error {
	if !h.now().Before(rec.expires) {
		end.finish()
		return ln.refuse(w, r, http.StatusRequestTimeout, wire.Error{Code: wire.CodeExpired, Description: "the request expired before the user approved it"})
	}
	tok, err := h.pollDownstream(r, rec)
	if err != nil {
		return h.answerDownstreamOutcome(w, r, rec, end, ln, err)
	}
	if !end.finish() {
		return ln.refuse(w, r, http.StatusNotFound, errNoSuchPending)
	}
	err = (&egress.Proxy{Discovery: h.app.Discovery()}).AcceptToken(r.Context(), rec.interaction, h.Resource, rec.signer, tok)
	if err != nil {
		return caddyhttp.Error(http.StatusBadGateway, err)
	}
	return h.replayChain(w, r, rec)
}

// pollDownstream polls the downstream pending URL as the resource's agent for up to the
// agent's Prefer: wait (capped), and returns the auth token once approved.
func (h *Handler) pollDownstream(r *http.Request, rec *chainRecord) (string, error) {
	wait := time.Second
	if v, ok := strings.CutPrefix(strings.TrimSpace(r.Header.Get("Prefer")), "wait="); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			wait = min(time.Duration(n)*time.Second, maxChainWait)
		}
	}
	pe := *rec.interaction.Pending
	pe.RetryAfter = 0
	p := &agent.Poller{
		Base:       h.app.egressState().outbound(h.app.Dev),
		Credential: agent.JWKSURI(rec.signer, h.Resource),
		Dev:        h.app.Dev,
		Discovery:  h.app.Discovery(),
		Wait:       wait,
		// At least one poll; the deadline ends the wait while the answer is still 202.
		MaxDuration: wait + time.Second,
	}
	return p.Await(r.Context(), &pe)
}

// answerDownstreamOutcome answers a poll the downstream did not approve (yet).
func (h *Handler) answerDownstreamOutcome(w http.ResponseWriter, r *http.Request, rec *chainRecord, end chainEnd, ln *endpointLine, err error) error {
	var te *agent.TokenError
	switch {
	case errors.Is(err, agent.ErrConsentDenied):
		end.finish()
		return ln.refuse(w, r, http.StatusForbidden, wire.Error{Code: wire.CodeDenied, Description: "the user denied the downstream request"})
	case errors.Is(err, agent.ErrConsentExpired):
		end.finish()
		return ln.refuse(w, r, http.StatusRequestTimeout, wire.Error{Code: wire.CodeExpired, Description: "the downstream request expired before the user approved it"})
	case errors.Is(err, agent.ErrPendingGone):
		end.finish()
		return ln.refuse(w, r, http.StatusNotFound, wire.Error{Code: wire.CodeNotFound, Description: "the downstream pending request is gone"})
	case errors.As(err, &te) && !te.Temporary():
		end.finish()
		return ln.refuse(w, r, te.Status, wire.Error{Code: te.Code, Description: te.Description})
	}
	// Still waiting (the poll's deadline passed with 202), or the downstream auth server
	// could not be reached this time: the agent polls again.
	end.wait()
	ln.log(r, http.StatusAccepted, outcomeWaiting, "")
	h.writeChainPending(w, rec, 2*time.Second)
	return nil
}

// replayKey marks a request replayed by the gateway after a downstream consent, already
// verified: the aauth handler of its resource takes the identity from it.
type replayKey struct{}

type replayed struct {
	resource string
	rec      *chainRecord
}

// replayChain runs the original request again through its server's routes as already
// verified, with a fresh replacer and vars, writing the answer to w.
func (h *Handler) replayChain(w http.ResponseWriter, poll *http.Request, rec *chainRecord) error {
	g := h.app.guardOf(rec.srv)
	if g == nil {
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("aauth: no route list to replay the request through"))
	}
	ctx := context.WithValue(poll.Context(), replayKey{}, &replayed{resource: h.Resource, rec: rec})
	req, err := http.NewRequestWithContext(ctx, rec.req.method, rec.req.uri, strings.NewReader(string(rec.req.body)))
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	req.RequestURI, req.Host, req.Header = rec.req.uri, rec.req.host, rec.req.header.Clone()
	req.Proto, req.ProtoMajor, req.ProtoMinor = poll.Proto, poll.ProtoMajor, poll.ProtoMinor
	req.RemoteAddr, req.TLS = poll.RemoteAddr, poll.TLS
	if rec.req.body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	req = caddyhttp.PrepareRequest(req, newReplacer(), w, rec.srv)
	return g.replay(w, req)
}

// replayedRequest returns the replay mark of r when it is for h's resource.
func (h *Handler) replayedRequest(r *http.Request) *replayed {
	rp, _ := r.Context().Value(replayKey{}).(*replayed)
	if rp == nil || rp.resource != h.Resource {
		return nil
	}
	return rp
}

// serveReplayed passes on a replayed request with the original request's identity, and
// (egress routes) a fresh handle bound to the same inbound token.
func (h *Handler) serveReplayed(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, rp *replayed, next caddyhttp.Handler) error {
	res := rp.rec.res
	r, _ = withVerdict(r)
	verified(r, res)
	h.markVerified(r, repl, res)
	if h.Egress {
		return h.serveWithHandle(w, r, repl, res, next)
	}
	h.decide(r, http.StatusOK, CodeOK, "")
	return next.ServeHTTP(w, r)
}

func newReplacer() *caddy.Replacer { return caddy.NewReplacer() }
