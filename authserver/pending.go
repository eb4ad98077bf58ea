package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/discovery"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/promreg"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Consent flow defaults and limits.
const (
	DefaultPendingLifetime = 10 * time.Minute
	DefaultMaxPollWait     = 30 * time.Second
	DefaultRememberFor     = 30 * 24 * time.Hour

	// retryAfter is the Retry-After of every 202, in seconds.
	retryAfter = "2"

	// MaxClarificationRounds bounds the user's questions per request, and so the agent's
	// answers: an answer is taken only for a waiting question (draft-hardt-aauth §11.4
	// recommends at most 5 rounds).
	MaxClarificationRounds = 5
	maxAnswerChars         = 2000
	maxQuestionChars       = 500
	maxPendingPostBody     = 16 << 10
	pendingBodyTooLarge    = "request body is too large" // the text of a 413

	// storageRecheck is how often a waiting poll re-reads storage, to see decisions
	// taken by another instance sharing the storage.
	storageRecheck = 250 * time.Millisecond
)

var errNoLongerPending = errors.New("no longer pending")

func (h *Handler) pendingURL(id string) string { return h.Issuer + PathPending + id }

// userMayConsent reports whether a remembered grant's user can still consent: a
// configured user (with user_from the authentication handler decides, so any).
func (h *Handler) userMayConsent(name string) bool {
	if h.UserFrom != "" {
		return true
	}
	for _, u := range h.Users {
		if u.Name == name {
			return true
		}
	}
	return false
}

// prepareConsent decides, before the resource token's jti is spent, how a request the
// policy sends to the user will end: a remembered grant that covers it (the caller issues
// a token at once, with the grant's user as sub), or a new pending request that has
// already taken its place among the undecided ones (draft-hardt-aauth §11.3). ok false
// means the request was answered (429 over a bound, 500).
func (h *Handler) prepareConsent(w http.ResponseWriter, r *http.Request, ask *tokenAsk, now time.Time) (g *grant, rec *pendingRecord, ok bool) {
	asker := grantAsker{Agent: ask.Agent, Delegate: ask.Delegate, KeyJKT: ask.Key.Thumbprint, Resource: ask.Resource}
	// A remembered decision made on behalf of an upstream user applies only to exchanges
	// for that same user; a plain decision only where no upstream user is named.
	g, err := h.consent.findGrant(r.Context(), asker, strings.Fields(ask.Scope), func(g *grant) bool {
		return g.Subject == ask.Subject && h.userMayConsent(g.User)
	}, now)
	if err != nil {
		h.serverError(w, r, "reading remembered grants", err)
		return nil, nil, false
	}
	if g != nil {
		return g, nil, true
	}
	rec = &pendingRecord{
		ID:             newPendingID(),
		Created:        now.Unix(),
		Expires:        now.Add(h.pendingLifetime).Unix(),
		Agent:          ask.Agent,
		Scheme:         ask.Scheme,
		Delegate:       ask.Delegate,
		KeyJKT:         ask.Key.Thumbprint,
		Key:            ask.Key.Members(),
		Resource:       ask.Resource,
		Scope:          ask.Scope,
		Txn:            ask.Txn,
		Purpose:        ask.Purpose,
		Self:           ask.Self,
		Subject:        ask.Subject,
		ExchangeDepth:  ask.Depth,
		UpstreamIssuer: ask.UpstreamIssuer,
		UpstreamAgent:  ask.UpstreamAgent,
	}
	if ask.RT != nil {
		rec.RTJTI = ask.RT.Claims.ID
	}
	if err := h.consent.admit(r.Context(), rec, now.Unix()); err != nil {
		if !errors.Is(err, errTooManyPending) {
			h.serverError(w, r, "admitting a pending request", err)
			return nil, nil, false
		}
		h.metrics.limited(promreg.LimiterAdmission)
		w.Header().Set("Retry-After", "60")
		h.writeError(w, r, http.StatusTooManyRequests, wire.CodeRateLimited, "too many requests are waiting for a decision; try again later", nil)
		return nil, nil, false
	}
	return nil, rec, true
}

