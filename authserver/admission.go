package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"
)

// Fair shares of the undecided (pending, unexpired) consent requests an issuer holds.
// Every undecided request keeps a record in storage and a place in the user's queue, so
// the auth server bounds them, and it bounds them per party so that one party cannot
// take the whole pool and starve everyone else (the token endpoint answers 429 with
// Retry-After past a bound):
//
//   - 64 per agent identifier;
//   - 512 per agent domain: all agents whose host has the same registrable domain
//     (eTLD+1 from the Public Suffix List, private section included, so a.github.io and
//     b.github.io are different domains; an IP address or a single-label host such as
//     localhost is its own domain). Minting many cheap agent identifiers under one
//     domain therefore gets at most 512;
//   - 2,500 per resource (the resource token's iss), so requests for one resource (which
//     may be run by the same party as the agent) take at most a quarter;
//   - 10,000 in all; of these the last 2,000 are kept for agent domains that hold fewer
//     than 16, so parties with a few requests still get in while large ones are at
//     their share.
//
// A place is taken before the resource token's jti is spent and given back when the
// request is decided, when it expires, or when it could not be stored. The places live in
// one record in the issuer's state store (storage, or the Redis state backend), changed
// only with state.Store.Update: the check and the count are one read-modify-write under a
// lock held across every process sharing the state, so instances together hold at most
// the bounds above, not each of them. Each place carries its request's expiry, so places
// of requests that expired undecided (or whose instance crashed before giving them back)
// fall out at the next admission, without a sweeper.
const (
	maxPendingPerAgent    = 64
	maxPendingPerDomain   = 512
	maxPendingPerResource = 2500
	maxPendingTotal       = 10000
	pendingReserve        = 2000 // of maxPendingTotal, only for small agent domains
	smallDomainPending    = 16   // "small": fewer than this many undecided requests
)

// errTooManyPending refuses a new pending request over the bounds above.
var errTooManyPending = errors.New("too many undecided requests")

// admission is the place an undecided request holds in the counts.
type admission struct {
	agent, domain, resource string
	exp                     int64
}

// admissions counts undecided requests by agent, agent domain and resource.
type admissions struct {
	mu       sync.Mutex
	nextExp  int64 // no place expires before this (0: none held)
	byID     map[string]admission
	agent    map[string]int
	domain   map[string]int
	resource map[string]int
}

func newAdmissions() *admissions {
	return &admissions{
		byID:     map[string]admission{},
		agent:    map[string]int{},
		domain:   map[string]int{},
		resource: map[string]int{},
	}
}

