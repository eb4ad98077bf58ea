package agenttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/reqverify"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/statusrec"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/token"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// ConsentOptions shape the consent mode of the fake auth server.
type ConsentOptions struct {
	// RetryAfter is the Retry-After (seconds) of every 202. The real auth server sends
	// 2; tests usually want 0.
	RetryAfter int
	// WaitCap bounds how long a poll with Prefer: wait is held; 0 means 30 s.
	WaitCap time.Duration
	// Lifetime is how long a pending request lives; 0 means 10 minutes.
	Lifetime time.Duration
}

// Poll is one request the pending URLs received, as recorded by Polls.
type Poll struct {
	ID            string // the pending id ("" when unknown)
	Method        string // GET (poll) or POST (clarification answer)
	Prefer        string // the Prefer header
	Applied       string // the Preference-Applied header sent
	KeyThumbprint string // the key that signed it ("" when the signature failed)
	Status        int    // the answer's status
	Held          time.Duration
}

// ClarificationAnswer is an answer the agent POSTed to a question.
type ClarificationAnswer struct {
	Question      string
	Answer        string
	KeyThumbprint string // the key that signed the POST
}

// Pending states.
const (
	statePending  = "pending"
	stateApproved = "approved"
	stateDenied   = "denied"
	stateExpired  = "expired"
	stateDone     = "done" // a terminal answer was given: 404 from now on
)

type pendingRec struct {
	id, code string
	jkt      string       // thumbprint of the key that made the token request
	agent    string       // and its agent
	claims   token.Claims // the auth token to issue, without sub
	state    string
	sub      string
	expires  time.Time
	asked    []string // questions, in order; the waiting one is asked[len(answers)]
	answers  []ClarificationAnswer
	polls    int
	changed  chan struct{} // closed and replaced on each change
}

func (p *pendingRec) waiting() string {
	if len(p.answers) < len(p.asked) {
		return p.asked[len(p.answers)]
	}
	return ""
}

func (p *pendingRec) touch() {
	close(p.changed)
	p.changed = make(chan struct{})
}

type consentState struct {
	opts    ConsentOptions
	recs    map[string]*pendingRec // by id
	order   []string               // ids in creation order
	polls   []Poll
	onPoll  func(w http.ResponseWriter, id string, n int) bool
	created chan struct{} // closed and replaced when a pending request is created
}

// EnableConsent switches the token endpoint to deferred answers (draft-hardt-aauth
// §11.3): every verified token request gets a 202 with an absolute Location under
// /pending/, Retry-After, Cache-Control: no-store, AAuth: require=interaction; code="…"
// and the JSON body of the wire. The pending URL answers signed polls from the key that
// made the token request (§10.3), long-polls with Prefer: wait (§10.5), and takes
// clarification answers (§11.4). A test decides with Approve, Deny, Ask and Expire.
// SetAnswer still takes precedence.
func (a *AuthServer) EnableConsent(o ConsentOptions) {
	if o.WaitCap == 0 {
		o.WaitCap = 30 * time.Second
	}
	if o.Lifetime == 0 {
		o.Lifetime = 10 * time.Minute
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.consent = &consentState{opts: o, recs: map[string]*pendingRec{}, created: make(chan struct{})}
}

// OnPoll installs f, called for each signed poll of a known pending request (after the
// signature and key check, before any long-poll wait) with the id and the poll's number
// (1 for the first). f may change the state (Approve, Deny, Ask, …: they take effect for
// this poll) or answer itself and return true.
func (a *AuthServer) OnPoll(f func(w http.ResponseWriter, id string, n int) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mustConsent().onPoll = f
}

func (a *AuthServer) mustConsent() *consentState {
	if a.consent == nil {
		panic("agenttest: EnableConsent was not called")
	}
	return a.consent
}

// PendingIDs lists the pending request ids, oldest first.
func (a *AuthServer) PendingIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.mustConsent().order)
}

// WaitPending waits up to d for the n-th pending request (1 = the first) and returns its
// id and code.
func (a *AuthServer) WaitPending(n int, d time.Duration) (id, code string, err error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		c := a.mustConsent()
		if len(c.order) >= n {
			rec := c.recs[c.order[n-1]]
			a.mu.Unlock()
			return rec.id, rec.code, nil
		}
		ch := c.created
		a.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return "", "", fmt.Errorf("agenttest: no pending request #%d within %s", n, d)
		}
	}
}

// Polls returns the requests the pending URLs received so far.
func (a *AuthServer) Polls() []Poll {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.mustConsent().polls)
}

// Clarifications returns the answers received for a pending request.
func (a *AuthServer) Clarifications(idOrCode string) []ClarificationAnswer {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.find(idOrCode)
	if rec == nil {
		return nil
	}
	return slices.Clone(rec.answers)
}

