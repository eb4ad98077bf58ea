package caddyaauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/egress"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// chainPending is the body of our 202: the draft's deferred response plus where the
// person goes (draft-hardt-aauth §4.5.8.2).
type chainPending struct {
	wire.PendingResponse
	InteractionEndpoint string `json:"interaction_endpoint"`
}

// serveChained runs next for a request holding handle hd. When the backend ran into a
// downstream consent through the egress, its response is replaced, as it starts, by our
// 202 with a pending URL the agent polls; the request is replayed once the user approved.
func (h *Handler) serveChained(w http.ResponseWriter, r *http.Request, res *reqverify.Result, hd *egress.Handle, next caddyhttp.Handler) error {
	snap, err := h.snapshot(r)
	if err != nil {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	}
	cw := &chainWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	cw.decide = func() bool {
		i := hd.Interaction()
		if i == nil {
			return false
		}
		h.startChain(w, r, snap, res, hd, i)
		return true
	}
	err = next.ServeHTTP(cw, r)
	if !cw.decided && hd.Interaction() != nil {
		cw.WriteHeader(http.StatusServiceUnavailable) // the backend gave up without answering
	}
	if cw.swapped {
		return nil
	}
	return err
}

// snapshot copies the request as it reached us (method, target, fields, body up to
// max_body) so it can be replayed; the body is put back for the backend.
func (h *Handler) snapshot(r *http.Request) (requestSnapshot, error) {
	orig := r
	if o, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		orig = &o
	}
	s := requestSnapshot{method: orig.Method, uri: orig.RequestURI, host: r.Host, proto: r.Proto, header: r.Header.Clone()}
	if s.uri == "" {
		s.uri = orig.URL.RequestURI()
	}
	if r.Body == nil || r.Body == http.NoBody {
		return s, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBody+1))
	if err != nil {
		return s, err
	}
	if int64(len(b)) > h.MaxBody {
		return s, fmt.Errorf("the body of a request on an egress route may not exceed max_body (%d bytes)", h.MaxBody)
	}
	s.body = b
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return s, nil
}

// startChain records the waiting request and answers the agent 202 (draft-hardt-aauth
// §4.5.8.2): our pending URL and code, and our interaction endpoint, which leads to the
// downstream consent. Any header the backend set is dropped.
func (h *Handler) startChain(w http.ResponseWriter, r *http.Request, snap requestSnapshot, res *reqverify.Result, hd *egress.Handle, i *egress.Interaction) {
	srv := serverOf(r)
	now := h.now()
	rec := &chainRecord{expires: now.Add(chainLifetime), handler: h, srv: srv, res: res, interaction: i, signer: hd.Signer, req: snap}
	if hd.Expiry.Before(rec.expires) {
		rec.expires = hd.Expiry
	}
	for k := range w.Header() {
		delete(w.Header(), k)
	}
	if err := h.app.egressState().addChain(r.Context(), rec, now); err != nil {
		desc := err.Error()
		if !errors.Is(err, errTooManyChains) {
			h.logger.Error("aauth chained request not recorded", zap.Error(err))
			desc = "the pending request could not be recorded"
		}
		w.Header().Set("Retry-After", "5")
		wire.WriteError(w, http.StatusServiceUnavailable, wire.Error{Code: wire.CodeServerError, Description: desc})
		return
	}
	if c := h.logger.Check(zap.DebugLevel, "aauth downstream consent needed; answering 202"); c != nil {
		c.Write(zap.String("resource", h.Resource), zap.String("downstream", i.Pending.Resource), zap.String("agent", res.Agent))
	}
	h.writeChainPending(w, rec, 2*time.Second)
}

// writeChainPending answers 202 for rec.
func (h *Handler) writeChainPending(w http.ResponseWriter, rec *chainRecord, retry time.Duration) {
	loc := h.Resource + PathChainPending + rec.id
	hdr := w.Header()
	_ = wire.Seed.SetChallenge(hdr, wire.Challenge{Require: wire.RequireInteraction, Code: rec.code})
	hdr.Set("Location", loc)
	hdr.Set("Retry-After", strconv.Itoa(int(retry.Seconds())))
	b, _ := json.Marshal(chainPending{
		PendingResponse:     wire.PendingResponse{Status: wire.StatusPending, Location: loc, Require: wire.RequireInteraction, Code: rec.code},
		InteractionEndpoint: h.Resource + PathChainInteract,
	})
	wire.WriteJSON(w, http.StatusAccepted, b)
}