// agentDomain groups an agent identifier by the registrable domain of its host.
func agentDomain(agent string) string {
	u, err := url.Parse(agent)
	if err != nil {
		return agent
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return agent
	}
	if net.ParseIP(host) != nil || !strings.Contains(host, ".") {
		return host
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host // the host is itself a public suffix
}

// admit takes a place for request id (expiring at exp) if every share allows it; the
// check and the count are one step, so parallel requests cannot all pass a check made
// before any of them was counted.
func (a *admissions) admit(id, agent, resource string, exp, now int64) error {
	ad := admission{agent: agent, domain: agentDomain(agent), resource: resource, exp: exp}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.byID[id]; ok {
		return nil
	}
	if !a.fitsLocked(ad) {
		a.pruneLocked(now) // expired requests still counted: drop them and look again
		if !a.fitsLocked(ad) {
			return errTooManyPending
		}
	}
	a.addLocked(id, ad)
	return nil
}

func (a *admissions) fitsLocked(ad admission) bool {
	total := len(a.byID)
	d := a.domain[ad.domain]
	switch {
	case a.agent[ad.agent] >= maxPendingPerAgent,
		d >= maxPendingPerDomain,
		a.resource[ad.resource] >= maxPendingPerResource,
		total >= maxPendingTotal,
		total >= maxPendingTotal-pendingReserve && d >= smallDomainPending:
		return false
	}
	return true
}

func (a *admissions) addLocked(id string, ad admission) {
	if a.nextExp == 0 || ad.exp < a.nextExp {
		a.nextExp = ad.exp
	}
	a.byID[id] = ad
	a.agent[ad.agent]++
	a.domain[ad.domain]++
	a.resource[ad.resource]++
}

// release gives back the place of request id (a no-op when it holds none).
func (a *admissions) release(id string) {
	a.mu.Lock()
	a.releaseLocked(id)
	a.mu.Unlock()
}

func (a *admissions) releaseLocked(id string) {
	ad, ok := a.byID[id]
	if !ok {
		return
	}
	delete(a.byID, id)
	dec(a.agent, ad.agent)
	dec(a.domain, ad.domain)
	dec(a.resource, ad.resource)
}

func dec(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// prune gives back the places of requests that expired undecided.
func (a *admissions) prune(now int64) {
	a.mu.Lock()
	a.pruneLocked(now)
	a.mu.Unlock()
}

// pruneLocked scans only when a place may have expired, so a refused request costs O(1)
// while the pool is full of live requests.
func (a *admissions) pruneLocked(now int64) {
	if a.nextExp == 0 || now < a.nextExp {
		return
	}
	a.nextExp = 0
	for id, ad := range a.byID {
		if now >= ad.exp {
			a.releaseLocked(id)
		} else if a.nextExp == 0 || ad.exp < a.nextExp {
			a.nextExp = ad.exp
		}
	}
}

// counts returns the number of places held in all, by agent, agent domain and resource.
func (a *admissions) counts(agent, resource string) (total, byAgent, byDomain, byResource int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byID), a.agent[agent], a.domain[agentDomain(agent)], a.resource[resource]
}

// admissionRecord is the stored form of the places held, at
// aauth/issuer/<safe issuer>/admission.json: the agents and resources once each, and per
// place its request id, expiry (unix seconds) and the indexes of its agent and resource.
// The agent domain is derived from the agent.
type admissionRecord struct {
	Agents    []string         `json:"agents"`
	Resources []string         `json:"resources"`
	Places    []admissionPlace `json:"places"`
}

type admissionPlace struct {
	ID       string `json:"id"`
	Exp      int64  `json:"exp"`
	Agent    int    `json:"a"`
	Resource int    `json:"r"`
}

// errAdmissionRecord: the stored record could not be read; it is started over.
var errAdmissionRecord = errors.New("admission record in storage is malformed")

// decodeAdmissions reads the stored places (raw nil: none), leaving out those expired at
// now (now 0: keep all). An unreadable record gives no places and errAdmissionRecord.
func decodeAdmissions(raw []byte, now int64) (*admissions, error) {
	a := newAdmissions()
	if raw == nil {
		return a, nil
	}
	var rec admissionRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return a, errAdmissionRecord
	}
	domains := make([]string, len(rec.Agents)) // agentDomain once per agent, not per place
	for _, p := range rec.Places {
		if p.Agent < 0 || p.Agent >= len(rec.Agents) || p.Resource < 0 || p.Resource >= len(rec.Resources) {
			return newAdmissions(), errAdmissionRecord
		}
		if now != 0 && now >= p.Exp {
			continue
		}
		if _, dup := a.byID[p.ID]; dup {
			continue
		}
		agent := rec.Agents[p.Agent]
		if domains[p.Agent] == "" {
			domains[p.Agent] = agentDomain(agent)
		}
		a.addLocked(p.ID, admission{agent: agent, domain: domains[p.Agent], resource: rec.Resources[p.Resource], exp: p.Exp})
	}
	return a, nil
}

// encode returns the stored form of a's places, sorted by id (the same places give the
// same bytes, so a no-op update writes nothing).
func (a *admissions) encode() []byte {
	ids := make([]string, 0, len(a.byID))
	for id := range a.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	rec := admissionRecord{Agents: []string{}, Resources: []string{}, Places: make([]admissionPlace, 0, len(ids))}
	agents, resources := map[string]int{}, map[string]int{}
	index := func(m map[string]int, list *[]string, v string) int {
		i, ok := m[v]
		if !ok {
			i = len(*list)
			m[v] = i
			*list = append(*list, v)
		}
		return i
	}
	for _, id := range ids {
		ad := a.byID[id]
		rec.Places = append(rec.Places, admissionPlace{ID: id, Exp: ad.exp,
			Agent: index(agents, &rec.Agents, ad.agent), Resource: index(resources, &rec.Resources, ad.resource)})
	}
	raw, _ := json.Marshal(rec) // strings and numbers only: cannot fail
	return raw
}