// find looks a record up by id, or by code (case-insensitive, hyphens and spaces
// ignored). a.mu is held.
func (a *AuthServer) find(idOrCode string) *pendingRec {
	c := a.mustConsent()
	if rec, ok := c.recs[idOrCode]; ok {
		return rec
	}
	norm := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(idOrCode))
	for _, rec := range c.recs {
		if rec.code == norm {
			return rec
		}
	}
	return nil
}

// decide changes a pending request's state; it fails when the request is unknown or no
// longer pending.
func (a *AuthServer) decide(idOrCode string, f func(*pendingRec)) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.find(idOrCode)
	if rec == nil {
		return fmt.Errorf("agenttest: no pending request %q", idOrCode)
	}
	if rec.state != statePending {
		return fmt.Errorf("agenttest: pending request %s is %s", rec.id, rec.state)
	}
	f(rec)
	rec.touch()
	return nil
}

// Approve records the user sub's consent: the next poll (and any held long poll, at
// once) gets the auth token, with sub.
func (a *AuthServer) Approve(idOrCode, sub string) error {
	return a.decide(idOrCode, func(p *pendingRec) { p.state, p.sub = stateApproved, sub })
}

// Deny records the user's refusal: the next poll gets 403 denied.
func (a *AuthServer) Deny(idOrCode string) error {
	return a.decide(idOrCode, func(p *pendingRec) { p.state = stateDenied })
}

// Expire ends the pending request's life: the next poll gets 408 expired.
func (a *AuthServer) Expire(idOrCode string) error {
	return a.decide(idOrCode, func(p *pendingRec) { p.state = stateExpired })
}

// Ask queues a question from the user; polls carry it as clarification until the agent
// answers it.
func (a *AuthServer) Ask(idOrCode, question string) error {
	return a.decide(idOrCode, func(p *pendingRec) { p.asked = append(p.asked, question) })
}

const codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ" // Crockford base32

func randomCode() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = codeAlphabet[int(b[i])%len(codeAlphabet)]
	}
	return string(b)
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deferRequest stores a verified token request and answers 202.
func (a *AuthServer) deferRequest(w http.ResponseWriter, res *reqverify.Result, c token.Claims) {
	a.mu.Lock()
	cs := a.mustConsent()
	rec := &pendingRec{
		id: randomID(), code: randomCode(), jkt: res.Key.Thumbprint, agent: res.Agent, claims: c,
		state: statePending, expires: time.Now().Add(cs.opts.Lifetime), changed: make(chan struct{}),
	}
	cs.recs[rec.id] = rec
	cs.order = append(cs.order, rec.id)
	close(cs.created)
	cs.created = make(chan struct{})
	retry := cs.opts.RetryAfter
	a.mu.Unlock()

	if err := wire.Seed.WriteInteraction(w, a.ID+PathPending+rec.id, rec.code, strconv.Itoa(retry)); err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
	}
}

// servePending is the pending URL: signed GET polls, signed POST clarification answers.
func (a *AuthServer) servePending(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	cs := a.consent
	a.mu.Unlock()
	if cs == nil {
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "no such pending request")
		return
	}
	id := strings.TrimPrefix(r.URL.Path, PathPending)
	rw := &statusrec.Writer{ResponseWriter: w}
	entry := Poll{ID: id, Method: r.Method, Prefer: r.Header.Get("Prefer")}
	start := time.Now()
	defer func() {
		entry.Status = rw.Status
		entry.Applied = w.Header().Get("Preference-Applied")
		entry.Held = time.Since(start)
		a.mu.Lock()
		cs.polls = append(cs.polls, entry)
		a.mu.Unlock()
	}()

	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	v := a.pollVerifier
	if r.Method == http.MethodPost {
		v = a.verifier // covers content-type and content-digest
	} else if r.Method != http.MethodGet {
		writeError(rw, http.StatusMethodNotAllowed, wire.CodeInvalidRequest, "use GET or POST")
		return
	}
	res, err := v.Verify(r.Context(), target(r))
	if err == nil && r.Method == http.MethodPost {
		err = httpsig.CheckContentDigest(r.Header.Get("Content-Digest"), body)
	}
	if err == nil && (res.Level != reqverify.LevelIdentity || res.Agent == "") {
		err = errors.New("an agent identity is required")
	}
	if err != nil {
		a.fail(rw, http.StatusUnauthorized, wire.CodeInvalidSignature, err.Error())
		return
	}
	entry.KeyThumbprint = res.Key.Thumbprint

	a.mu.Lock()
	rec := cs.recs[id]
	if rec == nil || rec.state == stateDone {
		a.mu.Unlock()
		writeError(rw, http.StatusNotFound, wire.CodeNotFound, "no such pending request")
		return
	}
	if rec.jkt != res.Key.Thumbprint || rec.agent != res.Agent {
		a.mu.Unlock()
		a.fail(rw, http.StatusForbidden, wire.CodeKeyBindingFailed, "the pending request belongs to another key")
		return
	}
	if r.Method == http.MethodPost {
		a.clarificationAnswer(rw, r, rec, body, res.Key.Thumbprint) // unlocks
		return
	}
	rec.polls++
	n, hook := rec.polls, cs.onPoll
	a.mu.Unlock()
	if hook != nil && hook(rw, id, n) {
		return
	}

	if !a.holdPoll(rw, r, cs, rec) {
		return
	}
	a.answerPoll(rw, rec)
}