// createPending stores an admitted request behind a new pending URL and answers 202 with
// an interaction code (draft-hardt-aauth §6.4, §10.2, §11.3).
func (h *Handler) createPending(w http.ResponseWriter, r *http.Request, rec *pendingRecord) {
	h.readMetadata(r.Context(), rec)
	if err := h.consent.create(r.Context(), rec); err != nil {
		h.serverError(w, r, "creating pending request", err)
		return
	}
	h.logger.Info("consent requested",
		zap.String("agent", rec.Agent), zap.String("delegate", rec.Delegate),
		zap.String("resource", rec.Resource), zap.String("scope", rec.Scope),
		zap.Bool("self", rec.Self), zap.Int("exchange_depth", rec.ExchangeDepth),
		zap.String("purpose", clip(rec.Purpose)))
	verdictOf(r).decided(outcomePending)
	if err := wire.Seed.WriteInteraction(w, h.pendingURL(rec.ID), rec.Code, retryAfter); err != nil {
		h.serverError(w, r, "writing the interaction challenge", err)
	}
}

// readMetadata copies what the consent flow needs from the agent's and the resource's
// metadata (already cached by the verification that just ran). A document that cannot
// be read only turns the optional features off.
func (h *Handler) readMetadata(ctx context.Context, rec *pendingRecord) {
	if obj, err := h.discovery.Metadata(ctx, rec.Agent, discovery.DocAgent); err == nil {
		var md wire.AgentMetadata
		wire.ReadDocument(obj, &md)
		rec.Clarification = md.ClarificationSupported
		rec.LocalhostCallback = md.LocalhostCallbackAllowed
		if cb := md.CallbackEndpoint; cb != "" {
			if _, err := discovery.ValidateEndpointURL(cb, h.dev); err == nil {
				rec.CallbackEndpoint = cb
			}
		}
		if name := md.ClientName; name != "" {
			rec.ClientName = clipChars(name, 100)
		}
	} else if c := h.logger.Check(zap.DebugLevel, "agent metadata unavailable for consent"); c != nil {
		c.Write(zap.String("agent", rec.Agent), zap.Error(err))
	}
	if rec.Self {
		return // the resource is the agent itself: it publishes no resource metadata
	}
	if obj, err := h.discovery.Metadata(ctx, rec.Resource, discovery.DocResource); err == nil {
		var md wire.ResourceMetadata
		wire.ReadDocument(obj, &md)
		if descs := md.ScopeDescriptions; descs != nil {
			for _, sc := range rec.scopes() {
				if d := descs[sc]; d != "" {
					if rec.ScopeDescriptions == nil {
						rec.ScopeDescriptions = map[string]string{}
					}
					rec.ScopeDescriptions[sc] = clipChars(d, 300)
				}
			}
		}
	} else if c := h.logger.Check(zap.DebugLevel, "resource metadata unavailable for consent"); c != nil {
		c.Write(zap.String("resource", rec.Resource), zap.Error(err))
	}
}

// servePending is the pending URL: signed GET polls and signed POST clarification
// answers, both by the key that made the token request (draft-hardt-aauth §10.3–§10.6,
// §11.4).
func (h *Handler) servePending(w http.ResponseWriter, r *http.Request) {
	w, r, done := h.track(w, r, "pending")
	defer done()
	id := strings.TrimPrefix(r.URL.Path, PathPending)
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		if err := reqverify.PrecheckJSONBody(r, maxPendingPostBody); err != nil {
			h.refuseBody(w, r, err, pendingBodyTooLarge)
			return
		}
	default:
		h.methodNotAllowed(w, r, "GET, POST")
		return
	}
	res, ok := h.verifyRequest(w, r)
	if !ok {
		return
	}
	if !validRandomID(id, pendingIDBytes) {
		h.pendingNotFound(w, r)
		return
	}
	ctx := r.Context()
	rec, _, err := h.consent.get(ctx, id, storageRecheck)
	if !h.pendingLoaded(w, r, rec, err) {
		return
	}
	tv := verdictOf(r)
	tv.setKind(kindConsent)
	tv.setAgent(res.Agent)
	tv.setAsk(rec.Resource, rec.Scope)
	if rec.KeyJKT != res.Key.Thumbprint || rec.Agent != res.Agent {
		h.writeError(w, r, http.StatusForbidden, wire.CodeKeyBindingFailed, "the pending request belongs to another key", nil)
		return
	}
	// A clarification answer's body is bound to the signature before the signature is
	// spent, so a copy with a swapped body cannot use up the agent's own request.
	var body []byte
	if r.Method == http.MethodPost {
		if body, ok = h.readSignedBody(w, r, res, maxPendingPostBody, pendingBodyTooLarge); !ok {
			return
		}
	}
	rec, changed, ok := h.spendSignature(w, r, res, id)
	if !ok {
		return
	}
	if r.Method == http.MethodPost {
		h.clarificationResponse(w, r, rec, body)
		return
	}
	h.poll(w, r, rec, changed)
}

