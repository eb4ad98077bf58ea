package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/aauthevents"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/attempts"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
)

// consentPool holds one consent store per issuer (pending requests, interaction codes,
// login sessions, remembered grants, the CSRF key), shared by every handler instance of
// that issuer, so a config reload (old and new handlers side by side) loses nothing and
// a decision made through one instance wakes a long poll held by the other.
var consentPool = caddy.NewUsagePool()

// Pending request states as stored. A pending request whose expiry passed is reported
// as expired without a write; "done" is the tombstone after any terminal answer (the
// pending URL then answers 404).
const (
	statusPending  = "pending"
	statusApproved = "approved"
	statusDenied   = "denied"
	statusDone     = "done"
)

// tombstoneKeep is how long records are kept in storage after their expiry, so a late
// poll still gets 408 (or 404 after a terminal answer) and a late code entry gets "this
// code has expired" rather than "unknown code".
const tombstoneKeep = 10 * time.Minute

// errNotFound reports an unknown pending id, code or session.
var errNotFound = errors.New("not found")

// pendingRecord is the server-side state of a deferred token request: the context that
// was verified before the 202 was sent, and the consent flow's progress. Stored as JSON
// at aauth/issuer/<safe issuer>/pending/<id>.json.
type pendingRecord struct {
	ID      string `json:"id"`
	Code    string `json:"code"`
	Status  string `json:"status"`
	Version int64  `json:"version"`
	Created int64  `json:"created"`
	Expires int64  `json:"expires"`

	// Verified facts.
	Agent    string         `json:"agent"`
	Scheme   string         `json:"scheme"` // jwks_uri or jwt (agent token)
	Delegate string         `json:"delegate,omitempty"`
	KeyJKT   string         `json:"jkt"`
	Key      map[string]any `json:"jwk"`
	Resource string         `json:"resource"`
	Scope    string         `json:"scope,omitempty"`
	Txn      string         `json:"txn,omitempty"`
	RTJTI    string         `json:"resource_token_jti,omitempty"`

	// Self-access: Resource is the agent itself and the token has no agent claim
	// (draft-hardt-aauth §4.5.5).
	Self bool `json:"self,omitempty"`

	// Token exchange (draft-hardt-aauth §4.5.8): the upstream token's sub, carried into
	// the token instead of the consenting user when set; the new token's exchange_depth
	// (> 0 marks an exchange); the upstream token's issuer and agent, for the consent
	// page.
	Subject        string `json:"subject,omitempty"`
	ExchangeDepth  int    `json:"exchange_depth,omitempty"`
	UpstreamIssuer string `json:"upstream_iss,omitempty"`
	UpstreamAgent  string `json:"upstream_agent,omitempty"`

	// Untrusted text and metadata read at token-request time.
	Purpose           string            `json:"purpose,omitempty"`
	ClientName        string            `json:"client_name,omitempty"`
	ScopeDescriptions map[string]string `json:"scope_descriptions,omitempty"`
	Clarification     bool              `json:"clarification_supported,omitempty"`
	CallbackEndpoint  string            `json:"callback_endpoint,omitempty"`
	LocalhostCallback bool              `json:"localhost_callback_allowed,omitempty"`

	// Clarification exchange: the user's questions and the agent's answers
	// (draft-hardt-aauth §11.4).
	Exchange []exchange `json:"exchange,omitempty"`

	// Signatures already used on the pending URL (hashes of their signature bases),
	// until they fall out of the signature window (see useSignature).
	UsedSigs []usedSig `json:"used_sigs,omitempty"`

	// Decision.
	User       string `json:"user,omitempty"`
	Remember   bool   `json:"remember,omitempty"`
	Decided    int64  `json:"decided,omitempty"`
	DenyReason string `json:"deny_reason,omitempty"`
}

// exchange is one clarification round: the user's question and the agent's answer. An
// answer the agent sent with no question waiting has an empty Question.
type exchange struct {
	Question string `json:"question,omitempty"`
	Asked    int64  `json:"asked,omitempty"`
	Answer   string `json:"answer,omitempty"`
	Answered int64  `json:"answered,omitempty"`
}

// usedSig is a signature the pending URL has accepted, kept until Exp (unix seconds),
// when the signature window would refuse it anyway.
type usedSig struct {
	Hash string `json:"h"`
	Exp  int64  `json:"exp"`
}

