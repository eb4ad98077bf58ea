package caddyaauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/ids"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// interactionOf returns the resource and the downstream pending request our code stands
// for; pe is nil when the code is unknown or expired. An error means the shared state
// could not be read.
func (s *egressState) interactionOf(ctx context.Context, code string, now time.Time) (resource string, pe *agent.PendingError, err error) {
	if s.shared == nil {
		rec := s.chains.byUserCode(code)
		if rec == nil {
			return "", nil, nil
		}
		return rec.handler.Resource, rec.interaction.Pending, nil
	}
	sc, err := s.shared.byUserCode(ctx, code, now)
	switch {
	case errors.Is(err, errChainGone):
		return "", nil, nil
	case err != nil:
		return "", nil, err
	}
	return sc.Resource, sc.pending(), nil
}

// chainStateUnavailable answers 503 when the shared state of chained requests failed.
func (h *Handler) chainStateUnavailable(w http.ResponseWriter, err error) error {
	h.logger.Error("aauth chained requests: shared state unavailable", zap.Error(err))
	w.Header().Set("Retry-After", "1")
	return writeJSONError(w, http.StatusServiceUnavailable, wire.CodeTemporarilyUnavailable, "the shared state of pending requests is unavailable; try again later")
}

// addChain records rec (id and code set here): in this process's memory, or in the
// shared state where every instance finds it.
func (s *egressState) addChain(ctx context.Context, rec *chainRecord, now time.Time) error {
	if s.shared == nil {
		return s.chains.add(rec, now)
	}
	sc, err := storeChain(rec)
	if err != nil {
		return err
	}
	if err := s.shared.add(ctx, sc, now); err != nil {
		return err
	}
	rec.id, rec.code = sc.ID, sc.Code
	return nil
}

// serveSharedChainPoll answers a poll of a chained request kept in the shared state: the
// route that took the original request is found on this instance by its identity, and
// answers as it would for a record of its own.
func (h *Handler) serveSharedChainPoll(w http.ResponseWriter, r *http.Request, st *egressState, id string, ln *endpointLine) error {
	sc, err := st.shared.get(r.Context(), id)
	switch {
	case errors.Is(err, errChainGone) || (err == nil && sc.Resource != h.Resource):
		return ln.refuse(w, r, http.StatusNotFound, errNoSuchPending)
	case err != nil:
		return h.chainStateUnavailable(w, err)
	}
	rh := h.app.chainHandler(sc.Server, sc.Resource, sc.Route)
	if rh == nil {
		h.logger.Error("aauth chained request: no route of this config has its identity; every instance must run the same config",
			zap.String("server", sc.Server), zap.String("resource", sc.Resource))
		return writeJSONError(w, http.StatusInternalServerError, wire.CodeServerError, "the pending request's route is not configured on this instance")
	}
	return rh.pollShared(w, r, st, sc, ln)
}

// pollShared is serveChainPoll for a shared record: signed by the key of the original
// request; the instance that takes the record's lease polls downstream, the others
// answer 202 meanwhile; only the holder deletes it, with the one terminal answer.
func (h *Handler) pollShared(w http.ResponseWriter, r *http.Request, st *egressState, sc *storedChain, ln *endpointLine) error {
	res, ok, err := h.verify(w, r, h.Resource, h.target(r))
	if !ok {
		return err
	}
	ln.add(zap.String("agent", res.Agent), zap.String("jkt", res.Key.Thumbprint))
	orig, err := sc.result()
	if err != nil {
		return writeJSONError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
	}
	if res.Key.Thumbprint != orig.Key.Thumbprint {
		return ln.refuse(w, r, http.StatusForbidden, errOtherKey)
	}
	holder := ids.NewRandomID(16)
	claimed, err := st.shared.claim(r.Context(), sc.ID, holder, h.now())
	switch {
	case errors.Is(err, errChainBusy):
		ln.log(r, http.StatusAccepted, outcomeWaiting, "")
		h.writeChainPending(w, &chainRecord{id: sc.ID, code: sc.Code}, time.Second)
		return nil
	case errors.Is(err, errChainGone):
		return ln.refuse(w, r, http.StatusNotFound, errNoSuchPending)
	case err != nil:
		return h.chainStateUnavailable(w, err)
	}
	end := chainEnd{
		finish: func() bool { return st.shared.finish(r.Context(), claimed, holder) == nil },
		wait: func() {
			if err := st.shared.release(r.Context(), claimed.ID, holder); err != nil {
				h.logger.Warn("aauth chained request: releasing the poll lease (it runs out by itself)", zap.Error(err))
			}
		},
	}
	rec, err := h.restoreChain(r.Context(), st, claimed, orig)
	if err != nil {
		end.wait()
		return writeJSONError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
	}
	return h.pollChain(w, r, rec, end, ln)
}

// restoreChain rebuilds a chained record on this instance: its route, the original
// request and identity, our agent key (from the shared keystore), and the downstream
// token cache of the inbound auth token here, where the replay's egress calls find it.
func (h *Handler) restoreChain(ctx context.Context, st *egressState, sc *storedChain, res *reqverify.Result) (*chainRecord, error) {
	signer, err := h.agentSigner(ctx)
	if err != nil {
		return nil, err
	}
	if signer.Public.Thumbprint != sc.SignerJKT {
		return nil, errors.New("aauth: this instance's agent key is not the one the downstream request was made with")
	}
	if res.Token == nil {
		return nil, fmt.Errorf("%w: no auth token", errChainIdentity)
	}
	i := &egress.Interaction{Pending: sc.pending(), Tokens: st.tokens.For(res.Token.Raw, time.Unix(res.Token.Claims.Expiry, 0))}
	return &chainRecord{id: sc.ID, code: sc.Code, expires: sc.Expires, handler: h, srv: h.srv, res: res,
		interaction: i, signer: signer, req: sc.snapshot()}, nil
}

// chainHandler returns the aauth handler of this config with that identity: server name,
// resource and configuration fingerprint; nil when there is none.
func (a *App) chainHandler(server, resource, route string) *Handler {
	for _, h := range a.resourceHandlers(resource) {
		if h.serverName() == server && h.fingerprint == route {
			return h
		}
	}
	return nil
}