// spendSignature uses the request's signature on pending request id. Each signature is
// used once on the pending URL, so a captured poll cannot be replayed later to take the
// decision's one-time answer (the token) from the agent. ok false means the request was
// answered (401 reused signature, 429, 404, 500).
func (h *Handler) spendSignature(w http.ResponseWriter, r *http.Request, res *reqverify.Result, id string) (rec pendingRecord, changed <-chan struct{}, ok bool) {
	rec, changed, err := h.useSignature(r, res, id)
	switch {
	case errors.Is(err, errSignatureUsed):
		h.writeError(w, r, http.StatusUnauthorized, wire.CodeInvalidSignature, "this signature was already used; sign every request to the pending URL afresh", nil)
		return rec, nil, false
	case errors.Is(err, errTooManySigs):
		h.metrics.limited(promreg.LimiterPendingPoll)
		w.Header().Set("Retry-After", retryAfter)
		h.writeError(w, r, http.StatusTooManyRequests, wire.CodeRateLimited, "too many requests to this pending URL; poll more slowly", nil)
		return rec, nil, false
	case errors.Is(err, errNotFound):
		h.pendingNotFound(w, r)
		return rec, nil, false
	case err != nil:
		h.serverError(w, r, "recording the signature", err)
		return rec, nil, false
	case rec.Status == statusDone:
		h.pendingNotFound(w, r)
		return rec, nil, false
	}
	return rec, changed, true
}

// poll answers a signed GET on the pending URL. With Prefer: wait=N (capped at
// MaxPollWait) it holds the answer while the request is undecided, until it changes.
func (h *Handler) poll(w http.ResponseWriter, r *http.Request, rec pendingRecord, changed <-chan struct{}) {
	ctx := r.Context()
	applied := time.Duration(0)
	if wait, ok := preferWait(r.Header); ok && wait > 0 && h.maxPollWait > 0 {
		applied = min(wait, h.maxPollWait)
	}
	if applied > 0 && h.shouldWait(rec) {
		var err error
		rec, err = h.waitForChange(ctx, rec, changed, applied)
		if ctx.Err() != nil {
			return // the agent went away
		}
		if !h.pendingLoaded(w, r, rec, err) {
			return
		}
	}
	if applied > 0 {
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(applied/time.Second)))
	}
	h.answerPoll(w, r, rec)
}

// pendingNotFound answers 404 for an unknown pending URL, or one whose request already
// had its terminal answer.
// pendingLoaded answers a failed load of a pending record: 404 when it is gone or its
// answer was already collected, 500 for a storage error. It reports whether rec is usable.
func (h *Handler) pendingLoaded(w http.ResponseWriter, r *http.Request, rec pendingRecord, err error) bool {
	if errors.Is(err, errNotFound) || (err == nil && rec.Status == statusDone) {
		h.pendingNotFound(w, r)
		return false
	}
	if err != nil {
		h.serverError(w, r, "loading pending request", err)
		return false
	}
	return true
}

func (h *Handler) pendingNotFound(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, http.StatusNotFound, wire.CodeNotFound, "no such pending request", nil)
}