// holdPoll honours Prefer: wait, up to the WaitCap, by holding a pending poll until its
// record changes or expires, and sets Preference-Applied. It reports false when the
// client went away.
func (a *AuthServer) holdPoll(rw http.ResponseWriter, r *http.Request, cs *consentState, rec *pendingRec) bool {
	wait := 0
	if s, ok := strings.CutPrefix(strings.TrimSpace(r.Header.Get("Prefer")), "wait="); ok {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			wait = v
		}
	}
	applied := min(time.Duration(wait)*time.Second, cs.opts.WaitCap).Truncate(time.Second)
	if applied > 0 {
		a.mu.Lock()
		hold := rec.state == statePending && rec.waiting() == "" && time.Now().Before(rec.expires)
		ch, untilExpiry := rec.changed, time.Until(rec.expires)
		a.mu.Unlock()
		if hold {
			t := time.NewTimer(min(applied, max(untilExpiry, 0)))
			select {
			case <-ch:
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return false
			}
			t.Stop()
		}
		rw.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(applied/time.Second)))
	}
	return true
}

// answerPoll answers a poll from the record's state; a terminal answer is given once.
func (a *AuthServer) answerPoll(w http.ResponseWriter, rec *pendingRec) {
	a.mu.Lock()
	if rec.state == statePending && !time.Now().Before(rec.expires) {
		rec.state = stateExpired
	}
	state, sub, claims, mutate := rec.state, rec.sub, rec.claims, a.mutate
	question, retry := rec.waiting(), a.consent.opts.RetryAfter
	if state != statePending {
		rec.state = stateDone
	}
	a.mu.Unlock()
	switch state {
	case stateApproved:
		now := time.Now()
		claims.Subject = sub
		claims.ID, claims.IssuedAt, claims.Expiry = token.NewID(), now.Unix(), now.Add(time.Hour).Unix()
		if mutate != nil {
			mutate(&claims)
		}
		at, err := token.Mint(a.Signer(), token.TypAuth, claims)
		if err != nil {
			a.fail(w, http.StatusInternalServerError, wire.CodeServerError, err.Error())
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, wire.TokenResponse{AuthToken: at, ExpiresIn: 3600})
	case stateDenied:
		writeError(w, http.StatusForbidden, wire.CodeDenied, "the user denied the request")
	case stateExpired:
		writeError(w, http.StatusRequestTimeout, wire.CodeExpired, "the user did not decide in time")
	case stateDone:
		writeError(w, http.StatusNotFound, wire.CodeNotFound, "no such pending request")
	default:
		loc := a.ID + PathPending + rec.id
		body := wire.PendingResponse{Status: wire.StatusPending, Location: loc, Clarification: question}
		h := w.Header()
		h.Set("Location", loc)
		h.Set("Retry-After", strconv.Itoa(retry))
		h.Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusAccepted, body)
	}
}

// clarificationAnswer takes {"clarification_response": "…"} for the waiting question.
// a.mu is held on entry and released here.
func (a *AuthServer) clarificationAnswer(w http.ResponseWriter, r *http.Request, rec *pendingRec, body []byte, jkt string) {
	var req wire.ClarificationAnswer
	q := rec.waiting()
	switch {
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		a.mu.Unlock()
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidRequest, "Content-Type must be application/json")
		return
	case json.Unmarshal(body, &req) != nil || req.Response == nil || *req.Response == "":
		a.mu.Unlock()
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidRequest, `the body must be {"clarification_response": "<text>"}`)
		return
	case rec.state != statePending || q == "":
		a.mu.Unlock()
		a.fail(w, http.StatusBadRequest, wire.CodeInvalidRequest, "no question is waiting")
		return
	}
	rec.answers = append(rec.answers, ClarificationAnswer{Question: q, Answer: *req.Response, KeyThumbprint: jkt})
	rec.touch()
	loc := a.ID + PathPending + rec.id
	a.mu.Unlock()
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusAccepted, wire.PendingResponse{Status: wire.StatusPending, Location: loc})
}