func (p *pendingRecord) clone() pendingRecord {
	c := *p
	c.Exchange = slices.Clone(p.Exchange)
	c.UsedSigs = slices.Clone(p.UsedSigs)
	return c
}

// authGrant is what the token issued after the user's approval states: sub is the sub
// carried over by an exchange, else the consenting user.
func (p *pendingRecord) authGrant(key *keys.PublicKey) authGrant {
	sub := p.Subject
	if sub == "" {
		sub = p.User
	}
	return authGrant{
		Agent: p.Agent, Delegate: p.Delegate, Key: key, Resource: p.Resource,
		Scope: p.Scope, Txn: p.Txn, Subject: sub, Self: p.Self, Depth: p.ExchangeDepth,
	}
}

// scopes returns the requested scopes as a list.
func (p *pendingRecord) scopes() []string { return strings.Fields(p.Scope) }

// waitingQuestion is the user's question the agent has not answered yet, if any.
func (p *pendingRecord) waitingQuestion() string {
	if n := len(p.Exchange); n > 0 && p.Exchange[n-1].Question != "" && p.Exchange[n-1].Answered == 0 {
		return p.Exchange[n-1].Question
	}
	return ""
}

// questionsAsked counts the user's questions.
func (p *pendingRecord) questionsAsked() int {
	n := 0
	for _, e := range p.Exchange {
		if e.Question != "" {
			n++
		}
	}
	return n
}

// expired reports whether a still-pending request has run out of time.
func (p *pendingRecord) expired(now time.Time) bool {
	return p.Status == statusPending && now.Unix() >= p.Expires
}

// codeRecord maps an interaction code to its pending request:
// aauth/issuer/<safe issuer>/codes/<CODE>.
type codeRecord struct {
	ID   string `json:"id"`
	Exp  int64  `json:"exp"`
	Used bool   `json:"used,omitempty"`
}

// sessionRecord is a logged-in consent page session:
// aauth/issuer/<safe issuer>/sessions/<hex sha256(session id)>.json.
type sessionRecord struct {
	User string `json:"user"`
	Exp  int64  `json:"exp"`
}

type pendingEntry struct {
	rec     pendingRecord
	changed chan struct{} // closed (and replaced) on every change
	synced  time.Time     // last read from or write to storage (real clock)
}

// consentStore holds an issuer's consent state: in storage (the truth, shared by a
// restart and by other instances on the same storage) with an in-memory index in front.
type consentStore struct {
	issuer string
	layout keystore.Layout
	logger *zap.Logger

	secretMu sync.Mutex
	secret   []byte // CSRF key, kept in storage; loaded or made on first use

	storageRef

	mu       sync.Mutex
	pending  map[string]*pendingEntry
	codes    map[string]codeRecord
	sessions map[string]sessionRecord

	grantsMu sync.Mutex // serialises grant list updates within the process

	limiter *attempts.Limiter
	tokens  *tokenLimiter

	// events is the emitter of the newest config using the store (grantRevoked).
	events atomic.Pointer[aauthevents.Emitter]

	cancel context.CancelFunc
	done   chan struct{}
}

// loadConsentStore returns the pooled store for issuer, pointing it at st (the newest
// config's storage wins); release it with consentPool.Delete(issuer).
func loadConsentStore(ctx context.Context, issuer string, st certmagic.Storage, logger *zap.Logger) (*consentStore, error) {
	v, _, err := consentPool.LoadOrNew(issuer, func() (caddy.Destructor, error) {
		return newConsentStore(ctx, issuer, st, logger.Named("consent"))
	})
	if err != nil {
		return nil, fmt.Errorf("consent store: %w", err)
	}
	s := v.(*consentStore)
	s.setStorage(st)
	return s, nil
}

func newConsentStore(ctx context.Context, issuer string, st certmagic.Storage, logger *zap.Logger) (*consentStore, error) {
	s := &consentStore{
		issuer:   issuer,
		layout:   keystore.LayoutOf(keystore.RoleIssuer, issuer),
		logger:   logger,
		pending:  map[string]*pendingEntry{},
		codes:    map[string]codeRecord{},
		sessions: map[string]sessionRecord{},
		limiter:  attempts.New(maxWrongCodes, time.Minute, maxLimiterEntries),
		tokens:   newTokenLimiter(maxTokenLimiterKeys),
	}
	s.setStorage(st)
	s.seedAdmissions(ctx, time.Now().Unix())
	sctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.sweeper(sctx)
	return s, nil
}