func (s *consentStore) admissionKey() string { return s.layout.Key("admission.json") }

// admit takes rec's place among the undecided requests of every instance sharing the
// state (see admissions): one Update of the admission record. rec needs its ID
// (newPendingID), Agent, Resource and Expires. errTooManyPending refuses it; any other
// error is the state store's (fail closed). Give the place back with release if the
// request is not created after all.
func (s *consentStore) admit(ctx context.Context, rec *pendingRecord, now int64) error {
	broken := false
	_, err := s.state().Update(ctx, s.admissionKey(), func(old []byte) ([]byte, error) {
		a, err := decodeAdmissions(old, now)
		broken = err != nil
		if err := a.admit(rec.ID, rec.Agent, rec.Resource, rec.Expires, now); err != nil {
			return nil, err
		}
		return a.encode(), nil
	})
	if broken && err == nil {
		s.logger.Error("the admission record was unreadable and has been started over")
	}
	return err
}

// errNotHeld: release found no place to give back (nothing is written).
var errNotHeld = errors.New("no place held")

// release gives back the place of request id: it was decided, or admitted but not
// created. A failure is logged; the place then falls out when the request expires.
func (s *consentStore) release(ctx context.Context, id string) {
	_, err := s.state().Update(context.WithoutCancel(ctx), s.admissionKey(), func(old []byte) ([]byte, error) {
		a, err := decodeAdmissions(old, 0)
		if err != nil {
			return nil, err
		}
		if _, ok := a.byID[id]; !ok {
			return nil, errNotHeld
		}
		a.releaseLocked(id)
		return a.encode(), nil
	})
	if err != nil && !errors.Is(err, errNotHeld) {
		s.logger.Warn("giving back the place of a decided request", zap.Error(err))
	}
}

// seedAdmissions writes the admission record from the undecided, unexpired requests found
// in storage when there is no record yet (storage written by a version that counted in
// memory), so an upgrade keeps its bounds. With a record in place it reads nothing more.
func (s *consentStore) seedAdmissions(ctx context.Context, now int64) {
	if _, err := s.state().Load(ctx, s.admissionKey()); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	a := s.scanUndecided(ctx, now)
	if a == nil || len(a.byID) == 0 {
		return
	}
	raw := a.encode()
	_, err := s.state().Update(ctx, s.admissionKey(), func(old []byte) ([]byte, error) {
		if old != nil {
			return old, nil // another instance wrote it first
		}
		return raw, nil
	})
	if err != nil {
		s.logger.Error("storing the admission record", zap.Error(err))
		return
	}
	s.logger.Info("undecided requests counted from storage", zap.Int("count", len(a.byID)))
}

// scanUndecided counts the undecided, unexpired pending records in storage.
func (s *consentStore) scanUndecided(ctx context.Context, now int64) *admissions {
	a := newAdmissions()
	err := s.eachStoredPending(ctx, func(rec pendingRecord) {
		if rec.Status != statusPending || now >= rec.Expires {
			return
		}
		if _, ok := a.byID[rec.ID]; !ok {
			a.addLocked(rec.ID, admission{agent: rec.Agent, domain: agentDomain(rec.Agent), resource: rec.Resource, exp: rec.Expires})
		}
	})
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Error("listing pending requests to rebuild the bounds", zap.Error(err))
		}
		return nil
	}
	return a
}

// undecided is the number of places held in the admission record at now: the requests
// of every instance sharing the state that wait for a user's decision.
func (s *consentStore) undecided(ctx context.Context, now int64) (int, error) {
	raw, err := s.state().Load(ctx, s.admissionKey())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	a, err := decodeAdmissions(raw, now)
	if err != nil {
		return 0, err
	}
	return len(a.byID), nil
}