// useSignature marks the request's signature used on pending request id, keyed by a
// hash of its signature base (not of the signature bytes: an ECDSA signature has a second
// valid encoding, (r, n-s), that a replayer could compute), for as long as the signature
// window would accept it.
func (h *Handler) useSignature(r *http.Request, res *reqverify.Result, id string) (pendingRecord, <-chan struct{}, error) {
	if res.Signature == nil {
		return pendingRecord{}, nil, errors.New("no signature")
	}
	base, err := httpsig.Base(res.Signature, h.target(r))
	if err != nil {
		return pendingRecord{}, nil, err
	}
	sum := sha256.Sum256(append([]byte("aauth pending signature\n"), base...))
	hash := base64.RawURLEncoding.EncodeToString(sum[:16])
	sig := res.Signature
	exp := sig.Created + int64(h.window/time.Second) + 1
	if sig.Expires != 0 && sig.Expires < exp {
		exp = sig.Expires
	}
	return h.consent.useSignature(r.Context(), id, hash, exp, h.now().Unix())
}

// shouldWait reports whether a long poll has anything to wait for.
func (h *Handler) shouldWait(rec pendingRecord) bool {
	if rec.Status != statusPending || rec.expired(h.now()) {
		return false
	}
	return !(rec.Clarification && rec.waitingQuestion() != "")
}

// waitForChange blocks until the record changes (woken at once by a change made in
// this process, and by re-reading storage every storageRecheck for changes made
// elsewhere), until it expires, until wait has passed, or until the request ends.
func (h *Handler) waitForChange(ctx context.Context, rec pendingRecord, changed <-chan struct{}, wait time.Duration) (pendingRecord, error) {
	start := rec.Version
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	untilExpiry := time.Unix(rec.Expires, 0).Sub(h.now())
	expiry := time.NewTimer(max(untilExpiry, 0))
	defer expiry.Stop()
	tick := time.NewTicker(storageRecheck)
	defer tick.Stop()
	var err error
	for {
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-deadline.C:
			return rec, nil
		case <-expiry.C:
			return rec, nil
		case <-changed:
			rec, changed, err = h.consent.get(ctx, rec.ID, 0)
		case <-tick.C:
			rec, changed, err = h.consent.sync(ctx, rec.ID)
		}
		if err != nil || rec.Version != start {
			return rec, err
		}
	}
}

// answerPoll answers a poll from the record's state; terminal answers are given once
// (the record then becomes a tombstone and the URL answers 404).
func (h *Handler) answerPoll(w http.ResponseWriter, r *http.Request, rec pendingRecord) {
	now := h.now()
	switch {
	case rec.expired(now):
		if !h.finish(w, r, rec.ID, func(p *pendingRecord) bool { return p.Status == statusPending && p.expired(now) }) {
			return
		}
		h.metrics.consentDecided(decisionExpired)
		h.writeError(w, r, http.StatusRequestTimeout, wire.CodeExpired, "the user did not decide in time", nil)
	case rec.Status == statusApproved:
		key, err := keys.FromAny(rec.Key)
		if err != nil {
			h.serverError(w, r, "pending request key", err)
			return
		}
		g := rec.authGrant(key)
		t, err := h.mintAuthToken(r.Context(), g, now)
		if err != nil {
			h.serverError(w, r, "minting auth token", err)
			return
		}
		if !h.finish(w, r, rec.ID, func(p *pendingRecord) bool { return p.Status == statusApproved }) {
			return
		}
		h.issued(r, g, t, kindConsent)
		h.writeJSON(w, http.StatusOK, wire.TokenResponse{AuthToken: t.raw, ExpiresIn: t.lifetime})
	case rec.Status == statusDenied:
		if !h.finish(w, r, rec.ID, func(p *pendingRecord) bool { return p.Status == statusDenied }) {
			return
		}
		desc := "the user denied the request"
		if rec.DenyReason != "" {
			desc = rec.DenyReason
		}
		h.writeError(w, r, http.StatusForbidden, wire.CodeDenied, desc, nil)
	default:
		body := wire.PendingResponse{Status: wire.StatusPending, Location: h.pendingURL(rec.ID)}
		if rec.Clarification {
			body.Clarification = rec.waitingQuestion()
		}
		hdr := w.Header()
		hdr.Set("Location", body.Location)
		hdr.Set("Retry-After", retryAfter)
		h.writeJSON(w, http.StatusAccepted, body)
	}
}