// Destruct stops the sweeper (called by the pool when the last handler lets go).
func (s *consentStore) Destruct() error {
	s.cancel()
	<-s.done
	return nil
}

// interactSecret returns the issuer's CSRF key, loading it from storage or generating
// it the first time it is needed (not at provision, so `caddy validate` writes nothing).
// A failure is retried on the next call.
func (s *consentStore) interactSecret(ctx context.Context) ([]byte, error) {
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	if s.secret != nil {
		return s.secret, nil
	}
	b, err := s.loadOrCreateSecret(ctx)
	if err != nil {
		return nil, err
	}
	s.secret = b
	return b, nil
}

// loadOrCreateSecret reads the issuer's CSRF key, generating it once under a storage
// lock.
func (s *consentStore) loadOrCreateSecret(ctx context.Context) ([]byte, error) {
	st := s.storage()
	k := s.layout.InteractKey()
	decode := func(raw []byte) ([]byte, error) {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(b) < 32 {
			return nil, errors.New("interaction key in storage is malformed")
		}
		return b, nil
	}
	if raw, err := st.Load(ctx, k); err == nil {
		return decode(raw)
	}
	lock := s.layout.InteractKeyLock()
	if err := st.Lock(ctx, lock); err != nil {
		return nil, fmt.Errorf("locking the interaction key: %w", err)
	}
	defer func() { _ = st.Unlock(context.Background(), lock) }()
	raw, err := st.Load(ctx, k)
	switch {
	case err == nil:
		return decode(raw)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("loading the interaction key: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := st.Store(ctx, k, []byte(base64.RawURLEncoding.EncodeToString(b))); err != nil {
		return nil, fmt.Errorf("storing the interaction key: %w", err)
	}
	return b, nil
}

// csrfToken is the CSRF token for a browser session id: an HMAC under the issuer's key,
// so it needs no server-side state and survives restarts.
func (s *consentStore) csrfToken(ctx context.Context, sid string) (string, error) {
	secret, err := s.interactSecret(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("aauth csrf\n" + sid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// checkCSRF reports whether tok is the CSRF token of sid; an error means the key could
// not be read.
func (s *consentStore) checkCSRF(ctx context.Context, sid, tok string) (bool, error) {
	if sid == "" || tok == "" {
		return false, nil
	}
	want, err := s.csrfToken(ctx, sid)
	if err != nil {
		return false, err
	}
	return hmac.Equal([]byte(want), []byte(tok)), nil
}

// ---- pending requests ----

func (s *consentStore) pendingKey(id string) string {
	return s.layout.Key(keystore.DirPending, id+".json")
}
func (s *consentStore) codeKey(code string) string { return s.layout.Key(keystore.DirCodes, code) }

// create assigns a fresh, unused code to rec (admitted, with its ID) and stores both.
// On failure the request's place is given back.
func (s *consentStore) create(ctx context.Context, rec *pendingRecord) (err error) {
	defer func() {
		if err != nil {
			s.release(ctx, rec.ID)
		}
	}()
	if rec.ID == "" {
		rec.ID = newPendingID()
	}
	rec.Status = statusPending
	rec.Version = 1
	for i := 0; ; i++ {
		if i == 8 {
			return errors.New("no free interaction code")
		}
		code := newCode()
		craw, _ := json.Marshal(codeRecord{ID: rec.ID, Exp: rec.Expires})
		_, err := s.state().Update(ctx, s.codeKey(code), createOnly(craw))
		if errors.Is(err, errTaken) {
			continue
		}
		if err != nil {
			return fmt.Errorf("storing interaction code: %w", err)
		}
		rec.Code = code
		break
	}
	raw, err := json.Marshal(rec)
	if err == nil {
		_, err = s.state().Update(ctx, s.pendingKey(rec.ID), createOnly(raw))
	}
	if err != nil {
		return fmt.Errorf("storing pending request: %w", err)
	}
	s.mu.Lock()
	s.codes[rec.Code] = codeRecord{ID: rec.ID, Exp: rec.Expires}
	s.pending[rec.ID] = &pendingEntry{rec: rec.clone(), changed: make(chan struct{}), synced: time.Now()}
	s.mu.Unlock()
	return nil
}

// errTaken: a record that must be new exists already.
var errTaken = errors.New("already exists")

// createOnly is a state update that stores raw where nothing is stored yet.
func createOnly(raw []byte) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		if old != nil {
			return nil, errTaken
		}
		return raw, nil
	}
}

// decodePending parses the stored pending record id (raw nil: not stored).
func decodePending(raw []byte, id string) (pendingRecord, error) {
	if raw == nil {
		return pendingRecord{}, errNotFound
	}
	var rec pendingRecord
	if err := json.Unmarshal(raw, &rec); err != nil || rec.ID != id {
		return pendingRecord{}, errors.New("pending request in storage is malformed")
	}
	return rec, nil
}

// readPending loads a record from storage, without a lock (read-only answers).
func (s *consentStore) readPending(ctx context.Context, id string) (pendingRecord, error) {
	raw, err := s.state().Load(ctx, s.pendingKey(id))
	if errors.Is(err, fs.ErrNotExist) {
		return pendingRecord{}, errNotFound
	}
	if err != nil {
		return pendingRecord{}, fmt.Errorf("loading pending request: %w", err)
	}
	return decodePending(raw, id)
}

// get returns a copy of the record and the channel that is closed on its next change.
// A record not in memory is loaded from storage (after a restart, or when another
// instance created it); one whose last storage sync is older than maxAge is re-read, so
// decisions taken by another instance become visible (maxAge 0: never re-read a record
// that is in memory). What get returns may be outdated: it serves read-only answers
// (202, pages); every state change re-reads storage under the lock (update).
func (s *consentStore) get(ctx context.Context, id string, maxAge time.Duration) (pendingRecord, <-chan struct{}, error) {
	s.mu.Lock()
	e, ok := s.pending[id]
	if ok && (maxAge == 0 || e.rec.Status == statusDone || time.Since(e.synced) < maxAge) {
		rec, ch := e.rec.clone(), e.changed
		s.mu.Unlock()
		return rec, ch, nil
	}
	s.mu.Unlock()
	return s.sync(ctx, id)
}

// sync re-reads a record from storage into memory, waking waiters when it changed.
// Storage is the truth: a record gone from storage is gone from memory too.
func (s *consentStore) sync(ctx context.Context, id string) (pendingRecord, <-chan struct{}, error) {
	rec, err := s.readPending(ctx, id)
	if errors.Is(err, errNotFound) {
		s.mu.Lock()
		if e, ok := s.pending[id]; ok {
			delete(s.pending, id)
			close(e.changed)
		}
		s.mu.Unlock()
	}
	if err != nil {
		return pendingRecord{}, nil, err
	}
	rec, ch := s.cache(rec)
	return rec, ch, nil
}

// cache puts a record just read from or written to storage into memory, unless memory
// already holds a newer version (cached by a concurrent call), and wakes waiters when the
// version moved on. It returns the cached record and its change channel.
func (s *consentStore) cache(rec pendingRecord) (pendingRecord, <-chan struct{}) {
	s.mu.Lock()
	e, ok := s.pending[rec.ID]
	switch {
	case !ok:
		e = &pendingEntry{rec: rec.clone(), changed: make(chan struct{})}
		s.pending[rec.ID] = e
	case rec.Version > e.rec.Version:
		e.rec = rec.clone()
		close(e.changed)
		e.changed = make(chan struct{})
	case rec.Version == e.rec.Version:
		e.rec = rec.clone() // e.g. a new signature list
	}
	e.synced = time.Now()
	out, ch := e.rec.clone(), e.changed
	s.mu.Unlock()
	return out, ch
}

// update applies fn to the stored record under the state store's lock (re-read from
// storage, never from memory, so of concurrent changes on any number of instances each
// sees the one before), stores it with a new version and wakes waiters. If fn returns
// an error nothing is written; the record fn saw is returned with the error. The update
// that takes a request out of the pending state gives back its place (admissions).
func (s *consentStore) update(ctx context.Context, id string, fn func(*pendingRecord) error) (pendingRecord, error) {
	var rec pendingRecord
	decided := false
	_, err := s.state().Update(ctx, s.pendingKey(id), func(old []byte) ([]byte, error) {
		r, err := decodePending(old, id)
		if err != nil {
			return nil, err
		}
		wasPending := r.Status == statusPending
		if err := fn(&r); err != nil {
			rec = r
			return nil, err
		}
		r.Version++
		rec = r
		decided = wasPending && r.Status != statusPending
		return json.Marshal(&r)
	})
	if err != nil {
		if errors.Is(err, errNotFound) {
			_, _, _ = s.sync(ctx, id) // drop a memory copy of a record gone from storage
		}
		return rec, err
	}
	if decided {
		s.release(ctx, id)
	}
	rec, _ = s.cache(rec)
	return rec, nil
}

// Signatures on the pending URL are single use.
var (
	errSignatureUsed = errors.New("signature already used")
	errTooManySigs   = errors.New("too many signatures in the window")
)

// maxUsedSigs bounds the signatures remembered per pending request: an agent polling
// once a second within a 60 s window needs about 60. Past it, the agent must wait until
// older ones leave the window.
const maxUsedSigs = 128

// useSignature records that a signature (hash: of its signature base) was used on
// pending request id until exp, and refuses one that was used before (RFC 9421 §7.2.2:
// replay is for the application to prevent; a captured poll replayed after the decision
// would otherwise take the one-time answer). The list lives in the pending record and is
// changed under the state store's lock, so of any number of instances sharing the
// storage exactly one accepts a signature. The write does not bump the record's version
// (nothing the waiters care about changed). It returns the record as stored (the
// freshest) and its change channel.
func (s *consentStore) useSignature(ctx context.Context, id, hash string, exp, now int64) (pendingRecord, <-chan struct{}, error) {
	var rec pendingRecord
	_, err := s.state().Update(ctx, s.pendingKey(id), func(old []byte) ([]byte, error) {
		r, err := decodePending(old, id)
		if err != nil {
			return nil, err
		}
		r.UsedSigs = slices.DeleteFunc(r.UsedSigs, func(u usedSig) bool { return now >= u.Exp })
		if slices.ContainsFunc(r.UsedSigs, func(u usedSig) bool { return u.Hash == hash }) {
			return nil, errSignatureUsed
		}
		if len(r.UsedSigs) >= maxUsedSigs {
			return nil, errTooManySigs
		}
		r.UsedSigs = append(r.UsedSigs, usedSig{Hash: hash, Exp: exp})
		rec = r
		return json.Marshal(&r)
	})
	if err != nil {
		if errors.Is(err, errNotFound) {
			_, _, _ = s.sync(ctx, id)
		}
		return pendingRecord{}, nil, err
	}
	rec, ch := s.cache(rec)
	return rec, ch, nil
}

// ---- interaction codes ----

// lookupCode finds a code record (memory, then storage). code must be normalised.
func (s *consentStore) lookupCode(ctx context.Context, code string) (codeRecord, error) {
	s.mu.Lock()
	c, ok := s.codes[code]
	s.mu.Unlock()
	if ok && c.Used {
		return c, nil
	}
	// Storage is the truth for "used" (another instance may have consumed it).
	raw, err := s.state().Load(ctx, s.codeKey(code))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ok {
			return c, nil
		}
		return codeRecord{}, errNotFound
	case err != nil:
		return codeRecord{}, fmt.Errorf("loading interaction code: %w", err)
	}
	var rec codeRecord
	if err := json.Unmarshal(raw, &rec); err != nil || !validRandomID(rec.ID, pendingIDBytes) {
		return codeRecord{}, errors.New("interaction code in storage is malformed")
	}
	s.mu.Lock()
	s.codes[code] = rec
	s.mu.Unlock()
	return rec, nil
}

// errCodeUsed: the interaction code was consumed already (here or on another instance).
var errCodeUsed = errors.New("interaction code already used")

// consumeCode marks a code used (single use: the user's decision consumes it), under
// the state store's lock; errCodeUsed when another decision consumed it first.
func (s *consentStore) consumeCode(ctx context.Context, code string, c codeRecord) error {
	c.Used = true
	raw, _ := json.Marshal(c)
	_, err := s.state().Update(ctx, s.codeKey(code), func(old []byte) ([]byte, error) {
		var prev codeRecord
		if old != nil && json.Unmarshal(old, &prev) == nil && prev.Used {
			return nil, errCodeUsed
		}
		return raw, nil
	})
	if err != nil && !errors.Is(err, errCodeUsed) {
		return fmt.Errorf("storing interaction code: %w", err)
	}
	s.mu.Lock()
	s.codes[code] = c
	s.mu.Unlock()
	return err
}

// ---- login sessions ----

func sessionName(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return hex.EncodeToString(sum[:])
}

func (s *consentStore) sessionKey(name string) string {
	return s.layout.Key(keystore.DirSessions, name+".json")
}

// newSession stores a logged-in session for user and returns its id (the cookie value).
func (s *consentStore) newSession(ctx context.Context, user string, exp time.Time) (string, error) {
	sid := newRandomID(32)
	name := sessionName(sid)
	rec := sessionRecord{User: user, Exp: exp.Unix()}
	raw, _ := json.Marshal(rec)
	if err := s.storage().Store(ctx, s.sessionKey(name), raw); err != nil {
		return "", fmt.Errorf("storing session: %w", err)
	}
	s.mu.Lock()
	s.sessions[name] = rec
	s.mu.Unlock()
	return sid, nil
}

// sessionUser returns the logged-in user of a session id, or "".
func (s *consentStore) sessionUser(ctx context.Context, sid string, now time.Time) string {
	if !validRandomID(sid, 32) {
		return ""
	}
	name := sessionName(sid)
	s.mu.Lock()
	rec, ok := s.sessions[name]
	s.mu.Unlock()
	if !ok {
		raw, err := s.storage().Load(ctx, s.sessionKey(name))
		if err != nil || json.Unmarshal(raw, &rec) != nil {
			return ""
		}
		if now.Unix() < rec.Exp {
			s.mu.Lock()
			s.sessions[name] = rec
			s.mu.Unlock()
		}
	}
	if now.Unix() >= rec.Exp {
		return ""
	}
	return rec.User
}

// endSession forgets a session (logout).
func (s *consentStore) endSession(ctx context.Context, sid string) {
	if !validRandomID(sid, 32) {
		return
	}
	name := sessionName(sid)
	s.mu.Lock()
	delete(s.sessions, name)
	s.mu.Unlock()
	_ = s.storage().Delete(ctx, s.sessionKey(name))
}

// ---- sweeping ----

func (s *consentStore) sweeper(ctx context.Context) {
	runSweeper(ctx, s.done, func(now time.Time) { s.sweep(ctx, now) }, func(now time.Time) {
		s.scan(ctx, now)
		s.sweepGrants(ctx, now)
	})
}

// sweep drops expired records from memory and from storage.
func (s *consentStore) sweep(ctx context.Context, now time.Time) {
	keep := int64(tombstoneKeep / time.Second)
	var keys []string
	s.mu.Lock()
	for id, e := range s.pending {
		if now.Unix() >= e.rec.Expires+keep {
			delete(s.pending, id)
			keys = append(keys, s.pendingKey(id))
		}
	}
	for code, c := range s.codes {
		if now.Unix() >= c.Exp+keep {
			delete(s.codes, code)
			keys = append(keys, s.codeKey(code))
		}
	}
	for name, rec := range s.sessions {
		if now.Unix() >= rec.Exp {
			delete(s.sessions, name)
			keys = append(keys, s.sessionKey(name))
		}
	}
	s.mu.Unlock()
	s.limiter.Sweep(now)
	s.tokens.sweep(now)
	deleteKeys(ctx, s.storage(), keys, s.logger, "deleting expired consent record")
}

// scan deletes expired records found in storage, including ones written before this
// process started.
func (s *consentStore) scan(ctx context.Context, now time.Time) {
	keep := int64(tombstoneKeep / time.Second)
	for _, dir := range []string{keystore.DirPending, keystore.DirCodes, keystore.DirSessions} {
		scanExpired(ctx, s.storage(), s.layout.Dir(dir), now, s.logger, "consent record", func(raw []byte) (int64, bool) {
			var exp struct {
				Expires int64 `json:"expires"`
				Exp     int64 `json:"exp"`
			}
			if json.Unmarshal(raw, &exp) != nil {
				return 0, false
			}
			switch dir {
			case keystore.DirPending:
				return exp.Expires + keep, true
			case keystore.DirCodes:
				return exp.Exp + keep, true
			}
			return exp.Exp, true
		})
	}
}

// snapshotStores returns the consent stores in use (those in consentPool), sorted by
// issuer. The pool is only read here: storage is not touched while it is locked.
func snapshotStores() []*consentStore {
	var out []*consentStore
	consentPool.Range(func(_, v any) bool {
		if s, ok := v.(*consentStore); ok {
			out = append(out, s)
		}
		return true
	})
	slices.SortFunc(out, func(a, b *consentStore) int { return strings.Compare(a.issuer, b.issuer) })
	return out
}

// Interface guards
var _ caddy.Destructor = (*consentStore)(nil)