// finish turns a record whose state still satisfies from into a tombstone, so the one
// terminal answer is given once and later polls get 404. It answers the request itself
// and returns false when another poll took the answer first or storage failed.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, id string, from func(*pendingRecord) bool) bool {
	if _, err := h.consent.update(r.Context(), id, func(p *pendingRecord) error {
		if !from(p) {
			return errNoLongerPending
		}
		p.Status = statusDone
		return nil
	}); err != nil {
		h.terminalRace(w, r, err)
		return false
	}
	return true
}

// terminalRace answers when a terminal transition lost to a concurrent one (another
// poll already took the answer: 404) or could not be stored (500).
func (h *Handler) terminalRace(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNoLongerPending) || errors.Is(err, errNotFound) {
		h.pendingNotFound(w, r)
		return
	}
	h.serverError(w, r, "updating pending request", err)
}

// noLongerPending answers a clarification POST that arrives after the user decided (or
// the request expired): 409, and the outcome, token included, stays with the GET poll,
// so an answer racing the decision can never take the token in its reply.
func (h *Handler) noLongerPending(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, http.StatusConflict, wire.CodeInvalidRequest, "no question is waiting: the request was decided or expired; poll the pending URL for the outcome", nil)
}

// clarificationResponse takes the agent's signed answer to the user's question
// (draft-hardt-aauth §11.4): 202 on success, 403 denied once the round limit is passed.
func (h *Handler) clarificationResponse(w http.ResponseWriter, r *http.Request, rec pendingRecord, body []byte) {
	answer, err := parseClarification(body)
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error(), nil)
		return
	}
	now := h.now()
	if rec.Status != statusPending || rec.expired(now) {
		h.noLongerPending(w, r)
		return
	}
	if !rec.Clarification {
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "clarification is not enabled for this agent (clarification_supported)", nil)
		return
	}
	unasked := false
	rec, err = h.consent.update(r.Context(), rec.ID, func(p *pendingRecord) error {
		if p.Status != statusPending || p.expired(now) {
			return errNoLongerPending
		}
		if p.waitingQuestion() == "" {
			// Only the user's questions are answered: unprompted agent text would show on
			// the consent page and use up the user's rounds.
			unasked = true
			return errNoLongerPending
		}
		n := len(p.Exchange)
		p.Exchange[n-1].Answer, p.Exchange[n-1].Answered = answer, now.Unix()
		return nil
	})
	switch {
	case unasked:
		h.writeError(w, r, http.StatusBadRequest, wire.CodeInvalidRequest, "no question is waiting for an answer", nil)
		return
	case errors.Is(err, errNoLongerPending):
		h.noLongerPending(w, r)
		return
	case err != nil:
		h.serverError(w, r, "storing clarification", err)
		return
	}
	h.answerPoll(w, r, rec)
}

// parseClarification reads {"clarification_response": "…"} strictly (reqverify.DecodeJSON).
func parseClarification(body []byte) (string, error) {
	var v wire.ClarificationAnswer
	if err := reqverify.DecodeJSON(body, &v, `request body must be {"clarification_response": "<text>"}`); err != nil {
		return "", err
	}
	if v.Response == nil {
		return "", errors.New(`request body must be {"clarification_response": "<text>"}`)
	}
	a := strings.TrimSpace(*v.Response)
	if a == "" {
		return "", errors.New("clarification_response is empty")
	}
	if utf8.RuneCountInString(a) > maxAnswerChars {
		return "", errors.New("clarification_response is longer than 2000 characters")
	}
	return a, nil
}

// preferWait reads `Prefer: wait=N` (RFC 7240; N in seconds).
func preferWait(h http.Header) (time.Duration, bool) {
	for _, line := range h.Values("Prefer") {
		for _, pref := range strings.Split(line, ",") {
			tok, _, _ := strings.Cut(pref, ";")
			name, val, ok := strings.Cut(strings.TrimSpace(tok), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val = strings.Trim(strings.TrimSpace(val), `"`)
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return 0, false
			}
			return time.Duration(min(n, 3600)) * time.Second, true
		}
	}
	return 0, false
}

// clipChars shortens untrusted display text to n characters.
func clipChars(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
